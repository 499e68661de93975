"""Chooses the attribution thresholds of assistant/support.py (ATTRIBUTE_*) from the answers a model
gave in a grounding run (bench/grounding.py --mode llm), on the tune split only.

    .venv/bin/python bench/attribution.py --work-dir var/bench/smollm2/w [--sets demo,github-policy]

It reads the run's audit logs (<work-dir>/eval/<corpus>/audit.sqlite3): each answer's question, the
model's own words (withheld or shown) and the numbered passages of its prompt. It grades them
again with the real embedding model at every threshold pair of a grid and prints, per pair: the
answerable questions refused (all of them, and those whose answer held the expected words: the
refusals that cost a right answer), the unanswerable ones refused, and how many attributed
sentences went to the expected document's passage. Held-out lines are skipped unread.
"""

from __future__ import annotations

import argparse
import json
import re
import sqlite3
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make the project importable
    sys.path.insert(0, str(ROOT))

from assistant.service import unsupported_refusal  # noqa: E402
from assistant.support import SupportChecker  # noqa: E402
from core.types import Chunk, Hit  # noqa: E402
from enclave.grounding import load_questions, occurs  # noqa: E402

QUESTIONS = ROOT / "bench" / "grounding"
CORPUS_OF = {
    "demo": "demo_corpus",
    "github-policy": "github-site-policy",
    "18f": "18f-handbook",
    "ntsb": "ntsb-reports",
}
_SOURCE = re.compile(r'<source n="(\d+)" title="([^"]*)"[^>]*>\n(.*?)\n</source>', re.DOTALL)
SEMANTIC = (0.30, 0.35, 0.40, 0.45, 0.50, 0.55, 0.60)
LEXICAL = (0.70, 0.85, 1.01)


def answers(work_dir: Path, set_name: str) -> list[dict[str, Any]]:
    """The tune questions of a set, each with the model's answer and passages from the audit log."""
    tune = {q.question: q for q in load_questions(QUESTIONS / f"{set_name}.jsonl") if q.split == "tune"}
    db = work_dir / "eval" / CORPUS_OF[set_name] / "audit.sqlite3"
    out = []
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        for question, data in con.execute("SELECT question, data FROM records WHERE event = 'answer'"):
            record = json.loads(data)
            q = tune.get(question)
            if q is None or not record.get("prompt") or record.get("settings", {}).get("max_tokens") is None:
                continue  # held-out, or no model was asked (nothing retrieved)
            text = (record.get("withheld") or {}).get("answer") or record["answer"]
            prompt = record["prompt"][-1]["content"]
            sources = {int(n): (title, body) for n, title, body in _SOURCE.findall(prompt)}
            out.append({"q": q, "text": text, "sources": sources, "retrieved": record["retrieved"]})
    return out


def grade(rows: Sequence[dict[str, Any]], checker: SupportChecker) -> dict[str, Any]:
    tally = {
        "answerable": 0,
        "refused": 0,
        "right": 0,
        "right_refused": 0,
        "unanswerable": 0,
        "un_refused": 0,
    }
    for row in rows:
        q = row["q"]
        passages = {n: body for n, (_, body) in row["sources"].items()}
        support = checker.check(row["text"], passages, attribute=True, question=q.question)
        hits = [
            Hit(Chunk(str(n), str(n), body, title, ("x",), title=title), 1.0)
            for n, (title, body) in row["sources"].items()
        ]
        refused = unsupported_refusal(support, hits) is not None
        if q.kind == "answerable":
            right = all(occurs(a, row["text"]) for a in q.answers)
            tally["answerable"] += 1
            tally["refused"] += refused
            tally["right"] += right
            tally["right_refused"] += right and refused
        else:
            tally["unanswerable"] += 1
            tally["un_refused"] += refused
    return tally


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work-dir", type=Path, required=True)
    ap.add_argument("--sets", default="demo,github-policy")
    args = ap.parse_args(argv)
    from core.settings import load_settings
    from enclave import wiring

    # The product's embedder, as the grounding run built it (its export cached under the work dir).
    embedder = wiring.build_embedder(load_settings(None, data_dir=args.work_dir))
    rows = [r for s in args.sets.split(",") for r in answers(args.work_dir, s)]
    print(f"{len(rows)} tune answers from {args.work_dir}")
    print(
        f"{'lexical':>8}{'cosine':>8}{'ans':>5}{'refused':>9}{'right':>7}{'right refused':>15}{'unans':>7}{'refused':>9}"
    )
    for lexical in LEXICAL:
        for semantic in SEMANTIC:
            checker = SupportChecker(embedder, attribute_min_lexical=lexical, attribute_min_semantic=semantic)
            t = grade(rows, checker)
            print(
                f"{lexical:>8.2f}{semantic:>8.2f}{t['answerable']:>5}{t['refused']:>9}{t['right']:>7}"
                f"{t['right_refused']:>15}{t['unanswerable']:>7}{t['un_refused']:>9}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
