"""Choose `retrieval.min_score` on a TRAIN split, from an index built by `enclave eval`.

    .venv/bin/enclave --data-dir DIR eval ../shared/eval/scifact --split train      # builds DIR/eval/scifact
    .venv/bin/python bench/calibrate_threshold.py --data-dir DIR ../shared/eval/scifact [--split train]
        [--keep 0.975] [--json bench/results/threshold.json]

The threshold decides when Enclave answers "the documents do not answer this" without calling the
LLM: a question whose best passage has a cosine below it gets no passages. For every judged
question whose relevant documents are in the index:

- answerable: the best cosine between the question and any chunk of its relevant documents
  (exact, from the stored vectors; not limited to what a search returned);
- unanswerable (near miss): the best cosine among chunks of the *other* documents, i.e. what the
  question would get if its relevant documents were not indexed.

The threshold is the largest value (two decimals, rounded down) that keeps `--keep` of the
answerable questions answerable (default 97.5%: refusing a question the documents do answer is
the failure users notice most). The share of near misses it would refuse is reported, not tuned:
on a one-topic corpus like SciFact most near misses are on topic and pass, which is right, as the
model then sees passages close to the question and is told to say when they do not answer it.
Works on a partly built index too (it says how many questions it could use).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def choose(answerable: list[float], keep: float) -> float:
    threshold = math.floor(quantile(answerable, 1.0 - keep) * 100) / 100
    while sum(1 for v in answerable if v >= threshold) < keep * len(answerable):
        threshold = round(threshold - 0.01, 2)
    return threshold


def main(argv: list[str] | None = None) -> int:
    from core.offline import disable_telemetry, install_guard

    disable_telemetry()
    install_guard("strict")
    import numpy as np

    from core.settings import load_settings
    from core.types import Principal
    from enclave import wiring
    from enclave.evaluate import EVAL_GROUP, evaluation_settings, load_question_set
    from vectorstore.embedding import resolve_backend

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--data-dir", type=Path, required=True, help="the --data-dir given to `enclave eval`")
    parser.add_argument("--split", default="train")
    parser.add_argument("--keep", type=float, default=0.975)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.split == "test":
        print("refusing to calibrate on a test split: use train", file=sys.stderr)
        return 2

    qset = load_question_set(args.dataset, args.split)
    settings = evaluation_settings(load_settings(None, data_dir=args.data_dir), qset)
    store = wiring.build_store(settings)
    embedder = wiring.build_embedder(settings)
    principal = Principal("calibration", "auditor", (EVAL_GROUP,))
    col = store.dense._collection((EVAL_GROUP,), create=False)
    if col is None:
        print(f"no index under {settings.data_dir}: run `enclave eval` on the set first", file=sys.stderr)
        return 1
    got = col.get(include=["embeddings", "metadatas"])
    by_doc: dict[str, list[int]] = {}
    for i, meta in enumerate(got["metadatas"]):
        by_doc.setdefault(Path(str(meta["source"])).stem, []).append(i)
    vectors = np.asarray(got["embeddings"], dtype=np.float32)
    usable = [q for q in qset.questions if all(d in by_doc for d, r in q.relevant.items() if r > 0)]
    answerable: list[float] = []
    near_miss: list[float] = []
    for q in usable:
        vq = np.asarray(embedder.embed_query(q.text), dtype=np.float32)
        rel = [i for d, r in q.relevant.items() if r > 0 for i in by_doc[d]]
        answerable.append(float((vectors[rel] @ vq).max()))
        hits = store.search(vq.tolist(), 10 + len(rel), principal.groups)
        others = [h.score for h in hits if Path(h.chunk.source).stem not in q.relevant]
        if others:
            near_miss.append(max(others))
    if not answerable:
        print("no judged question has its relevant documents in the index yet", file=sys.stderr)
        return 1
    threshold = choose(answerable, args.keep)
    figures: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "set": qset.name,
        "embedding": {"backend": resolve_backend(settings.embedding.backend), "model": embedder.model_id},
        "documents_indexed": len(by_doc),
        "questions_judged": len(qset.questions),
        "questions_used": len(usable),
        "keep": args.keep,
        "min_score": threshold,
        "answerable_kept": sum(1 for v in answerable if v >= threshold) / len(answerable),
        "near_miss_refused": sum(1 for v in near_miss if v < threshold) / len(near_miss)
        if near_miss
        else None,
        "answerable_cosine_quartiles": [round(quantile(answerable, q), 3) for q in (0.05, 0.25, 0.5, 0.75)],
        "near_miss_cosine_quartiles": [round(quantile(near_miss, q), 3) for q in (0.05, 0.25, 0.5, 0.75)],
    }
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
