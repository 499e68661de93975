"""Retrieval quality end to end: `enclave eval` on BEIR SciFact test beside published reference scores.

    .venv/bin/python bench/quality.py [--dataset ../shared/eval/scifact] [--split test]
        [--work-dir DIR] [--output FILE] [--quick]

Runs the product's own command, `enclave --data-dir <work-dir> eval <dataset> --split test`, in
a subprocess: every abstract is written as a Markdown file, parsed, chunked, embedded and stored
by the real ingest (incremental: a rerun on the same --work-dir only scores), and each retriever
the assistant has (dense, lexical, hybrid, hybrid-rrf) is scored with nDCG@10, Recall@10 and
MRR@10. Beside each: the published score of its counterpart on the same split (all-MiniLM-L6-v2
from MTEB's results; BM25 from MTEB's bm25s baseline and Anserini's BEIR regressions), as the
ratio ours / published (above 1: ours is better). The published figures are constants below,
with their sources; ../shared/eval/scifact/reference_scores/REFERENCE.md holds copies.

--quick scores a small subset made here (the first 30 test questions, the abstracts judged for
them and 300 others): a smoke run of the same path in minutes, whose scores are NOT comparable
with the published ones (a smaller corpus is easier) and are labelled so.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make bench importable
    sys.path.insert(0, str(ROOT))

from bench.machine import loadavg, machine  # noqa: E402

RESULTS = ROOT / "bench" / "results"
DEFAULT_DATASET = ROOT.parent / "shared" / "eval" / "scifact"
ENCLAVE = Path(sys.executable).with_name("enclave")
BUSY_LOADAVG = 1.5
QUICK_QUESTIONS = 30
QUICK_OTHER_DOCS = 300

# Published scores on SciFact (BEIR), by split: (name, retriever it compares with, metrics, source).
PUBLISHED: dict[str, list[dict[str, Any]]] = {
    "test": [
        {
            "name": "all-MiniLM-L6-v2 (MTEB)",
            "compare": "dense",
            "ndcg@10": 0.64508,
            "recall@10": 0.78333,
            "mrr@10": 0.60472,
            "source": "github.com/embeddings-benchmark/results, sentence-transformers__all-MiniLM-L6-v2 SciFact.json",
        },
        {
            "name": "BM25, bm25s (MTEB baseline)",
            "compare": "lexical",
            "ndcg@10": 0.68736,
            "recall@10": 0.81867,
            "mrr@10": 0.65034,
            "source": "MTEB results, bm25s 0.1.10 SciFact.json",
        },
        {
            "name": "BM25, Anserini multifield (BEIR paper setup)",
            "compare": "lexical",
            "ndcg@10": 0.6647,
            "source": "castorini/anserini docs/regressions/regressions-beir-v1.0.0-scifact.multifield.md",
        },
    ],
    "train": [
        {
            "name": "all-MiniLM-L6-v2 (MTEB)",
            "compare": "dense",
            "ndcg@10": 0.66020,
            "recall@10": 0.78556,
            "mrr@10": 0.62613,
            "source": "MTEB results, SciFact.json (train)",
        },
        {
            "name": "BM25, bm25s (MTEB baseline)",
            "compare": "lexical",
            "ndcg@10": 0.69600,
            "source": "MTEB results, bm25s SciFact.json (train)",
        },
    ],
}
METRICS = ("ndcg@10", "recall@10", "mrr@10")


def quick_subset(dataset: Path, split: str, dest: Path) -> Path:
    """A small BEIR folder: the first QUICK_QUESTIONS judged questions, their documents and
    QUICK_OTHER_DOCS more (the first in corpus order that are not judged)."""
    qrels: dict[str, dict[str, str]] = {}
    with (dataset / "qrels" / f"{split}.tsv").open(encoding="utf-8", newline="") as fh:
        for row in csv.reader(fh, delimiter="\t"):
            if len(row) >= 3 and row[0] != "query-id":
                if row[0] not in qrels and len(qrels) >= QUICK_QUESTIONS:
                    continue
                qrels.setdefault(row[0], {})[row[1]] = row[2]
    judged = {d for rel in qrels.values() for d in rel}
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "qrels").mkdir(exist_ok=True)
    with (dest / "qrels" / f"{split}.tsv").open("w", encoding="utf-8") as fh:
        fh.write("query-id\tcorpus-id\tscore\n")
        for qid, rel in qrels.items():
            for doc, score in rel.items():
                fh.write(f"{qid}\t{doc}\t{score}\n")
    with (
        (dataset / "queries.jsonl").open(encoding="utf-8") as src,
        (dest / "queries.jsonl").open("w", encoding="utf-8") as out,
    ):
        for line in src:
            if line.strip() and str(json.loads(line)["_id"]) in qrels:
                out.write(line)
    others = 0
    with (
        (dataset / "corpus.jsonl").open(encoding="utf-8") as src,
        (dest / "corpus.jsonl").open("w", encoding="utf-8") as out,
    ):
        for line in src:
            if not line.strip():
                continue
            doc = str(json.loads(line)["_id"])
            if doc in judged:
                out.write(line)
            elif others < QUICK_OTHER_DOCS:
                out.write(line)
                others += 1
    return dest


def ratios(scores: dict[str, dict[str, float]], split: str) -> list[dict[str, Any]]:
    rows = []
    for ref in PUBLISHED.get(split, []):
        for retriever in dict.fromkeys([ref["compare"], "hybrid"]):
            ours = scores.get(retriever)
            if not ours:
                continue
            for metric in METRICS:
                if metric in ref and metric in ours:
                    rows.append(
                        {
                            "retriever": retriever,
                            "metric": metric,
                            "ours": round(ours[metric], 4),
                            "published": ref["name"],
                            "published_value": ref[metric],
                            "ratio": round(ours[metric] / ref[metric], 3),
                        }
                    )
    return rows


def table(result: dict[str, Any]) -> str:
    lines = ["| retriever | nDCG@10 | Recall@10 | MRR@10 | ms/query |", "|---|---|---|---|---|"]
    for name, s in result["scores"].items():
        ms = result.get("ms_per_query", {}).get(name)
        lines.append(
            f"| {name} | {s['ndcg@10']:.3f} | {s['recall@10']:.3f} | {s['mrr@10']:.3f} | {ms if ms is not None else '—'} |"
        )
    if result["comparable"]:
        lines += [
            "",
            "| ours | metric | value | published | published value | ratio ours / published |",
            "|---|---|---|---|---|---|",
        ]
        for r in result["versus_published"]:
            lines.append(
                f"| {r['retriever']} | {r['metric']} | {r['ours']:.3f} | {r['published']} | {r['published_value']:.3f} | {r['ratio']:.3f}x |"
            )
    else:
        lines += ["", "*Quick subset: not comparable with published scores (a smaller corpus is easier).*"]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--dataset",
        type=Path,
        default=DEFAULT_DATASET,
        help=f"a BEIR SciFact folder (default {DEFAULT_DATASET})",
    )
    ap.add_argument("--split", default="test", help="qrels split to score (default test)")
    ap.add_argument(
        "--work-dir",
        type=Path,
        help="data folder of the eval index, kept so a rerun is incremental (default: temp)",
    )
    ap.add_argument(
        "--output", type=Path, help="result JSON (default bench/results/quality-<UTC date>[-quick].json)"
    )
    ap.add_argument(
        "--quick", action="store_true", help=f"a smoke run on {QUICK_QUESTIONS} questions and a small corpus"
    )
    args = ap.parse_args(argv)
    if not (args.dataset / "corpus.jsonl").is_file():
        raise SystemExit(f"{args.dataset} is not a BEIR folder (no corpus.jsonl): pass --dataset")

    started = dt.datetime.now(dt.UTC)
    loads = [loadavg()]
    keep = args.work_dir is not None
    work = (args.work_dir or Path(tempfile.mkdtemp(prefix="enclave-bench-quality-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    try:
        dataset = (
            quick_subset(args.dataset, args.split, work / "scifact-quick")
            if args.quick
            else args.dataset.resolve()
        )
        out = work / "eval-result.json"
        command = [
            str(ENCLAVE),
            "--data-dir",
            str(work / "data"),
            "eval",
            str(dataset),
            "--split",
            args.split,
            "--out",
            str(out),
        ]
        print(" ".join(command), flush=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("ENCLAVE_")}
        t0 = time.perf_counter()
        done = subprocess.run(command, env=env, check=False)
        seconds = time.perf_counter() - t0
        loads.append(loadavg())
        if done.returncode != 0:
            raise SystemExit(f"`enclave eval` failed with exit status {done.returncode}")
        evaluated = json.loads(out.read_text(encoding="utf-8"))
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    evaluated.pop("per_query", None)
    busy = max(loads)
    result = {
        "benchmark": "quality",
        "command": "python bench/quality.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "eval_command": " ".join(command[1:]),
        "started_utc": started.isoformat(timespec="seconds"),
        "finished_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(("torch", "sentence-transformers", "chromadb", "unstructured")),
        "loadavg": {
            "samples": loads,
            "max_seen": busy,
            "reliable": busy <= BUSY_LOADAVG,
            "note": "quality does not depend on load",
        },
        "quick": args.quick,
        "comparable": not args.quick,
        "seconds": round(seconds, 1),
        "set": evaluated.get("set"),
        "questions": evaluated.get("questions"),
        "ingest": evaluated.get("ingest"),
        "scores": evaluated["scores"],
        "ms_per_query": evaluated.get("ms_per_query", {}),
        "versus_published": ratios(evaluated["scores"], args.split) if not args.quick else [],
        "published": PUBLISHED.get(args.split, []),
    }
    result["markdown"] = table(result)
    print("\n" + result["markdown"] + "\n", flush=True)
    target = args.output or RESULTS / f"quality-{started:%Y-%m-%d}{'-quick' if args.quick else ''}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(f"results: {target}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
