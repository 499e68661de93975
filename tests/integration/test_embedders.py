"""The embedding backends against the shipped all-MiniLM-L6-v2 in torch fp32: the ONNX Runtime int8
copy (exported offline once per test run into a fresh folder) and bfloat16 autocast; which one
`auto` (the default) picks on which CPU; and which backend the settings build.

The cosine bounds come from measurement (bench/results/embedding_quality.json, docs/benchmarks.md
"Embedding backends"): over the 5,183 SciFact passages and 300 queries the int8 copy's cosine to
fp32 never fell below 0.99, bf16's never below 0.999. Texts of one or two tokens drift most under
int8 (an average over so few tokens keeps the rounding error): 0.986 at worst, hence 0.98 for them.
"""

from __future__ import annotations

import importlib.util
import logging
import re
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.errors import ConfigError
from core.settings import Settings, load_settings
from vectorstore.embedding import SentenceTransformerEmbedder
from vectorstore.onnx_embedding import PINS, OnnxEmbedder

ROOT = Path(__file__).resolve().parents[2]

SENTENCES = [
    "The quarterly budget review is due before the end of March.",
    "Cats sleep for most of the day and hunt at dusk.",
    "Visitors must sign in at the security desk and wear a badge.",
    "Photosynthesis converts light energy into chemical energy in plants.",
    # Longer than max_seq_length (256 tokens): both backends must cut it at the same place.
    "Each contractor submits a signed timesheet every week to the project office. " * 30,
    "Badge rules.",
]
TINY = ["x", "ok", "Yes.", "IT", "hello"]


def cosines(a: Any, b: Any) -> np.ndarray:
    """Row-wise cosine of L2-normalised vectors: the dot product."""
    return np.sum(np.asarray(a) * np.asarray(b), axis=1)


@pytest.fixture(scope="session")
def onnx_embedder(onnx_embedder: OnnxEmbedder) -> OnnxEmbedder:
    """The int8 copy (tests/conftest.py; the session's default embedder on CPUs without native
    bfloat16), whose export goes once per test run into `models_cache`, a folder that does not
    exist before it (as <data_dir>/models on a fresh data folder)."""
    onnx_embedder.ensure_exported()
    return onnx_embedder


# -- onnx-int8: the vectors --------------------------------------------------------------------------


@pytest.mark.slow
def test_onnx_vectors_match_torch_fp32(onnx_embedder: OnnxEmbedder, torch_embedder: Any) -> None:
    onnx = onnx_embedder.embed_documents(SENTENCES + TINY)
    fp32 = torch_embedder.embed_documents(SENTENCES + TINY)
    assert len(onnx[0]) == onnx_embedder.dimension == 384
    assert np.allclose(np.linalg.norm(onnx, axis=1), 1.0, atol=1e-5)
    similarity = cosines(onnx, fp32)
    assert similarity[: len(SENTENCES)].min() > 0.99
    assert similarity[len(SENTENCES) :].min() > 0.98
    assert onnx_embedder.model_id == f"{torch_embedder.model_id}-onnx-int8"


@pytest.mark.slow
def test_onnx_vector_does_not_depend_on_the_other_texts(onnx_embedder: OnnxEmbedder) -> None:
    """int8 activations share one scale per forward pass: run in a batch beside long passages, a
    short text's vector moved (cosine 0.969 to fp32 instead of 0.986). Each text runs alone."""
    alone = [onnx_embedder.embed_query(t) for t in ["ok", "Badge rules."]]
    among = onnx_embedder.embed_documents([SENTENCES[4], "ok", *SENTENCES[:4], "Badge rules."])
    assert np.allclose([among[1], among[6]], alone, atol=1e-6)


@pytest.mark.slow
def test_onnx_keeps_input_order(onnx_embedder: OnnxEmbedder, torch_embedder: Any) -> None:
    texts = [SENTENCES[i] for i in (4, 5, 0, 3, 1, 2)]  # lengths unsorted
    onnx = np.asarray(onnx_embedder.embed_documents(texts))
    fp32 = np.asarray(torch_embedder.embed_documents(texts))
    assert list((onnx @ fp32.T).argmax(axis=1)) == list(range(len(texts)))


@pytest.mark.slow
def test_onnx_ranks_the_relevant_passage_first(onnx_embedder: OnnxEmbedder) -> None:
    passages = SENTENCES[:4]
    query = onnx_embedder.embed_query("Where do guests register when they arrive at the office?")
    scores = np.asarray(onnx_embedder.embed_documents(passages)) @ np.asarray(query)
    assert int(scores.argmax()) == 2
    assert scores[2] - np.delete(scores, 2).max() > 0.1


# -- onnx-int8: the exported copy ----------------------------------------------------------------------


