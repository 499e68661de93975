"""The PostgreSQL audit log with the deploy files' two roles (deploy/postgres/audit-roles.sql, run
with psql on a real throwaway server): the owner creates the schema (`enclave audit migrate`) and
purges; the app's role reads and appends, and cannot rewrite the log in any other way, nor shadow
the tables the triggers read with temporary ones of its own."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner

from audit.postgres import PostgresAuditLog
from core.errors import AuditIntegrityError
from enclave.cli import app
from tests.support.audit_backends import PostgresBackend, append_backdated

ROLES_SQL = Path(__file__).resolve().parents[2] / "deploy" / "postgres" / "audit-roles.sql"
GENESIS = "0" * 64


@pytest.fixture(scope="module")
def roles(postgres_server: Any) -> dict[str, str]:
    """The DSNs of the two roles, once the deploy script has made them."""
    done = subprocess.run(
        [str(postgres_server.bindir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1",
         "-v", "owner_password=owner-secret", "-v", "app_password=app-secret",
         "-d", postgres_server.dsn, "-f", str(ROLES_SQL)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    base = f"host=127.0.0.1 port={postgres_server.port} dbname=postgres"
    return {"owner": f"{base} user=enclave_audit_owner", "app": f"{base} user=enclave_app"}


@pytest.fixture
def cli_env(roles: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ENCLAVE_AUDIT__BACKEND", "postgres")
    monkeypatch.setenv("ENCLAVE_AUDIT__DSN", roles["app"])
    monkeypatch.setenv("ENCLAVE_AUDIT__OWNER_DSN", roles["owner"])
    monkeypatch.setenv("ENCLAVE_NETWORK__ALLOWED_HOSTS", '["127.0.0.1"]')
    return tmp_path / "var"


def enclave(data_dir: Path, *args: str) -> Any:
    return CliRunner().invoke(app, ["--data-dir", str(data_dir), *args])


@pytest.fixture(scope="module")
def migrated(roles: dict[str, str]) -> Iterator[dict[str, str]]:
    """Before migrate the app cannot start; then `enclave audit migrate` sets the schema up."""
    app_log = PostgresAuditLog(roles["app"], setting="audit.dsn_file (/run/secrets/audit_dsn)")
    with pytest.raises(AuditIntegrityError) as refused:
        app_log.check_writable()  # what `enclave serve` checks before it starts
    message = str(refused.value)
    assert "holds no audit log yet" in message and "audit.dsn_file (/run/secrets/audit_dsn)" in message
    assert "run `enclave audit migrate` as the owner role (audit.owner_dsn_file)" in message
    assert app_log.head() == (0, GENESIS)  # reading an absent log is an empty one
    yield roles


def raw(dsn: str) -> Any:
    return psycopg.connect(dsn, autocommit=True)


def test_migrate_as_the_owner_then_the_app_appends(migrated: dict[str, str], cli_env: Path) -> None:
    result = enclave(cli_env, "audit", "migrate")
    assert result.exit_code == 0, result.output
    assert "is at schema version 2; enclave_app may read and append only" in result.output
    assert "warning" not in result.output

    log = PostgresAuditLog(migrated["app"])
    log.check_writable()
    record = log.append("answer", "alice", "How much leave?", data={"answer": "25 days"})
    assert log.get(record.id) == record and log.verify().ok

    with raw(migrated["owner"]) as conn:
        owners = conn.execute(
            "SELECT DISTINCT pg_get_userbyid(relowner) FROM pg_class "
            "WHERE relnamespace = 'enclave_audit'::regnamespace"
        ).fetchall()
        pinned = conn.execute(
            "SELECT proname, proconfig FROM pg_proc WHERE pronamespace = 'enclave_audit'::regnamespace "
            "AND proname LIKE 'enclave_audit_%'"
        ).fetchall()
    assert owners == [("enclave_audit_owner",)]
    assert pinned and all(config == ["search_path=enclave_audit, pg_temp"] for _, config in pinned)


REFUSED = [
    ("UPDATE records SET question = 'edited'", "permission denied"),
    ("DELETE FROM records", "permission denied"),
    ("TRUNCATE records", "permission denied"),
    ("TRUNCATE chain_head", "permission denied"),
    ("ALTER TABLE records DISABLE TRIGGER ALL", "must be owner"),
    ("ALTER TABLE records DISABLE TRIGGER records_guard", "must be owner"),
    ("ALTER TABLE records ADD COLUMN note text", "must be owner"),
    ("DROP TRIGGER records_guard ON records", "must be owner"),
    ("DROP TABLE records", "must be owner"),
    ("ALTER FUNCTION enclave_audit_records_guard() RESET search_path", "must be owner"),
    ("CREATE OR REPLACE FUNCTION enclave_audit_records_guard() RETURNS trigger LANGUAGE plpgsql "
     "AS $$ BEGIN RETURN NEW; END $$", "must be owner|permission denied"),
    ("INSERT INTO purge_allowance (singleton, through) VALUES (1, 1)", "permission denied"),
    ("UPDATE chain_anchor SET count = 1", "permission denied"),
    ("DELETE FROM chain_head", "permission denied"),
    ("UPDATE chain_head SET count = 0, last_hash = '" + GENESIS + "'", "chain head may only advance"),
    ("CREATE TABLE enclave_audit.records_copy (id bigint)", "permission denied"),
    ("SET session_replication_role = replica", "permission denied"),
]  # fmt: skip


@pytest.mark.parametrize(("statement", "refusal"), REFUSED, ids=[s for s, _ in REFUSED])
def test_the_app_role_cannot_rewrite_the_log(migrated: dict[str, str], statement: str, refusal: str) -> None:
    PostgresAuditLog(migrated["owner"]).migrate("enclave_app")
    log = PostgresAuditLog(migrated["app"])
    log.append("answer", "alice", "before the attack")
    before = log.head()

    with raw(migrated["app"]) as conn, pytest.raises(psycopg.Error, match=refusal):
        conn.execute(statement)

    assert log.head() == before and log.verify().ok


def shadow_and_append(dsn: str, schema: str) -> None:
    """As the role of `dsn`: temporary tables named like the log's, holding a head that says
    what the caller likes, then an append of a record that does not extend the real chain."""
    with raw(dsn) as conn:
        conn.execute("CREATE TEMP TABLE chain_head (singleton int, count bigint, last_hash text)")
        conn.execute("INSERT INTO pg_temp.chain_head VALUES (1, 999, 'forged')")
        conn.execute(
            f'INSERT INTO {schema}.records (id, ts, event, "user", question, error, data, prev_hash, hash) '
            "VALUES (1000, '2020-01-01T00:00:00.000000+00:00', 'answer', 'mallory', 'q', NULL, '{}', "
            "'forged', 'forged')"
        )


def test_temporary_tables_do_not_shadow_the_tables_the_triggers_read(migrated: dict[str, str]) -> None:
    PostgresAuditLog(migrated["owner"]).migrate("enclave_app")
    with raw(migrated["app"]) as conn:  # the app role may create temporary tables (PUBLIC may)
        assert conn.execute("SELECT has_database_privilege(current_database(), 'TEMP')").fetchone() == (True,)

    with pytest.raises(psycopg.errors.IntegrityConstraintViolation, match="must extend the chain head"):
        shadow_and_append(migrated["app"], "enclave_audit")

    assert PostgresAuditLog(migrated["app"]).verify().ok


def test_without_the_pinned_search_path_the_shadow_gets_through(postgres_server: Any) -> None:
    """The control for the test above: the same attack on a log whose trigger function is not
    pinned succeeds, so the test above would see the pin missing."""
    backend = PostgresBackend(postgres_server.fresh_dsn())
    backend.open().migrate()
    schema = backend.rows("SELECT current_schema()")[0][0]
    backend.sql((f"ALTER FUNCTION {schema}.enclave_audit_records_guard() RESET search_path", ()))

    shadow_and_append(backend.dsn, schema)

    assert backend.rows('SELECT id, "user" FROM records') == [(1000, "mallory")]
    assert not backend.open().verify().ok


def test_an_old_schema_asks_for_migrate_instead_of_changing_it(migrated: dict[str, str]) -> None:
    owner = PostgresAuditLog(migrated["owner"])
    owner.migrate("enclave_app")
    with raw(migrated["owner"]) as conn:
        conn.execute("UPDATE audit_schema SET version = 1")
    try:
        with pytest.raises(
            AuditIntegrityError, match="has schema version 1, and this Enclave needs version 2"
        ):
            PostgresAuditLog(migrated["app"]).append("answer", "alice", "q")
    finally:
        owner.migrate("enclave_app")
    with raw(migrated["owner"]) as conn:
        assert conn.execute("SELECT version FROM audit_schema").fetchone() == (2,)


@pytest.fixture
def own_schema(
    roles: dict[str, str], postgres_server: Any, cli_env: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """The two roles' DSNs on a schema of this test's own, made as the roles script makes its one."""
    schema = "enclave_audit_" + uuid.uuid4().hex[:8]
    with raw(postgres_server.dsn) as conn:
        conn.execute(f"CREATE SCHEMA {schema} AUTHORIZATION enclave_audit_owner")
        conn.execute(f"GRANT USAGE ON SCHEMA {schema} TO enclave_app")
    dsns = {role: f"{dsn} options='-csearch_path={schema}'" for role, dsn in roles.items()}
    monkeypatch.setenv("ENCLAVE_AUDIT__DSN", dsns["app"])
    monkeypatch.setenv("ENCLAVE_AUDIT__OWNER_DSN", dsns["owner"])
    return dsns


def test_only_the_owner_purges(own_schema: dict[str, str], cli_env: Path) -> None:
    assert enclave(cli_env, "audit", "migrate").exit_code == 0
    append_backdated(PostgresBackend(own_schema["owner"]), [400, 400])
    app_log = PostgresAuditLog(own_schema["app"])
    app_log.append("answer", "alice", "recent")

    with pytest.raises(AuditIntegrityError, match="permission denied"):
        app_log.purge(datetime.now(UTC) - timedelta(days=370), "mallory")
    assert app_log.head()[0] == 3

    result = enclave(cli_env, "audit", "purge", "--yes")
    assert result.exit_code == 0, result.output
    assert "purged records 1–2" in result.output
    assert app_log.verify().ok
    assert enclave(cli_env, "audit", "verify").exit_code == 0


def test_purge_without_the_owner_dsn_says_what_to_set(
    migrated: dict[str, str], cli_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ENCLAVE_AUDIT__OWNER_DSN")
    result = enclave(cli_env, "audit", "purge", "--yes")
    assert result.exit_code == 1
    assert "purge runs as the role that owns the audit tables: set audit.owner_dsn_file" in result.output
