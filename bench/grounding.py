"""Grounding on the hand-written question sets (bench/grounding/): evidence in context, answers
that contain the fact, refusals right and wrong, empty answers, per set, split and answer mode.

    .venv/bin/python bench/grounding.py [--sets ntsb,18f,github-policy,demo] [--split all]
        [--mode extractive|llm|both] [--llm-url URL [--llm-model NAME]] [--work-dir DIR]
        [--label NAME] [--out FILE] [--limit N]

Each set's corpus is ingested by the real ingest into <work-dir>/eval/<corpus>/ (incremental, and
from scratch when the ingest code changed) and every question is asked of the real Assistant,
as `enclave eval --grounding` does (enclave/grounding.py holds the measure). Extractive mode by
default; llm mode needs --llm-url (or llm.base_url/llm.model in ENCLAVE_CONFIG). The result goes
to bench/results/grounding[-<label>]-<date>.json with the machine, the product's commit and its
uncommitted changes, and a Markdown table that bench/report.py puts in docs/benchmarks.md.

Held-out lines (split heldout) are reported apart and are never to be tuned on
(bench/grounding/README.md).

The product measured is the one this file's folder belongs to: to measure another checkout
(the "before" of a change), copy this file and enclave/grounding.py into it and run it there.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import logging
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make the project importable
    sys.path.insert(0, str(ROOT))

from bench.machine import checkout_state, loadavg, machine  # noqa: E402

RESULTS = ROOT / "bench" / "results"
QUESTIONS = ROOT / "bench" / "grounding"
CORPUS = (
    Path("/work/shared/corpus") if Path("/work/shared/corpus").is_dir() else ROOT.parent / "shared" / "corpus"
)
SETS = {
    "ntsb": CORPUS / "ntsb-reports",
    "18f": CORPUS / "18f-handbook",
    "github-policy": CORPUS / "github-site-policy",
    "demo": ROOT / "enclave" / "demo_corpus",
}
PRODUCT = ("assistant", "core", "enclave", "ingest", "vectorstore")


def product_state() -> dict[str, Any]:
    """Which code was measured: the commit, and the product files changed since it."""

    state = checkout_state(ROOT, PRODUCT)
    harness = {
        name: hashlib.sha256((ROOT / name).read_bytes()).hexdigest()[:16]
        for name in ("enclave/grounding.py", "bench/grounding.py")
    }
    return {
        "root": str(ROOT),
        **state,
        "harness_sha256": harness,
    }


def served_model(url: str) -> str:
    with urllib.request.urlopen(url.rstrip("/") + "/models", timeout=30) as resp:
        return str(json.load(resp)["data"][0]["id"])


def pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.0f}%"


def markdown(results: Sequence[dict[str, Any]]) -> str:
    head = [
        "set",
        "split",
        "mode",
        "answerable",
        "evidence in context",
        "answer contains the facts",
        "refused (wrongly)",
        "empty",
        "unanswerable",
        "refused (rightly)",
        "empty",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * 3 + "---:|" * (len(head) - 3)]
    for r in results:
        for s in r.get("summary", []):
            lines.append(
                f"| {r['set']} | {s['split']} | {s['mode']} | {s['answerable']} | {pct(s['evidence_in_context'])} "
                f"| {pct(s['answer_contains'])} | {pct(s['refused_wrongly'])} | {pct(s['empty_answerable'])} "
                f"| {s['unanswerable']} | {pct(s['refused_rightly'])} | {pct(s['empty_unanswerable'])} |"
            )
    return "\n".join(lines)


def chunk_markdown(results: Sequence[dict[str, Any]]) -> str:
    head = ["corpus", "documents", "chunks", "< 5 words", "< 15 words", "median words", "PDF chunks per page"]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for r in results:
        c = r.get("chunks")
        if not c:
            continue
        pdf = c.get("pdf")
        per_page = f"{pdf['chunks_per_page']:.2f} ({pdf['chunks']} / {pdf['pages']} pages)" if pdf else "—"
        lines.append(
            f"| {Path(r['corpus']).name} | {c['documents']} | {c['chunks']} | {pct(c['share_lt5_words'])} "
            f"| {pct(c['share_lt15_words'])} | {c['median_words']} | {per_page} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sets", default=",".join(SETS), help=f"comma-separated, of {', '.join(SETS)}")
    ap.add_argument("--split", default="all", choices=("tune", "heldout", "all"))
    ap.add_argument("--mode", default=None, choices=("extractive", "llm", "both"))
    ap.add_argument("--llm-url", help="an OpenAI-compatible endpoint (vLLM), e.g. http://127.0.0.1:8001/v1")
    ap.add_argument("--llm-model", help="its served model name (default: the first it lists)")
    ap.add_argument("--work-dir", type=Path, default=ROOT / "var" / "bench" / "grounding")
    ap.add_argument("--label", default="", help="names the result grounding-<label>-<date>.json")
    ap.add_argument(
        "--out", type=Path, help="the result file (default bench/results/grounding[-label]-<date>.json)"
    )
    ap.add_argument(
        "--limit", type=int, default=0, help="only the first N questions of each set (a smoke run)"
    )
    args = ap.parse_args(argv)

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from core.offline import disable_telemetry

    disable_telemetry()
    from core.settings import load_settings
    from enclave import wiring
    from enclave.grounding import format_table, run_grounding

    settings = load_settings(None, data_dir=args.work_dir)
    if args.llm_url:
        model = args.llm_model or served_model(args.llm_url)
        settings = settings.model_copy(
            update={"llm": settings.llm.model_copy(update={"base_url": args.llm_url, "model": model})}
        )
    mode = args.mode or ("both" if settings.llm.base_url else "extractive")
    modes = ("extractive", "llm") if mode == "both" else (mode,)
    wiring.guard(settings)
    started = dt.datetime.now(dt.UTC)
    load_seen = [loadavg()]
    results: list[dict[str, Any]] = []
    for name in [s.strip() for s in args.sets.split(",") if s.strip()]:
        if name not in SETS:
            ap.error(f"unknown set {name!r}: choose from {', '.join(SETS)}")
        t0 = time.perf_counter()
        print(f"{name}: {SETS[name]}", file=sys.stderr, flush=True)
        result = run_grounding(
            settings, QUESTIONS / f"{name}.jsonl", SETS[name], args.split, modes, args.limit
        )
        result["set"] = name
        result["seconds"] = round(time.perf_counter() - t0, 1)
        results.append(result)
        load_seen.append(loadavg())
        print(format_table([result]), file=sys.stderr, flush=True)
    label = f"-{args.label}" if args.label else ""
    out = args.out or RESULTS / f"grounding{label}-{started.date().isoformat()}.json"
    command = "python bench/grounding.py " + " ".join(argv if argv is not None else sys.argv[1:])
    data = {
        "benchmark": "grounding",
        "started_utc": started.isoformat(timespec="seconds"),
        "command": command.strip(),
        "machine": machine(["chromadb", "unstructured", "onnxruntime", "torch", "sentence-transformers"]),
        "loadavg": {"max_seen": max(load_seen), "reliable": max(load_seen) <= 1.5},
        "product": product_state(),
        "split": args.split,
        "modes": list(modes),
        "limit": args.limit,
        "sets": results,
        "markdown": markdown(results),
        "chunks_markdown": chunk_markdown(results),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(format_table(results))
    print()
    print(data["markdown"])
    print()
    print(data["chunks_markdown"])
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