@pytest.mark.slow
def test_onnx_reuses_the_cached_export(onnx_embedder: OnnxEmbedder, monkeypatch: pytest.MonkeyPatch) -> None:
    path = onnx_embedder.onnx_path
    mtime = path.stat().st_mtime_ns

    def no_export(*args: Any) -> None:
        raise AssertionError("exported again although the cache holds the model")

    monkeypatch.setattr(OnnxEmbedder, "_export_fp32", no_export)
    monkeypatch.setattr(OnnxEmbedder, "_quantize", no_export)
    second = OnnxEmbedder(cache_dir=onnx_embedder.cache_dir)
    assert second.onnx_path == path
    assert np.allclose(second.embed_query("hello"), onnx_embedder.embed_query("hello"), atol=1e-6)
    assert path.stat().st_mtime_ns == mtime
    assert sorted(p.name for p in path.parent.iterdir()) == [".export.lock", "export.json", "model-int8.onnx"]


def test_onnx_cache_key_follows_the_recipe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from vectorstore import onnx_embedding

    before = OnnxEmbedder(cache_dir=tmp_path).onnx_path
    assert OnnxEmbedder(cache_dir=tmp_path).onnx_path == before
    monkeypatch.setitem(onnx_embedding.RECIPE, "per_channel", not onnx_embedding.RECIPE["per_channel"])
    after = OnnxEmbedder(cache_dir=tmp_path).onnx_path
    assert before.parent != after.parent
    assert before.parent.parent == after.parent.parent == tmp_path
    assert before.name == after.name == "model-int8.onnx"


def test_onnx_concurrent_first_use_exports_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two embedders on one cache, first use at the same moment: one export, both get the file.
    The lock is flock on a file each embedder opens itself, which two threads contend for exactly
    as two processes do; the export is replaced by a slow stand-in to hold the race open."""
    calls = []

    def slow_export(self: OnnxEmbedder, path: Path) -> None:
        calls.append(path)
        time.sleep(0.5)
        path.write_bytes(b"fp32")

    def copy(self: OnnxEmbedder, source: Path, target: Path) -> None:
        target.write_bytes(source.read_bytes() + b"-int8")

    monkeypatch.setattr(OnnxEmbedder, "_export_fp32", slow_export)
    monkeypatch.setattr(OnnxEmbedder, "_quantize", copy)
    embedders = [OnnxEmbedder(cache_dir=tmp_path) for _ in range(2)]
    start = threading.Barrier(2)
    results: list[Path] = []

    def first_use(e: OnnxEmbedder) -> None:
        start.wait()
        results.append(e.ensure_exported())

    threads = [threading.Thread(target=first_use, args=(e,)) for e in embedders]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert results[0] == results[1]
    assert results[0].read_bytes() == b"fp32-int8"
    assert sorted(p.name for p in results[0].parent.iterdir()) == [
        ".export.lock",
        "export.json",
        "model-int8.onnx",
    ]


def test_onnx_first_export_says_what_where_and_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The pause of the first ingest or web UI start on a fresh install is explained in the log
    (which the CLI shows at its default verbosity); a later start finds the copy and says nothing.
    The export itself is replaced by a quick stand-in."""
    monkeypatch.setattr(OnnxEmbedder, "_export_fp32", lambda self, path: path.write_bytes(b"fp32"))
    monkeypatch.setattr(OnnxEmbedder, "_quantize", lambda self, source, target: target.write_bytes(b"int8"))
    embedder = OnnxEmbedder(cache_dir=tmp_path / "models")
    with caplog.at_level(logging.INFO, logger="vectorstore.onnx_embedding"):
        embedder.ensure_exported()
        OnnxEmbedder(cache_dir=tmp_path / "models").ensure_exported()
    started, finished = (r.getMessage() for r in caplog.records)
    assert str(embedder.model_path) in started and str(embedder.onnx_path.parent) in started
    assert "once per model" in started and "s on 2 cores" in started
    assert finished.startswith(f"exported {embedder.onnx_path} in ")


def test_onnx_empty_input_loads_nothing(tmp_path: Path) -> None:
    embedder = OnnxEmbedder(cache_dir=tmp_path)
    assert embedder.embed_documents([]) == []
    assert not embedder.onnx_path.exists()
    assert embedder._session is None


# -- onnx-int8: configuration errors --------------------------------------------------------------------


@pytest.mark.parametrize("package", ["onnxruntime", "onnx", "tokenizers"])
def test_onnx_missing_package_is_a_config_error_naming_the_pin(
    package: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pin = next(
        line.strip()
        for line in (ROOT / "requirements.lock").read_text(encoding="utf-8").splitlines()
        if line.lower().startswith(f"{package}==")
    )
    assert PINS[package] == pin  # the message names what requirements.lock installs
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == package else real(name, *a)
    )
    with pytest.raises(ConfigError) as error:
        OnnxEmbedder(cache_dir=tmp_path)
    assert f"`{package}`" in str(error.value)
    assert f"pip install {pin}" in str(error.value)


def test_onnx_rejects_a_folder_without_a_model(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=re.escape(f"{tmp_path} has no config.json")):
        OnnxEmbedder(tmp_path, cache_dir=tmp_path)
    (tmp_path / "config.json").write_text("{}", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"no tokenizer\.json"):
        OnnxEmbedder(tmp_path, cache_dir=tmp_path)


