"""Optional cross-encoder reranking from a local model folder (sentence-transformers CrossEncoder).

Configured with `retrieval.reranker_path`; without it retrieval is hybrid fusion alone. The model
is loaded from the folder only (`local_files_only`), never from a hub. It scores (question,
passage) pairs jointly, which is slower than a bi-encoder but sharper: it reorders the first
`retrieval.rerank_depth` fused candidates and leaves the rest behind them in fused order.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from core.errors import ConfigError
from core.types import Hit


class CrossEncoderReranker:
    def __init__(self, model_path: Path, depth: int = 20, batch_size: int = 16, device: str = "cpu") -> None:
        self.model_path = Path(model_path)
        if not (self.model_path / "config.json").is_file():
            raise ConfigError(
                f"retrieval.reranker_path {self.model_path} is not a cross-encoder model folder "
                "(no config.json): point it at a local sentence-transformers CrossEncoder, or leave it empty"
            )
        self.depth = depth
        self.batch_size = batch_size
        self.device = device
        self.model_id = self.model_path.name
        self._model: Any = None
        self._lock = threading.Lock()

    @property
    def model(self) -> Any:
        with self._lock:
            if self._model is None:
                import transformers
                from sentence_transformers import CrossEncoder

                transformers.utils.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
                try:
                    self._model = CrossEncoder(
                        str(self.model_path), device=self.device, local_files_only=True
                    )
                except (OSError, ValueError) as exc:
                    raise ConfigError(f"cross-encoder at {self.model_path} cannot be loaded: {exc}") from exc
            return self._model

    def scores(self, query: str, texts: Sequence[str]) -> list[float]:
        if not texts:
            return []
        raw = self.model.predict(
            [(query, t) for t in texts],
            batch_size=self.batch_size,
            show_progress_bar=False,
            convert_to_numpy=True,
        )
        return [float(s) for s in raw]

    def rerank(self, query: str, hits: Sequence[Hit]) -> list[Hit]:
        """The first `depth` hits reordered by the cross-encoder's score (kept as the hit's
        score), the others after them unchanged."""
        head, tail = list(hits[: self.depth]), list(hits[self.depth :])
        scored = self.scores(query, [h.chunk.text for h in head])
        order = sorted(range(len(head)), key=lambda i: scored[i], reverse=True)
        return [dataclasses.replace(head[i], score=scored[i]) for i in order] + tail


__all__ = ["CrossEncoderReranker"]
