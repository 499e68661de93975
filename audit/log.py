"""The audit log's storage: the append-only, hash-chained SQLite file (`AuditLog`), and the
writing, reading and purging that the PostgreSQL log (`audit.postgres`) shares with it.

The record format, the hashing, the chain and the retention checkpoints are in
docs/audit-format.md. Tables (schema version in `PRAGMA user_version`, see `_MIGRATIONS`):
- `records`: one row per record; triggers abort every UPDATE, every DELETE outside a purge,
  and any INSERT that does not extend the chain head by exactly one record.
- `chain_head`: one row (`count`, `last_hash`) moved forward in the same transaction as each
  insert, so that removing the newest records is detected, not only gaps and broken links.
- `chain_anchor`: one row (`count`, `hash`): the last record removed by retention purges
  (0 and the genesis hash until the first purge). The chain is verified from there.
- `purge_allowance`: empty except inside a purge's transaction, when it names the last record
  the purge may delete; triggers allow it only when the newest record is a checkpoint naming it.

An attacker who can write the file can drop the triggers and rebuild a consistent chain; what
catches that is the chain head written down elsewhere (`audit.anchors`) and compared later. The
file must live on a local filesystem: WAL mode needs shared memory, so replicas that share one
log must run on the same host.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol, Self, TextIO

from audit.anchors import Anchor, AnchorCheck, ChainState, check_anchors
from audit.query import (
    ANSWER_EVENTS,
    CHECKPOINT_EVENT,
    CONTAINS_FUNCTION,
    FEEDBACK_EVENT,
    RATINGS,
    SQLITE,
    Dialect,
    RecordFilter,
    contains,
    format_ts,
    parse_moment,
)
from audit.records import (
    GENESIS_HASH,
    MAX_COMMENT_CHARS,
    AuditRecord,
    Feedback,
    check_text,
    prepare_entry,
    record_from_row,
    record_hash,
)
from audit.verification import VerifyResult, verify_chain
from core.errors import AccessDenied, AuditIntegrityError

log = logging.getLogger(__name__)


_COLUMNS = 'id, ts, event, "user", question, error, data, prev_hash, hash'
_PREFIXED_COLUMNS = ", ".join(f"r.{c.strip()}" for c in _COLUMNS.split(","))
_BATCH = 500  # ids per IN (...) query

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
    (
        # Search: by user, by event, by time, and feedback by the answer it rates.
        "CREATE INDEX records_user ON records (user, id)",
        "CREATE INDEX records_event ON records (event, id)",
        "CREATE INDEX records_ts ON records (ts)",
        "CREATE INDEX records_error ON records (id) WHERE error IS NOT NULL",
        """CREATE INDEX records_feedback_target ON records (json_extract(data, '$.record_id'), id)
        WHERE event = 'feedback'""",
        # Retention: see "Retention" in the module docstring.
        """CREATE TABLE chain_anchor (
            singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
            count INTEGER NOT NULL,
            hash TEXT NOT NULL
        )""",
        f"INSERT INTO chain_anchor (singleton, count, hash) VALUES (1, 0, '{GENESIS_HASH}')",
        """CREATE TABLE purge_allowance (
            singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
            through INTEGER NOT NULL
        )""",
        "DROP TRIGGER records_no_delete",
        """CREATE TRIGGER records_no_delete BEFORE DELETE ON records
        WHEN OLD.id > coalesce((SELECT through FROM purge_allowance), 0)
        BEGIN
            SELECT RAISE(ABORT, 'audit log is append-only: records cannot be deleted');
        END""",
        """CREATE TRIGGER purge_allowance_vouched BEFORE INSERT ON purge_allowance
        WHEN NEW.singleton IS NOT 1
          OR NEW.through <= (SELECT count FROM chain_anchor)
          OR (SELECT event FROM records WHERE id = (SELECT count FROM chain_head))
             IS NOT 'checkpoint'
          OR (SELECT json_extract(data, '$.purged_through') FROM records
              WHERE id = (SELECT count FROM chain_head)) IS NOT NEW.through
          OR (SELECT json_extract(data, '$.anchor_hash') FROM records
              WHERE id = (SELECT count FROM chain_head))
             IS NOT (SELECT hash FROM records WHERE id = NEW.through)
        BEGIN
            SELECT RAISE(ABORT, 'audit log purge must be vouched for by a checkpoint record at the chain head');
        END""",
        """CREATE TRIGGER purge_allowance_no_update BEFORE UPDATE ON purge_allowance BEGIN
            SELECT RAISE(ABORT, 'audit log purge allowance cannot be changed');
        END""",
        """CREATE TRIGGER chain_anchor_advance BEFORE UPDATE ON chain_anchor
        WHEN NEW.singleton IS NOT 1
          OR NEW.count IS NOT (SELECT through FROM purge_allowance)
          OR NEW.hash IS NOT (SELECT hash FROM records WHERE id = NEW.count)
        BEGIN
            SELECT RAISE(ABORT, 'audit log anchor may only move to a purge vouched for by a checkpoint');
        END""",
        """CREATE TRIGGER chain_anchor_no_delete BEFORE DELETE ON chain_anchor BEGIN
            SELECT RAISE(ABORT, 'audit log anchor cannot be deleted');
        END""",
        """CREATE TRIGGER chain_anchor_no_insert BEFORE INSERT ON chain_anchor BEGIN
            SELECT RAISE(ABORT, 'audit log anchor cannot be replaced');
        END""",
    ),
)
SCHEMA_VERSION = len(_MIGRATIONS)


class SqlConnection(Protocol):
    """What the shared code needs of a connection: sqlite3's, or the PostgreSQL one in
    `audit.postgres` (which takes the same `?` placeholders)."""

    @property
    def in_transaction(self) -> bool: ...

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Any: ...


@dataclass(frozen=True)
class ConversationSummary:
    """One of a user's chat conversations, as its answer records tell it (see `conversations`)."""

    id: str
    title: str  # the first question
    started: str  # ts of the first answer
    updated: str  # ts of the newest answer
    answers: int


