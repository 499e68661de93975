"""Retention purges on real SQLite files: the chain stays verifiable, every purge is on the record,
and nothing else can be deleted or moved, before or after a purge."""

from __future__ import annotations

import io
import json
import sqlite3
from pathlib import Path

import pytest

from audit import GENESIS_HASH, AuditRecord, record_hash
from audit.query import RecordFilter
from core.errors import AccessDenied, AuditIntegrityError
from tests.support.audit_backends import AuditBackend, SqliteBackend
from tests.unit.test_audit_query import reverify_jsonl

COLUMNS = 'id, ts, event, "user", question, error, data, prev_hash, hash'
SECRET = "the-salary-of-the-harbour-master-is-XYZZY"


@pytest.fixture
def db(audit_backend: AuditBackend) -> AuditBackend:
    return audit_backend


@pytest.fixture
def path(db: AuditBackend) -> Path:
    """The SQLite file, for the tests about files (SQLite only)."""
    assert isinstance(db, SqliteBackend)
    return db.path


@pytest.fixture
def six(db: AuditBackend) -> list[AuditRecord]:
    log = db.open()
    return [
        log.append("answer", "alice" if i % 2 else "bob", f"question {i} {SECRET}", data={"answer": f"a{i}"})
        for i in range(1, 7)
    ]


def ids(db: AuditBackend) -> list[int]:
    return [row[0] for row in db.rows("SELECT id FROM records ORDER BY id")]


def purge_first(db: AuditBackend, records: list[AuditRecord], n: int) -> AuditRecord:
    """Purge records 1..n by using the time of record n+1 as the cutoff."""
    result = db.open().purge(records[n].ts, "ops")
    assert (result.purged, result.first_id, result.last_id) == (n, 1, n)
    assert result.checkpoint is not None
    return result.checkpoint


# -- purging -----------------------------------------------------------------------------------


def test_purge_removes_the_oldest_and_the_log_still_verifies(
    db: AuditBackend, six: list[AuditRecord]
) -> None:
    log = db.open()
    cutoff = six[3].ts  # records 1-3 are older

    result = log.purge(cutoff, "ops")

    checkpoint = result.checkpoint
    assert checkpoint is not None
    assert (result.purged, result.first_id, result.last_id, result.before) == (3, 1, 3, cutoff)
    assert (checkpoint.id, checkpoint.event, checkpoint.user, checkpoint.prev_hash) == (
        7,
        "checkpoint",
        "ops",
        six[-1].hash,
    )
    assert checkpoint.data == {
        "purged_from": 1,
        "purged_through": 3,
        "purged_count": 3,
        "anchor_hash": six[2].hash,
        "before": cutoff,
    }
    assert ids(db) == [4, 5, 6, 7]
    assert log.get(3) is None and log.get(4) == six[3]
    assert log.head() == (7, checkpoint.hash)
    verified = log.verify()
    assert verified.ok, verified.reason
    assert (verified.checked, verified.purged_through, verified.first_bad_id) == (4, 3, None)
    assert "after the purge of records 1–3" in verified.reason

    # The log goes on: new records extend the chain and it keeps verifying.
    later = log.append("answer", "alice", "after the purge")
    assert (later.id, later.prev_hash) == (8, checkpoint.hash)
    assert log.verify().ok
    assert [r.id for r in log.search(event="checkpoint")] == [7]


def test_purges_can_follow_each_other(db: AuditBackend, six: list[AuditRecord]) -> None:
    log = db.open()
    first = purge_first(db, six, 2)
    second = log.purge(six[4].ts, "ops")  # records 3-4 now; the first checkpoint (7) stays
    assert (second.purged, second.first_id, second.last_id) == (2, 3, 4)
    assert log.verify().ok and log.verify().purged_through == 4
    assert ids(db) == [5, 6, 7, 8]

    third = log.purge("2999-01-01", "ops")  # everything, the earlier checkpoints included
    assert (third.purged, third.first_id, third.last_id) == (4, 5, 8)
    assert third.checkpoint is not None and first.id == 7
    assert ids(db) == [9]
    result = log.verify()
    assert result.ok and (result.checked, result.purged_through) == (1, 8)


def test_only_the_oldest_unbroken_run_goes(db: AuditBackend, six: list[AuditRecord]) -> None:
    # A cutoff between records keeps every record from the first one at or after it.
    result = db.open().purge(six[0].ts, "ops")
    assert (result.purged, result.checkpoint) == (0, None)
    assert db.open().head()[0] == 6  # nothing written when nothing is old enough


def test_a_dry_run_says_what_would_go_and_writes_nothing(db: AuditBackend, six: list[AuditRecord]) -> None:
    log = db.open()
    plan = log.purge(six[4].ts, "ops", dry_run=True)
    assert (plan.purged, plan.first_id, plan.last_id, plan.checkpoint) == (4, 1, 4, None)
    assert ids(db) == [1, 2, 3, 4, 5, 6] and log.head() == (6, six[-1].hash)


