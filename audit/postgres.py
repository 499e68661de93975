"""The audit log on PostgreSQL: the same records, chain, triggers and interface as the SQLite log.

`PostgresAuditLog` is `AuditLog` with PostgreSQL connections: every record is hashed exactly as
docs/audit-format.md documents (the `data` column is `text` holding the canonical JSON, not `jsonb`, so
the hashed bytes are kept), so a log exported from one backend verifies as one from the other.
Replicas of the app on different hosts share one log: appends take a row lock on the chain head
(`SELECT ... FOR UPDATE`) before reading it, so each record links to the true newest one.

The tables are those of the SQLite log (`records`, `chain_head`, `chain_anchor`,
`purge_allowance`) plus `audit_schema` (the schema version), in the first schema of the
connection's `search_path`. PL/pgSQL triggers refuse what the SQLite triggers refuse, and
TRUNCATE as well; their functions pin `search_path` to that schema with pg_temp last, so that
temporary tables cannot stand in for the ones they read. Whoever owns the tables can drop the
triggers, so the app connects as a role that does not (deploy/postgres/audit-roles.sql):
`migrate()`, run as the owner by `enclave audit migrate`, creates or updates the schema and
grants the app's role reading and appending only; the app's role never creates or changes the
schema (it is told to run migrate instead). Purge runs as the owner. Anchors (`audit.anchors`)
catch a log that the owner rewrote.

Differences from SQLite: text search lowers case with the database's `lower()` (ß and final
sigma folded as casefold does) rather than Python's casefold, which differs only for rare letters
such as ligatures; the database must use a UTF-8 locale (C.UTF-8 will do); text cannot hold NUL
characters; purged rows are removed by VACUUM but PostgreSQL's write-ahead log keeps them until
it is recycled.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import psycopg.sql
from psycopg import conninfo, pq

from audit.log import AuditLog, SqlConnection, checked_retention
from audit.query import POSTGRES, Dialect
from audit.records import GENESIS_HASH, AuditRecord
from core.errors import AuditIntegrityError

_PLACEHOLDER = re.compile(r"\?")
_REFUSE = "enclave_audit_refuse"

_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE records (
            id bigint PRIMARY KEY,
            ts text NOT NULL,
            event text NOT NULL,
            "user" text NOT NULL,
            question text NOT NULL,
            error text,
            data text NOT NULL,
            prev_hash text NOT NULL,
            hash text NOT NULL
        )""",
        """CREATE TABLE chain_head (
            singleton integer PRIMARY KEY CHECK (singleton = 1),
            count bigint NOT NULL,
            last_hash text NOT NULL
        )""",
        f"INSERT INTO chain_head (singleton, count, last_hash) VALUES (1, 0, '{GENESIS_HASH}')",
        """CREATE TABLE chain_anchor (
            singleton integer PRIMARY KEY CHECK (singleton = 1),
            count bigint NOT NULL,
            hash text NOT NULL
        )""",
        f"INSERT INTO chain_anchor (singleton, count, hash) VALUES (1, 0, '{GENESIS_HASH}')",
        """CREATE TABLE purge_allowance (
            singleton integer PRIMARY KEY CHECK (singleton = 1),
            through bigint NOT NULL
        )""",
        # The functions the shared SQL calls (audit.query.POSTGRES). IMMUTABLE so that the
        # feedback index can be built on one of them.
        """CREATE FUNCTION enclave_json_int(doc text, key text) RETURNS bigint
        LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
            SELECT CASE WHEN (doc::jsonb ->> key) ~ '^-?[0-9]{1,18}$'
                             AND jsonb_typeof(doc::jsonb -> key) = 'number'
                        THEN (doc::jsonb ->> key)::bigint END
        $$""",
        """CREATE FUNCTION enclave_json_text(doc text, key text) RETURNS text
        LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT doc::jsonb ->> key $$""",
        """CREATE FUNCTION enclave_contains(haystack text, needle text) RETURNS boolean
        LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
            SELECT coalesce(strpos(replace(replace(lower(haystack), 'ß', 'ss'), 'ς', 'σ'), needle) > 0, false)
        $$""",
        'CREATE INDEX records_user ON records ("user", id)',
        "CREATE INDEX records_event ON records (event, id)",
        "CREATE INDEX records_ts ON records (ts)",
        "CREATE INDEX records_error ON records (id) WHERE error IS NOT NULL",
        """CREATE INDEX records_feedback_target ON records (enclave_json_int(data, 'record_id'), id)
        WHERE event = 'feedback'""",
        # Triggers: the same rules, and the same words, as the SQLite log's.
        f"""CREATE FUNCTION {_REFUSE}() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION USING MESSAGE = TG_ARGV[0], ERRCODE = 'integrity_constraint_violation';
        END $$""",
        """CREATE FUNCTION enclave_audit_records_guard() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'DELETE' THEN
                IF OLD.id > coalesce((SELECT through FROM purge_allowance), 0) THEN
                    RAISE EXCEPTION 'audit log is append-only: records cannot be deleted'
                        USING ERRCODE = 'integrity_constraint_violation';
                END IF;
                RETURN OLD;
            END IF;
            IF NEW.id IS DISTINCT FROM (SELECT count + 1 FROM chain_head)
               OR NEW.prev_hash IS DISTINCT FROM (SELECT last_hash FROM chain_head) THEN
                RAISE EXCEPTION 'audit log is append-only: a record must extend the chain head'
                    USING ERRCODE = 'integrity_constraint_violation';
            END IF;
            RETURN NEW;
        END $$""",
        """CREATE FUNCTION enclave_audit_head_guard() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.singleton IS DISTINCT FROM 1
               OR NEW.count IS DISTINCT FROM OLD.count + 1
               OR NEW.last_hash IS DISTINCT FROM (SELECT hash FROM records WHERE id = NEW.count) THEN
                RAISE EXCEPTION 'audit log chain head may only advance to the newest record'
                    USING ERRCODE = 'integrity_constraint_violation';
            END IF;
            RETURN NEW;
        END $$""",
        """CREATE FUNCTION enclave_audit_allowance_guard() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
            newest records%ROWTYPE;
        BEGIN
            SELECT * INTO newest FROM records WHERE id = (SELECT count FROM chain_head);
            IF NEW.singleton IS DISTINCT FROM 1
               OR NEW.through <= (SELECT count FROM chain_anchor)
               OR newest.event IS DISTINCT FROM 'checkpoint'
               OR (newest.data::jsonb -> 'purged_through') IS DISTINCT FROM to_jsonb(NEW.through)
               OR (newest.data::jsonb ->> 'anchor_hash')
                  IS DISTINCT FROM (SELECT hash FROM records WHERE id = NEW.through) THEN
                RAISE EXCEPTION 'audit log purge must be vouched for by a checkpoint record at the chain head'
                    USING ERRCODE = 'integrity_constraint_violation';
            END IF;
            RETURN NEW;
        END $$""",
        """CREATE FUNCTION enclave_audit_anchor_guard() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.singleton IS DISTINCT FROM 1
               OR NEW.count IS DISTINCT FROM (SELECT through FROM purge_allowance)
               OR NEW.hash IS DISTINCT FROM (SELECT hash FROM records WHERE id = NEW.count) THEN
                RAISE EXCEPTION 'audit log anchor may only move to a purge vouched for by a checkpoint'
                    USING ERRCODE = 'integrity_constraint_violation';
            END IF;
            RETURN NEW;
        END $$""",
        "CREATE TRIGGER records_no_update BEFORE UPDATE ON records FOR EACH ROW EXECUTE FUNCTION "
        f"{_REFUSE}('audit log is append-only: records cannot be updated')",
        "CREATE TRIGGER records_guard BEFORE INSERT OR DELETE ON records FOR EACH ROW "
        "EXECUTE FUNCTION enclave_audit_records_guard()",
        "CREATE TRIGGER chain_head_advance BEFORE UPDATE ON chain_head FOR EACH ROW "
        "EXECUTE FUNCTION enclave_audit_head_guard()",
        "CREATE TRIGGER chain_head_no_delete BEFORE DELETE ON chain_head FOR EACH ROW EXECUTE FUNCTION "
        f"{_REFUSE}('audit log chain head cannot be deleted')",
        "CREATE TRIGGER chain_head_no_insert BEFORE INSERT ON chain_head FOR EACH ROW EXECUTE FUNCTION "
        f"{_REFUSE}('audit log chain head cannot be replaced')",
        "CREATE TRIGGER purge_allowance_vouched BEFORE INSERT ON purge_allowance FOR EACH ROW "
        "EXECUTE FUNCTION enclave_audit_allowance_guard()",
        "CREATE TRIGGER purge_allowance_no_update BEFORE UPDATE ON purge_allowance FOR EACH ROW "
        f"EXECUTE FUNCTION {_REFUSE}('audit log purge allowance cannot be changed')",
        "CREATE TRIGGER chain_anchor_advance BEFORE UPDATE ON chain_anchor FOR EACH ROW "
        "EXECUTE FUNCTION enclave_audit_anchor_guard()",
        "CREATE TRIGGER chain_anchor_no_delete BEFORE DELETE ON chain_anchor FOR EACH ROW "
        f"EXECUTE FUNCTION {_REFUSE}('audit log anchor cannot be deleted')",
        "CREATE TRIGGER chain_anchor_no_insert BEFORE INSERT ON chain_anchor FOR EACH ROW "
        f"EXECUTE FUNCTION {_REFUSE}('audit log anchor cannot be replaced')",
        # TRUNCATE fires no row triggers: refuse it on every table.
        *(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} FOR EACH STATEMENT "
            f"EXECUTE FUNCTION {_REFUSE}('audit log tables cannot be truncated')"
            for table in ("records", "chain_head", "chain_anchor", "purge_allowance")
        ),
    ),
    (
        # The trigger functions read the tables by unqualified name. Pinned to the log's own
        # schema with pg_temp last, so that a role that may create temporary tables cannot
        # shadow them (pg_temp is otherwise searched first) and slip an append past the checks.
        r"""DO $$
        DECLARE
            fn regprocedure;
        BEGIN
            FOR fn IN SELECT p.oid::regprocedure FROM pg_proc p
                      WHERE p.pronamespace = current_schema()::regnamespace
                        AND p.proname LIKE 'enclave\_audit\_%'
            LOOP
                EXECUTE format('ALTER FUNCTION %s SET search_path = %I, pg_temp', fn, current_schema());
            END LOOP;
        END $$""",
    ),
)
SCHEMA_VERSION = len(_MIGRATIONS)
# Processes creating the schema together take turns (pg_advisory_xact_lock key).
_MIGRATION_LOCK = 0x656E636C61766531  # "enclave1"