@dataclass(frozen=True)
class PurgeResult:
    """What `AuditLog.purge()` removed, or would remove (`dry_run`).

    `first_id`..`last_id` are the records removed (None when none were old enough); `last_id`
    is the new chain anchor. `checkpoint` is the record that vouches for the purge (None for a
    dry run or when nothing was removed: then nothing is written at all).
    """

    purged: int
    first_id: int | None
    last_id: int | None
    before: str
    checkpoint: AuditRecord | None


def _register_functions(conn: sqlite3.Connection) -> None:
    fn: Callable[[object, object], int] = contains
    conn.create_function(CONTAINS_FUNCTION, 2, fn, deterministic=True)


class AuditLog:
    """The audit log file. Safe to share between threads and processes.

    Every call opens its own SQLite connection and closes it before returning, so nothing is held
    between calls and no connection crosses threads. Writers serialise on SQLite's write lock
    (BEGIN IMMEDIATE, waiting up to `busy_timeout_s`); readers see a consistent snapshot (WAL).
    The file is created on the first append; reads of a missing file see an empty log.
    """

    _dialect: Dialect = SQLITE
    _begin_write: tuple[str, ...] = ("BEGIN IMMEDIATE",)

    def __init__(
        self,
        path: Path,
        *,
        busy_timeout_s: float = 30.0,
        retention_days: int = 0,
        anchor_file: Path | None = None,
    ) -> None:
        self.path = Path(path)
        self.busy_timeout_s = busy_timeout_s
        # The youngest records a purge may remove are this many days old (audit.retention_days).
        self.retention_days = checked_retention(retention_days)
        self.anchor_file = anchor_file  # where anchors of this log are written down, if anywhere
        self._closed = False
        self._label = str(self.path)  # how messages name the log

    @property
    def label(self) -> str:
        """How messages name the log (the file, or the database without its password)."""
        return self._label

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
        entry = prepare_entry(event, user, question, error, data)
        with self._write_transaction() as conn:
            return self._insert(conn, *entry)

    def check_writable(self) -> None:
        """Raise AuditIntegrityError unless the log can be written now: opened for writing and
        its write lock taken (then let go, nothing written). An answer checks this before it
        starts, so that one which could not be logged is never begun; a disk that fills up
        meanwhile still fails the append, and the answer is withheld then."""
        with self._writer() as conn:
            try:
                for statement in self._begin_write:
                    conn.execute(statement)
            finally:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")

    def feedback(self, user: str, record_id: int, rating: str, comment: str | None = None) -> AuditRecord:
        """Record `user`'s thumbs up or down (`rating` "up" or "down") on their answer `record_id`.

        Feedback is a `feedback` record of its own (records are never changed); the newest one
        about an answer is its feedback. Raises AccessDenied when the record does not exist, is
        not an answer, or belongs to another user, and ValueError for a bad rating or comment.
        """
        if rating not in RATINGS:
            raise ValueError(f"feedback rating {rating!r} is not one of {', '.join(RATINGS)}")
        if isinstance(record_id, bool) or not isinstance(record_id, int):
            raise ValueError(f"feedback record_id must be an integer, not {record_id!r}")
        if comment is not None:
            check_text("comment", comment)
            comment = comment.strip() or None
        if comment is not None and len(comment) > MAX_COMMENT_CHARS:
            raise ValueError(
                f"feedback comment is {len(comment)} characters long; the limit is {MAX_COMMENT_CHARS}"
            )
        entry = prepare_entry(
            FEEDBACK_EVENT, user, "", None, {"record_id": record_id, "rating": rating, "comment": comment}
        )
        with self._write_transaction() as conn:
            # Checked under the write lock, so the answer cannot be purged in between.
            row = conn.execute('SELECT "user", event FROM records WHERE id = ?', (record_id,)).fetchone()
            if row is None:
                raise AccessDenied(
                    f"cannot give feedback on audit record {record_id}: there is no such record"
                )
            owner, event = row
            if event not in ANSWER_EVENTS:
                raise AccessDenied(
                    f"cannot give feedback on audit record {record_id}: it is a {event!r} record, "
                    "not an answer"
                )
            if owner != user:
                raise AccessDenied(
                    f"cannot give feedback on audit record {record_id}: it is an answer to "
                    f"another user, not to {user!r}"
                )
            return self._insert(conn, *entry)

    def purge(self, before: datetime | date | str, by: str, *, dry_run: bool = False) -> PurgeResult:
        """Remove the records written before `before` (a date means its start, UTC).

        What goes is the longest run of oldest records all older than the cutoff (a record with
        a later time stops it, should the clock ever have gone back). A `checkpoint` record by
        `by` is appended first, in the same transaction, naming the last record removed and its
        hash: the new anchor the chain is verified from (docs/audit-format.md). Nothing is
        written when nothing is old enough, or with `dry_run`. Refuses (AuditIntegrityError) to
        purge a log that does not verify: that would destroy the evidence; and (ValueError) a
        cutoff that would remove records younger than `retention_days`.
        """
        moment = parse_moment(before, "before")
        youngest = datetime.now(UTC) - timedelta(days=self.retention_days)
        if self.retention_days and moment > youngest:
            raise ValueError(
                f"refusing to purge records written up to {format_ts(moment)}: audit.retention_days "
                f"is {self.retention_days}, so records written after {format_ts(youngest)} must be "
                "kept; give an earlier cutoff"
            )
        cutoff = format_ts(moment)
        check_text("user", by)
        if not by:
            raise ValueError("purge needs the name of who runs it (by)")
        with self._write_transaction() as conn:
            self._prepare_purge(conn)
            result = _verify_in(conn)
            if not result.ok:
                raise AuditIntegrityError(
                    f"refusing to purge audit log {self._label}: it does not verify ({result.reason}); "
                    "secure it as evidence first"
                )
            anchor = int(conn.execute("SELECT count FROM chain_anchor").fetchone()[0])
            count = int(conn.execute("SELECT count FROM chain_head").fetchone()[0])
            (first_kept,) = conn.execute("SELECT min(id) FROM records WHERE ts >= ?", (cutoff,)).fetchone()
            through = count if first_kept is None else int(first_kept) - 1
            if through <= anchor:
                return PurgeResult(0, None, None, cutoff, None)
            if dry_run:
                return PurgeResult(through - anchor, anchor + 1, through, cutoff, None)
            (anchor_hash,) = conn.execute("SELECT hash FROM records WHERE id = ?", (through,)).fetchone()
            data = {
                "purged_from": anchor + 1,
                "purged_through": through,
                "purged_count": through - anchor,
                "anchor_hash": anchor_hash,
                "before": cutoff,
            }
            checkpoint = self._insert(conn, *prepare_entry(CHECKPOINT_EVENT, by, "", None, data))
            conn.execute("INSERT INTO purge_allowance (singleton, through) VALUES (1, ?)", (through,))
            conn.execute("UPDATE chain_anchor SET count = ?, hash = ?", (through, anchor_hash))
            deleted = conn.execute("DELETE FROM records WHERE id <= ?", (through,)).rowcount
            conn.execute("DELETE FROM purge_allowance")
            if deleted != through - anchor:
                raise AuditIntegrityError(
                    f"audit log {self._label}: the purge found {deleted} records where "
                    f"{through - anchor} were expected; nothing was purged"
                )
        self._after_purge()
        return PurgeResult(through - anchor, anchor + 1, through, cutoff, checkpoint)

    def _prepare_purge(self, conn: SqlConnection) -> None:
        # Deleted rows are overwritten, not left readable in free pages of the file.
        conn.execute("PRAGMA secure_delete = ON")

    def _after_purge(self) -> None:
        self._checkpoint_wal()

    def _checkpoint_wal(self) -> None:
        # Purged rows also live on in the write-ahead log's older frames until it is folded back
        # and emptied; another process holding the file open would otherwise keep them there.
        with self._writer() as conn:
            busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy:
            log.warning(
                "audit log %s: a reader kept the write-ahead log busy after the purge; the "
                "purged records stay in %s-wal until it is checkpointed",
                self.path,
                self.path,
            )

    @contextmanager
    def _write_transaction(self) -> Iterator[SqlConnection]:
        with self._writer() as conn:
            # Taking the write lock before reading the head is what keeps the chain single
            # when several processes append at once.
            for statement in self._begin_write:
                conn.execute(statement)
            try:
                yield conn
                if conn.in_transaction:
                    conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def _insert(
        self,
        conn: SqlConnection,
        event: str,
        user: str,
        question: str,
        error: str | None,
        payload: str,
        stored_data: dict[str, Any],
    ) -> AuditRecord:
        """Append one record inside the caller's write transaction."""
        count, prev_hash = conn.execute("SELECT count, last_hash FROM chain_head").fetchone()
        self._check_tail(conn, count, prev_hash)
        record_id = count + 1
        ts = format_ts(datetime.now(UTC))
        digest = record_hash(record_id, ts, event, user, question, error, stored_data, prev_hash)
        conn.execute(
            f"INSERT INTO records ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (record_id, ts, event, user, question, error, payload, prev_hash, digest),
        )
        conn.execute("UPDATE chain_head SET count = ?, last_hash = ?", (record_id, digest))
        return AuditRecord(record_id, ts, event, user, question, error, stored_data, prev_hash, digest)

    def _check_tail(self, conn: SqlConnection, count: int, last_hash: str) -> None:
        # Refuse to extend a chain whose newest record is not the one the head names: new
        # records would hide the damage behind valid-looking links.
        tail = conn.execute("SELECT id, hash FROM records ORDER BY id DESC LIMIT 1").fetchone()
        if (tail is None and count == 0) or tail == (count, last_hash):
            return
        raise AuditIntegrityError(
            f"audit log {self._label} is damaged: its newest record does not match the chain "
            f"head (head: {count} records); nothing more is written to it. Verify it "
            "(`enclave audit verify`), secure it, and start a new log file"
        )

    # -- reading ---------------------------------------------------------------------------

    def get(self, record_id: int) -> AuditRecord | None:
        """The record with this id, or None."""
        with self._reader() as conn:
            if conn is None:
                return None
            row = conn.execute(f"SELECT {_COLUMNS} FROM records WHERE id = ?", (record_id,)).fetchone()
            return None if row is None else record_from_row(row, self._label)

    def last(self, n: int) -> list[AuditRecord]:
        """The `n` newest records, newest first."""
        if n < 0:
            raise ValueError(f"last(n) needs n >= 0, got {n}")
        if n == 0:
            return []  # LIMIT 0 is fine, but a negative LIMIT would mean "all" to SQLite
        with self._reader() as conn:
            if conn is None:
                return []
            rows = conn.execute(f"SELECT {_COLUMNS} FROM records ORDER BY id DESC LIMIT ?", (n,)).fetchall()
            return [record_from_row(row, self._label) for row in rows]

    def search(
        self,
        user: str | None = None,
        since: datetime | date | str | None = None,
        until: datetime | date | str | None = None,
        text: str | None = None,
        event: str | Sequence[str] | None = None,
        has_error: bool | None = None,
        feedback: str | None = None,
        limit: int | None = 100,
        offset: int = 0,
    ) -> list[AuditRecord]:
        """Records matching every filter given, newest first; `limit` None means all.

        `user`: exact name. `since`/`until`: ISO-8601 times or YYYY-MM-DD dates, UTC unless an
        offset is given; both inclusive, a date `until` takes in its whole day. `text`: occurs in
        the question or the answer, ignoring case. `event`: one event or several. `has_error`:
        only failed (True) or only successful (False) attempts. `feedback`: answers whose newest
        feedback is "up" or "down", that have "any", or "none". Bad filters raise ValueError.
        """
        query = RecordFilter.of(user, since, until, text, event, has_error, feedback)
        return self.select(query, limit=limit, offset=offset)

    def select(
        self,
        query: RecordFilter,
        *,
        limit: int | None = 100,
        offset: int = 0,
        oldest_first: bool = False,
    ) -> list[AuditRecord]:
        """`search` with filters already built (`RecordFilter.of`)."""
        return list(self.iter_select(query, limit=limit, offset=offset, oldest_first=oldest_first))

    def iter_select(
        self,
        query: RecordFilter,
        *,
        limit: int | None = None,
        offset: int = 0,
        oldest_first: bool = False,
    ) -> Iterator[AuditRecord]:
        """The matching records one by one, from one snapshot (exports of any size)."""
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be >= 0 or None, got {limit}")
        if offset < 0:
            raise ValueError(f"offset must be >= 0, got {offset}")
        if limit == 0:
            return
        where, params = query.where(self._dialect)
        order = "ASC" if oldest_first else "DESC"
        sql = (
            f"SELECT {_PREFIXED_COLUMNS} FROM records AS r WHERE {where} "
            f"ORDER BY r.id {order} LIMIT ? OFFSET ?"
        )
        with self._reader() as conn:
            if conn is None:
                return
            conn.execute(self._dialect.begin_read)
            for row in conn.execute(
                sql, [*params, self._dialect.no_limit if limit is None else limit, offset]
            ):
                yield record_from_row(row, self._label)

    def count(self, query: RecordFilter) -> int:
        """How many records match `query`."""
        where, params = query.where(self._dialect)
        with self._reader() as conn:
            if conn is None:
                return 0
            return int(conn.execute(f"SELECT count(*) FROM records AS r WHERE {where}", params).fetchone()[0])

    def events(self) -> list[str]:
        """The distinct events in the log, sorted."""
        with self._reader() as conn:
            if conn is None:
                return []
            rows = conn.execute("SELECT DISTINCT event FROM records ORDER BY event").fetchall()
            return [str(event) for (event,) in rows]

    def conversations(self, user: str, limit: int = 50) -> list[ConversationSummary]:
        """`user`'s chat conversations, the most recently continued first.

        A conversation is the answer records (`answer`, `answer_error`) of `user` that carry the
        same `data.conversation_id`; the log is the only store of chat history, so a retention
        purge removes the history with the records.
        """
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        events = ", ".join("?" * len(ANSWER_EVENTS))
        cid = self._dialect.json_text("data", "conversation_id")
        sql = (
            "SELECT c.cid, f.question, f.ts, l.ts, c.n FROM ("
            f"SELECT {cid} AS cid, min(id) AS first_id, "
            "max(id) AS last_id, count(*) AS n FROM records "
            f'WHERE "user" = ? AND event IN ({events}) AND {cid} IS NOT NULL GROUP BY {cid}'
            ") AS c JOIN records AS f ON f.id = c.first_id JOIN records AS l ON l.id = c.last_id "
            "ORDER BY c.last_id DESC LIMIT ?"
        )
        with self._reader() as conn:
            if conn is None:
                return []
            rows = conn.execute(sql, (user, *ANSWER_EVENTS, limit)).fetchall()
        return [ConversationSummary(str(cid), q, first, last, int(n)) for cid, q, first, last, n in rows]

    def conversation(self, user: str, conversation_id: str) -> list[AuditRecord]:
        """The answer records of `user`'s conversation `conversation_id`, oldest first (empty when
        there is none, or it is another user's)."""
        events = ", ".join("?" * len(ANSWER_EVENTS))
        sql = (
            f'SELECT {_COLUMNS} FROM records WHERE "user" = ? AND event IN ({events}) '
            f"AND {self._dialect.json_text('data', 'conversation_id')} = ? ORDER BY id"
        )
        with self._reader() as conn:
            if conn is None:
                return []
            rows = conn.execute(sql, (user, *ANSWER_EVENTS, conversation_id)).fetchall()
            return [record_from_row(row, self._label) for row in rows]

    def feedback_for(self, record_id: int) -> list[Feedback]:
        """Every feedback on answer `record_id`, oldest first (the last one is in force)."""
        return self.all_feedback([record_id]).get(record_id, [])

    def latest_feedback(self, record_ids: Iterable[int]) -> dict[int, Feedback]:
        """The feedback in force for each of `record_ids` that has any."""
        return {rid: items[-1] for rid, items in self.all_feedback(record_ids).items()}

    def all_feedback(self, record_ids: Iterable[int]) -> dict[int, list[Feedback]]:
        """Every feedback on each of `record_ids` that has any, oldest first."""
        ids = sorted({int(i) for i in record_ids})
        found: dict[int, list[Feedback]] = {}
        if not ids:
            return found
        with self._reader() as conn:
            if conn is None:
                return found
            conn.execute(self._dialect.begin_read)
            target = self._dialect.json_int("records.data", "record_id")
            for start in range(0, len(ids), _BATCH):
                batch = ids[start : start + _BATCH]
                rows = conn.execute(
                    f"SELECT {_COLUMNS} FROM {self._dialect.feedback_records('records')} "
                    f"WHERE event = 'feedback' AND {target} IN ({', '.join('?' * len(batch))}) "
                    "ORDER BY id",
                    batch,
                )
                for row in rows:
                    item = Feedback.of(record_from_row(row, self._label))
                    if item is not None:
                        found.setdefault(item.record_id, []).append(item)
        return found

    def export(self, records: Iterable[AuditRecord], fmt: str, out: TextIO) -> int:
        """Write `records` to `out` as CSV or JSONL (see `audit.export`); return how many."""
        from audit.export import export

        return export(records, fmt, out, self.latest_feedback)

    def head(self) -> tuple[int, str]:
        """(number of records, hash of the newest): write it down elsewhere to anchor the log."""
        with self._reader() as conn:
            if conn is None:
                return 0, GENESIS_HASH
            row = conn.execute("SELECT count, last_hash FROM chain_head").fetchone()
            if row is None:
                raise AuditIntegrityError(
                    f"audit log {self._label}: the chain head row is missing; run verify"
                )
            return int(row[0]), str(row[1])

    def migrate(self) -> int:
        """Create the log's schema, or bring it up to date; return its schema version."""
        with self._writer():
            return SCHEMA_VERSION

    def anchor(self) -> Anchor:
        """The chain head now, to be written down outside the log (`audit.anchors`)."""
        return Anchor.of_head(self.head(), self._label)

    def check_anchors(self, anchors: Sequence[Anchor], source: str) -> AnchorCheck:
        """Whether the log still holds every chain head in `anchors` (from `source`, e.g. the
        anchor file): not cut back below one, nor rewritten or replaced at one."""
        seqs = sorted({a.seq for a in anchors})
        hashes: dict[int, str] = {}
        with self._reader() as conn:
            if conn is None:
                state = ChainState((0, GENESIS_HASH), (0, GENESIS_HASH), hashes)
                return check_anchors(anchors, state, source)
            conn.execute(self._dialect.begin_read)
            count, last_hash = conn.execute("SELECT count, last_hash FROM chain_head").fetchone()
            purged, purged_hash = conn.execute("SELECT count, hash FROM chain_anchor").fetchone()
            for start in range(0, len(seqs), _BATCH):
                batch = seqs[start : start + _BATCH]
                rows = conn.execute(
                    f"SELECT id, hash FROM records WHERE id IN ({', '.join('?' * len(batch))})", batch
                )
                hashes.update((int(rid), str(digest)) for rid, digest in rows)
        state = ChainState((int(count), str(last_hash)), (int(purged), str(purged_hash)), hashes)
        return check_anchors(anchors, state, source)

    def verify(self) -> VerifyResult:
        """Re-compute the whole chain and compare it with the chain head.

        After a retention purge the chain starts at the anchor, which the newest checkpoint record
        must name. Problems with the records are reported in the result, not raised. The log is
        read in one snapshot, so appends running meanwhile do not look like tampering.
        """
        try:
            with self._reader() as conn:
                if conn is None:
                    return VerifyResult(True, 0, None, f"audit log {self._label} holds no records yet")
                conn.execute(self._dialect.begin_read)
                return _verify_in(conn)
        except AuditIntegrityError as exc:
            return VerifyResult(False, 0, None, str(exc))

    def close(self) -> None:
        """Mark the log closed: later calls raise AuditIntegrityError. No connection is held."""
        self._closed = True

    # -- connections -----------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise AuditIntegrityError(f"audit log {self._label} is closed")

    def _connect(self, target: str, *, uri: bool = False) -> sqlite3.Connection:
        # isolation_level=None: transactions are begun and ended explicitly, never implicitly.
        conn = sqlite3.connect(target, timeout=self.busy_timeout_s, isolation_level=None, uri=uri)
        # An answer counts as logged only once its record is on disk.
        conn.execute("PRAGMA synchronous = FULL")
        return conn

    @contextmanager
    def _writer(self) -> Iterator[SqlConnection]:
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
    def _reader(self) -> Iterator[SqlConnection | None]:
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
            _register_functions(conn)
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
                if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
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


def checked_retention(days: int) -> int:
    """`days` if it is a valid minimum retention (a whole number >= 0), else ValueError."""
    if isinstance(days, bool) or not isinstance(days, int) or days < 0:
        raise ValueError(f"retention_days must be a whole number of days >= 0, not {days!r}")
    return days


def _verify_in(conn: SqlConnection) -> VerifyResult:
    """Verify the log as `conn` sees it (inside the caller's transaction, for one snapshot)."""
    heads = conn.execute("SELECT count, last_hash FROM chain_head").fetchall()
    anchors = conn.execute("SELECT count, hash FROM chain_anchor").fetchall()
    allowances = conn.execute("SELECT through FROM purge_allowance").fetchall()
    rows = conn.execute(f"SELECT {_COLUMNS} FROM records ORDER BY id")
    return verify_chain(rows, heads, anchors, allowances)
