"""Retrieval policy: the passages a principal may read that are relevant enough to answer from.

Hybrid by default: dense (cosine over MiniLM vectors in Chroma) and lexical (BM25 in the FTS5
index) candidates, each searched only within the access classes the principal may read, fused
into one ranking by score: DENSE_WEIGHT x cosine + the rest x BM25 over the query's BM25 ceiling
(vectorstore.fusion.hybrid_fusion, the recipe bench/retrieval_study.py chose on SciFact train:
nDCG@10 0.743 on test against 0.725 for reciprocal rank fusion, which stays available as mode
"hybrid-rrf" for comparison). Relevance is decided on the cosine: a question whose best
candidate stays below `min_score` gets no passages, so the answer says the documents do not
answer it without calling the LLM; passages below it are not given to the answerer.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Literal, Protocol

from assistant.focus import DocumentPass
from core.errors import ConfigError
from core.types import Chunk, Hit, Principal
from vectorstore import fusion

Mode = Literal["dense", "lexical", "hybrid", "hybrid-rrf"]
MODES: tuple[Mode, ...] = ("dense", "lexical", "hybrid", "hybrid-rrf")


class QueryEmbedder(Protocol):
    model_id: str

    def embed_query(self, text: str) -> list[float]: ...


class SearchableStore(Protocol):
    def search(
        self, query_embedding: Sequence[float], k: int, allowed_groups: Sequence[str]
    ) -> list[Hit]: ...


class HybridStore(SearchableStore, Protocol):
    def search_lexical(self, query: str, k: int, allowed_groups: Sequence[str]) -> list[Hit]: ...
    def lexical_ceiling(self, query: str) -> float: ...
    def embeddings(self, chunks: Sequence[Chunk]) -> dict[str, list[float]]: ...


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0


def _merged(rankings: Sequence[Sequence[Hit]]) -> dict[str, Hit]:
    """Each chunk id once, with the cosine and BM25 score of whichever list had them."""
    first: dict[str, Hit] = {}
    for ranking in rankings:
        for hit in ranking:
            cid = hit.chunk.chunk_id
            seen = first.get(cid)
            first[cid] = (
                hit
                if seen is None
                else dataclasses.replace(
                    seen,
                    cosine=seen.cosine if seen.cosine is not None else hit.cosine,
                    lexical=seen.lexical if seen.lexical is not None else hit.lexical,
                )
            )
    return first


def rrf(
    rankings: Sequence[Sequence[Hit]], k: float = fusion.RRF_K, weights: Sequence[float] | None = None
) -> list[Hit]:
    """Reciprocal rank fusion over chunk ids: score = sum of weight / (k + rank)."""
    fused = fusion.reciprocal_rank_fusion(
        [[(h.chunk.chunk_id, h.score) for h in ranking] for ranking in rankings], k=k, weights=weights
    )
    hits = _merged(rankings)
    return [dataclasses.replace(hits[cid], score=score) for cid, score in fused]


def score_fusion(
    dense: Sequence[Hit], lexical: Sequence[Hit], ceiling: float, dense_weight: float = fusion.DENSE_WEIGHT
) -> list[Hit]:
    """Dense hits (with cosines) and lexical hits (with BM25 scores) fused by score
    (fusion.hybrid_fusion): w x cosine + (1 - w) x BM25 / ceiling."""
    fused = fusion.hybrid_fusion(
        [(h.chunk.chunk_id, h.cosine if h.cosine is not None else h.score) for h in dense],
        [(h.chunk.chunk_id, h.lexical if h.lexical is not None else h.score) for h in lexical],
        ceiling,
        dense_weight,
    )
    hits = _merged([dense, lexical])
    return [dataclasses.replace(hits[cid], score=score) for cid, score in fused]


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
        candidates: int = fusion.FUSION_DEPTH,
        reranker: Reranker | None = None,
        dense_weight: float = fusion.DENSE_WEIGHT,
        document_pass: DocumentPass | None = None,
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
        if not 0.0 <= dense_weight <= 1.0:
            raise ConfigError(f"retrieval.dense_weight {dense_weight} must be between 0 and 1")
        self.dense_weight = dense_weight
        self.document_pass = document_pass

    def rank(self, principal: Principal, query: str, k: int, mode: Mode | None = None) -> list[Hit]:
        """The k best chunks for the query among those the principal may read, best first,
        with no relevance cut (the evaluation uses this)."""
        return self._ranked(principal, query, k, mode or self.mode)[0]

    def _ranked(
        self, principal: Principal, query: str, k: int, mode: Mode
    ) -> tuple[list[Hit], list[float] | None]:
        wanted = max(k, self.reranker.depth) if self.reranker else k
        hits, vector = self._rank(principal.groups, query, wanted, mode)
        if self.reranker is not None:
            hits = self.reranker.rerank(query, hits)
        return hits[:k], vector

    def _rank(
        self, groups: Sequence[str], query: str, k: int, mode: Mode
    ) -> tuple[list[Hit], list[float] | None]:
        depth = max(k, self.candidates)
        if mode == "lexical":
            return self._lexical().search_lexical(query, k, groups), None
        vector = self.embedder.embed_query(query)
        dense = self.store.search(vector, depth if mode == "hybrid" else k, groups)
        if mode == "dense":
            return dense, vector
        index = self._lexical()
        lexical = index.search_lexical(query, depth, groups)
        if mode == "hybrid-rrf":
            fused = rrf([dense, lexical])
        else:
            ceiling = index.lexical_ceiling(query) if lexical else 0.0
            fused = score_fusion(dense, lexical, ceiling, self.dense_weight)
        return self._with_cosines(fused[:k], vector), vector

    def retrieve(self, principal: Principal, query: str) -> tuple[list[Hit], list[Hit]]:
        """(relevant hits, all hits searched): relevant ones reach min_score in cosine; the
        document pass (assistant/focus.py) may add passages of the best hits' documents."""
        hits, vector = self._ranked(principal, query, self.top_k, self.mode)
        if self.mode == "lexical":  # no cosine to judge by: BM25 found the words, that is all
            return hits, hits
        relevant = [h for h in hits if h.cosine is not None and h.cosine >= self.min_score]
        if (
            relevant
            and vector is not None
            and self.document_pass is not None
            and hasattr(self.store, "document_embeddings")
        ):
            relevant = self.document_pass.widen(self.store, query, vector, relevant)  # type: ignore[arg-type]
        return relevant, hits

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
            h
            if h.cosine is not None or h.chunk.chunk_id not in stored
            else dataclasses.replace(h, cosine=_cosine(vector, stored[h.chunk.chunk_id]))
            for h in hits
        ]


__all__ = ["MODES", "Mode", "Reranker", "Retriever", "rrf", "score_fusion"]
