"""The search index: dense vectors in Chroma and BM25 in the lexical index, written together.

Ingest sees one store with three writes (upsert, delete_document, move_document); each goes to
Chroma first, then to the lexical index. The ingest manifest's `pending` protocol announces every
write before it starts and vouches for it after both are done, so a crash between the two is
rolled back by `recover()` like any other half-done write (delete from both).

A data folder made before the lexical index existed (or whose lexical file was deleted) is brought
in step by `sync_lexical()`, which copies the chunk texts out of Chroma: no parsing, no embedding.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from core.types import Chunk, Hit
from vectorstore.chroma import ChromaStore
from vectorstore.lexical import LexicalIndex, class_token

log = logging.getLogger(__name__)


class SearchIndex:
    """Chroma (dense) and the lexical index, kept in step."""

    def __init__(self, dense: ChromaStore, lexical: LexicalIndex) -> None:
        self.dense = dense
        self.lexical = lexical

    # -- writes (the ingest pipeline's store interface) -------------------------------------------

    def upsert(self, chunks: Sequence[Chunk], embeddings: Sequence[Sequence[float]]) -> None:
        self.dense.upsert(chunks, embeddings)
        self.lexical.upsert(chunks)

    def delete_document(self, doc_id: str, groups: Sequence[str]) -> int:
        n = self.dense.delete_document(doc_id, groups)
        self.lexical.delete_document(doc_id, groups)
        return n

    def move_document(self, doc_id: str, from_groups: Sequence[str], to_groups: Sequence[str]) -> int:
        n = self.dense.move_document(doc_id, from_groups, to_groups)
        self.lexical.move_document(doc_id, from_groups, to_groups)
        return n

    # -- reads ----------------------------------------------------------------------------------

    def search(self, query_embedding: Sequence[float], k: int, allowed_groups: Sequence[str]) -> list[Hit]:
        return self.dense.search(query_embedding, k, allowed_groups)

    def search_lexical(self, query: str, k: int, allowed_groups: Sequence[str]) -> list[Hit]:
        return self.lexical.search(query, k, allowed_groups)

    def lexical_ceiling(self, query: str) -> float:
        return self.lexical.ceiling(query)

    def embeddings(self, chunks: Sequence[Chunk]) -> dict[str, list[float]]:
        return self.dense.embeddings(chunks)

    def document_embeddings(self, doc_id: str, groups: Sequence[str]) -> list[tuple[Chunk, list[float]]]:
        return self.dense.document_embeddings(doc_id, groups)

    def count(self) -> int:
        return self.dense.count()

    def document_ids(self) -> dict[str, int]:
        return self.dense.document_ids()

    def access_classes(self) -> dict[str, tuple[str, ...]]:
        return self.dense.access_classes()

    def sync_lexical(self, quick: bool = False) -> int:
        """Make the lexical index hold exactly Chroma's chunks; returns how many chunks it copied
        or removed. Compares one count per (access class, document) on each side; with `quick`,
        only when the two totals differ (what an ingest checks before it starts: a data folder
        from before the lexical index, or a lost lexical file)."""
        if quick and self.dense.count() == self.lexical.count():
            return 0
        dense = {
            (class_token(groups), doc): (groups, n)
            for (groups, doc), n in self.dense.class_doc_counts().items()
        }
        lexical = self.lexical.class_doc_counts()
        classes = self.lexical.access_classes()
        changed = 0
        for token, doc_id in lexical:
            if (token, doc_id) not in dense:
                changed += self.lexical.delete_document(doc_id, classes[token])
        stale: dict[tuple[str, ...], set[str]] = {}
        for (token, doc_id), (groups, n) in dense.items():
            if lexical.get((token, doc_id)) != n:
                stale.setdefault(groups, set()).add(doc_id)
        for groups, docs in stale.items():
            for doc_id, chunks in self.dense.documents_in_class(groups, docs):
                self.lexical.delete_document(doc_id, groups)
                self.lexical.upsert(chunks)
                changed += len(chunks)
        if changed:
            log.warning("lexical index brought in step with Chroma: %d chunks copied or removed", changed)
        return changed


__all__ = ["SearchIndex"]
