"""`enclave audit access NAME`: what a user could read, and was shown, on a day, end to end in-process
(Typer's CliRunner) over a real audit log file, the user changed by the real `enclave users add`."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from audit import AuditLog

PASSWORD = "a long enough password\n"


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path / "var"


def run(data_dir: Path, *args: str, input: str | None = None) -> Any:
    from enclave.cli import app

    return CliRunner().invoke(app, ["--data-dir", str(data_dir), *args], input=input)


def doc(path: str, doc_id: str, *groups: str) -> dict[str, Any]:
    return {"path": path, "doc_id": doc_id, "sha256": doc_id * 2, "groups": list(groups)}


def test_users_add_is_audited_and_access_tells_what_was_readable_and_shown(data_dir: Path) -> None:
    start = datetime.now(UTC).isoformat()
    added = run(data_dir, "users", "add", "ann", "--groups", "hr", "--password-stdin", input=PASSWORD)
    assert added.exit_code == 0, added.output
    log = AuditLog(data_dir / "audit.sqlite3")
    (created,) = log.search(event="user_changed")
    assert created.user == "ann" and created.data["created"] is True
    assert (created.data["groups"], created.data["groups_before"]) == (["hr"], None)
    assert "password" not in json.dumps(created.data) and "scrypt" not in json.dumps(created.data)
    assert f"(audit record {created.id})" in added.output

    log.append("ingest", "cli:root", data={"paths": ["/d"], "added": [doc("/d/hr.md", "h1" * 16, "hr"),
               doc("/d/pay.md", "p1" * 16, "finance")]})  # fmt: skip
    log.append("answer", "ann", "Leave days?", data={"answer": "25 [1].", "groups": ["hr"], "role": "staff",
               "citations": [{"n": 1, "doc_id": "h1" * 16, "source": "/d/hr.md", "title": "Leave"}]})  # fmt: skip
    moved = run(data_dir, "users", "add", "ann", "--groups", "finance", "--password-stdin", input=PASSWORD)
    assert moved.exit_code == 0, moved.output
    changed = log.search(event="user_changed")[0]
    assert (changed.data["created"], changed.data["groups_before"], changed.data["groups"]) == (
        False, ["hr"], ["finance"],
    )  # fmt: skip
    log.append(
        "document_removed", "cli:root", data={"doc_id": "p1" * 16, "title": "Pay", "groups": ["finance"]}
    )
    end = datetime.now(UTC).isoformat()

    result = run(data_dir, "audit", "access", "ann", "--since", start, "--until", end, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    standings = report["standings"]
    assert [(s["event"], s["groups"]) for s in standings] == [
        (None, None), ("user_changed", ["hr"]), ("user_changed", ["finance"]),
    ]  # fmt: skip
    assert [d["doc_id"] for d in standings[1]["documents"]] == ["h1" * 16]
    (pay,) = standings[2]["documents"]  # readable from the change until its removal
    assert (pay["doc_id"], pay["label"], pay["end"]) == ("p1" * 16, "Pay", log.last(1)[0].ts)
    assert report["unknown"] is True  # before the first record, nothing says
    (answer,) = report["shown"]
    assert answer["question"] == "Leave days?"
    assert answer["documents"] == [{"doc_id": "h1" * 16, "label": "Leave", "readable": True}]

    today = datetime.now(UTC).date().isoformat()
    table = run(data_dir, "audit", "access", "ann", "--on", today, "--limit", "1")
    assert table.exit_code == 0, table.output
    assert "groups UNKNOWN" in table.stdout and "groups finance (local, user_changed #" in table.stdout
    assert "1 documents readable" in table.stdout and "Leave days?" in table.stdout
    assert "cited: Leave (" in table.stdout


def test_a_user_change_that_cannot_be_audited_is_not_made(data_dir: Path) -> None:
    (data_dir / "audit.sqlite3").mkdir(parents=True)  # the log cannot be opened
    refused = run(data_dir, "users", "add", "ann", "--groups", "hr", "--password-stdin", input=PASSWORD)
    assert refused.exit_code == 1
    assert "audit log" in refused.output and "Traceback" not in refused.output
    assert not (data_dir / "users.json").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ann", "--on", "2026-13-01"], "--on: '2026-13-01' is not a date; use YYYY-MM-DD"),
        (["ann", "--on", "yesterday"], "--on: 'yesterday' is not a date"),
        (["ann", "--since", "soon"], "since: 'soon' is not a date or time"),
        (["ann"], "give the day (--on YYYY-MM-DD)"),
        (["ann", "--on", "2026-12-07", "--since", "2026-12-01"], "either --on DAY or --since/--until"),
        (["nobody", "--on", "2026-12-07"], "user 'nobody': no audit record names this user"),
    ],
)
def test_bad_input_is_one_clear_line_naming_it(data_dir: Path, args: list[str], message: str) -> None:
    AuditLog(data_dir / "audit.sqlite3").append("sign_in", "ann", data={"method": "password"})
    result = run(data_dir, "audit", "access", *args)
    assert result.exit_code == 1
    assert message in result.output and "Traceback" not in result.output