def test_purge_dates_are_utc_days_and_bad_input_is_named(db: AuditBackend, six: list[AuditRecord]) -> None:
    log = db.open()
    assert log.purge("2000-01-01", "ops").purged == 0
    with pytest.raises(ValueError, match="before: 'soon' is not a date"):
        log.purge("soon", "ops")
    with pytest.raises(ValueError, match="who runs it"):
        log.purge("2999-01-01", "")
    assert log.head()[0] == 6


@pytest.mark.parametrize("audit_backend", ["sqlite"], indirect=True)
def test_purged_text_is_not_left_readable_in_the_files(
    db: AuditBackend, path: Path, six: list[AuditRecord]
) -> None:
    # Another process (the web UI) holds the file open, so the write-ahead log is not folded
    # back and removed when the purge's connection closes.
    other = sqlite3.connect(path)
    try:
        other.execute("SELECT count(*) FROM records").fetchone()
        purge_first(db, six, 6 - 1)  # keep only record 6 (and the checkpoint)
        files = [p for p in path.parent.iterdir() if p.name.startswith(path.name)]
        blob = b"".join(p.read_bytes() for p in files)
    finally:
        other.close()
    remaining = f"question 6 {SECRET}".encode()
    assert remaining in blob
    for i in range(1, 6):
        assert f"question {i} {SECRET}".encode() not in blob, i


def test_purge_refuses_a_log_that_does_not_verify(db: AuditBackend, six: list[AuditRecord]) -> None:
    db.sql(("UPDATE records SET question = 'edited' WHERE id = 2", ()), drop_triggers=True)
    with pytest.raises(AuditIntegrityError, match=r"refusing to purge .*record 2: contents"):
        db.open().purge("2999-01-01", "ops")
    assert ids(db) == [1, 2, 3, 4, 5, 6]


def test_feedback_on_a_purged_answer_is_refused(db: AuditBackend, six: list[AuditRecord]) -> None:
    purge_first(db, six, 2)
    with pytest.raises(AccessDenied, match="no such record"):
        db.open().feedback("alice", 1, "up")


def test_an_unfiltered_export_after_a_purge_reverifies_from_the_checkpoint(
    db: AuditBackend, six: list[AuditRecord]
) -> None:
    log = db.open()
    checkpoint = purge_first(db, six, 3)
    out = io.StringIO()
    log.export(log.iter_select(RecordFilter.of(), oldest_first=True), "jsonl", out)

    count, first_prev, last = reverify_jsonl(out.getvalue())

    assert (count, last) == (4, log.head()[1])
    newest_checkpoint = [json.loads(x) for x in out.getvalue().splitlines() if '"checkpoint"' in x][-1]
    assert first_prev == newest_checkpoint["data"]["anchor_hash"] == checkpoint.data["anchor_hash"]


# -- nothing else can be deleted or moved --------------------------------------------------------


def test_deleting_records_is_refused_before_and_after_a_purge(
    db: AuditBackend, six: list[AuditRecord]
) -> None:
    for statement in ("DELETE FROM records WHERE id = 1", "DELETE FROM records WHERE id <= 3"):
        with pytest.raises(db.refused, match="records cannot be deleted"):
            db.sql((statement, ()))
    purge_first(db, six, 2)
    for statement in (
        "DELETE FROM records WHERE id = 3",
        "DELETE FROM records WHERE id = 7",
        "DELETE FROM records",
    ):
        with pytest.raises(db.refused, match="records cannot be deleted"):
            db.sql((statement, ()))
    assert ids(db) == [3, 4, 5, 6, 7]
    assert db.open().verify().ok


def test_the_allowance_needs_a_checkpoint_at_the_head(db: AuditBackend, six: list[AuditRecord]) -> None:
    with pytest.raises(db.refused, match="vouched for by a checkpoint"):
        db.sql(("INSERT INTO purge_allowance (singleton, through) VALUES (1, 3)", ()))
    purge_first(db, six, 2)
    db.open().append("answer", "alice", "newer than the checkpoint")
    # The checkpoint is no longer the newest record, and never named 4 anyway.
    for through in (3, 4):
        with pytest.raises(db.refused, match="vouched for by a checkpoint"):
            db.sql(("INSERT INTO purge_allowance (singleton, through) VALUES (1, ?)", (through,)))


def test_a_checkpoint_naming_a_wrong_hash_opens_nothing(db: AuditBackend, six: list[AuditRecord]) -> None:
    # Appended through the log (triggers intact), but naming a hash that is not record 3's.
    log = db.open()
    log.append("checkpoint", "mallory", data={"purged_through": 3, "anchor_hash": "f" * 64})
    with pytest.raises(db.refused, match="vouched for by a checkpoint"):
        db.sql(("INSERT INTO purge_allowance (singleton, through) VALUES (1, 3)", ()))


