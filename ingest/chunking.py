"""Cut a parsed document into chunks that keep their heading and page.

Sections never merge across a heading or a page, so every chunk has one heading and one page;
long sections are split with LangChain's recursive splitter at paragraph, line, then sentence
boundaries, with a small overlap so that a fact cut in two is still found whole in one chunk.

Two things keep chunks whole rather than ragged:
- A section's heading is carried by every chunk (`Chunk.section`, and the embedder and the lexical
  index see it), so when the section's text opens with the heading line itself, that line is not
  chunked again: otherwise it becomes a chunk of its own whenever it and the first paragraph do
  not fit together (a title-only chunk for most abstracts, measured on SciFact).
- A long section is cut into pieces of even size: the splitter fills each piece greedily, which
  leaves a short tail (770 + 866 + 141 characters); when the same number of pieces fits in a
  smaller size, the smallest such size is used.
"""

from __future__ import annotations

import math
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


# Sizes tried when evening out a split section, as fractions of the way from the even share to
# the full chunk size: a handful of splits per long section, not a search per character.
_BALANCE_STEPS = 8


def _one_line(text: str) -> str:
    return " ".join(text.split())


def without_heading(text: str, heading: str) -> str:
    """`text` without its first paragraph when that paragraph is just the heading again. A section
    that is nothing but its heading is kept whole: its heading is then all it has to say."""
    if not heading:
        return text
    first, sep, rest = text.lstrip().partition("\n\n")
    if sep and rest.strip() and _one_line(first) == _one_line(heading):
        return rest
    return text


class Chunker:
    def __init__(self, chunk_chars: int = 1000, overlap: int = 120) -> None:
        self._chunk_chars = chunk_chars
        self._overlap = min(overlap, chunk_chars // 2)

    def _splitter(self, size: int) -> RecursiveCharacterTextSplitter:
        return RecursiveCharacterTextSplitter(
            chunk_size=size,
            chunk_overlap=min(self._overlap, size // 2),
            separators=_SEPARATORS,
            keep_separator="end",
            strip_whitespace=True,
        )

    def split(self, text: str) -> list[str]:
        """Pieces of at most `chunk_chars`, as many as the greedy splitter makes, as even as the
        text's boundaries allow."""
        pieces = self._splitter(self._chunk_chars).split_text(text)
        count = len(pieces)
        if count < 2:
            return pieces
        even = math.ceil(len(text) / count) + self._overlap
        if even >= self._chunk_chars:
            return pieces
        for step in range(_BALANCE_STEPS):
            size = even + (self._chunk_chars - even) * step // _BALANCE_STEPS
            tried = self._splitter(size).split_text(text)
            if len(tried) <= count:
                return tried
        return pieces

    def chunks(self, doc: ParsedDocument, doc_id: str, source: str, groups: Sequence[str]) -> list[Chunk]:
        out: list[Chunk] = []
        for section in doc.sections:
            for piece in self.split(without_heading(section.text, section.heading)):
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
    context = chunk.context
    return f"{context}\n\n{chunk.text}" if context else chunk.text
