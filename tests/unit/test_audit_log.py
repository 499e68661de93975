"""The audit log on both backends (SQLite files, a PostgreSQL server): the chain, its
verification, tampering, concurrency. Tests about SQLite files alone say so (`SQLITE_ONLY`)."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import multiprocessing
import os
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from audit import GENESIS_HASH, SCHEMA_VERSION, AuditLog, AuditRecord, record_hash
from core.errors import AuditIntegrityError
from tests.support.audit_backends import AuditBackend, SqliteBackend

COLUMNS = 'id, ts, event, "user", question, error, data, prev_hash, hash'
SQLITE_ONLY = pytest.mark.parametrize("audit_backend", ["sqlite"], indirect=True)


@pytest.fixture
def db(audit_backend: AuditBackend) -> AuditBackend:
    return audit_backend


@pytest.fixture
def path(db: AuditBackend) -> Path:
    """The SQLite file, for the tests about files (`SQLITE_ONLY`)."""
    assert isinstance(db, SqliteBackend)
    return db.path


@pytest.fixture
def five(db: AuditBackend) -> list[AuditRecord]:
    """A log of five records: answers with retrieval data, and one failed attempt."""
    log = db.open()
    records = [
        log.append(
            "answer",
            "alice",
            f"question {i}",
            data={"chunks": [f"doc{i}#0", f"doc{i}#1"], "scores": [0.91, 0.42], "latency_ms": 12.5},
        )
        for i in range(1, 5)
    ]
    records.append(log.append("answer_error", "bob", "question 5", error="LLM unavailable"))
    return records


def attack(db: AuditBackend, *statements: tuple[str, tuple[Any, ...]]) -> None:
    """Tamper with the log as someone with write access would: drop the triggers, then edit."""
    db.sql(*statements, drop_triggers=True)


def raw_rows(db: AuditBackend) -> list[tuple[Any, ...]]:
    return db.rows(f"SELECT {COLUMNS} FROM records ORDER BY id")


# -- writing and reading ------------------------------------------------------------------------


def test_append_returns_the_stored_record(db: AuditBackend) -> None:
    log = db.open()
    record = log.append(
        "answer", "alice", "What is the leave policy?", data={"model": "m", "citations": [1, 2]}
    )

    assert record.id == 1
    assert record.event == "answer"
    assert record.user == "alice"
    assert record.question == "What is the leave policy?"
    assert record.error is None
    assert record.data == {"model": "m", "citations": [1, 2]}
    assert record.prev_hash == GENESIS_HASH
    assert len(record.hash) == 64
    assert datetime.fromisoformat(record.ts).utcoffset() is not None
    assert "." in record.ts  # microseconds are kept
    assert log.get(1) == record
    assert log.get(2) is None


def test_last_is_newest_first(db: AuditBackend, five: list[AuditRecord]) -> None:
    log = db.open()

    assert [r.id for r in log.last(3)] == [5, 4, 3]
    assert log.last(100) == list(reversed(five))
    assert log.last(0) == []
    with pytest.raises(ValueError, match="n >= 0"):
        log.last(-1)


def test_records_form_a_chain_that_verifies(db: AuditBackend, five: list[AuditRecord]) -> None:
    log = db.open()

    assert five[0].prev_hash == GENESIS_HASH
    for before, after in itertools.pairwise(five):
        assert after.prev_hash == before.hash
        assert after.id == before.id + 1
    assert log.head() == (5, five[-1].hash)
    result = log.verify()
    assert result.ok, result.reason
    assert (result.checked, result.first_bad_id) == (5, None)


def test_hash_is_recomputable_from_raw_rows_as_documented(db: AuditBackend, five: list[AuditRecord]) -> None:
    # The module docstring promises an auditor can rebuild the hashed text by concatenation.
    def q(value: Any) -> str:
        return json.dumps(value, ensure_ascii=False)

    prev = GENESIS_HASH
    for rid, ts, event, user, question, error, data, prev_hash, digest in raw_rows(db):
        pre = (
            '{"data":' + data + ',"error":' + q(error) + ',"event":' + q(event)
            + ',"id":' + str(rid) + ',"prev_hash":' + q(prev_hash) + ',"question":'
            + q(question) + ',"ts":' + q(ts) + ',"user":' + q(user) + "}"
        )  # fmt: skip
        assert hashlib.sha256(pre.encode("utf-8")).hexdigest() == digest
        assert prev_hash == prev
        prev = digest


def test_a_reopened_log_continues_the_chain(db: AuditBackend, five: list[AuditRecord]) -> None:
    with db.open() as log:
        record = log.append("login", "carol")

    assert (record.id, record.prev_hash) == (6, five[-1].hash)
    assert db.open().verify().ok


@SQLITE_ONLY
def test_schema_is_versioned_and_a_newer_one_refused(path: Path, five: list[AuditRecord]) -> None:
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()

    with pytest.raises(AuditIntegrityError, match="newer than this Enclave"):
        AuditLog(path).append("answer", "alice")


def test_reads_of_a_missing_log_see_it_empty_and_create_nothing(db: AuditBackend) -> None:
    log = db.open()

    assert log.head() == (0, GENESIS_HASH)
    assert log.last(5) == []
    assert log.get(1) is None
    result = log.verify()
    assert (result.ok, result.checked, result.first_bad_id) == (True, 0, None)
    assert not db.exists()


def test_data_keeps_floats_and_nesting(db: AuditBackend) -> None:
    data = {
        "scores": [0.1 + 0.2, 1e-300, -0.0, 123456789.123456789],
        "nested": {"b": [1, {"c": None}], "a": True},
        "clé": "valeur",
        "ids": ("x", "y"),  # tuples come back as lists, as JSON has them
    }
    log = db.open()
    log.append("answer", "alice", data=data)

    stored = log.get(1)
    assert stored is not None
    assert stored.data["scores"] == [0.1 + 0.2, 1e-300, -0.0, 123456789.123456789]
    assert math.copysign(1.0, stored.data["scores"][2]) == -1.0
    assert stored.data["nested"] == {"b": [1, {"c": None}], "a": True}
    assert stored.data["ids"] == ["x", "y"]
    assert log.verify().ok


@pytest.mark.parametrize(
    "bad",
    [object(), datetime(2025, 1, 1), {1, 2}, b"bytes", float("nan"), float("inf")],
    ids=["object", "datetime", "set", "bytes", "nan", "inf"],
)
def test_non_json_data_is_a_type_error_and_writes_nothing(db: AuditBackend, bad: object) -> None:
    log = db.open()
    log.append("answer", "alice")

    with pytest.raises(TypeError, match="not JSON-serialisable"):
        log.append("answer", "alice", data={"value": bad})
    assert log.head()[0] == 1


def test_bad_arguments_are_refused_before_writing(db: AuditBackend) -> None:
    log = db.open()

    with pytest.raises(ValueError, match="event"):
        log.append("", "alice")
    with pytest.raises(TypeError, match="user"):
        log.append("answer", None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="data"):
        log.append("answer", "alice", data=[1, 2])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="question"):
        log.append("answer", "alice", "lone \ud800 surrogate")
    assert not db.exists()


@pytest.mark.parametrize(
    "question",
    [
        "Quelle est la politique de congés ?",
        "Was gilt für Überstunden?",
        "年次有給休暇は何日ですか？",
        "ما هي سياسة الإجازات؟",
        "Emoji 🔒🧾 and ZWJ 👩‍💻",
        "Quotes \" ' backslash \\ tab\t newline\n and \u2028 separator",
        "e\u0301 (combining) vs \u00e9 (precomposed)",
        "nul \x00 inside",
    ],
)
def test_unicode_questions_round_trip(db: AuditBackend, question: str) -> None:
    log = db.open()
    if db.name == "postgres" and "\x00" in question:
        # PostgreSQL text cannot hold NUL: refused, by name, before anything is written.
        with pytest.raises(ValueError, match=r"question .*NUL"):
            log.append("answer", "zoë", question, error="échec ✗", data={question: question})
        assert log.head()[0] == 0
        return
    record = log.append("answer", "zoë", question, error="échec ✗", data={question: question})

    assert log.get(record.id) == record
    assert record.question == question
    assert record.data == {question: question}
    assert log.verify().ok


# -- the database itself refuses changes -----------------------------------------------------


def test_triggers_block_update_and_delete(db: AuditBackend, five: list[AuditRecord]) -> None:
    # SQLite's INSERT OR REPLACE deletes without firing the DELETE trigger: the INSERT one stops it.
    replace = "INSERT OR REPLACE" if db.name == "sqlite" else "INSERT"
    refusals = [
        ("UPDATE records SET question = 'edited' WHERE id = 3", "append-only: records cannot be updated"),
        ("DELETE FROM records WHERE id = 5", "append-only: records cannot be deleted"),
        (
            f"{replace} INTO records ({COLUMNS}) SELECT {COLUMNS} FROM records WHERE id = 3",
            "must extend the chain head",
        ),
        ("UPDATE chain_head SET count = 4", "chain head may only advance"),
        ("DELETE FROM chain_head", "chain head cannot be deleted"),
    ]
    if db.name == "postgres":  # TRUNCATE fires no row triggers
        refusals += [(f"TRUNCATE {table}", "cannot be truncated") for table in ("records", "chain_head")]
    for sql, message in refusals:
        with pytest.raises(db.refused, match=message):
            db.sql((sql, ()))

    assert raw_rows(db)[2][4] == "question 3"
    assert db.open().verify().ok


# -- tampering is detected and located ----------------------------------------------------------


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("ts", "2020-01-01T00:00:00.000000+00:00"),
        ("event", "login"),
        ('"user"', "mallory"),
        ("question", "question 3 (edited)"),
        ("error", "invented failure"),
        ("prev_hash", "f" * 64),
        ("hash", "e" * 64),
    ],
)
def test_an_edited_field_is_found(db: AuditBackend, five: list[AuditRecord], column: str, value: str) -> None:
    attack(db, (f"UPDATE records SET {column} = ? WHERE id = 3", (value,)))

    result = db.open().verify()

    assert not result.ok
    assert result.first_bad_id == 3
    assert result.checked == 2
    assert "record 3" in result.reason


def test_edited_data_json_is_found(db: AuditBackend, five: list[AuditRecord]) -> None:
    data = json.loads(raw_rows(db)[2][6])
    data["scores"][0] = 0.99
    edited = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    attack(db, ("UPDATE records SET data = ? WHERE id = 3", (edited,)))

    result = db.open().verify()

    assert (result.ok, result.first_bad_id) == (False, 3)
    assert "contents do not match its hash" in result.reason


def test_reformatted_data_json_is_found(db: AuditBackend, five: list[AuditRecord]) -> None:
    # Same values, different bytes: the stored text must stay the exact form that was hashed.
    spaced = json.dumps(json.loads(raw_rows(db)[3][6]), indent=1)
    attack(db, ("UPDATE records SET data = ? WHERE id = 4", (spaced,)))

    result = db.open().verify()

    assert (result.ok, result.first_bad_id) == (False, 4)
    assert "canonical" in result.reason


def test_a_deleted_middle_record_is_found(db: AuditBackend, five: list[AuditRecord]) -> None:
    attack(db, ("DELETE FROM records WHERE id = 3", ()))

    result = db.open().verify()

    assert (result.ok, result.first_bad_id, result.checked) == (False, 3, 2)
    assert "record 3 is missing" in result.reason


def test_a_deleted_first_record_is_found(db: AuditBackend, five: list[AuditRecord]) -> None:
    attack(db, ("DELETE FROM records WHERE id = 1", ()))

    result = db.open().verify()

    assert (result.ok, result.first_bad_id, result.checked) == (False, 1, 0)


def test_a_deleted_last_record_is_found(db: AuditBackend, five: list[AuditRecord]) -> None:
    attack(db, ("DELETE FROM records WHERE id = 5", ()))

    result = db.open().verify()

    assert (result.ok, result.first_bad_id, result.checked) == (False, 5, 4)
    assert "newest records were deleted" in result.reason


def test_a_rewound_head_is_caught_by_an_outside_anchor(db: AuditBackend, five: list[AuditRecord]) -> None:
    # Deleting the newest record and rewinding the head leaves a consistent file: only a head
    # written down elsewhere shows it. This is what head() is for.
    anchor = db.open().head()
    attack(
        db,
        ("DELETE FROM records WHERE id = 5", ()),
        ("UPDATE chain_head SET count = 4, last_hash = ?", (five[3].hash,)),
    )

    log = db.open()
    assert log.verify().ok
    assert log.head() != anchor


def test_swapped_records_are_found(db: AuditBackend, five: list[AuditRecord]) -> None:
    attack(
        db,
        ("UPDATE records SET id = -2 WHERE id = 2", ()),
        ("UPDATE records SET id = 2 WHERE id = 3", ()),
        ("UPDATE records SET id = 3 WHERE id = -2", ()),
    )

    result = db.open().verify()

    assert (result.ok, result.first_bad_id) == (False, 2)


@pytest.mark.parametrize(("old", "new", "first_bad"), [(3, 30, 3), (5, 6, 5), (1, 0, 0)])
def test_a_renumbered_record_is_found(
    db: AuditBackend, five: list[AuditRecord], old: int, new: int, first_bad: int
) -> None:
    attack(db, ("UPDATE records SET id = ? WHERE id = ?", (new, old)))

    result = db.open().verify()

    assert (result.ok, result.first_bad_id) == (False, first_bad)


def test_a_forged_record_without_head_update_is_found(db: AuditBackend, five: list[AuditRecord]) -> None:
    # The forger knows the hashing rule: the new record links and hashes correctly.
    ts = "2030-01-01T00:00:00.000000+00:00"
    digest = record_hash(6, ts, "answer", "mallory", "forged", None, {}, five[-1].hash)
    attack(
        db,
        (
            f"INSERT INTO records ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (6, ts, "answer", "mallory", "forged", None, "{}", five[-1].hash, digest),
        ),
    )

    result = db.open().verify()

    assert (result.ok, result.first_bad_id, result.checked) == (False, 6, 5)
    assert "not covered by the chain head" in result.reason


def test_a_rehashed_edit_breaks_the_next_link(db: AuditBackend, five: list[AuditRecord]) -> None:
    r = five[2]
    digest = record_hash(r.id, r.ts, r.event, "mallory", r.question, r.error, r.data, r.prev_hash)
    attack(db, ("UPDATE records SET \"user\" = 'mallory', hash = ? WHERE id = 3", (digest,)))

    result = db.open().verify()

    assert (result.ok, result.first_bad_id) == (False, 4)
    assert "prev_hash does not match the hash of record 3" in result.reason


@SQLITE_ONLY
def test_a_blob_put_in_a_text_field_is_found(db: AuditBackend, five: list[AuditRecord]) -> None:
    attack(db, ("UPDATE records SET question = ? WHERE id = 2", (b"question 2",)))

    result = db.open().verify()

    assert (result.ok, result.first_bad_id) == (False, 2)


def test_an_altered_head_hash_is_found(db: AuditBackend, five: list[AuditRecord]) -> None:
    attack(db, ("UPDATE chain_head SET last_hash = ?", ("d" * 64,)))

    result = db.open().verify()

    assert (result.ok, result.first_bad_id, result.checked) == (False, 5, 4)
    assert "chain head" in result.reason


def test_a_missing_head_table_fails_verification(db: AuditBackend, five: list[AuditRecord]) -> None:
    attack(db, ("DROP TABLE chain_head", ()))

    result = db.open().verify()

    assert not result.ok
    assert db.where in result.reason


def test_append_refuses_to_extend_a_damaged_chain(db: AuditBackend, five: list[AuditRecord]) -> None:
    attack(db, ("DELETE FROM records WHERE id = 5", ()))
    log = db.open()

    with pytest.raises(AuditIntegrityError, match="does not match the chain head") as caught:
        log.append("answer", "alice", "after the damage")
    assert db.where in str(caught.value)
    assert log.head() == (5, five[-1].hash)
    assert log.get(6) is None


# -- concurrency --------------------------------------------------------------------------------


def append_many(db: AuditBackend, worker: int, count: int, start: Any) -> None:
    """Runs in a separate process, as an app replica would."""
    log = db.open()
    start.wait()
    for i in range(count):
        log.append("answer", f"worker{worker}", f"q{worker}-{i}", data={"i": i, "w": worker})


def test_concurrent_processes_keep_one_chain(db: AuditBackend) -> None:
    workers, each = 4, 25
    ctx = multiprocessing.get_context("spawn")  # nothing shared but the log, like replicas
    start = ctx.Barrier(workers)
    procs = [ctx.Process(target=append_many, args=(db, w, each, start)) for w in range(workers)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=300)  # a guard against a hang, not a timing check
    assert [proc.exitcode for proc in procs] == [0] * workers

    log = db.open()
    result = log.verify()
    assert result.ok, result.reason
    assert result.checked == workers * each
    rows = raw_rows(db)
    assert [row[0] for row in rows] == list(range(1, workers * each + 1))
    assert sorted(row[4] for row in rows) == sorted(f"q{w}-{i}" for w in range(workers) for i in range(each))
    assert log.head() == (workers * each, rows[-1][8])


def test_threads_share_one_instance(db: AuditBackend) -> None:
    log = db.open()

    def work(n: int) -> None:
        for i in range(10):
            log.append("answer", f"thread{n}", f"t{n}-{i}")

    with ThreadPoolExecutor(max_workers=8) as pool:
        for future in [pool.submit(work, n) for n in range(8)]:
            future.result()  # re-raises anything a thread hit

    assert log.verify().checked == 80
    assert [r.id for r in log.last(80)] == list(range(80, 0, -1))


# -- failures to write --------------------------------------------------------------------------


def test_a_location_under_a_file_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    path = blocker / "audit.sqlite3"

    with pytest.raises(AuditIntegrityError, match="cannot create the folder") as caught:
        AuditLog(path).append("answer", "alice")
    assert str(path) in str(caught.value)


def test_a_folder_in_place_of_the_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "audit.sqlite3"
    path.mkdir()

    with pytest.raises(AuditIntegrityError, match="cannot write to audit log") as caught:
        AuditLog(path).append("answer", "alice")
    assert str(path) in str(caught.value)
    assert not isinstance(caught.value, sqlite3.Error)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through directory permissions")
def test_an_unwritable_folder_is_a_clear_error(tmp_path: Path) -> None:
    folder = tmp_path / "locked"
    folder.mkdir(mode=0o500)
    path = folder / "audit.sqlite3"
    try:
        with pytest.raises(AuditIntegrityError) as caught:
            AuditLog(path).append("answer", "alice")
    finally:
        folder.chmod(0o700)
    assert str(path) in str(caught.value)


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux procfs")
def test_a_folder_no_file_can_be_made_in_is_a_clear_error() -> None:
    # procfs refuses new files even to root, so this runs wherever the suite does.
    path = Path("/proc/self/audit.sqlite3")

    with pytest.raises(AuditIntegrityError, match="cannot write to audit log") as caught:
        AuditLog(path).append("answer", "alice")
    assert str(path) in str(caught.value)
    assert "folder is writable" in str(caught.value)


def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "audit.sqlite3"
    path.write_bytes(b"this is not sqlite" * 100)
    log = AuditLog(path)

    with pytest.raises(AuditIntegrityError, match="cannot write to audit log") as caught:
        log.append("answer", "alice")
    assert str(path) in str(caught.value)
    result = log.verify()
    assert not result.ok
    assert str(path) in result.reason


def test_a_closed_log_refuses_to_write(db: AuditBackend) -> None:
    log = db.open()
    log.append("answer", "alice")
    log.close()

    with pytest.raises(AuditIntegrityError, match="closed"):
        log.append("answer", "alice")
    assert db.open().head()[0] == 1


# -- schema upgrades ----------------------------------------------------------------------------


@SQLITE_ONLY
def test_a_version_1_log_is_upgraded_in_place_and_keeps_verifying(path: Path) -> None:
    # A log written by the first release: its schema alone, records chained as it wrote them.
    from audit.log import _MIGRATIONS

    path.parent.mkdir(parents=True)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    for statement in _MIGRATIONS[0]:
        conn.execute(statement)
    conn.execute("PRAGMA user_version = 1")
    prev = GENESIS_HASH
    for i in range(1, 4):
        ts = f"2025-01-0{i}T09:00:00.000000+00:00"
        data = {"answer": f"answer {i}"}
        digest = record_hash(i, ts, "answer", "alice", f"q{i}", None, data, prev)
        conn.execute(
            f"INSERT INTO records ({COLUMNS}) VALUES (?, ?, 'answer', 'alice', ?, NULL, ?, ?, ?)",
            (i, ts, f"q{i}", json.dumps(data, separators=(",", ":")), prev, digest),
        )
        conn.execute("UPDATE chain_head SET count = ?, last_hash = ?", (i, digest))
        prev = digest
    conn.close()

    log = AuditLog(path)
    assert log.verify().ok  # reading upgrades the schema
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    indexes = {n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    conn.close()
    assert {"records_user", "records_event", "records_ts", "records_feedback_target"} <= indexes
    assert [r.id for r in log.search(user="alice", until="2025-01-02")] == [2, 1]
    log.feedback("alice", 3, "up")
    assert [r.id for r in log.search(feedback="up")] == [3]
    result = log.purge("2025-01-03", "ops")
    assert (result.purged, result.last_id) == (2, 2)
    verified = log.verify()
    assert verified.ok and verified.purged_through == 2, verified.reason
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        with pytest.raises(sqlite3.IntegrityError, match="records cannot be deleted"):
            conn.execute("DELETE FROM records WHERE id = 3")
    finally:
        conn.close()


# -- check_writable: what an answer asks before it starts ------------------------------------------


def test_check_writable_writes_nothing(db: AuditBackend, five: list[AuditRecord]) -> None:
    log = db.open()
    head = log.head()
    log.check_writable()
    assert log.head() == head and len(log.last(10)) == 5 and log.verify().ok


@SQLITE_ONLY
def test_check_writable_takes_the_write_lock(path: Path, five: list[AuditRecord]) -> None:
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another writer, holding the log
    try:
        with pytest.raises(AuditIntegrityError, match="database is locked"):
            AuditLog(path, busy_timeout_s=0.1).check_writable()
    finally:
        other.execute("ROLLBACK")
        other.close()
    AuditLog(path).check_writable()


@SQLITE_ONLY
@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through file permissions")
def test_check_writable_fails_on_a_read_only_log(path: Path, five: list[AuditRecord]) -> None:
    path.chmod(0o400)
    try:
        with pytest.raises(AuditIntegrityError, match="cannot write to audit log"):
            AuditLog(path).check_writable()
    finally:
        path.chmod(0o600)


def test_the_package_exports_exactly_its_public_names() -> None:
    import audit

    assert sorted(audit.__all__) == sorted(set(audit.__all__))
    for name in audit.__all__:
        value = getattr(audit, name)
        module = getattr(value, "__module__", None)
        assert module is None or module.startswith("audit."), name
    public = {name for name in vars(audit) if not name.startswith("_")}
    submodules = {"access", "anchors", "export", "log", "postgres", "query", "records", "verification"}
    assert public - submodules == set(audit.__all__)
