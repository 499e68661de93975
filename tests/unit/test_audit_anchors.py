"""Anchors (chain heads written down outside the log) on both backends: a log cut back below an
anchor, rewritten at one or replaced by an older copy fails the check even though it verifies in
itself; anchors older than a retention purge still pass. And the purge's minimum retention."""

from __future__ import annotations

import logging
import re
import shutil
import sqlite3
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from audit import AuditLog, AuditRecord, record_hash
from audit.anchors import Anchor, PeriodicAnchor, append_anchor, read_anchors
from core.errors import AuditIntegrityError
from tests.support.audit_backends import AuditBackend, SqliteBackend, append_backdated


@pytest.fixture
def db(audit_backend: AuditBackend) -> AuditBackend:
    return audit_backend


def answers(log: AuditLog, n: int) -> list[AuditRecord]:
    return [log.append("answer", "alice", f"question {i}", data={"answer": f"a{i}"}) for i in range(n)]


def check(log: AuditLog, anchors: list[Anchor]) -> Any:
    return log.check_anchors(anchors, "anchors.jsonl")


def rewind(db: AuditBackend, to: int) -> None:
    """Cut the log back to its first `to` records, consistently, as the tables' owner could."""
    head = db.rows("SELECT hash FROM records WHERE id = ?", (to,))[0][0]
    db.sql(
        ("DELETE FROM records WHERE id > ?", (to,)),
        ("UPDATE chain_head SET count = ?, last_hash = ?", (to, head)),
        drop_triggers=True,
    )


def test_a_log_that_grew_since_its_anchors_passes(db: AuditBackend, tmp_path: Path) -> None:
    log = db.open()
    file = tmp_path / "anchors.jsonl"
    append_anchor(file, log.anchor())  # the empty log: record 0, the genesis hash
    answers(log, 3)
    append_anchor(file, log.anchor())
    answers(log, 2)
    append_anchor(file, log.anchor())

    anchors = read_anchors(file)
    result = check(log, anchors)

    assert [a.seq for a in anchors] == [0, 3, 5]
    assert result.ok and result.checked == 3, result.reason
    assert "the newest: record 5" in result.reason


def test_a_log_cut_back_below_its_anchor_fails(db: AuditBackend) -> None:
    log = db.open()
    answers(log, 5)
    anchor = log.anchor()
    rewind(db, 3)

    assert log.verify().ok  # consistent in itself: only the anchor shows the loss
    result = check(log, [anchor])

    assert not result.ok
    assert "the anchor of record 5 in anchors.jsonl" in result.reason
    assert (
        "ends at record 3, below the anchor; it was cut back, or replaced by an older copy" in result.reason
    )


def test_a_log_rewritten_at_its_anchor_fails(db: AuditBackend) -> None:
    log = db.open()
    records = answers(log, 4)
    anchor = log.anchor()
    rewind(db, 3)
    # A forged record 4 that links properly: the chain verifies, the anchor's hash differs.
    ts, data = records[3].ts, {"answer": "forged"}
    forged = record_hash(4, ts, "answer", "alice", "question 3", None, data, records[2].hash)
    db.sql(
        (
            'INSERT INTO records (id, ts, event, "user", question, error, data, prev_hash, hash) '
            "VALUES (4, ?, 'answer', 'alice', 'question 3', NULL, '{\"answer\":\"forged\"}', ?, ?)",
            (ts, records[2].hash, forged),
        ),
        ("UPDATE chain_head SET count = 4, last_hash = ?", (forged,)),
    )
    log.append("answer", "alice", "after")

    assert log.verify().ok
    result = check(log, [anchor])

    assert not result.ok
    assert f"record 4 has hash {forged}, not the anchor's {anchor.hash}" in result.reason
    assert "rewritten from there, or replaced by another copy" in result.reason


