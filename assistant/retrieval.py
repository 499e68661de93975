"""Retrieval policy: the passages a principal may read that are relevant enough to answer from.

Hybrid by default: dense (cosine over MiniLM vectors in Chroma) and lexical (BM25 in the FTS5
index) candidates, each searched only within the access classes the principal may read, fused
into one ranking (vectorstore.fusion). Relevance is decided on the cosine: a question whose best
candidate stays below `min_score` gets no passages, so the answer says the documents do not
answer it without calling the LLM; passages below it are not given to the answerer.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Literal, Protocol

from core.errors import ConfigError
from core.types import Chunk, Hit, Principal

Mode = Literal["dense", "lexical", "hybrid"]
MODES: tuple[Mode, ...] = ("dense", "lexical", "hybrid")


class QueryEmbedder(Protocol):
    model_id: str

    def embed_query(self, text: str) -> list[float]: ...


class SearchableStore(Protocol):
    def search(self, query_embedding: Sequence[float], k: int, allowed_groups: Sequence[str]) -> list[Hit]: ...


class HybridStore(SearchableStore, Protocol):
    def search_lexical(self, query: str, k: int, allowed_groups: Sequence[str]) -> list[Hit]: ...
    def embeddings(self, chunks: Sequence[Chunk]) -> dict[str, list[float]]: ...


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0


def rrf(rankings: Sequence[Sequence[Hit]], k: float = 60.0, weights: Sequence[float] | None = None) -> list[Hit]:
    """Reciprocal rank fusion over chunk ids: score = sum of weight / (k + rank)."""
    weights = weights or [1.0] * len(rankings)
    fused: dict[str, float] = {}
    first: dict[str, Hit] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        for rank, hit in enumerate(ranking, start=1):
            cid = hit.chunk.chunk_id
            fused[cid] = fused.get(cid, 0.0) + weight / (k + rank)
            seen = first.get(cid)
            first[cid] = hit if seen is None else dataclasses.replace(
                seen, cosine=seen.cosine if seen.cosine is not None else hit.cosine,
                lexical=seen.lexical if seen.lexical is not None else hit.lexical,
            )
    order = sorted(fused, key=lambda c: fused[c], reverse=True)
    return [dataclasses.replace(first[c], score=fused[c]) for c in order]


class Reranker(Protocol):
    model_id: str
    depth: int

    def rerank(self, query: str, hits: Sequence[Hit]) -> list[Hit]: ...


class Retriever:
    """Ranks the chunks a principal may read; the group filter is inside every search."""

    def __init__(
        self,
        store: SearchableStore,
        embedder: QueryEmbedder,
        top_k: int,
        min_score: float,
        mode: Mode = "hybrid",
        candidates: int = 50,
        reranker: Reranker | None = None,
    ) -> None:
        if mode not in MODES:
            raise ConfigError(f"retrieval.mode {mode!r} is not one of {', '.join(MODES)}")
        if mode != "dense" and not hasattr(store, "search_lexical"):
            raise ConfigError(f"retrieval.mode {mode} needs a lexical index; this store has none")
        self.store = store
        self.embedder = embedder
        self.top_k = top_k
        self.min_score = min_score
        self.mode: Mode = mode
        self.candidates = max(candidates, top_k)
        self.reranker = reranker

    def rank(self, principal: Principal, query: str, k: int, mode: Mode | None = None) -> list[Hit]:
        """The k best chunks for the query among those the principal may read, best first,
        with no relevance cut (the evaluation uses this)."""
        mode = mode or self.mode
        wanted = max(k, self.reranker.depth) if self.reranker else k
        hits = self._rank(principal.groups, query, wanted, mode)
        if self.reranker is not None:
            hits = self.reranker.rerank(query, hits)
        return hits[:k]

    def _rank(self, groups: Sequence[str], query: str, k: int, mode: Mode) -> list[Hit]:
        depth = max(k, self.candidates)
        if mode == "lexical":
            return self._lexical().search_lexical(query, k, groups)
        vector = self.embedder.embed_query(query)
        dense = self.store.search(vector, depth if mode == "hybrid" else k, groups)
        if mode == "dense":
            return dense
        lexical = self._lexical().search_lexical(query, depth, groups)
        fused = rrf([dense, lexical])[:k]
        return self._with_cosines(fused, vector)

    def retrieve(self, principal: Principal, query: str) -> tuple[list[Hit], list[Hit]]:
        """(relevant hits, all hits searched): relevant ones reach min_score in cosine."""
        hits = self.rank(principal, query, self.top_k)
        if self.mode == "lexical":  # no cosine to judge by: BM25 found the words, that is all
            return hits, hits
        return [h for h in hits if h.cosine is not None and h.cosine >= self.min_score], hits

    def _lexical(self) -> HybridStore:
        store = self.store
        assert hasattr(store, "search_lexical")  # checked in __init__
        return store  # type: ignore[return-value]

    def _with_cosines(self, hits: list[Hit], vector: Sequence[float]) -> list[Hit]:
        """Fill in the cosine of hits only the lexical index found, from their stored vectors."""
        missing = [h.chunk for h in hits if h.cosine is None]
        if not missing:
            return hits
        stored = self._lexical().embeddings(missing)
        return [
            h if h.cosine is not None or h.chunk.chunk_id not in stored
            else dataclasses.replace(h, cosine=_cosine(vector, stored[h.chunk.chunk_id]))
            for h in hits
        ]


__all__ = ["MODES", "Mode", "Reranker", "Retriever", "rrf"]
