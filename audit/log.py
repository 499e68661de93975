"""The audit log: an append-only, hash-chained SQLite record of every answer and failed attempt.

Each record's `hash` is the SHA-256 (lowercase hex) of the UTF-8 bytes of this canonical JSON,
Python's `json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)`:

    {"data":<data>,"error":<error>,"event":<event>,"id":<id>,
     "prev_hash":<prev_hash>,"question":<question>,"ts":<ts>,"user":<user>}

(one line, no spaces). `id` is an integer, `error` a string or null, `data` the JSON object
exactly as stored in the `data` column (which holds the same canonical form), every other value
a string. The first record's `prev_hash` is 64 zeros (`GENESIS_HASH`); every later record's is
the `hash` of the record before it. Because `data` is stored canonically, the hashed text can be
rebuilt from a row by string concatenation alone, for example in Python:

    q = lambda s: json.dumps(s, ensure_ascii=False)
    pre = ('{"data":' + data + ',"error":' + q(error) + ',"event":' + q(event)
           + ',"id":' + str(id) + ',"prev_hash":' + q(prev_hash) + ',"question":' + q(question)
           + ',"ts":' + q(ts) + ',"user":' + q(user) + '}')
    hashlib.sha256(pre.encode("utf-8")).hexdigest() == hash

where `data` is the column's text as stored. `ts` is ISO-8601 UTC with microseconds
(`2025-01-31T09:15:02.123456+00:00`).

Tables (schema version in `PRAGMA user_version`, see `_MIGRATIONS`):
- `records`: one row per record; triggers abort every UPDATE and DELETE, and any INSERT that
  does not extend the chain head by exactly one record.
- `chain_head`: one row (`count`, `last_hash`) moved forward in the same transaction as each
  insert, so that removing the newest records is detected, not only gaps and broken links.

An attacker who can write the file can drop the triggers and rebuild a consistent chain; what
catches that is `head()` written somewhere else (a printout, another system's log) and compared
later. The file must live on a local filesystem: WAL mode needs shared memory, so replicas
that share one log must run on the same host.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

from core.errors import AuditIntegrityError

GENESIS_HASH = "0" * 64

_COLUMNS = "id, ts, event, user, question, error, data, prev_hash, hash"

# Each migration is a list of statements run in one transaction; its position + 1 is the
# schema version it brings the file to. Append new ones, never edit a released one.
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE records (
            id INTEGER PRIMARY KEY,
            ts TEXT NOT NULL,
            event TEXT NOT NULL,
            user TEXT NOT NULL,
            question TEXT NOT NULL,
            error TEXT,
            data TEXT NOT NULL,
            prev_hash TEXT NOT NULL,
            hash TEXT NOT NULL
        )""",
        """CREATE TABLE chain_head (
            singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
            count INTEGER NOT NULL,
            last_hash TEXT NOT NULL
        )""",
        f"INSERT INTO chain_head (singleton, count, last_hash) VALUES (1, 0, '{GENESIS_HASH}')",
        """CREATE TRIGGER records_no_update BEFORE UPDATE ON records BEGIN
            SELECT RAISE(ABORT, 'audit log is append-only: records cannot be updated');
        END""",
        """CREATE TRIGGER records_no_delete BEFORE DELETE ON records BEGIN
            SELECT RAISE(ABORT, 'audit log is append-only: records cannot be deleted');
        END""",
        # Also stops INSERT OR REPLACE, whose implicit delete fires no DELETE trigger unless
        # recursive_triggers is on, which an attacker's connection would not turn on.
        """CREATE TRIGGER records_extend_chain BEFORE INSERT ON records
        WHEN NEW.id IS NOT (SELECT count + 1 FROM chain_head)
          OR NEW.prev_hash IS NOT (SELECT last_hash FROM chain_head)
        BEGIN
            SELECT RAISE(ABORT, 'audit log is append-only: a record must extend the chain head');
        END""",
        """CREATE TRIGGER chain_head_advance BEFORE UPDATE ON chain_head
        WHEN NEW.singleton IS NOT 1
          OR NEW.count IS NOT OLD.count + 1
          OR NEW.last_hash IS NOT (SELECT hash FROM records WHERE id = NEW.count)
        BEGIN
            SELECT RAISE(ABORT, 'audit log chain head may only advance to the newest record');
        END""",
        """CREATE TRIGGER chain_head_no_delete BEFORE DELETE ON chain_head BEGIN
            SELECT RAISE(ABORT, 'audit log chain head cannot be deleted');
        END""",
        """CREATE TRIGGER chain_head_no_insert BEFORE INSERT ON chain_head BEGIN
            SELECT RAISE(ABORT, 'audit log chain head cannot be replaced');
        END""",
    ),
)
SCHEMA_VERSION = len(_MIGRATIONS)