class _Connection:
    """A psycopg connection that takes the shared SQL's `?` placeholders (`SqlConnection`)."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    @property
    def in_transaction(self) -> bool:
        return self.conn.info.transaction_status != pq.TransactionStatus.IDLE

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> psycopg.Cursor[Any]:
        if not parameters:
            return self.conn.execute(sql)
        # The shared SQL holds no literal `?` or `%`; psycopg wants %s and %% .
        return self.conn.execute(_PLACEHOLDER.sub("%s", sql.replace("%", "%%")), list(parameters))


def _one_row(conn: _Connection, sql: str) -> tuple[Any, ...]:
    row = conn.execute(sql).fetchone()
    if row is None:
        raise AuditIntegrityError(f"PostgreSQL returned no row for {sql!r}")
    return tuple(row)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def describe_dsn(dsn: str) -> str:
    """The DSN without its password, for messages."""
    try:
        parts = conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "postgresql (an unreadable DSN)"
    host = parts.get("host") or "localhost"
    port = f":{parts['port']}" if parts.get("port") else ""
    return f"postgresql://{parts.get('user', '') and str(parts['user']) + '@'}{host}{port}/{parts.get('dbname', '')}"


class PostgresAuditLog(AuditLog):
    """The audit log in a PostgreSQL database. Safe to share between threads, processes and hosts.

    Like `AuditLog`, every call opens its own connection and closes it before returning. Writers
    serialise on a row lock on the chain head, waiting up to `busy_timeout_s`; readers see one
    snapshot (REPEATABLE READ). The schema is created on the first append; before that, reads see
    an empty log.
    """

    _dialect: Dialect = POSTGRES
    _begin_write = ("BEGIN", "SELECT count FROM chain_head FOR UPDATE")

    def __init__(
        self,
        dsn: str,
        *,
        busy_timeout_s: float = 30.0,
        connect_timeout_s: int = 10,
        setting: str = "audit.dsn",
        retention_days: int = 0,
        anchor_file: Path | None = None,
    ) -> None:
        self.busy_timeout_s = busy_timeout_s
        self.retention_days = checked_retention(retention_days)
        self.anchor_file = anchor_file
        self._closed = False
        self.dsn = dsn
        self.connect_timeout_s = connect_timeout_s
        self.setting = setting  # named in errors: where the DSN came from
        self._label = describe_dsn(dsn)

    def __repr__(self) -> str:
        return f"PostgresAuditLog({self._label!r})"

    # -- connections -----------------------------------------------------------------------

    def _open(self) -> _Connection:
        try:
            raw = psycopg.connect(self.dsn, autocommit=True, connect_timeout=self.connect_timeout_s)
        except psycopg.Error as exc:
            raise AuditIntegrityError(
                f"cannot connect to the PostgreSQL audit log {self._label}: "
                f"{_one_line(exc)}; check {self.setting} and that the server "
                "is running and reachable"
            ) from exc
        conn = _Connection(raw)
        try:
            conn.execute(
                "SELECT set_config('lock_timeout', ?, false)", [f"{int(self.busy_timeout_s * 1000)}ms"]
            )
        except BaseException:
            raw.close()
            raise
        return conn

    @contextmanager
    def _writer(self) -> Iterator[SqlConnection]:
        self._check_open()
        with self._pg_guarded("cannot write to") as guard:
            conn = self._open()
            guard.append(conn)
            self._setup(conn, create=True)
            yield conn

    @contextmanager
    def _reader(self) -> Iterator[SqlConnection | None]:
        self._check_open()
        with self._pg_guarded("cannot read") as guard:
            conn = self._open()
            guard.append(conn)
            if not self._setup(conn, create=False):
                yield None
                return
            yield conn

    @contextmanager
    def _pg_guarded(self, doing: str) -> Iterator[list[_Connection]]:
        opened: list[_Connection] = []
        try:
            yield opened
        except psycopg.Error as exc:
            raise AuditIntegrityError(
                f"{doing} the PostgreSQL audit log {self._label}: {_one_line(exc)}; check "
                f"{self.setting}, the role's rights, and that the database holds an Enclave audit log"
            ) from exc
        finally:
            for conn in opened:
                conn.conn.close()

    def _version(self, conn: _Connection) -> int:
        # pg_class read with the statement's snapshot, not to_regclass(), whose catalog cache is
        # not refreshed by the advisory lock that processes creating the schema together wait on.
        found = conn.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_class WHERE relname = 'audit_schema' "
            "AND relnamespace = current_schema()::regnamespace)"
        ).fetchone()
        if not (found and found[0]):
            return 0
        row = conn.execute("SELECT version FROM audit_schema").fetchone()
        return 0 if row is None else int(row[0])

    def _setup(self, conn: SqlConnection, *, create: bool) -> bool:
        assert isinstance(conn, _Connection)
        version = self._version(conn)
        if version > SCHEMA_VERSION:
            raise AuditIntegrityError(
                f"audit log {self._label} has schema version {version}, newer than this Enclave "
                f"knows ({SCHEMA_VERSION}); upgrade Enclave to use it"
            )
        if version == SCHEMA_VERSION:
            return True
        if version == 0 and not create:
            return False
        if not self._owns(conn, version):
            state = "holds no audit log yet" if version == 0 else f"has schema version {version}"
            raise AuditIntegrityError(
                f"the PostgreSQL audit log {self._label} {state}, and this Enclave needs version "
                f"{SCHEMA_VERSION}; the role of {self.setting} may not change its schema: run "
                "`enclave audit migrate` as the owner role (audit.owner_dsn_file)"
            )
        self._migrate(conn)
        return True

    def _owns(self, conn: _Connection, version: int) -> bool:
        """Whether the connected role may create the schema (none yet) or change it (owns it)."""
        if version == 0:
            row = conn.execute("SELECT has_schema_privilege(current_schema(), 'CREATE')").fetchone()
        else:
            row = conn.execute(
                "SELECT pg_has_role(c.relowner, 'USAGE') FROM pg_class c "
                "WHERE c.relname = 'audit_schema' AND c.relnamespace = current_schema()::regnamespace"
            ).fetchone()
        return bool(row and row[0])

    def migrate(self, app_role: str | None = None) -> int:
        """Create the schema or bring it up to date, as the role that owns it, and let `app_role`
        (the role the app connects as) read and append, and nothing more; return the version."""
        with self._writer() as conn:
            if app_role is not None:
                self._grant(conn, app_role)
        return SCHEMA_VERSION

    def _grant(self, conn: SqlConnection, role: str) -> None:
        assert isinstance(conn, _Connection)
        me, current = _one_row(conn, "SELECT current_user, current_schema()")
        if role == me:
            return  # the owner has every right already
        who = psycopg.sql.Identifier(role)
        schema = psycopg.sql.Identifier(str(current))
        grants = (
            "GRANT USAGE ON SCHEMA {schema} TO {who}",
            # SELECT ... FOR UPDATE (the append's row lock) needs UPDATE on a column.
            "GRANT SELECT, INSERT ON records TO {who}",
            "GRANT SELECT, UPDATE (count, last_hash) ON chain_head TO {who}",
            "GRANT SELECT ON chain_anchor, purge_allowance, audit_schema TO {who}",
        )
        conn.conn.execute("BEGIN")
        try:
            for grant in grants:
                conn.conn.execute(psycopg.sql.SQL(grant).format(schema=schema, who=who))
            conn.conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.conn.execute("ROLLBACK")
            raise

    def _migrate(self, conn: SqlConnection) -> None:
        assert isinstance(conn, _Connection)
        conn.execute("BEGIN")
        try:
            conn.execute("SELECT pg_advisory_xact_lock(?)", [_MIGRATION_LOCK])
            version = self._version(conn)
            if version == 0:
                conn.execute("CREATE TABLE audit_schema (version integer NOT NULL)")
                conn.execute("INSERT INTO audit_schema (version) VALUES (0)")
            for number, statements in enumerate(_MIGRATIONS[version:], start=version + 1):
                for statement in statements:
                    conn.execute(statement)
                conn.execute("UPDATE audit_schema SET version = ?", [number])
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
        for name, value in (("event", event), ("user", user), ("question", question), ("error", error)):
            # The data column holds JSON, where NUL is escaped; these columns hold it raw.
            if value is not None and "\x00" in value:
                raise ValueError(f"audit {name} holds a NUL character, which PostgreSQL text cannot store")
        return super()._insert(conn, event, user, question, error, payload, stored_data)

    def _prepare_purge(self, conn: SqlConnection) -> None:
        pass  # PostgreSQL has no secure_delete; VACUUM (below) frees the rows' space.

    def _after_purge(self) -> None:
        # The deleted rows stay in the table's pages until VACUUM prunes them.
        with self._writer() as conn:
            conn.execute("VACUUM records")
