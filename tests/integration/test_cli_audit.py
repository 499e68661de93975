"""`enclave audit search|export|purge|verify` end to end, in-process with Typer's CliRunner, on a
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


def test_purge_needs_an_age_and_yes_then_leaves_a_verifiable_log(data_dir: Path, log: AuditLog) -> None:
    result = run(data_dir, "purge")
    assert result.exit_code == 1 and "pass --older-than DAYS" in result.output

    result = run(data_dir, "purge", "--older-than", "30")
    assert result.exit_code == 0 and "nothing to purge" in result.output

    result = run(data_dir, "purge", "--before", "2999-01-01")
    assert result.exit_code == 1
    assert "would purge records 1–4" in result.output and "add --yes" in result.output
    assert log.head()[0] == 4  # nothing done

    result = run(data_dir, "purge", "--before", "2999-01-01", "--older-than", "3")
    assert result.exit_code == 1 and "not both" in result.output

    result = run(data_dir, "purge", "--before", "2999-01-01", "--yes")
    assert result.exit_code == 0, result.output
    assert "purged records 1–4" in result.output and "checkpoint record 5" in result.output
    checkpoint = log.get(5)
    assert checkpoint is not None and checkpoint.event == "checkpoint"
    assert checkpoint.user.startswith("cli:")

    result = run(data_dir, "verify")
    assert result.exit_code == 0, result.output
    assert "1 records verified (records 1–4 purged by retention)" in result.output
    assert f"head: 5 {log.head()[1]}" in result.output


def test_purge_uses_the_retention_setting(
    data_dir: Path, log: AuditLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENCLAVE_AUDIT__RETENTION_DAYS", "400")
    result = run(data_dir, "purge", "--yes")
    assert result.exit_code == 0, result.output
    assert "nothing to purge" in result.output  # every record is younger than 400 days

    monkeypatch.setenv("ENCLAVE_AUDIT__RETENTION_DAYS", "-1")
    result = run(data_dir, "purge", "--yes")
    assert result.exit_code == 1 and "audit.retention_days" in result.output


def test_audit_help_lists_the_commands(data_dir: Path) -> None:
    result = run(data_dir, "--help")
    for command in ("verify", "show", "search", "export", "purge"):
        assert command in result.output
    for command in ("search", "export", "purge"):
        assert run(data_dir, command, "--help").exit_code == 0