@dataclass(frozen=True)
class AuditRecord:
    """One entry of the log, as stored and hashed."""

    id: int
    ts: str
    event: str
    user: str
    question: str
    error: str | None
    data: dict[str, Any]
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of `AuditLog.verify()`.

    `checked` counts the records found intact before the first bad one (all of them when `ok`);
    `first_bad_id` is the lowest id at which the chain is wrong: a record whose contents or link
    do not match, or the id of a record that is missing. `reason` says what is wrong, in words.
    """

    ok: bool
    checked: int
    first_bad_id: int | None
    reason: str


def canonical_json(value: Any) -> str:
    """The one serialisation that is stored and hashed. Raises TypeError if `value` is not JSON."""
    try:
        text = json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
        text.encode("utf-8")
    except TypeError as exc:
        raise TypeError(f"audit data is not JSON-serialisable: {exc}") from exc
    except ValueError as exc:
        # NaN/Infinity are not JSON and lone surrogates are not UTF-8: either would give a
        # record another tool cannot read or re-hash, so they are refused like any other
        # value json cannot represent.
        raise TypeError(f"audit data is not JSON-serialisable: {exc}") from exc
    return text


def record_hash(
    id: int,
    ts: str,
    event: str,
    user: str,
    question: str,
    error: str | None,
    data: Mapping[str, Any],
    prev_hash: str,
) -> str:
    """SHA-256 hex of a record's canonical form, as described in the module docstring."""
    preimage = canonical_json(
        {
            "id": id,
            "ts": ts,
            "event": event,
            "user": user,
            "question": question,
            "error": error,
            "data": data,
            "prev_hash": prev_hash,
        }
    )
    return hashlib.sha256(preimage.encode("utf-8")).hexdigest()


