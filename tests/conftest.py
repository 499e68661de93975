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


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never see an operator's ENCLAVE_* variables or ./enclave.yaml."""
    for name in list(os.environ):
        if name.startswith("ENCLAVE_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def embedder() -> Any:
    """The real all-MiniLM-L6-v2, loaded once per test run."""
    from vectorstore.embedding import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder()


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Defaults on tmp_path, except that small ingests parse in the test process: with a parse
    time limit every ingest starts a parser process (~5 s each). The tests of the limit and of
    the worker processes (test_ingest_parsers, test_ingest_sync) set their own."""
    monkeypatch.chdir(tmp_path)
    settings = load_settings(None, data_dir=tmp_path / "var")
    settings.ingest.parse_timeout_s = 0
    return settings


@pytest.fixture
def demo_corpus() -> Path:
    return ROOT / "enclave" / "demo_corpus"


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    yield monkeypatch
