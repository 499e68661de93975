"""Shared fixtures. Telemetry is off and the offline guard is strict for the whole test run:
any attempt to reach a non-loopback host fails the test that made it."""

from __future__ import annotations

from core.offline import disable_telemetry, install_guard

disable_telemetry()
install_guard("strict")

import os  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import pytest  # noqa: E402

from core.settings import Settings, load_settings  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


# Where every Enclave of the run keeps the onnx-int8 export (embedding.cache_dir).
MODELS_CACHE_ENV = "ENCLAVE_EMBEDDING__CACHE_DIR"


@pytest.fixture(scope="session")
def models_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One embedding.cache_dir for the whole run, made by the first export (like <data_dir>/models
    on a fresh data folder): the onnx-int8 backend (the default on CPUs without native bfloat16)
    exports the model there once (5-15 s)
    and every later embedder of the run, in this process or in a CLI subprocess, reuses it."""
    return tmp_path_factory.mktemp("var") / "models"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, models_cache: Path) -> None:
    """Tests never see an operator's ENCLAVE_* variables or ./enclave.yaml. One is set: the run's
    shared embedding.cache_dir (`models_cache`), which CLI runs and subprocesses inherit, so that
    none of them exports the onnx-int8 model again. A test about the default cache folder deletes it."""
    for name in list(os.environ):
        if name.startswith("ENCLAVE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv(MODELS_CACHE_ENV, str(models_cache))


@pytest.fixture(scope="session")
def onnx_embedder(models_cache: Path) -> Any:
    """The onnx-int8 backend: all-MiniLM-L6-v2's int8 ONNX copy, exported once per test run into
    `models_cache` on first use."""
    from vectorstore.onnx_embedding import OnnxEmbedder

    return OnnxEmbedder(cache_dir=models_cache)


@pytest.fixture(scope="session")
def embedder(request: pytest.FixtureRequest) -> Any:
    """The default embedder (backend auto), as every Enclave of the run on this machine builds it:
    torch-bf16 where the CPU computes bfloat16 natively, else `onnx_embedder`."""
    from vectorstore.embedding import SentenceTransformerEmbedder, resolve_backend

    if resolve_backend("auto") == "onnx-int8":
        return request.getfixturevalue("onnx_embedder")
    return SentenceTransformerEmbedder(bf16=True)


@pytest.fixture(scope="session")
def torch_embedder() -> Any:
    """The real all-MiniLM-L6-v2 in torch fp32 (backend torch-fp32), loaded once per test run: the
    reference the other backends are held to."""
    from vectorstore.embedding import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder()


@pytest.fixture
def settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store_mode: str, request: pytest.FixtureRequest
) -> Settings:
    """Defaults on tmp_path, except that small ingests parse in the test process: with a parse
    time limit every ingest starts a parser process (~5 s each). The tests of the limit and of
    the worker processes (test_ingest_parsers, test_ingest_sync) set their own.

    With `store_mode` http, Chroma is the shared `chroma_server` under a collection prefix of
    this test's own (the lexical index and the rest stay on tmp_path)."""
    monkeypatch.chdir(tmp_path)
    settings = load_settings(None, data_dir=tmp_path / "var")
    settings.ingest.parse_timeout_s = 0
    if store_mode == "http":
        server = request.getfixturevalue("chroma_server")
        settings.store.mode = "http"
        settings.store.host = server.host
        settings.store.port = server.port
        settings.store.collection_prefix = server.fresh_prefix()
    return settings


# -- Chroma: embedded by default; a server for the tests that run on both modes -----------------


@pytest.fixture
def store_mode(request: pytest.FixtureRequest) -> str:
    """Chroma's mode for `settings`: embedded unless a test runs on both, with
    `@both_store_modes` (tests.support.chroma_server): embedded, then a real `chroma run`.
    ENCLAVE_TEST_STORE_MODE=http runs every other test on the server too (`make test-server-mode`):
    the whole suite on client/server Chroma, which CI leaves to the tests marked for both."""
    default = os.environ.get("ENCLAVE_TEST_STORE_MODE", "embedded")
    if default not in ("embedded", "http"):
        raise pytest.UsageError(f"ENCLAVE_TEST_STORE_MODE={default!r}: use embedded or http")
    return str(getattr(request, "param", default))


@pytest.fixture(scope="session")
def chroma_server() -> Iterator[Any]:
    """A real Chroma server (chromadb's `chroma run`) on 127.0.0.1 for the whole run. chromadb
    is a dependency of the app, so it is always here: a server that cannot start fails the test."""
    from tests.support.chroma_server import ChromaServer

    server = ChromaServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def demo_corpus() -> Path:
    return ROOT / "enclave" / "demo_corpus"


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    yield monkeypatch


# -- the audit log's backends: SQLite always, PostgreSQL when its server binaries are here ------


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Any]:
    """A throwaway PostgreSQL server for the whole run (Debian's `postgresql` package). Skips the
    tests that need it when it is not installed, unless REQUIRE_POSTGRES=1 (CI), which fails them."""
    from tests.support.postgres import APT_HINT, REQUIRE_ENV, PostgresServer, find_bindir

    bindir = find_bindir()
    if bindir is None:
        reason = f"PostgreSQL server binaries (initdb) not found: {APT_HINT}"
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{REQUIRE_ENV}=1 but {reason}")
        pytest.skip(reason)
    server = PostgresServer(bindir).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def audit_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """An empty audit log on each backend (`tests.support.audit_backends`). A test that is about
    one backend only narrows it: `@pytest.mark.parametrize("audit_backend", ["sqlite"], indirect=True)`."""
    from tests.support.audit_backends import PostgresBackend, SqliteBackend

    if request.param == "sqlite":
        return SqliteBackend(tmp_path / "var" / "audit.sqlite3")
    server = request.getfixturevalue("postgres_server")
    return PostgresBackend(server.fresh_dsn())