def test_the_anchor_cannot_be_moved_or_removed(db: AuditBackend, six: list[AuditRecord]) -> None:
    purge_first(db, six, 2)
    with pytest.raises(db.refused, match="anchor may only move"):
        db.sql(("UPDATE chain_anchor SET count = 4, hash = ?", (six[3].hash,)))
    with pytest.raises(db.refused, match="anchor cannot be deleted"):
        db.sql(("DELETE FROM chain_anchor", ()))
    with pytest.raises(db.refused, match="anchor cannot be replaced"):
        insert = "INSERT OR REPLACE" if db.name == "sqlite" else "INSERT"
        db.sql((f"{insert} INTO chain_anchor VALUES (1, 0, ?)", (GENESIS_HASH,)))
    assert db.open().verify().ok


# -- tampering after a purge is found ----------------------------------------------------------


def test_an_edit_after_a_purge_is_found(db: AuditBackend, six: list[AuditRecord]) -> None:
    purge_first(db, six, 3)
    db.sql(("UPDATE records SET \"user\" = 'mallory' WHERE id = 5", ()), drop_triggers=True)
    result = db.open().verify()
    assert (result.ok, result.first_bad_id, result.checked) == (False, 5, 1)


def test_deleting_the_first_kept_record_is_found(db: AuditBackend, six: list[AuditRecord]) -> None:
    purge_first(db, six, 3)
    db.sql(("DELETE FROM records WHERE id = 4", ()), drop_triggers=True)
    result = db.open().verify()
    assert (result.ok, result.first_bad_id) == (False, 4)
    assert "right after the records purged up to record 3" in result.reason


def test_moving_the_anchor_to_hide_more_deletions_is_found(db: AuditBackend, six: list[AuditRecord]) -> None:
    purge_first(db, six, 2)
    # A consistent-looking chain from record 5 on, but the checkpoint vouches for 2, not 4.
    db.sql(
        ("DELETE FROM records WHERE id IN (3, 4)", ()),
        ("UPDATE chain_anchor SET count = 4, hash = ?", (six[3].hash,)),
        drop_triggers=True,
    )
    result = db.open().verify()
    assert (result.ok, result.first_bad_id) == (False, 7)
    assert "vouches for a purge through record 2, but the log is anchored at record 4" in result.reason


def test_a_purge_by_hand_without_a_checkpoint_is_found(db: AuditBackend, six: list[AuditRecord]) -> None:
    db.sql(
        ("DELETE FROM records WHERE id <= 2", ()),
        ("UPDATE chain_anchor SET count = 2, hash = ?", (six[1].hash,)),
        drop_triggers=True,
    )
    result = db.open().verify()
    assert (result.ok, result.first_bad_id) == (False, 3)
    assert "no checkpoint record vouches for that purge" in result.reason


def test_removing_the_checkpoint_itself_is_found(db: AuditBackend, six: list[AuditRecord]) -> None:
    checkpoint = purge_first(db, six, 2)
    db.sql(
        ("DELETE FROM records WHERE id = ?", (checkpoint.id,)),
        ("UPDATE chain_head SET count = 6, last_hash = ?", (six[-1].hash,)),
        drop_triggers=True,
    )
    result = db.open().verify()
    assert not result.ok and "no checkpoint record vouches" in result.reason


def test_a_rewound_anchor_is_found(db: AuditBackend, six: list[AuditRecord]) -> None:
    purge_first(db, six, 2)
    db.sql(("UPDATE chain_anchor SET count = 0, hash = ?", (GENESIS_HASH,)), drop_triggers=True)
    result = db.open().verify()
    assert (result.ok, result.first_bad_id) == (False, 1)
    assert "record 1 is missing" in result.reason


def test_an_allowance_left_open_is_found(db: AuditBackend, six: list[AuditRecord]) -> None:
    db.sql(("INSERT INTO purge_allowance VALUES (1, 2)", ()), drop_triggers=True)
    result = db.open().verify()
    assert not result.ok and "purge allowance" in result.reason


def test_a_forged_continuation_after_a_purge_is_found(db: AuditBackend, six: list[AuditRecord]) -> None:
    checkpoint = purge_first(db, six, 2)
    ts = "2030-01-01T00:00:00.000000+00:00"
    digest = record_hash(8, ts, "answer", "mallory", "forged", None, {}, checkpoint.hash)
    db.sql(
        (f"INSERT INTO records ({COLUMNS}) VALUES (8, ?, 'answer', 'mallory', 'forged', NULL, '{{}}', ?, ?)",
         (ts, checkpoint.hash, digest)),
        drop_triggers=True,
    )  # fmt: skip
    result = db.open().verify()
    assert (result.ok, result.first_bad_id) == (False, 8)
    assert "not covered by the chain head" in result.reason
