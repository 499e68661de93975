"""audit.backend picks the log's backend; a bad or unreachable PostgreSQL setting is named."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from audit import AuditLog
from audit.postgres import PostgresAuditLog
from core.errors import AuditIntegrityError, ConfigError
from core.settings import Settings
from enclave.wiring import build_audit


def test_sqlite_is_the_default(settings: Settings) -> None:
    log = build_audit(settings)
    assert type(log) is AuditLog
    assert log.path == settings.audit_path


def test_postgres_needs_exactly_one_of_dsn_and_dsn_file(settings: Settings, tmp_path: Path) -> None:
    settings.audit.backend = "postgres"
    with pytest.raises(ConfigError, match=r"audit\.dsn and audit\.dsn_file"):
        build_audit(settings)
    settings.audit.dsn = "host=127.0.0.1"
    settings.audit.dsn_file = tmp_path / "dsn"
    with pytest.raises(ConfigError, match=r"exactly one of audit\.dsn and audit\.dsn_file"):
        build_audit(settings)


def test_dsn_file_is_read_and_its_password_kept_out_of_messages(settings: Settings, tmp_path: Path) -> None:
    settings.audit.backend = "postgres"
    settings.audit.dsn_file = tmp_path / "missing"
    with pytest.raises(ConfigError, match=r"audit\.dsn_file .*missing cannot be read"):
        build_audit(settings)
    (tmp_path / "dsn").write_text("host=127.0.0.1 port=1 dbname=audit user=enclave password=s3cret\n")
    settings.audit.dsn_file = tmp_path / "dsn"
    log = build_audit(settings)
    assert isinstance(log, PostgresAuditLog)
    assert "s3cret" not in repr(log)


def test_an_unreachable_server_is_an_error_naming_the_setting(settings: Settings) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings.audit.backend = "postgres"
    settings.audit.dsn = f"host=127.0.0.1 port={port} dbname=audit user=enclave password=s3cret"
    log = build_audit(settings)
    with pytest.raises(AuditIntegrityError, match=r"cannot connect .* check audit\.dsn") as caught:
        log.append("answer", "alice")
    assert "s3cret" not in str(caught.value)
    result = log.verify()
    assert not result.ok
    assert "audit.dsn" in result.reason
