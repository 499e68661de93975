"""Audit log search, export, verify and purge times on a large synthetic log.

    .venv/bin/python -m bench.audit_query --records 50000 [--folder DIR]

Records are written in one transaction through the log's own insert (same chain, same
triggers), answers shaped like the Assistant's, ~1 in 10 with feedback. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from audit.log import AuditLog
from audit.query import RecordFilter
from audit.records import prepare_entry

WORDS = "leave budget harbour berth salary travel policy safety visitor invoice supplier dues".split()


def build(log: AuditLog, n: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    users = [f"user{i:03d}" for i in range(200)]
    answers: list[tuple[int, str]] = []
    with log._write_transaction() as conn:
        for _ in range(n):
            if answers and rng.random() < 0.1:
                target, owner = rng.choice(answers)
                data: dict[str, Any] = {
                    "record_id": target,
                    "rating": rng.choice(["up", "down"]),
                    "comment": None,
                }
                log._insert(conn, *prepare_entry("feedback", owner, "", None, data))
                continue
            user = rng.choice(users)
            question = " ".join(rng.choices(WORDS, k=8)) + "?"
            data = {
                "mode": "llm",
                "answer": " ".join(rng.choices(WORDS, k=60)),
                "retrieved": [
                    {
                        "chunk_id": f"d{j}:{k}",
                        "source": f"docs/d{j}.pdf",
                        "score": rng.random(),
                        "sha256": "a" * 64,
                    }
                    for j, k in zip(range(6), range(6))
                ],
                "prompt": [{"role": "user", "content": " ".join(rng.choices(WORDS, k=200))}],
            }
            error = "LLM unavailable" if rng.random() < 0.02 else None
            record = log._insert(
                conn, *prepare_entry("answer_error" if error else "answer", user, question, error, data)
            )
            answers.append((record.id, user))


def timed(fn: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return round((time.perf_counter() - start) * 1000, 1), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=50000)
    parser.add_argument("--folder", type=Path, default=None)
    args = parser.parse_args()
    folder = args.folder or Path(tempfile.mkdtemp(prefix="audit-bench-"))
    log = AuditLog(folder / "audit.sqlite3")
    build_ms, _ = timed(lambda: build(log, args.records))
    size_mb = round(log.path.stat().st_size / 2**20, 1)
    results: dict[str, Any] = {"records": args.records, "file_mb": size_mb, "build_ms": build_ms}
    queries = {
        "newest_200": RecordFilter.of(),
        "user": RecordFilter.of(user="user042"),
        "event_error": RecordFilter.of(has_error=True),
        "feedback_down": RecordFilter.of(feedback="down"),
        "feedback_none": RecordFilter.of(feedback="none"),
        "text": RecordFilter.of(text="harbour berth salary"),
        "user_text": RecordFilter.of(user="user042", text="leave"),
    }
    for name, query in queries.items():
        ms, _ = timed(lambda q=query: log.select(q, limit=200))
        count_ms, total = timed(lambda q=query: log.count(q))
        results[f"search_{name}_ms"] = ms
        results[f"count_{name}_ms"] = count_ms
        results[f"matches_{name}"] = total
    out = io.StringIO()
    results["export_jsonl_all_ms"], _ = timed(
        lambda: log.export(log.iter_select(RecordFilter.of(), oldest_first=True), "jsonl", out)
    )
    out = io.StringIO()
    results["export_csv_all_ms"], _ = timed(
        lambda: log.export(log.iter_select(RecordFilter.of(), oldest_first=True), "csv", out)
    )
    results["verify_ms"], verified = timed(log.verify)
    assert verified.ok, verified.reason
    half = log.get(args.records // 2)
    assert half is not None
    results["purge_half_ms"], purged = timed(lambda: log.purge(half.ts, "bench"))
    results["purged"] = purged.purged
    results["verify_after_purge_ms"], verified = timed(log.verify)
    assert verified.ok, verified.reason
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
