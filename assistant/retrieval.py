"""Retrieval policy: the passages a principal may read that are relevant enough to answer from."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from core.types import Hit, Principal


class QueryEmbedder(Protocol):
    model_id: str

    def embed_query(self, text: str) -> list[float]: ...


class SearchableStore(Protocol):
    def search(self, query_embedding: Sequence[float], k: int, allowed_groups: Sequence[str]) -> list[Hit]: ...


class Retriever:
    """Dense retrieval restricted to the principal's groups inside the store's search."""

    def __init__(self, store: SearchableStore, embedder: QueryEmbedder, top_k: int, min_score: float) -> None:
        self.store = store
        self.embedder = embedder
        self.top_k = top_k
        self.min_score = min_score

    def retrieve(self, principal: Principal, query: str) -> tuple[list[Hit], list[Hit]]:
        """(relevant hits, all hits searched): relevant ones reach min_score."""
        hits = self.store.search(self.embedder.embed_query(query), self.top_k, principal.groups)
        return [h for h in hits if h.score >= self.min_score], hits
