"""The torch-bf16 backend gives nearly the fp32 vectors, in input order, and ranks alike."""

from __future__ import annotations

from typing import Any

import pytest

from vectorstore.embedding import SentenceTransformerEmbedder

pytestmark = pytest.mark.slow

TEXTS = [
    "Staff permits for the blue car park cost 12 euros per month.",
    "The capital budget for the new crane at berth 7 is 4.2 million euros.",
    "x",
    "Captain Tomas Brevik leads Marine Services and remains Harbour Master. " * 12,
]


def dot(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def test_bf16_matches_fp32(embedder: Any) -> None:
    bf16 = SentenceTransformerEmbedder(bf16=True)
    fp32_vectors = embedder.embed_documents(TEXTS)
    bf16_vectors = bf16.embed_documents(TEXTS)
    for fp, bf in zip(fp32_vectors, bf16_vectors, strict=True):
        assert dot(fp, bf) > 0.999  # both are L2-normalised: the dot product is the cosine
    query = bf16.embed_query("How much is a parking permit?")
    scores = [dot(query, v) for v in bf16_vectors]
    assert scores.index(max(scores)) == 0
