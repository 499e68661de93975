"""Calibrate the evidence judgement (assistant/evidence.py) on the tune split of bench/grounding,
never the held-out one: dump what the finder saw per question (each candidate's features and
whether it holds the expected answer), then search the verdict's thresholds for the most
unanswerable questions refused with at most 5% (7%, 10%) of the answerable ones refused.

    .venv/bin/python bench/fit_evidence.py [--sets ...] [--out var/bench/evidence-features.json]
    .venv/bin/python bench/fit_evidence.py --from var/bench/evidence-features.json   # search only

The thresholds found are set by hand in assistant/evidence.py (MIN_COVERAGE, MIN_COVERAGE_UNTYPED,
MIN_COSINE, MIN_COSINE_UNTYPED, TYPED_RANK), and only kept when the held-out split agrees
(docs/benchmarks.md, "Grounding").
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.grounding import QUESTIONS, SETS  # noqa: E402


def covers(c: dict[str, Any]) -> float:
    return max(c["coverage"], c["label"])


def verdict(
    row: dict[str, Any], untyped_cover: float, untyped_cos: float, rank: int, cover: float, cos: float
) -> bool:
    """assistant.evidence.EvidenceFinder._verdict, replayed on a dumped question."""
    found = row.get("candidates", [])
    if not found:
        return False
    if row["expected"] == "any":
        best = next((c for c in found if c["on_subject"] and not c["restates"]), None)
        return (
            best is not None
            and covers(best) >= untyped_cover
            and (best["cosine"] >= untyped_cos or best["label"] > 0)
        )
    typed = [(i, c) for i, c in enumerate(found) if c["typed"]]
    if not typed:
        return False
    i, best = typed[0]
    return i <= rank and covers(best) >= cover and (best["cosine"] >= cos or best["label"] > 0)


def search(rows: list[dict[str, Any]]) -> None:
    grid = itertools.product(
        [0.1, 0.15, 0.2, 0.25, 0.3],
        [0.3, 0.35, 0.4, 0.45],
        [0, 1, 2],
        [0.0, 0.1, 0.2],
        [0.3, 0.35, 0.4, 0.45],
    )
    points = []
    for p in grid:
        n: Counter[str] = Counter()
        for row in rows:
            kind = "answerable" if row["kind"] == "answerable" else "unanswerable"
            n[kind] += 1
            n[kind + " refused"] += not verdict(row, *p)
        points.append(
            (n["answerable refused"] / n["answerable"], n["unanswerable refused"] / n["unanswerable"], p)
        )
    names = "(untyped coverage, untyped cosine, typed rank, typed coverage, typed cosine)"
    for bar in (0.05, 0.07, 0.10):
        a, u, p = max((x for x in points if x[0] <= bar), key=lambda x: (x[1], -x[0]))
        print(
            f"answerable refused <= {bar:.0%}: {names} = {p}: answerable refused {a:.1%}, unanswerable refused {u:.1%}"
        )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--from", dest="source", type=Path, help="search a dump made earlier, without asking again"
    )
    ap.add_argument("--sets", default=",".join(SETS))
    ap.add_argument("--split", default="tune", choices=("tune",))  # held-out lines are never fitted on
    ap.add_argument("--work-dir", type=Path, default=ROOT / "var" / "bench" / "grounding")
    ap.add_argument("--out", type=Path, default=ROOT / "var" / "bench" / "evidence-features.json")
    args = ap.parse_args()
    if args.source:
        search(json.loads(args.source.read_text(encoding="utf-8")))
        return 0

    from assistant.citations import citations_for
    from core.offline import disable_telemetry
    from core.settings import load_settings
    from core.types import Principal
    from enclave import wiring
    from enclave.grounding import (
        corpus_folders,
        grounding_settings,
        load_questions,
        occurs,
        prepare_corpus,
    )

    disable_telemetry()
    settings = load_settings(None, data_dir=args.work_dir)
    out = []
    for name in args.sets.split(","):
        corpus = SETS[name]
        own = grounding_settings(settings, corpus, llm=False)
        embedder = wiring.build_embedder(own)
        store = wiring.build_store(own)
        prepare_corpus(own, corpus, embedder, store)
        groups = tuple(sorted({g for _, gs in corpus_folders(corpus) for g in gs}))
        principal = Principal("fit", "staff", groups)
        assistant = wiring.build_assistant(own, embedder, store)
        for q in load_questions(QUESTIONS / f"{name}.jsonl"):
            if q.split != args.split:
                continue
            rewrite = assistant.rewriter.rewrite(q.question, [])
            relevant, _ = assistant.retriever.retrieve(principal, rewrite.query)
            supplied = citations_for(relevant, assistant.locate)
            row = {
                "id": q.qid,
                "set": name,
                "kind": q.kind,
                "question": q.question,
                "answers": list(q.answers),
            }
            if relevant:
                f = assistant.extractive.find(q.question, relevant, supplied, rewrite.query)
                row["expected"] = f.expected.kind
                row["answerable"] = f.answerable
                row["reason"] = f.reason
                row["candidates"] = [
                    {
                        "text": s.candidate.text,
                        "passage": s.candidate.passage,
                        "position": s.candidate.position,
                        "doc": relevant[s.candidate.passage].chunk.doc_id,
                        "cosine": s.cosine,
                        "coverage": s.coverage,
                        "typed": s.typed,
                        "label": s.label,
                        "score": s.score,
                        "restates": s.restates,
                        "on_subject": s.on_subject,
                        "holds": bool(q.answers) and any(occurs(a, s.candidate.text) for a in q.answers),
                    }
                    for s in f.ranked
                ]
            out.append(row)
            print(name, q.qid, file=sys.stderr, end="\r")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=0, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"\nwrote {args.out}: {len(out)} questions", file=sys.stderr)
    search(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
