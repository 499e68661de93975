"""The `enclave` command end to end, in-process with Typer's CliRunner (real parts underneath)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from enclave.cli import app

pytestmark = pytest.mark.slow


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None):  # type: ignore[no-untyped-def]
        return runner.invoke(app, ["--data-dir", str(tmp_path / "var"), *args], input=input)

    return invoke


def test_help_on_every_command(run) -> None:  # type: ignore[no-untyped-def]
    for args in (
        [],
        ["ingest"],
        ["ask"],
        ["users"],
        ["users", "add"],
        ["audit"],
        ["audit", "verify"],
        ["audit", "show"],
        ["audit", "access"],
        ["config"],
        ["config", "show"],
        ["serve"],
        ["demo"],
        ["sources"],
        ["sources", "add"],
        ["sources", "list"],
        ["sources", "show"],
        ["sources", "sync"],
        ["sources", "remove"],
    ):
        result = run(*args, "--help")
        assert result.exit_code == 0, (args, result.output)
        assert "Usage" in result.output


def test_ingest_ask_audit_through_the_cli(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "leave.md").write_text(
        "# Leave policy\n\n## Annual leave\n\nEvery employee receives 27 days of annual leave per year, "
        "plus public holidays. Unused days expire on 31 March of the following year.\n"
    )
    (docs / "broken.pdf").write_bytes(b"%PDF-1.7\n garbage without any pages")

    result = run("ingest", str(docs), "--groups", "staff", "--json")
    assert result.exit_code == 1, result.output  # one file failed
    report = json.loads(result.stdout)
    by_name = {Path(f["path"]).name: f for f in report["files"]}
    assert by_name["leave.md"]["status"] == "new"
    assert by_name["broken.pdf"]["status"] == "failed" and "broken.pdf" in by_name["broken.pdf"]["error"]

    assert (
        run(
            "users",
            "add",
            "bob",
            "--role",
            "staff",
            "--groups",
            "staff",
            "--password-stdin",
            input="bob-secret-pw\n",
        ).exit_code
        == 0
    )

    result = run("ask", "How many days of annual leave do employees get?", "--user", "bob", "--json")
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert answer["mode"] == "extractive"
    assert "27 days" in answer["answer"]
    cite = answer["citations"][0]
    assert {"n", "source", "page", "chunk_id"} <= cite.keys()
    assert cite["source"] == str((docs / "leave.md").resolve())

    result = run("audit", "show", "--last", "1", "--json")
    records = json.loads(result.stdout)
    assert records[0]["user"] == "bob" and records[0]["question"].startswith("How many days")

    result = run("audit", "search", "--event", "ingest", "--json")  # the ingest is audited too (issue 17)
    (ingested,) = json.loads(result.stdout)
    assert [f["path"] for f in ingested["data"]["added"]] == [str((docs / "leave.md").resolve())]
    assert [f["path"] for f in ingested["data"]["failed"]] == [str((docs / "broken.pdf").resolve())]

    result = run("audit", "search", "--event", "user_changed", "--json")  # who may read what (issue 18)
    (added,) = json.loads(result.stdout)
    assert added["user"] == "bob" and (added["data"]["groups"], added["data"]["created"]) == (["staff"], True)

    result = run("audit", "verify")
    assert result.exit_code == 0 and "3 records verified" in result.output

    db = sqlite3.connect(tmp_path / "var" / "audit.sqlite3")
    for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
        db.execute(f"DROP TRIGGER {name}")
    db.execute("UPDATE records SET user = 'mallory'")
    db.commit()
    db.close()
    result = run("audit", "verify")
    assert result.exit_code == 1 and "record 1" in result.output


def test_ask_as_unknown_user_fails_clearly(run) -> None:  # type: ignore[no-untyped-def]
    result = run("ask", "anything", "--user", "ghost")
    assert result.exit_code == 1
    assert "unknown user 'ghost'" in result.output


def test_config_show_names_sources(run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "enclave.yaml").write_text("retrieval:\n  top_k: 4\n")
    monkeypatch.setenv("ENCLAVE_UI__ORG_NAME", "Harbourview")
    result = run("config", "show", "--json")
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["retrieval.top_k"] == {"value": 4, "source": "file"}
    assert shown["ui.org_name"] == {"value": "Harbourview", "source": "env"}
    assert shown["data_dir"]["source"] == "cli"


def test_config_typo_is_an_error_naming_the_key(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "enclave.yaml").write_text("llm:\n  base_ulr: http://127.0.0.1:8000/v1\n")
    result = run("config", "show")
    assert result.exit_code == 1
    assert "llm.base_ulr" in result.output


def test_config_show_masks_secrets_and_names_their_source(  # type: ignore[no-untyped-def]
    run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "enclave.yaml").write_text(
        "audit:\n  backend: postgres\n  dsn: host=db user=enclave password=s3cret-dsn\n"
    )
    monkeypatch.setenv("ENCLAVE_LLM__API_KEY", "sk-live-s3cret")
    shown = run("config", "show", "--json")
    assert shown.exit_code == 0, shown.output
    assert "s3cret" not in shown.output
    values = json.loads(shown.stdout)
    assert values["audit.dsn"] == {"value": "********", "source": "file"}
    assert values["llm.api_key"] == {"value": "********", "source": "env"}
    assert values["audit.owner_dsn"] == {"value": None, "source": "default"}
    text = run("config", "show")
    assert text.exit_code == 0 and "s3cret" not in text.output
    assert 'llm.api_key = "********"  (env)' in text.output


# -- enclave demo: only in a folder of its own -------------------------------------------------------


def listing(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_demo_refuses_a_data_folder_in_real_use(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    var = tmp_path / "var"
    added = run("users", "add", "bea", "--role", "admin", "--groups", "staff", "--password-stdin",
                input="a long enough password\n")  # fmt: skip
    assert added.exit_code == 0, added.output
    before = listing(var)
    result = run("demo", "--no-serve")
    assert result.exit_code == 1
    assert f"the data folder {var} is not empty and was not made by `enclave demo`" in result.output
    assert f"--data-dir {var}-demo" in result.output
    assert listing(var) == before  # no demo user, no marker, no store: nothing was added


def test_demo_refuses_settings_that_put_its_data_in_shared_stores(  # type: ignore[no-untyped-def]
    run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENCLAVE_AUDIT__BACKEND", "postgres")
    monkeypatch.setenv("ENCLAVE_AUDIT__DSN", "host=db.example user=enclave")
    monkeypatch.setenv("ENCLAVE_STORE__MODE", "http")
    result = run("demo", "--no-serve")
    assert result.exit_code == 1
    assert "store.mode is http" in result.output and "audit.backend is postgres" in result.output
    assert not (tmp_path / "var").exists()


def test_demo_runs_again_in_its_own_folder_and_only_while_it_holds_demo_data(  # type: ignore[no-untyped-def]
    run, tmp_path: Path, embedder: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from enclave import wiring
    from enclave.demo import DEMO_MARKER, DEMO_USERS
    from tests.support.cli import shared_embedder

    monkeypatch.setattr(wiring, "build_embedder", shared_embedder(embedder))
    monkeypatch.setenv("ENCLAVE_INGEST__PARSE_TIMEOUT_S", "0")
    var = tmp_path / "var"
    first = run("demo", "--no-serve")
    assert first.exit_code == 0, first.output
    assert (var / DEMO_MARKER).is_file()
    ingests = json.loads(run("audit", "search", "--event", "ingest", "--json").stdout)  # audited too
    assert ingests and all(r["data"]["started_by"]["via"] == "command line" for r in ingests)
    assert sum(len(r["data"]["added"]) for r in ingests) > 0
    again = run("demo", "--no-serve")  # its own folder: incremental, nothing new
    assert again.exit_code == 0, again.output
    (var / DEMO_MARKER).unlink()  # as a demo folder made before the marker was
    earlier = run("demo", "--no-serve")
    assert earlier.exit_code == 0, earlier.output
    assert (var / DEMO_MARKER).is_file()  # recognised by its demo users and documents alone

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "pay.md").write_text("# Pay\n\nSalaries are paid on the 25th.\n")
    assert run("ingest", str(docs), "--groups", "staff").exit_code == 0
    refused = run("demo", "--no-serve")
    assert refused.exit_code == 1
    assert f"{var} was made by `enclave demo` but now holds other data" in refused.output
    assert "documents not from the demo corpus" in refused.output and "pay.md" in refused.output

    added = run(
        "users", "add", "bea", "--groups", "staff", "--password-stdin", input="a long enough password\n"
    )
    assert added.exit_code == 0
    refused = run("demo", "--no-serve")
    assert refused.exit_code == 1 and "users not as the demo made them: bea" in refused.output
    names = {u["name"] for u in json.loads(run("users", "list", "--json").stdout)}
    assert names == {name for name, *_ in DEMO_USERS} | {"bea"}  # no demo user was added or changed
    (var / DEMO_MARKER).unlink()
    assert run("demo", "--no-serve").exit_code == 1  # nor is it taken for an earlier demo's folder