def _check_text(name: str, value: object, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str):
        raise TypeError(f"audit {name} must be a str, not {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"audit {name} is not valid Unicode text: {exc}") from exc


def _record(row: tuple[Any, ...], path: Path) -> AuditRecord:
    record_id, ts, event, user, question, error, data, prev_hash, digest = row
    try:
        payload = json.loads(data)
    except (TypeError, ValueError) as exc:
        raise AuditIntegrityError(
            f"audit log {path}: record {record_id} has unreadable data ({exc}); run verify"
        ) from exc
    return AuditRecord(record_id, ts, event, user, question, error, payload, prev_hash, digest)


class AuditLog:
    """The audit log file. Safe to share between threads and processes.

    Every call opens its own SQLite connection and closes it before returning, so nothing is held
    between calls and no connection crosses threads. Writers serialise on SQLite's write lock
    (BEGIN IMMEDIATE, waiting up to `busy_timeout_s`); readers see a consistent snapshot (WAL).
    The file is created on the first append; reads of a missing file see an empty log.
    """

    def __init__(self, path: Path, *, busy_timeout_s: float = 30.0) -> None:
        self.path = Path(path)
        self.busy_timeout_s = busy_timeout_s
        self._closed = False

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"AuditLog({str(self.path)!r})"

    # -- writing ---------------------------------------------------------------------------

    def append(
        self,
        event: str,
        user: str,
        question: str = "",
        error: str | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> AuditRecord:
        """Write one record at the end of the chain and return it.

        Raises TypeError/ValueError for arguments that cannot be logged (a bug in the caller,
        found before anything is written) and AuditIntegrityError if the record could not be
        written; a caller must then withhold the answer it meant to log.
        """
        _check_text("event", event)
        if not event:
            raise ValueError("audit event must not be empty")
        _check_text("user", user)
        _check_text("question", question)
        _check_text("error", error, optional=True)
        if data is not None and not isinstance(data, Mapping):
            raise TypeError(f"audit data must be a mapping, not {type(data).__name__}")
        payload = canonical_json(dict(data or {}))
        # What is hashed is what a later reader parses back, so the two always agree
        # (tuples become lists, and so on).
        stored_data: dict[str, Any] = json.loads(payload)

        with self._writer() as conn:
            # Taking the write lock before reading the head is what keeps the chain single
            # when several processes append at once.
            conn.execute("BEGIN IMMEDIATE")
            try:
                count, prev_hash = conn.execute(
                    "SELECT count, last_hash FROM chain_head"
                ).fetchone()
                self._check_tail(conn, count, prev_hash)
                record_id = count + 1
                ts = datetime.now(UTC).isoformat(timespec="microseconds")
                digest = record_hash(
                    record_id, ts, event, user, question, error, stored_data, prev_hash
                )
                conn.execute(
                    f"INSERT INTO records ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (record_id, ts, event, user, question, error, payload, prev_hash, digest),
                )
                conn.execute("UPDATE chain_head SET count = ?, last_hash = ?", (record_id, digest))
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        return AuditRecord(
            record_id, ts, event, user, question, error, stored_data, prev_hash, digest
        )

    def _check_tail(self, conn: sqlite3.Connection, count: int, last_hash: str) -> None:
        # Refuse to extend a chain whose newest record is not the one the head names: new
        # records would hide the damage behind valid-looking links.
        tail = conn.execute("SELECT id, hash FROM records ORDER BY id DESC LIMIT 1").fetchone()
        if (tail is None and count == 0) or tail == (count, last_hash):
            return
        raise AuditIntegrityError(
            f"audit log {self.path} is damaged: its newest record does not match the chain "
            f"head (head: {count} records); nothing more is written to it. Verify it "
            "(`enclave audit verify`), secure it, and start a new log file"
        )

    # -- reading ---------------------------------------------------------------------------

    def get(self, record_id: int) -> AuditRecord | None:
        """The record with this id, or None."""
        with self._reader() as conn:
            if conn is None:
                return None
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM records WHERE id = ?", (record_id,)
            ).fetchone()
            return None if row is None else _record(row, self.path)

    def last(self, n: int) -> list[AuditRecord]:
        """The `n` newest records, newest first."""
        if n < 0:
            raise ValueError(f"last(n) needs n >= 0, got {n}")
        if n == 0:
            return []  # LIMIT 0 is fine, but a negative LIMIT would mean "all" to SQLite
        with self._reader() as conn:
            if conn is None:
                return []
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM records ORDER BY id DESC LIMIT ?", (n,)
            ).fetchall()
            return [_record(row, self.path) for row in rows]

    def head(self) -> tuple[int, str]:
        """(number of records, hash of the newest): write it down elsewhere to anchor the log."""
        with self._reader() as conn:
            if conn is None:
                return 0, GENESIS_HASH
            count, last_hash = conn.execute("SELECT count, last_hash FROM chain_head").fetchone()
            return int(count), str(last_hash)

    def verify(self) -> VerifyResult:
        """Re-compute the whole chain and compare it with the chain head.

        Problems with the records are reported in the result, not raised. The log is read in one
        snapshot, so appends running meanwhile do not look like tampering.
        """
        try:
            with self._reader() as conn:
                if conn is None:
                    return VerifyResult(
                        True, 0, None, f"audit log {self.path} holds no records yet"
                    )
                conn.execute("BEGIN")
                heads = conn.execute("SELECT count, last_hash FROM chain_head").fetchall()
                rows = conn.execute(f"SELECT {_COLUMNS} FROM records ORDER BY id")
                return _verify(rows, heads)
        except AuditIntegrityError as exc:
            return VerifyResult(False, 0, None, str(exc))

    def close(self) -> None:
        """Mark the log closed: later calls raise AuditIntegrityError. No connection is held."""
        self._closed = True

    # -- connections -----------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise AuditIntegrityError(f"audit log {self.path} is closed")

    def _connect(self, target: str, *, uri: bool = False) -> sqlite3.Connection:
        # isolation_level=None: transactions are begun and ended explicitly, never implicitly.
        conn = sqlite3.connect(target, timeout=self.busy_timeout_s, isolation_level=None, uri=uri)
        # An answer counts as logged only once its record is on disk.
        conn.execute("PRAGMA synchronous = FULL")
        return conn

    @contextmanager
    def _writer(self) -> Iterator[sqlite3.Connection]:
        self._check_open()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise AuditIntegrityError(
                f"cannot create the folder of audit log {self.path}: {exc.strerror or exc}; "
                "set audit.path to a writable location"
            ) from exc
        with self._guarded("cannot write to") as guard:
            conn = self._connect(str(self.path))
            guard.append(conn)
            self._setup(conn, create=True)
            yield conn

    @contextmanager
    def _reader(self) -> Iterator[sqlite3.Connection | None]:
        self._check_open()
        if not self.path.exists():
            yield None
            return
        with self._guarded("cannot read") as guard:
            # mode=rw: never create a file just to look at it (a mistyped path stays an error
            # the caller sees as "no records", not a fresh empty log left behind).
            conn = self._connect(self.path.resolve().as_uri() + "?mode=rw", uri=True)
            guard.append(conn)
            if not self._setup(conn, create=False):
                yield None
                return
            yield conn

    @contextmanager
    def _guarded(self, doing: str) -> Iterator[list[sqlite3.Connection]]:
        opened: list[sqlite3.Connection] = []
        try:
            yield opened
        except sqlite3.Error as exc:
            raise AuditIntegrityError(
                f"{doing} audit log {self.path}: {exc}; check that its folder is writable and "
                "on a local filesystem, and that the file is an Enclave audit log"
            ) from exc
        finally:
            for conn in opened:
                conn.close()

    def _setup(self, conn: sqlite3.Connection, *, create: bool) -> bool:
        """Bring the schema up to date; False if the file has no schema and `create` is off."""
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise AuditIntegrityError(
                f"audit log {self.path} has schema version {version}, newer than this Enclave "
                f"knows ({SCHEMA_VERSION}); upgrade Enclave to use it"
            )
        if version == SCHEMA_VERSION:
            return True
        if version == 0 and not create:
            return False
        # WAL lets readers (verify, the auditor page) work while answers are being logged.
        # It is a property of the file, so setting it once, with the schema, is enough.
        mode = self._switch_to_wal(conn)
        if mode != "wal":
            raise AuditIntegrityError(
                f"audit log {self.path} cannot use WAL journaling (got {mode!r}); "
                "put it on a local filesystem"
            )
        self._migrate(conn)
        return True

    def _switch_to_wal(self, conn: sqlite3.Connection) -> str:
        deadline = time.monotonic() + self.busy_timeout_s
        while True:
            try:
                return str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]).lower()
            except sqlite3.OperationalError as exc:
                # Changing the journal mode needs every other connection out of the way, and
                # SQLite answers "locked" at once, without the busy timeout, where waiting could
                # deadlock; processes creating the file together run into that, so wait here.
                if (
                    exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY
                    or time.monotonic() > deadline
                ):
                    raise
                time.sleep(0.01)

    def _migrate(self, conn: sqlite3.Connection) -> None:
        # Under the write lock, so that processes opening a new file together migrate it once.
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            for number, statements in enumerate(_MIGRATIONS[version:], start=version + 1):
                for statement in statements:
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {number}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise


