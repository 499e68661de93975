"""`enclave doctor` and the last ingest report, end to end through the CLI (CliRunner, real parts)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from enclave.cli import app
from tests.support.net import free_port as closed_port

pytestmark = pytest.mark.slow


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()

    def invoke(*args: str):  # type: ignore[no-untyped-def]
        return runner.invoke(app, ["--data-dir", str(tmp_path / "var"), *args])

    return invoke


def test_doctor_passes_on_a_fresh_install_and_fails_on_an_unreachable_llm(  # type: ignore[no-untyped-def]
    run, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = run("doctor", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["ok"] is True
    assert [c["name"] for c in report["checks"]] == [
        "embedding model", "chroma", "lexical index", "audit log", "llm", "disk space", "telemetry",
        "network",
    ]  # fmt: skip
    assert report["checks"][4]["figures"] == {"configured": False}

    url = f"http://127.0.0.1:{closed_port()}/v1"
    monkeypatch.setenv("ENCLAVE_LLM__BASE_URL", url)
    monkeypatch.setenv("ENCLAVE_LLM__MODEL", "deepseek-r1-distill-qwen-7b")
    result = run("doctor")
    assert result.exit_code == 1
    assert f"FAIL  llm              the language model at {url}/models is unreachable" in result.stdout
    assert result.stdout.rstrip().endswith("1 of 8 checks failed")


def test_ingest_keeps_its_report_as_the_last_one(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "leave.md").write_text("# Leave\n\nEvery employee receives 27 days of annual leave per year.\n")
    (docs / "broken.pdf").write_bytes(b"%PDF-1.7\n garbage without any pages")
    out = tmp_path / "report.json"

    result = run("ingest", str(docs), "--groups", "staff", "--report", str(out))
    assert result.exit_code == 1, result.output
    kept = json.loads((tmp_path / "var" / "reports" / "last-ingest.json").read_text(encoding="utf-8"))
    given = json.loads(out.read_text(encoding="utf-8"))
    assert {k: v for k, v in kept.items() if k not in ("finished_at", "paths")} == given
    assert kept["paths"] == [str(docs.resolve())] and kept["counts"]["failed"] == 1
    [failure] = [f for f in kept["files"] if f["status"] == "failed"]
    assert failure["path"].endswith("broken.pdf") and "broken.pdf" in failure["error"]

    # A dry run changes nothing, so it does not replace the last report.
    (docs / "new.md").write_text("# New\n\nA new document.\n")
    assert run("ingest", str(docs), "--groups", "staff", "--dry-run").exit_code == 0
    again = json.loads((tmp_path / "var" / "reports" / "last-ingest.json").read_text(encoding="utf-8"))
    assert again == kept
