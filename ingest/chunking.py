"""Cut a parsed document into chunks that keep their heading and page.

Sections never merge across a heading or a page, so every chunk has one heading and one page;
long sections are split with LangChain's recursive splitter at paragraph, line, then sentence
boundaries, with a small overlap so that a fact cut in two is still found whole in one chunk.
"""

from __future__ import annotations

from collections.abc import Sequence

from langchain_text_splitters import RecursiveCharacterTextSplitter

from core.types import Chunk
from ingest.parsing import ParsedDocument

_SEPARATORS = ["\n\n", "\n", ". ", "? ", "! ", "; ", ", ", " ", ""]


def document_id(sha256: str) -> str:
    """A document is its content: files with the same bytes are one document."""
    return sha256[:32]


def chunk_id(doc_id: str, index: int) -> str:
    return f"{doc_id}-{index:05d}"


class Chunker:
    def __init__(self, chunk_chars: int = 1000, overlap: int = 120) -> None:
        self._splitter = RecursiveCharacterTextSplitter(
            chunk_size=chunk_chars,
            chunk_overlap=min(overlap, chunk_chars // 2),
            separators=_SEPARATORS,
            keep_separator="end",
            strip_whitespace=True,
        )

    def chunks(self, doc: ParsedDocument, doc_id: str, source: str, groups: Sequence[str]) -> list[Chunk]:
        out: list[Chunk] = []
        for section in doc.sections:
            for piece in self._splitter.split_text(section.text):
                if not piece.strip():
                    continue
                out.append(
                    Chunk(
                        chunk_id=chunk_id(doc_id, len(out)),
                        doc_id=doc_id,
                        text=piece,
                        source=source,
                        groups=tuple(sorted(set(groups))),
                        index=len(out),
                        title=doc.title,
                        section=section.heading,
                        page=section.page,
                    )
                )
        return out


def embedding_text(chunk: Chunk) -> str:
    """What the embedder sees: the chunk with its document title and heading as context."""
    context = " / ".join(p for p in (chunk.title, chunk.section) if p)
    return f"{context}\n\n{chunk.text}" if context else chunk.text
