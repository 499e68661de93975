"""docs/audit-format.md is enough to re-verify an export: `reverify` below is written from that
page alone (its JSONL recipe 2, the chain rules, checkpoints and anchors), with nothing but
hashlib and json, and it accepts Enclave's exports and rejects altered ones."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

import pytest

from audit import AuditLog, RecordFilter
from tests.support.audit_backends import SqliteBackend, append_backdated

ZEROS = "0" * 64


def reverify(jsonl: str, anchors: Sequence[dict[str, Any]] = ()) -> tuple[int, str]:
    """The head (id, hash) of a whole-log JSONL export, following docs/audit-format.md; raises
    AssertionError where the export breaks a rule."""
    lines = jsonl.splitlines()
    records = [json.loads(line) for line in lines]
    for line, record in zip(lines, records, strict=True):
        cut = line.rfind(',"hash":"')
        assert cut > 0 and line[cut + 9 + 64] == '"', record["id"]
        hashed = line[:cut] + line[cut + 9 + 64 + 1 :]
        assert hashlib.sha256(hashed.encode("utf-8")).hexdigest() == record["hash"], record["id"]
    for before, after in pairwise(records):
        assert after["id"] == before["id"] + 1 and after["prev_hash"] == before["hash"], after["id"]
    checkpoints = [r["data"] for r in records if r["event"] == "checkpoint"]
    first = records[0]
    if first["id"] == 1:
        assert first["prev_hash"] == ZEROS
    else:
        assert (first["id"], first["prev_hash"]) == (
            checkpoints[-1]["purged_through"] + 1,
            checkpoints[-1]["anchor_hash"],
        )
    by_id = {r["id"]: r["hash"] for r in records}
    for anchor in anchors:
        assert anchor["seq"] <= records[-1]["id"], "cut back below an anchor"
        if anchor["seq"] >= first["id"]:
            assert by_id[anchor["seq"]] == anchor["hash"], f"rewritten at {anchor['seq']}"
    return records[-1]["id"], records[-1]["hash"]


def export(log: AuditLog, fmt: str = "jsonl") -> str:
    out = io.StringIO()
    log.export(log.iter_select(RecordFilter.of(), oldest_first=True), fmt, out)
    return out.getvalue()


@pytest.fixture
def log(tmp_path: Any) -> AuditLog:
    backend = SqliteBackend(tmp_path / "audit.sqlite3")
    append_backdated(backend, [400, 399])
    log = backend.open()
    log.append("answer", "alice", 'Leave? "quoted" ✓', data={"answer": "25 days", "hash": "x" * 64,
               "scores": [0.1, 1e-7, 1e16, 12345.678], "nested": {"b": [1, None], "a": "\x01\n"}})  # fmt: skip
    log.feedback("alice", 3, "up", "thanks ✓")
    log.append("answer_error", "bob", "Budget?", error="LLM unavailable")
    return log


def test_an_export_reverifies_from_the_document_alone(log: AuditLog) -> None:
    anchors = [json.loads(log.anchor().line())]
    assert reverify(export(log), anchors) == log.head()


def test_after_a_purge_the_export_starts_at_the_checkpoints_anchor(log: AuditLog) -> None:
    early = json.loads(log.anchor().line())
    log.retention_days = 365
    done = log.purge(datetime.now(UTC) - timedelta(days=398), "ops")
    assert done.last_id == 2

    text = export(log)

    assert json.loads(text.splitlines()[0])["id"] == 3
    assert reverify(text, [early, json.loads(log.anchor().line())]) == log.head()


def test_what_the_document_says_is_caught(log: AuditLog) -> None:
    text = export(log)
    lines = text.splitlines()
    edited = lines[2].replace("25 days", "26 days")
    with pytest.raises(AssertionError):
        reverify("\n".join([*lines[:2], edited, *lines[3:]]))
    with pytest.raises(AssertionError):
        reverify("\n".join(lines[:2] + lines[3:]))  # a record left out
    with pytest.raises(AssertionError, match="cut back below an anchor"):
        reverify("\n".join(lines[:3]), [json.loads(log.anchor().line())])


def test_a_csv_export_links_as_the_document_says(log: AuditLog) -> None:
    rows = list(csv.DictReader(io.StringIO(export(log, "csv"))))
    assert [int(r["id"]) for r in rows] == [1, 2, 3, 4, 5]
    assert rows[0]["prev_hash"] == ZEROS
    assert all(after["prev_hash"] == before["hash"] for before, after in pairwise(rows))
    assert rows[-1]["hash"] == log.head()[1]
