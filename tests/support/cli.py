"""In-process CLI runs (typer's CliRunner) without their two slow starts, for tests about what the
commands do rather than how a fresh process starts:

- the embedding model: a CLI run builds its own embedder and loads MiniLM again (seconds each
  run); here, when the settings ask for the default embedder (onnx-int8 of the shipped MiniLM),
  it gets the session's, the same real model loaded once;
- parser processes: with the default parse time limit every ingest starts spawned parser
  processes that load unstructured and spaCy first (seconds each run); here the limit is 0, so
  small runs parse in the test process, as the `settings` fixture has it. The parser processes
  and the limit are tested in tests/integration/test_ingest_parsers.py.

What the commands themselves do is untouched: the same CLI code, the real model, real
unstructured, real Chroma.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result

from core.settings import EmbeddingSettings, Settings
from enclave import wiring


def shared_embedder(embedder: Any) -> Callable[[Settings], Any]:
    """A stand-in for `wiring.build_embedder` that gives `embedder` (the session's) for the
    default embedding settings and builds any other as before."""
    build = wiring.build_embedder

    def shared(settings: Settings) -> Any:
        # cache_dir aside: the tests point it at the run's shared folder (tests/conftest.py).
        default = settings.embedding.model_copy(update={"cache_dir": None}) == EmbeddingSettings()
        return embedder if default else build(settings)

    return shared


@contextlib.contextmanager
def quick_cli(embedder: Any) -> Iterator[None]:
    """While the block runs, CLI commands use `embedder` for the default embedding settings and
    parse with no time limit (for a module-scoped fixture; a test can monkeypatch the same)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(wiring, "build_embedder", shared_embedder(embedder))
        patch.setenv("ENCLAVE_INGEST__PARSE_TIMEOUT_S", "0")
        yield


def data_dir_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, embedder: Any) -> Callable[..., Result]:
    """`enclave --data-dir <tmp_path>/var ...` run in-process, in tmp_path, with the session's
    embedder and parses in the test process; returns the CliRunner's result."""
    from typer.testing import CliRunner

    from enclave.cli import app

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(wiring, "build_embedder", shared_embedder(embedder))
    monkeypatch.setenv("ENCLAVE_INGEST__PARSE_TIMEOUT_S", "0")
    runner = CliRunner()

    def invoke(*args: str) -> Result:
        return runner.invoke(app, ["--data-dir", str(tmp_path / "var"), *args])

    return invoke
