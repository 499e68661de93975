"""The audit log's two backends behind one face, so that one test suite runs on both.

`AuditBackend.open()` gives the log; `sql`/`rows` reach its tables directly, as someone with
write access to the file or the database would (statements use `?` placeholders on both).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from audit import AuditLog

TABLES = ("records", "chain_head", "chain_anchor", "purge_allowance")


class AuditBackend:
    name: str
    refused: type[Exception]  # what a trigger's refusal raises on a direct connection

    where: str  # how the log's messages name it

    def open(self) -> AuditLog:
        raise NotImplementedError

    def exists(self) -> bool:
        """Whether anything of the log was created (the file, the schema)."""
        raise NotImplementedError

    def sql(self, *statements: tuple[str, tuple[Any, ...]], drop_triggers: bool = False) -> None:
        raise NotImplementedError

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return self.name


class SqliteBackend(AuditBackend):
    name = "sqlite"
    refused = sqlite3.IntegrityError

    def __init__(self, path: Path) -> None:
        self.path = path
        self.where = str(path)

    def exists(self) -> bool:
        return self.path.exists()

    def open(self) -> AuditLog:
        return AuditLog(self.path)

    def sql(self, *statements: tuple[str, tuple[Any, ...]], drop_triggers: bool = False) -> None:
        conn = sqlite3.connect(self.path, isolation_level=None)
        try:
            if drop_triggers:
                for (name,) in conn.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'trigger'"
                ).fetchall():
                    conn.execute(f"DROP TRIGGER {name}")
            for statement, params in statements:
                conn.execute(statement, params)
        finally:
            conn.close()

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        conn = sqlite3.connect(self.path)
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()


class PostgresBackend(AuditBackend):
    name = "postgres"

    def __init__(self, dsn: str) -> None:
        import psycopg

        from audit.postgres import describe_dsn

        self.dsn = dsn
        self.where = describe_dsn(dsn)
        self.refused = psycopg.errors.IntegrityConstraintViolation

    def exists(self) -> bool:
        return bool(self.rows("SELECT to_regclass('audit_schema') IS NOT NULL")[0][0])

    def open(self) -> AuditLog:
        from audit.postgres import PostgresAuditLog

        return PostgresAuditLog(self.dsn)

    def _connect(self) -> Any:
        import psycopg

        from audit.postgres import _Connection

        return _Connection(psycopg.connect(self.dsn, autocommit=True))

    def sql(self, *statements: tuple[str, tuple[Any, ...]], drop_triggers: bool = False) -> None:
        conn = self._connect()
        try:
            if drop_triggers:
                triggers = conn.execute(
                    "SELECT t.tgname, c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
                    "WHERE NOT t.tgisinternal AND c.relnamespace = current_schema()::regnamespace"
                ).fetchall()
                for name, table in triggers:
                    conn.execute(f"DROP TRIGGER {name} ON {table}")
            for statement, params in statements:
                conn.execute(statement, params)
        finally:
            conn.conn.close()

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        conn = self._connect()
        try:
            return list(conn.execute(sql, params).fetchall())
        finally:
            conn.conn.close()


def append_backdated(backend: AuditBackend, days_ago: list[float], user: str = "alice") -> None:
    """Append answers written `days_ago` days ago (oldest first), as a log kept that long would
    hold them: each one extends the chain through the log's own triggers, with its true hash. A
    purge's minimum retention (audit.retention_days) can then be tested without waiting."""
    from datetime import UTC, datetime, timedelta

    from audit.query import format_ts
    from audit.records import canonical_json, record_hash

    backend.open().migrate()
    count, last = backend.rows("SELECT count, last_hash FROM chain_head")[0]
    statements: list[tuple[str, tuple[Any, ...]]] = []
    for age in days_ago:
        count += 1
        ts = format_ts(datetime.now(UTC) - timedelta(days=age))
        data = {"answer": f"answer {count}", "conversation_id": f"c{count}"}
        digest = record_hash(count, ts, "answer", user, f"question {count}", None, data, last)
        statements.append(
            (
                'INSERT INTO records (id, ts, event, "user", question, error, data, prev_hash, hash) '
                "VALUES (?, ?, 'answer', ?, ?, NULL, ?, ?, ?)",
                (count, ts, user, f"question {count}", canonical_json(data), last, digest),
            )
        )
        statements.append(("UPDATE chain_head SET count = ?, last_hash = ?", (count, digest)))
        last = digest
    backend.sql(*statements)