AVX2_ONLY = frozenset("fpu sse sse2 avx avx2 fma f16c".split())


@pytest.mark.parametrize(
    ("flags", "chosen"),
    [
        (AVX2_ONLY, "onnx-int8"),  # the 2-core AMD EPYC of docs/benchmarks.md
        (AVX2_ONLY | {"avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile"}, "torch-bf16"),
        (AVX2_ONLY | {"avx512f", "avx512_bf16"}, "torch-bf16"),  # AVX512-BF16 without AMX (Zen 4)
        (AVX2_ONLY | {"avx512f", "avx512_vnni"}, "onnx-int8"),  # VNNI, but bf16 would be emulated
        (frozenset(), "onnx-int8"),  # flags unknown
    ],
)
def test_auto_picks_bf16_where_the_cpu_has_it_else_int8(flags: frozenset[str], chosen: str) -> None:
    from vectorstore.embedding import resolve_backend

    assert resolve_backend("auto", flags) == chosen
    for named in ("torch-fp32", "torch-bf16", "onnx-int8"):
        assert resolve_backend(named, flags) == named  # a backend named is a backend used


def test_cpu_flags_are_read_from_cpuinfo(tmp_path: Path) -> None:
    from vectorstore.embedding import cpu_flags

    info = tmp_path / "cpuinfo"
    info.write_text(
        "processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu avx2 amx_bf16\n\nprocessor\t: 1\n"
    )
    assert cpu_flags(info) == {"fpu", "avx2", "amx_bf16"}
    assert cpu_flags(tmp_path / "missing") == frozenset()


def test_default_backend_is_auto_and_builds_what_this_cpu_is_fastest_with(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from enclave.wiring import build_embedder
    from vectorstore.embedding import resolve_backend

    monkeypatch.delenv("ENCLAVE_EMBEDDING__CACHE_DIR")  # the run's shared cache (tests/conftest.py)
    settings = load_settings(None, data_dir=tmp_path / "var")
    assert settings.embedding.backend == "auto"
    with caplog.at_level(logging.INFO, logger="enclave.wiring"):
        embedder = build_embedder(settings)
    chosen = resolve_backend("auto")
    assert f"embedding backend auto: {chosen} on this CPU" in caplog.text
    if chosen == "onnx-int8":
        assert isinstance(embedder, OnnxEmbedder)
        assert embedder._session is None  # loaded on first use
    else:
        assert isinstance(embedder, SentenceTransformerEmbedder) and embedder.bf16
        assert embedder._model is None  # loaded on first use


def test_onnx_int8_exports_into_the_data_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from enclave.wiring import build_embedder

    monkeypatch.delenv("ENCLAVE_EMBEDDING__CACHE_DIR")  # the run's shared cache (tests/conftest.py)
    monkeypatch.setenv("ENCLAVE_EMBEDDING__BACKEND", "onnx-int8")
    settings = load_settings(None, data_dir=tmp_path / "var")
    embedder = build_embedder(settings)
    assert isinstance(embedder, OnnxEmbedder)
    assert embedder.model_id == f"{SentenceTransformerEmbedder().model_id}-onnx-int8"
    assert embedder.cache_dir == settings.data_dir / "models"
    assert not embedder.cache_dir.exists()  # nothing is exported before first use


@pytest.mark.parametrize(("backend", "bf16"), [("torch-fp32", False), ("torch-bf16", True)])
def test_torch_backends_stay_selectable(settings: Settings, backend: str, bf16: bool) -> None:
    from enclave.wiring import build_embedder

    settings.embedding.backend = backend  # type: ignore[assignment]
    embedder = build_embedder(settings)
    assert isinstance(embedder, SentenceTransformerEmbedder)
    assert (embedder.model_id, embedder.bf16) == (embedder.model_path.parent.name, bf16)  # the shipped model
    assert embedder._model is None  # loaded on first use


# -- torch-bf16 --------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def bf16_embedder() -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder(bf16=True)


@pytest.mark.slow
def test_bf16_vectors_match_fp32(bf16_embedder: SentenceTransformerEmbedder, torch_embedder: Any) -> None:
    texts = [SENTENCES[i] for i in (4, 5, 0, 3, 1, 2)] + TINY  # lengths unsorted
    bf16 = bf16_embedder.embed_documents(texts)
    assert np.allclose(np.linalg.norm(bf16, axis=1), 1.0, atol=1e-5)
    assert cosines(bf16, torch_embedder.embed_documents(texts)).min() > 0.999  # also: in input order


@pytest.mark.slow
def test_bf16_ranks_the_relevant_passage_first(bf16_embedder: SentenceTransformerEmbedder) -> None:
    query = bf16_embedder.embed_query("Where do guests register when they arrive at the office?")
    scores = np.asarray(bf16_embedder.embed_documents(SENTENCES[:4])) @ np.asarray(query)
    assert int(scores.argmax()) == 2
