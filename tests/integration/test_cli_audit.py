"""`enclave audit search|export|purge|verify|anchor|migrate` end to end, in-process with Typer's CliRunner, on a
real audit log file."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from audit import AuditLog
from enclave.cli import app
from tests.support.audit_backends import SqliteBackend, append_backdated
from tests.unit.test_audit_query import reverify_jsonl


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path / "var"


@pytest.fixture
def log(data_dir: Path) -> AuditLog:
    log = AuditLog(data_dir / "audit.sqlite3")
    log.append("answer", "alice", "How many days of leave?", data={"answer": "25 days [1].",
               "citations": [{"n": 1, "source": "hr/leave.pdf", "page": 3}]})  # fmt: skip
    log.append("answer", "bob", "Budget for 2026?", data={"answer": "4M."})
    log.append("answer_error", "alice", "=1+1 parental leave?", error="LLM unavailable")
    log.feedback("alice", 1, "down", "It is 27 days")
    return log


def run(data_dir: Path, *args: str) -> Any:
    return CliRunner().invoke(app, ["--data-dir", str(data_dir), "audit", *args])


def test_search_prints_a_table_and_json(data_dir: Path, log: AuditLog) -> None:
    result = run(data_dir, "search", "--user", "alice")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines[:-1]] == ["#4", "#3", "#1"]
    assert "ERROR" in lines[1] and "down" in lines[2]
    assert lines[-1] == "3 matching records; shown: 1–3 (newest first)"

    result = run(data_dir, "search", "--feedback", "down", "--json")
    records = json.loads(result.stdout)
    assert [r["id"] for r in records] == [1]
    assert records[0]["feedback"]["comment"] == "It is 27 days"
    assert records[0]["data"]["answer"] == "25 days [1]."

    result = run(data_dir, "search", "--error", "--text", "PARENTAL", "--json")
    assert [r["id"] for r in json.loads(result.stdout)] == [3]
    result = run(data_dir, "search", "--event", "answer", "--event", "feedback", "--limit", "2", "--json")
    assert [r["id"] for r in json.loads(result.stdout)] == [4, 2]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "yesterday"], "since: 'yesterday' is not a date"),
        (["--feedback", "meh"], "feedback: 'meh' is not one of"),
        (["--since", "2025-02-01", "--until", "2025-01-01"], "is after until"),
    ],
)
def test_bad_filters_are_one_clear_line(data_dir: Path, log: AuditLog, args: list[str], message: str) -> None:
    for command in ("search", "export"):
        result = run(data_dir, command, *args)
        assert result.exit_code == 1
        assert message in result.output and "Traceback" not in result.output


def test_export_csv_and_jsonl(data_dir: Path, log: AuditLog, tmp_path: Path) -> None:
    result = run(data_dir, "export", "--user", "alice")  # CSV on standard output
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["id"] for r in rows] == ["1", "3", "4"]  # oldest first; 4 is her feedback
    assert rows[0]["cited sources"] == "[1] hr/leave.pdf p. 3"
    assert rows[0]["feedback"] == "down: It is 27 days"
    assert rows[1]["question"] == "'=1+1 parental leave?"

    out = tmp_path / "exports" / "all.jsonl"
    result = run(data_dir, "export", "--format", "jsonl", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "exported 4 records" in result.output
    assert reverify_jsonl(out.read_text(encoding="utf-8"))[2] == log.head()[1]
    assert [p.name for p in out.parent.iterdir()] == ["all.jsonl"]  # no temporary file left

    result = run(data_dir, "export", "--format", "xml")
    assert result.exit_code == 1 and "--format 'xml' is not one of csv, jsonl" in result.output


@pytest.fixture
def old_log(data_dir: Path) -> AuditLog:
    """Four answers written 400 days ago, and two this week."""
    backend = SqliteBackend(data_dir / "audit.sqlite3")
    append_backdated(backend, [400, 400, 400, 400, 3, 2])
    return backend.open()


def test_purge_needs_yes_then_leaves_a_verifiable_log(data_dir: Path, old_log: AuditLog) -> None:
    result = run(data_dir, "purge", "--older-than", "500")
    assert result.exit_code == 0 and "nothing to purge" in result.output

    result = run(data_dir, "purge")  # audit.retention_days: 365 by default
    assert result.exit_code == 1
    assert "would purge records 1–4" in result.output and "add --yes" in result.output
    assert old_log.head()[0] == 6  # nothing done

    result = run(data_dir, "purge", "--before", "2999-01-01", "--older-than", "3")
    assert result.exit_code == 1 and "not both" in result.output

    result = run(data_dir, "purge", "--yes")
    assert result.exit_code == 0, result.output
    assert "purged records 1–4" in result.output and "checkpoint record 7" in result.output
    checkpoint = old_log.get(7)
    assert checkpoint is not None and checkpoint.event == "checkpoint"
    assert checkpoint.user.startswith("cli:")

    result = run(data_dir, "verify")
    assert result.exit_code == 0, result.output
    assert "3 records verified (records 1–4 purged by retention)" in result.output
    assert f"head: 7 {old_log.head()[1]}" in result.output


def test_purge_refuses_records_younger_than_the_retention_setting(
    data_dir: Path, old_log: AuditLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    for args in (["--older-than", "30"], ["--before", "2999-01-01"]):
        result = run(data_dir, "purge", *args, "--yes")
        assert result.exit_code == 1, result.output
        assert "audit.retention_days is 365, so records written after" in result.output
    assert old_log.head()[0] == 6

    monkeypatch.setenv("ENCLAVE_AUDIT__RETENTION_DAYS", "401")
    result = run(data_dir, "purge", "--yes")
    assert result.exit_code == 0 and "nothing to purge" in result.output  # every record is younger

    monkeypatch.setenv("ENCLAVE_AUDIT__RETENTION_DAYS", "0")
    result = run(data_dir, "purge", "--older-than", "1", "--yes")
    assert result.exit_code == 1
    assert "audit.retention_days is 0, but the audit log" in result.output and "at least 1" in result.output
    assert old_log.head()[0] == 6

    monkeypatch.setenv("ENCLAVE_AUDIT__RETENTION_DAYS", "-1")
    result = run(data_dir, "purge", "--yes")
    assert result.exit_code == 1 and "audit.retention_days" in result.output


def test_anchor_then_verify_with_the_anchor_file(data_dir: Path, log: AuditLog, tmp_path: Path) -> None:
    anchors = tmp_path / "worm" / "anchors.jsonl"
    result = run(data_dir, "anchor", "--out", str(anchors))
    assert result.exit_code == 0, result.output
    line = json.loads(result.stdout.splitlines()[0])
    assert (line["seq"], line["hash"]) == log.head()
    log.append("answer", "carol", "later")
    assert run(data_dir, "anchor", "--out", str(anchors)).exit_code == 0
    assert [json.loads(x)["seq"] for x in anchors.read_text(encoding="utf-8").splitlines()] == [4, 5]

    result = run(data_dir, "verify", "--anchor", str(anchors))
    assert result.exit_code == 0, result.output
    assert "anchors: the log holds the 2 anchors" in result.output

    # Cut back to 3 records by someone who can write the file: consistent, but below the anchors.
    backend = SqliteBackend(data_dir / "audit.sqlite3")
    third = backend.rows("SELECT hash FROM records WHERE id = 3")[0][0]
    backend.sql(
        ("DELETE FROM records WHERE id > 3", ()),
        ("UPDATE chain_head SET count = 3, last_hash = ?", (third,)),
        drop_triggers=True,
    )
    assert run(data_dir, "verify").exit_code == 0
    result = run(data_dir, "verify", "--anchor", str(anchors))
    assert result.exit_code == 1
    assert f"audit log does NOT match the anchor of record 4 in anchor file {anchors}" in result.output
    assert "ends at record 3, below the anchor" in result.output

    anchors.write_text("not json\n", encoding="utf-8")
    result = run(data_dir, "verify", "--anchor", str(anchors))
    assert (
        result.exit_code == 1 and f"anchor file {anchors} line 1 is not a JSON anchor line" in result.output
    )


def test_anchor_refuses_a_broken_log(data_dir: Path, log: AuditLog, tmp_path: Path) -> None:
    SqliteBackend(data_dir / "audit.sqlite3").sql(
        ("UPDATE records SET question = 'edited' WHERE id = 2", ()), drop_triggers=True
    )
    result = run(data_dir, "anchor", "--out", str(tmp_path / "anchors.jsonl"))
    assert result.exit_code == 1 and "not anchoring: audit log BROKEN at record 2" in result.output
    assert not (tmp_path / "anchors.jsonl").exists()


def test_migrate_creates_the_sqlite_schema(data_dir: Path) -> None:
    result = run(data_dir, "migrate")
    assert result.exit_code == 0, result.output
    assert f"audit log {data_dir / 'audit.sqlite3'} is at schema version" in result.output


def test_audit_help_lists_the_commands(data_dir: Path) -> None:
    result = run(data_dir, "--help")
    for command in ("verify", "show", "search", "export", "purge", "anchor", "migrate"):
        assert command in result.output
    for command in ("search", "export", "purge"):
        assert run(data_dir, command, "--help").exit_code == 0
