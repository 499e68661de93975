"""The answerer used when no LLM is configured: the best matching sentences, quoted and cited.

It never composes new text, so it cannot invent: each line is a sentence from a source, chosen by
its embedding similarity to the question.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Protocol

from core.types import Citation, Hit

LABEL = "Extractive answer (no language model is configured): the passages that best match your question."
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])|\n{1,}")


class SentenceEmbedder(Protocol):
    def embed_query(self, text: str) -> list[float]: ...
    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]: ...


def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.split(text) if len(s.strip()) >= 20]


class ExtractiveAnswerer:
    def __init__(self, embedder: SentenceEmbedder, max_sentences: int = 4, max_sources: int = 3) -> None:
        self.embedder = embedder
        self.max_sentences = max_sentences
        self.max_sources = max_sources

    def answer(self, question: str, hits: Sequence[Hit], citations: Sequence[Citation]) -> str:
        candidates: list[tuple[int, int, str]] = []  # (citation n, position, sentence)
        for hit, citation in list(zip(hits, citations))[: self.max_sources]:
            for pos, sentence in enumerate(split_sentences(hit.chunk.text) or [hit.chunk.text.strip()]):
                if sentence in (hit.chunk.section, hit.chunk.title):
                    continue  # a heading repeated as the section's first line says nothing
                candidates.append((citation.n, pos, sentence))
        if not candidates:
            return ""
        q = self.embedder.embed_query(question)
        vectors = self.embedder.embed_documents([s for _, _, s in candidates])
        scored = sorted(
            zip((sum(a * b for a, b in zip(q, v)) for v in vectors), candidates),
            key=lambda item: item[0],
            reverse=True,
        )[: self.max_sentences]
        # Present the chosen sentences in source order, so that neighbours read naturally.
        chosen = sorted((c for _, c in scored), key=lambda c: (c[0], c[1]))
        lines = [f"> {sentence} [{n}]" for n, _, sentence in chosen]
        return LABEL + "\n\n" + "\n>\n".join(lines)
