"""`enclave doctor` and the last ingest report, end to end through the CLI (CliRunner, real parts)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from enclave import wiring
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


def test_doctor_says_the_int8_copy_is_not_made_yet(  # type: ignore[no-untyped-def]
    run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ENCLAVE_EMBEDDING__CACHE_DIR")  # the default, <data_dir>/models
    monkeypatch.setenv("ENCLAVE_EMBEDDING__BACKEND", "onnx-int8")  # whatever `auto` picks here
    result = run("doctor", "--json")
    assert result.exit_code == 0, result.output
    check = json.loads(result.stdout)["checks"][0]
    assert check["ok"] is True and check["warn"] is False
    assert check["figures"]["onnx_exported"] is False
    models = tmp_path / "var" / "models"
    assert f"the first ingest or web UI start exports it to {models}/" in check["detail"]
    assert not models.exists()  # doctor exports nothing


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


def test_doctor_warns_of_documents_embedded_by_another_model(  # type: ignore[no-untyped-def]
    run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, onnx_embedder: Any, torch_embedder: Any
) -> None:
    """A store filled by onnx-int8, then the settings switched to torch-fp32 (as an upgrade, or a
    move to a CPU where `auto` picks the other family, switches): doctor passes with a warning
    naming the count and the fix, and the next ingest embeds the document again, which ends it."""
    embedder = onnx_embedder
    monkeypatch.setattr(
        wiring,
        "build_embedder",
        lambda s: torch_embedder if s.embedding.backend == "torch-fp32" else embedder,
    )  # the session's models; a CLI run would load its own
    monkeypatch.setenv("ENCLAVE_EMBEDDING__BACKEND", "onnx-int8")
    monkeypatch.setenv("ENCLAVE_INGEST__PARSE_TIMEOUT_S", "0")
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "leave.md").write_text("# Leave\n\nEvery employee receives 27 days of annual leave per year.\n")
    assert run("ingest", str(docs), "--groups", "staff").exit_code == 0
    result = run("doctor")
    assert result.exit_code == 0, result.output
    assert result.stdout.rstrip().endswith("all checks pass")  # no warning

    monkeypatch.setenv("ENCLAVE_EMBEDDING__BACKEND", "torch-fp32")
    result = run("doctor")
    assert result.exit_code == 0, result.output
    [line] = [x for x in result.stdout.splitlines() if x.startswith("warn")]
    assert line.startswith("warn  embedding model ")
    assert (
        f"warning: 1 indexed document embedded by another model (1 by {embedder.model_id}), "
        f"not {torch_embedder.model_id}: `enclave ingest` of their folders (or `enclave docs reindex`)"
    ) in line
    assert result.stdout.rstrip().endswith("all checks pass (1 with a warning)")
    report = json.loads(run("doctor", "--json").stdout)
    check = report["checks"][0]
    assert report["ok"] is True and check["ok"] is True and check["warn"] is True
    assert check["figures"]["other_model_documents"] == 1
    assert check["figures"]["embedder"] == torch_embedder.model_id

    again = json.loads(run("ingest", str(docs), "--groups", "staff", "--json").stdout)
    assert [f["status"] for f in again["files"]] == ["changed"]  # embedded again, by torch-fp32
    result = run("doctor")
    assert result.exit_code == 0 and result.stdout.rstrip().endswith("all checks pass"), result.output