def _verify(rows: Iterable[tuple[Any, ...]], heads: list[tuple[Any, ...]]) -> VerifyResult:
    if len(heads) != 1 or not isinstance(heads[0][0], int):
        return VerifyResult(False, 0, None, "the chain head row is missing or damaged")
    head_count, head_hash = heads[0]
    expected_id, prev = 1, GENESIS_HASH
    for row in rows:
        record_id, ts, event, user, question, error, data_text, prev_hash, stored_hash = row
        checked = expected_id - 1
        if record_id != expected_id:
            if record_id < expected_id:
                first_bad, what = record_id, f"record {record_id} is out of sequence"
            else:
                first_bad, what = expected_id, f"record {expected_id} is missing"
            where = f"after record {expected_id - 1}" if expected_id > 1 else "at the start"
            return VerifyResult(
                False,
                checked,
                first_bad,
                f"{what}: id {record_id} found where id {expected_id} belongs ({where}); "
                "a record was deleted or renumbered",
            )
        if prev_hash != prev:
            before = f"the hash of record {record_id - 1}" if record_id > 1 else "the genesis hash"
            return VerifyResult(
                False,
                checked,
                record_id,
                f"record {record_id}: prev_hash does not match {before}; the chain is broken "
                "here (this link, or the record before it, was altered)",
            )
        try:
            data = json.loads(data_text)
            canonical = canonical_json(data) == data_text
        except (TypeError, ValueError):
            canonical = False
        if not canonical:
            return VerifyResult(
                False,
                checked,
                record_id,
                f"record {record_id}: data is not the canonical JSON it was written as "
                "(altered outside the audit log)",
            )
        try:
            intact = (
                record_hash(record_id, ts, event, user, question, error, data, prev_hash)
                == stored_hash
            )
        except TypeError:  # a value SQLite holds but JSON cannot (a BLOB put in by hand)
            intact = False
        if not intact:
            return VerifyResult(
                False,
                checked,
                record_id,
                f"record {record_id}: contents do not match its hash (a field was altered)",
            )
        prev = stored_hash
        expected_id += 1
    checked = expected_id - 1
    if head_count > checked:
        return VerifyResult(
            False,
            checked,
            checked + 1,
            f"record {checked + 1} is missing: the chain head counts {head_count} records but "
            f"the log ends at record {checked} (the newest records were deleted)",
        )
    if head_count < checked:
        return VerifyResult(
            False,
            head_count,
            head_count + 1,
            f"record {head_count + 1} is not covered by the chain head, which counts "
            f"{head_count} records (records were added outside the audit log)",
        )
    if head_hash != prev:
        if not checked:
            return VerifyResult(False, 0, None, "the chain head of the empty log was altered")
        return VerifyResult(
            False,
            checked - 1,
            checked,
            f"record {checked}: its hash does not match the chain head's last hash "
            "(the record was replaced, or the head altered)",
        )
    return VerifyResult(True, checked, None, f"{checked} records verified; chain head matches")
