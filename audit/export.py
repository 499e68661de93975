"""Audit records out of the log: CSV for people, JSONL for tools that re-verify the chain.

CSV has one flat row per record (`CSV_COLUMNS`); answer, cited sources and feedback are taken
from the record's data. A cell that a spreadsheet would run as a formula (starting with = + - @,
a tab or a carriage return) gets a leading apostrophe; JSONL keeps every value exact.

JSONL has one record per line, the canonical JSON (`audit.canonical_json`) of all its fields: an
export of the whole log re-verifies without Enclave, as docs/audit-format.md describes. A
filtered export holds a selection, so its records do not link to each other; each one's own
hash still checks.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import fields
from itertools import islice
from typing import Any, Literal, TextIO, get_args

from audit.records import AuditRecord, Feedback, canonical_json

ExportFormat = Literal["csv", "jsonl"]
FORMATS: tuple[str, ...] = get_args(ExportFormat)
CSV_COLUMNS = (
    "id",
    "ts",
    "event",
    "user",
    "question",
    "error",
    "answer",
    "cited sources",
    "feedback",
    "hash",
    "prev_hash",
)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_BATCH = 500

FeedbackLookup = Callable[[Sequence[int]], Mapping[int, Feedback]]


def jsonl_line(record: AuditRecord) -> str:
    """The record as one canonical JSON line (without the newline)."""
    # Not dataclasses.asdict: it deep-copies `data`, which dominated the time of an export.
    return canonical_json({f.name: getattr(record, f.name) for f in fields(record)})


def cited_sources(data: Mapping[str, Any]) -> str:
    """`[1] hr/leave.pdf p. 3; [2] ...` from a record's `citations`, whatever their shape."""
    citations = data.get("citations")
    if not citations:
        return ""
    if not isinstance(citations, list):
        return json.dumps(citations, ensure_ascii=False, sort_keys=True)
    parts = []
    for c in citations:
        if isinstance(c, dict) and "source" in c:
            label = f"[{c['n']}] " if c.get("n") is not None else ""
            page = f" p. {c['page']}" if c.get("page") is not None else ""
            parts.append(f"{label}{c['source']}{page}")
        else:
            parts.append(json.dumps(c, ensure_ascii=False, sort_keys=True))
    return "; ".join(parts)


def feedback_text(item: Feedback | None) -> str:
    if item is None:
        return ""
    return f"{item.rating}: {item.comment}" if item.comment else item.rating


def csv_row(record: AuditRecord, feedback: Feedback | None) -> list[str]:
    answer = record.data.get("answer")
    cells = [
        str(record.id),
        record.ts,
        record.event,
        record.user,
        record.question,
        record.error or "",
        answer if isinstance(answer, str) else ("" if answer is None else canonical_json(answer)),
        cited_sources(record.data),
        feedback_text(feedback),
        record.hash,
        record.prev_hash,
    ]
    return [_defuse(cell) for cell in cells]


def _defuse(cell: str) -> str:
    # A spreadsheet would run "=HYPERLINK(...)" typed as a question; an apostrophe makes it text.
    return "'" + cell if cell.startswith(_FORMULA_START) else cell


def _batches(records: Iterable[AuditRecord]) -> Iterator[list[AuditRecord]]:
    it = iter(records)
    while batch := list(islice(it, _BATCH)):
        yield batch


def export(
    records: Iterable[AuditRecord],
    fmt: str,
    out: TextIO,
    latest_feedback: FeedbackLookup | None = None,
) -> int:
    """Write `records`, in the order given, to `out` as `fmt` ("csv" or "jsonl"); return how many.

    For CSV, `latest_feedback` gives the feedback in force for a batch of record ids (usually
    `AuditLog.latest_feedback`); without it the feedback column stays empty.
    """
    if fmt not in FORMATS:
        raise ValueError(f"export format {fmt!r} is not one of {', '.join(FORMATS)}")
    written = 0
    if fmt == "jsonl":
        for record in records:
            out.write(jsonl_line(record) + "\n")
            written += 1
        return written
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for batch in _batches(records):
        feedback = latest_feedback([r.id for r in batch]) if latest_feedback else {}
        writer.writerows(csv_row(r, feedback.get(r.id)) for r in batch)
        written += len(batch)
    return written
