"""Each health check (enclave/health.py) on real parts: a real model folder, embedded Chroma and the
lexical index on tmp_path, a real audit log, an LLM endpoint over HTTP (the scripted stub, and a
closed port), the real filesystem. Every check is shown failing for the reason it exists."""

from __future__ import annotations

import shutil
import socket
import sqlite3
from pathlib import Path

import pytest

from audit import AuditLog
from core.health import CheckResult
from core.offline import TELEMETRY_ENV
from core.settings import Settings
from core.types import Chunk
from enclave import health, wiring
from tests.support.openai_stub import scripted_chat_server
from vectorstore.embedding import default_model_path

pytestmark = pytest.mark.slow  # real Chroma, real HTTP


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed again when the block ends: nothing listens


def chunk(doc: str, i: int, groups: tuple[str, ...] = ("staff",)) -> Chunk:
    return Chunk(f"{doc}:{i:04d}", doc, f"text {i} of {doc}", f"/docs/{doc}.md", groups, i)


# -- embedding model -----------------------------------------------------------------------------


def test_the_shipped_embedding_model_is_present_with_its_hashes(settings: Settings) -> None:
    result = health.check_embedding_model(settings, hashes=True)
    assert result.ok, result.detail
    assert result.figures["folder"] == str(default_model_path())
    assert "config.json" in result.figures["sha256"] and len(result.figures["sha256"]["config.json"]) == 64
    assert result.figures["files"] == len(result.figures["sha256"])


def test_a_missing_model_folder_fails_naming_it(settings: Settings, tmp_path: Path) -> None:
    settings.embedding.model_path = tmp_path / "no-such-model"
    result = health.check_embedding_model(settings)
    assert not result.ok
    assert f"{tmp_path / 'no-such-model'} does not exist" in result.detail
    assert "embedding.model_path" in result.detail


def test_a_model_folder_without_weights_fails_naming_what_lacks(settings: Settings, tmp_path: Path) -> None:
    folder = tmp_path / "half-copied"
    shutil.copytree(default_model_path(), folder, ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))
    settings.embedding.model_path = folder
    result = health.check_embedding_model(settings)
    assert not result.ok
    assert "lacks model.safetensors or pytorch_model.bin" in result.detail


# -- Chroma and the lexical index ----------------------------------------------------------------


def test_a_data_folder_before_the_first_ingest_is_fine_and_left_untouched(settings: Settings) -> None:
    chroma, lexical = health.check_chroma(settings), health.check_lexical(settings)
    assert chroma.ok and lexical.ok
    assert "the first ingest creates it" in chroma.detail
    assert not settings.chroma_path.exists() and not settings.lexical_path.exists()


def test_chroma_counts_its_chunks_and_the_lexical_index_in_step(settings: Settings) -> None:
    store = wiring.build_store(settings)
    chunks = [chunk("a", 0), chunk("a", 1), chunk("b", 0, ("finance", "staff"))]
    store.upsert(chunks, [[1.0, 0.0, 0.0]] * 3)
    chroma = health.check_chroma(settings)  # a store of its own, as `enclave doctor` would
    assert chroma.ok and chroma.figures["chunks"] == 3 and chroma.figures["access_classes"] == 2
    lexical = health.check_lexical(settings, store)  # the running app's store
    assert lexical.ok and lexical.figures["chunks"] == lexical.figures["chroma_chunks"] == 3


def test_a_lexical_index_out_of_step_with_chroma_fails(settings: Settings) -> None:
    store = wiring.build_store(settings)
    store.upsert([chunk("a", 0)], [[1.0, 0.0, 0.0]])
    store.dense.upsert([chunk("b", 0), chunk("b", 1)], [[0.0, 1.0, 0.0]] * 2)  # Chroma only
    result = health.check_lexical(settings)
    assert not result.ok
    assert "lexical index holds 1 chunks, Chroma 3; 1 documents differ (e.g. b)" in result.detail
    assert "enclave docs reindex --lexical" in result.detail
    store.sync_lexical()
    assert health.check_lexical(settings).ok


def test_a_lost_lexical_file_fails(settings: Settings) -> None:
    store = wiring.build_store(settings)
    store.upsert([chunk("a", 0)], [[1.0, 0.0, 0.0]])
    store.lexical.close()
    settings.lexical_path.unlink()
    result = health.check_lexical(settings)
    assert not result.ok and "is missing while Chroma holds 1 chunks" in result.detail


def test_an_unreachable_chroma_server_fails(settings: Settings) -> None:
    settings.store.mode = "http"
    settings.store.port = closed_port()
    result = health.check_chroma(settings)
    assert not result.ok
    assert f"Chroma at http://127.0.0.1:{settings.store.port} did not answer" in result.detail


# -- audit log -----------------------------------------------------------------------------------


def test_an_intact_audit_log_passes(settings: Settings) -> None:
    log = AuditLog(settings.audit_path)
    log.append("answer", "alice", "q1")
    log.append("answer", "bob", "q2")
    result = health.check_audit_log(settings)
    assert result.ok and result.figures["records"] == 2
    assert health.check_audit_log(Settings(data_dir=settings.data_dir / "fresh")).ok  # no log yet


def test_a_broken_audit_chain_fails_naming_the_record(settings: Settings) -> None:
    log = AuditLog(settings.audit_path)
    for n in range(3):
        log.append("answer", "alice", f"q{n}")
    conn = sqlite3.connect(settings.audit_path, isolation_level=None)
    try:
        for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
            conn.execute(f"DROP TRIGGER {name}")
        conn.execute("UPDATE records SET user = 'mallory' WHERE id = 2")
    finally:
        conn.close()
    result = health.check_audit_log(settings)
    assert not result.ok
    assert "chain BROKEN at record 2" in result.detail


