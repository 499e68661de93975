"""A second, finer pass inside the best documents: the passages of a short document that answer
a question are often not the ones that resemble it most.

Fused retrieval ranks passages one by one against the whole collection. In a report or a form,
the passage that resembles the question (the narrative naming the aircraft, the section naming
the policy) outranks the one holding the answer (the `Registered Owner: ...` field two pages on,
the table row with the figure). So after retrieval, the chunks of the documents the best hits
come from are scored again, among themselves, on what the evidence judgement looks for
(assistant/evidence.py): the question's words weighted by how rare they are in that document
(the words naming the document's subject say little there), a value of the kind the question asks
for on the same line as those words, and the stored embedding's cosine. The best of them that
retrieval did not already give join the passages, after the hits.

When the question names its subject so that only one of the documents found holds every name
and figure it gives ("the Piper PA-22-150 accident at Tallahassee in December 2007"), passages
of the other documents answer nothing about it however alike they read (the other accident
reports share every field label and most of the narrative's words): they give way to that
document's own best chunks, and the pass adds to it as to any document.

No new embedding is computed (the stored vectors are read back), and a document of more than
MAX_DOCUMENT_CHUNKS chunks is not scanned: a long handbook's passages are many, and retrieval's
own ranking serves it better than a scan on a handful of words.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from assistant.evidence import (
    MIN_NAMES,
    WEIGHT_COSINE,
    WEIGHT_COVERAGE,
    WEIGHT_LABEL,
    WEIGHT_TYPED,
    expectation,
    label_match,
    line_terms,
    question_names,
    token_keys,
)
from assistant.support import content_terms
from core.types import Chunk, Hit

DOCUMENTS = 2  # the documents of the best DOCUMENTS hits are looked into
EXTRA = 2  # passages the pass may add
MAX_DOCUMENT_CHUNKS = 60
MIN_LINE_SCORE = 0.5  # a chunk joins only if one of its lines holds this much of what is asked


class DocumentReader(Protocol):
    def document_embeddings(self, doc_id: str, groups: Sequence[str]) -> list[tuple[Chunk, list[float]]]: ...


@dataclass(frozen=True)
class DocumentPass:
    documents: int = DOCUMENTS
    extra: int = EXTRA
    max_chunks: int = MAX_DOCUMENT_CHUNKS

    def widen(
        self, store: DocumentReader, question: str, vector: Sequence[float], hits: Sequence[Hit]
    ) -> list[Hit]:
        """`hits`, then up to `extra` passages of the best hits' documents that score higher,
        among their document's chunks, than every passage of it already given."""
        if not hits or self.extra <= 0:
            return list(hits)
        read: dict[str, list[tuple[Chunk, list[float]]]] = {}  # each document read once

        def chunks_of(chunk: Chunk) -> list[tuple[Chunk, list[float]]]:
            if chunk.doc_id not in read:
                read[chunk.doc_id] = store.document_embeddings(chunk.doc_id, chunk.groups)
            return read[chunk.doc_id]

        subject = self._subject(chunks_of, question, hits)
        if subject is not None:
            return self._within(subject, question, vector, hits)
        given = {h.chunk.chunk_id for h in hits}
        docs: list[Chunk] = []
        for hit in hits[: self.documents]:
            if all(hit.chunk.doc_id != d.doc_id for d in docs):
                docs.append(hit.chunk)
        found: list[tuple[float, Hit]] = []
        for first in docs:
            pairs = chunks_of(first)
            if len(pairs) < 2 or len(pairs) > self.max_chunks:
                continue
            scores = chunk_scores(
                question, [c.text for c, _ in pairs], [_cosine(vector, v) for _, v in pairs]
            )
            for (chunk, v), (dense, lexical) in zip(pairs, scores, strict=True):
                if chunk.chunk_id not in given and lexical >= MIN_LINE_SCORE:
                    cosine = _cosine(vector, v)
                    found.append((dense + lexical, Hit(chunk=chunk, score=cosine, cosine=cosine)))
        found.sort(key=lambda pair: pair[0], reverse=True)
        return list(hits) + [hit for _, hit in found[: self.extra]]

    def _subject(
        self,
        chunks_of: Callable[[Chunk], list[tuple[Chunk, list[float]]]],
        question: str,
        hits: Sequence[Hit],
    ) -> list[tuple[Chunk, list[float]]] | None:
        """The chunks of the best hit's document when it holds every name and figure of the
        question (at least MIN_NAMES of them) and no other hit's document does; else None."""
        names = question_names(question)
        if len(names) < MIN_NAMES:
            return None
        holding = []
        seen: set[str] = set()
        for hit in hits:
            if hit.chunk.doc_id in seen:
                continue
            seen.add(hit.chunk.doc_id)
            pairs = chunks_of(hit.chunk)
            if not pairs:
                continue
            held = set().union(*(token_keys(c.title + "\n" + c.text) for c, _ in pairs))
            if names <= held:
                holding.append(pairs)
                if len(holding) > 1:
                    return None
            elif not holding:
                return None  # the best passage's document is not the one the question names
        return holding[0] if holding else None

    def _within(
        self,
        pairs: Sequence[tuple[Chunk, list[float]]],
        question: str,
        vector: Sequence[float],
        hits: Sequence[Hit],
    ) -> list[Hit]:
        """The hits of the subject's document, in their order; then its other chunks best first
        (as the pass scores them) in the places of the other documents' hits; then up to `extra`
        more that hold what is asked, as the pass adds to any document."""
        doc = pairs[0][0].doc_id
        kept = [h for h in hits if h.chunk.doc_id == doc]
        given = {h.chunk.chunk_id for h in kept}
        cosines = [_cosine(vector, v) for _, v in pairs]
        scores = chunk_scores(question, [c.text for c, _ in pairs], cosines)
        rest = sorted(
            (
                (dense + lexical, lexical, Hit(chunk=chunk, score=cosine, cosine=cosine))
                for (chunk, _), (dense, lexical), cosine in zip(pairs, scores, cosines, strict=True)
                if chunk.chunk_id not in given
            ),
            key=lambda item: item[0],
            reverse=True,
        )
        freed = len(hits) - len(kept)
        extra = [hit for _, lexical, hit in rest[freed:] if lexical >= MIN_LINE_SCORE][: self.extra]
        return kept + [hit for _, _, hit in rest[:freed]] + extra


def chunk_scores(question: str, texts: Sequence[str], cosines: Sequence[float]) -> list[tuple[float, float]]:
    """How well each of one document's chunks answers `question`: its best line's weighted share
    of the question's words (a line also holding a value of the kind asked for scores more),
    plus its cosine."""
    expected = expectation(question)
    lines = [[ln for ln in t.splitlines() if ln.strip()] for t in texts]
    terms = line_terms(question, texts)
    asked = content_terms(question)
    names = content_terms(" ".join(question_names(question)))
    out = []
    for text_lines, cosine in zip(lines, cosines, strict=True):
        best = 0.0
        for line in text_lines:
            coverage = terms.coverage(line)
            label = label_match(asked, line, names)
            typed = (coverage > 0 or label > 0) and expected.kind != "any" and expected.met_by(line, question)
            best = max(
                best, WEIGHT_COVERAGE * coverage + WEIGHT_LABEL * label + (WEIGHT_TYPED if typed else 0.0)
            )
        out.append((WEIGHT_COSINE * cosine, best))
    return out


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    na = sum(x * x for x in a) ** 0.5
    nb = sum(y * y for y in b) ** 0.5
    return dot / (na * nb) if na and nb else 0.0
