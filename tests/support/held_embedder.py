"""The real embedder, held at a chosen moment: a batch of documents that holds a marker word waits
until the test releases it. A test sees a sync or an upload while it runs (its progress, a second
command refused) without depending on how long anything takes; the vectors are the real ones."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

WAIT_S = 600.0  # the most a held batch waits for its release (a test that forgot it fails)


class HeldEmbedder:
    def __init__(self, inner: Any, marker: str) -> None:
        self.inner = inner
        self.marker = marker
        self.reached = threading.Event()  # a batch holding the marker has arrived
        self._release = threading.Event()
        self._release.set()  # nothing held until `hold()`

    def __getattr__(self, name: str) -> Any:  # model_id, dimension, ... of the real one
        return getattr(self.inner, name)

    def hold(self) -> None:
        """Hold the next batch that holds the marker (and each after it) until `release()`."""
        self.reached.clear()
        self._release.clear()

    def release(self) -> None:
        self._release.set()

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        if any(self.marker in t for t in texts):
            self.reached.set()
            if not self._release.wait(WAIT_S):
                raise TimeoutError(f"the test never released the batch holding {self.marker!r}")
        return list(self.inner.embed_documents(texts))

    def embed_query(self, text: str) -> list[float]:
        return list(self.inner.embed_query(text))