def test_an_audit_log_that_cannot_be_created_fails(settings: Settings, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    settings.audit.path = blocker / "audit.sqlite3"
    result = health.check_audit_log(settings)
    assert not result.ok and f"{blocker} is not a folder" in result.detail


# -- the LLM -------------------------------------------------------------------------------------


def test_no_llm_configured_is_not_a_failure(settings: Settings) -> None:
    result = health.check_llm(settings)
    assert result.ok and result.figures == {"configured": False}
    assert "extractive" in result.detail


def test_an_llm_on_a_closed_port_is_unreachable(settings: Settings) -> None:
    settings.llm.base_url = f"http://127.0.0.1:{closed_port()}/v1"
    settings.llm.model = "deepseek-r1-distill-qwen-7b"
    result = health.check_llm(settings)
    assert not result.ok and result.figures["reachable"] is False
    assert f"{settings.llm.base_url}/models is unreachable" in result.detail


def test_an_llm_serving_the_model_passes_and_one_serving_another_fails(settings: Settings) -> None:
    with scripted_chat_server("stub-model") as server:
        settings.llm.base_url = server.base_url
        settings.llm.model = "stub-model"
        result = health.check_llm(settings)
        assert result.ok, result.detail
        assert result.figures["served"] == ["stub-model"] and result.figures["max_model_len"] == 4096

        settings.llm.model = "deepseek-r1-distill-qwen-7b"
        result = health.check_llm(settings)
        assert not result.ok and result.figures["reachable"] is True
        assert "serves stub-model, not 'deepseek-r1-distill-qwen-7b': check llm.model" in result.detail


# -- disk, telemetry, and the whole run ----------------------------------------------------------


def test_disk_space_below_the_floor_fails(settings: Settings) -> None:
    assert health.check_disk(settings, min_free_bytes=1).ok
    result = health.check_disk(settings, min_free_bytes=1 << 60)
    assert not result.ok and "free some space" in result.detail


def test_telemetry_switches_left_on_fail_naming_them() -> None:
    assert health.check_telemetry().ok  # tests/conftest.py switched them off as the CLI does
    env = {k: TELEMETRY_ENV[k] for k in health.TELEMETRY_KEYS}
    env["GRADIO_ANALYTICS_ENABLED"] = "True"
    del env["ANONYMIZED_TELEMETRY"]
    env["HF_HUB_DISABLE_TELEMETRY"] = "True"  # as Gradio sets it: off all the same
    result = health.check_telemetry(env)
    assert not result.ok
    assert "GRADIO_ANALYTICS_ENABLED=True (want False)" in result.detail
    assert "ANONYMIZED_TELEMETRY=(unset) (want False)" in result.detail
    assert set(result.figures["wrong"]) == {"GRADIO_ANALYTICS_ENABLED", "ANONYMIZED_TELEMETRY"}


def test_settings_pointing_off_the_premises_fail_naming_them(settings: Settings, tmp_path: Path) -> None:
    assert health.check_network(settings).ok  # defaults: nothing remote, guard strict
    settings.llm.base_url = "http://10.1.2.3:8001/v1"  # a private address: on the premises
    settings.store.mode, settings.store.host = "http", "127.0.0.1"
    result = health.check_network(settings)
    assert result.ok and "llm.base_url 10.1.2.3" in result.detail
    settings.llm.base_url = "http://8.8.8.8:8001/v1"
    (tmp_path / "dsn").write_text("postgresql://enclave:s3cret-pw@1.1.1.1:5432/audit\n")
    settings.audit.backend, settings.audit.dsn_file = "postgres", tmp_path / "dsn"
    result = health.check_network(settings)
    assert not result.ok
    assert "llm.base_url -> 8.8.8.8 (resolves to public address 8.8.8.8)" in result.detail
    assert "audit.dsn -> 1.1.1.1" in result.detail and "s3cret" not in str(result)
    settings.network.allowed_hosts = ["8.8.8.8", "1.1.1.1"]  # approved by the admin
    assert health.check_network(settings).ok
    settings.audit.dsn_file, settings.audit.dsn = None, "host=/run/postgresql dbname=audit"  # a socket
    settings.network.guard = "warn"
    result = health.check_network(settings)
    assert not result.ok and "network.guard is 'warn'" in result.detail
    assert "audit.dsn" not in result.figures["endpoints"]


def test_a_check_that_breaks_is_a_failed_check(settings: Settings) -> None:
    def broken() -> CheckResult:
        raise RuntimeError("boom")

    result = health._guarded("broken", broken)
    assert not result.ok and result.detail == "the check itself failed: RuntimeError: boom"

    results = health.run_checks(settings)
    assert [r.name for r in results] == [
        "embedding model", "chroma", "lexical index", "audit log", "llm", "disk space", "telemetry", "network",
    ]  # fmt: skip
    assert all(r.ok for r in results), [r for r in results if not r.ok]


def test_an_audit_database_that_does_not_answer_fails_without_showing_its_dsn(settings: Settings) -> None:
    settings.audit.backend = "postgres"
    settings.audit.dsn = f"host=127.0.0.1 port={closed_port()} dbname=enclave user=enclave password=s3cret"
    result = health.check_audit_log(settings)
    assert not result.ok
    assert result.detail.startswith("the postgres audit log could not be verified: cannot connect")
    assert result.figures["backend"] == "postgres" and "dsn" not in result.figures
    assert "s3cret" not in result.detail