@pytest.mark.parametrize("audit_backend", ["sqlite"], indirect=True)
def test_a_log_replaced_by_an_older_copy_fails(db: AuditBackend, tmp_path: Path) -> None:
    assert isinstance(db, SqliteBackend)
    log = db.open()
    answers(log, 2)
    copy = tmp_path / "old.sqlite3"
    with closing(sqlite3.connect(db.path)) as source, closing(sqlite3.connect(copy)) as target:
        source.backup(target)  # a backup taken then
    answers(log, 2)
    anchor = log.anchor()
    for stale in (db.path, Path(f"{db.path}-wal"), Path(f"{db.path}-shm")):
        stale.unlink(missing_ok=True)
    shutil.copy(copy, db.path)  # the older copy put back in its place
    answers(log, 2)  # and it grew past the anchor again

    assert log.verify().ok
    result = check(log, [anchor])

    assert not result.ok and "record 4 has hash" in result.reason


def test_anchors_older_than_a_purge_still_pass(db: AuditBackend, tmp_path: Path) -> None:
    append_backdated(db, [400, 399, 398])
    log = db.open()
    early = log.anchor()  # record 3, purged below
    answers(log, 2)
    middle = log.anchor()  # record 5, kept

    purged = log.purge(datetime.now(UTC) - timedelta(days=397), "ops")

    assert purged.last_id == 3
    assert log.verify().ok
    assert check(log, [early, middle]).ok
    assert check(log, [early, middle, log.anchor()]).ok


def test_an_anchor_file_line_that_is_not_an_anchor_is_named(tmp_path: Path) -> None:
    file = tmp_path / "anchors.jsonl"
    file.write_text('{"seq": 1, "hash": "' + "a" * 64 + '"}\n{"seq": -1, "hash": "x"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=re.escape(f"anchor file {file} line 2: seq must be a whole number")):
        read_anchors(file)
    file.write_text("\n", encoding="utf-8")
    with pytest.raises(ValueError, match="holds no anchor; write one with `enclave audit anchor`"):
        read_anchors(file)
    with pytest.raises(ValueError, match="cannot be read"):
        read_anchors(tmp_path / "missing.jsonl")


@pytest.mark.parametrize("audit_backend", ["sqlite"], indirect=True)
def test_the_server_writes_anchors_to_its_log_and_the_file(
    db: AuditBackend, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log = db.open()
    answers(log, 2)
    file = tmp_path / "anchors" / "server.jsonl"
    caplog.set_level(logging.INFO, logger="audit.anchors")

    writer = PeriodicAnchor(log, 0.01, file).start()
    try:
        for _ in range(2000):  # until it has written a second anchor (not a timing check)
            if file.exists() and len(file.read_text(encoding="utf-8").splitlines()) >= 2:
                break
            writer._stop.wait(0.01)
    finally:
        writer.stop()

    anchors = read_anchors(file)
    assert len(anchors) >= 2 and {(a.seq, a.hash) for a in anchors} == {log.head()}
    assert any('"seq":2' in r.getMessage() and r.name == "audit.anchors" for r in caplog.records)
    assert check(log, anchors).ok


# -- minimum retention -------------------------------------------------------------------------


def test_a_purge_keeps_records_younger_than_the_minimum_retention(db: AuditBackend) -> None:
    append_backdated(db, [400, 380, 10])
    log = db.open()
    log.retention_days = 365
    ten_days_old = log.get(3)
    assert ten_days_old is not None

    with pytest.raises(ValueError, match=r"audit\.retention_days is 365, so records written after"):
        log.purge("2999-01-01", "ops")
    with pytest.raises(ValueError, match="give an earlier cutoff"):
        log.purge(ten_days_old.ts, "ops", dry_run=True)
    assert db.rows("SELECT count(*) FROM records")[0][0] == 3  # nothing removed

    done = log.purge(datetime.now(UTC) - timedelta(days=370), "ops")

    assert (done.first_id, done.last_id) == (1, 2)
    assert log.verify().ok


def test_a_negative_minimum_retention_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="retention_days must be a whole number of days >= 0"):
        AuditLog(tmp_path / "audit.sqlite3", retention_days=-1)


def test_a_missing_head_row_is_an_integrity_error(db: AuditBackend) -> None:
    log = db.open()
    answers(log, 1)
    db.sql(("DELETE FROM chain_head", ()), drop_triggers=True)
    with pytest.raises(AuditIntegrityError):
        log.head()
