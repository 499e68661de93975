"""Cut a parsed document into chunks that carry meaning: each says something on its own, keeps
its heading and page, and fits the embedding model's window.

- Sections (from ingest.parsing: a heading, a new page or a table starts one) are grouped into
  runs. A run shorter than `min_chars` (a quarter of a chunk) takes in the next section on its
  page, so that a heading, a form's labels or a short table is never a chunk of its own but
  travels with what follows it. Only headings or labels alone at the bottom of a page join the
  first section of the next page, and the run then takes that page: a chunk's `page` is where
  its text is. A short run that cannot go forward (the last of its page or document) joins the
  run before it on its page when both fit in one chunk, else stays alone (a document that is
  only a heading is one chunk).
- A run's heading is its first section's (or, when that run held only headings or labels, the
  heading of the section it took in); every chunk carries it (`Chunk.section`, seen by the
  embedder and the lexical index), so a text opening with that heading line does not repeat it
  (else it would be a chunk of its own whenever it and the first paragraph did not fit
  together, as for most SciFact abstracts). Later sections' headings stay in the text.
- A long run is cut with LangChain's recursive splitter at paragraph, line, then sentence
  boundaries, with a small overlap so that a fact cut in two is still found whole in one chunk;
  the short sections before its long one stay with the first piece. Pieces are of even size
  (greedy filling leaves a short tail, 770 + 866 + 141 characters: the smallest size that gives
  as many pieces is used). A table is cut between rows, each group under the header row.
- A chunk whose embedded text (title, heading, text) would overflow the model's window
  (all-MiniLM-L6-v2: 256 word pieces; URLs, code and figures take several a word) is cut
  smaller, counted with the model's own tokenizer (`WordPieces`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from langchain_text_splitters import RecursiveCharacterTextSplitter

from core.types import Chunk
from ingest.document import ParsedDocument, Section
from ingest.formats import tables

log = logging.getLogger(__name__)

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


@dataclass
class _Run:
    """Consecutive sections that become one chunk, or one series of chunks."""

    heading: str
    page: int | None
    texts: list[str]
    carried: bool = True  # every text so far is only headings or labels: may join the next page

    @property
    def size(self) -> int:
        return sum(len(t) for t in self.texts) + 2 * (len(self.texts) - 1)


def _only_headings(section: Section) -> bool:
    """A section that is just its heading, or just labels (their values empty)."""
    paragraphs = [p for p in section.text.split("\n") if p.strip()]
    if _one_line(section.text) == _one_line(section.heading):
        return True
    return all(p.strip().endswith(":") and len(p.split()) <= 8 for p in paragraphs)


class WordPieces:
    """Counts the word pieces the embedding model runs on ([CLS] and [SEP] included), with the
    model folder's own tokenizer.json, and knows its window (max_seq_length)."""

    def __init__(self, model_path: Path) -> None:
        from tokenizers import Tokenizer

        self._tokenizer = Tokenizer.from_file(str(model_path / "tokenizer.json"))
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()
        config = model_path / "sentence_bert_config.json"
        window = (
            json.loads(config.read_text(encoding="utf-8")).get("max_seq_length") if config.is_file() else None
        )
        self.window = int(window or 256)

    @classmethod
    def of(cls, model_path: Path | None) -> WordPieces | None:
        """The counter of the model in `model_path` (None: the shipped model), or None when the
        folder has no tokenizer.json to count with (chunks are then kept to `chunk_chars` alone)."""
        try:
            from vectorstore.embedding import default_model_path

            folder = Path(model_path) if model_path else default_model_path()
            if not (folder / "tokenizer.json").is_file():
                return None
            return cls(folder)
        except Exception:
            log.debug("no word-piece counter for %s", model_path, exc_info=True)
            return None

    def count(self, text: str) -> int:
        return len(self._tokenizer.encode(text, add_special_tokens=True).ids)


class Chunker:
    """Sections to chunks: short sections join their neighbours, long ones are cut evenly.

    `min_chars`: a run of sections shorter than this is not a chunk on its own (default a quarter
    of `chunk_chars`). `word_pieces`: the embedding model's counter; a chunk whose embedded text
    (title, heading and text) would overflow the model's window is cut smaller.
    """

    def __init__(
        self,
        chunk_chars: int = 1000,
        overlap: int = 120,
        min_chars: int | None = None,
        word_pieces: WordPieces | None = None,
    ) -> None:
        self._chunk_chars = chunk_chars
        self._overlap = min(overlap, chunk_chars // 2)
        self._min_chars = chunk_chars // 4 if min_chars is None else min_chars
        self._word_pieces = word_pieces

    def _splitter(self, size: int) -> RecursiveCharacterTextSplitter:
        return RecursiveCharacterTextSplitter(
            chunk_size=size,
            chunk_overlap=min(self._overlap, size // 2),
            separators=_SEPARATORS,
            keep_separator="end",
            strip_whitespace=True,
        )

    def split(self, text: str, size: int | None = None) -> list[str]:
        """Pieces of at most `size` (default `chunk_chars`), as many as the greedy splitter makes,
        as even as the text's boundaries allow."""
        size = self._chunk_chars if size is None else size
        pieces = self._splitter(size).split_text(text)
        count = len(pieces)
        if count < 2:
            return pieces
        even = math.ceil(len(text) / count) + min(self._overlap, size // 2)
        if even >= size:
            return pieces
        for step in range(_BALANCE_STEPS):
            tried = self._splitter(even + (size - even) * step // _BALANCE_STEPS).split_text(text)
            if len(tried) <= count:
                return tried
        return pieces

    def cut(self, text: str, size: int | None = None) -> list[str]:
        """`split`, but a table (every line "cell | cell") is cut between rows into groups that
        each start with its header row."""
        size = self._chunk_chars if size is None else size
        lines = text.split("\n")
        if len(text) > size and len(lines) > 2 and all(tables.CELL_SEPARATOR in line for line in lines):
            return tables.row_groups(lines, size)
        return self.split(text, size)

    def runs(self, sections: Sequence[Section]) -> list[_Run]:
        """Sections grouped into runs. A run shorter than `min_chars` takes in the next section on
        its page (a heading or labels alone also the first one of the next page, whose page the
        run then takes); a short run that could not (the last of its page or document) joins the
        run before it on its page when both fit in one chunk."""
        runs: list[_Run] = []
        for section in sections:
            current = runs[-1] if runs else None
            if current is not None and current.size < self._min_chars and self._continues(current, section):
                if current.carried and section.heading and section.heading != current.heading:
                    # Only headings or labels so far: the section taken in says what the run is
                    # about ("Parking" rather than the handbook's title above it).
                    current.texts.append(without_heading(section.text, section.heading))
                    current.heading = section.heading
                else:
                    current.texts.append(section.text)
                current.page = section.page
                current.carried = current.carried and _only_headings(section)
            else:
                runs.append(_Run(section.heading, section.page, [section.text], _only_headings(section)))
        joined: list[_Run] = []
        for run in runs:
            previous = joined[-1] if joined else None
            if (
                previous is not None
                and run.size < self._min_chars
                and run.page == previous.page
                and previous.size + 2 + run.size <= self._chunk_chars
            ):
                previous.texts.extend(run.texts)
                previous.carried = previous.carried and run.carried
            else:
                joined.append(run)
        return joined

    @staticmethod
    def _continues(run: _Run, section: Section) -> bool:
        if section.page == run.page:
            return True
        return run.carried and run.page is not None and section.page == run.page + 1

    def pieces(self, run: _Run) -> list[str]:
        """A run's text in pieces of at most `chunk_chars`; its opening short paragraphs (headings,
        labels, a short section) stay with the first piece of what follows them."""
        texts = [without_heading(run.texts[0], run.heading), *run.texts[1:]]
        if len(texts) > 1 and _one_line(texts[0]) == _one_line(run.heading):
            texts = texts[1:]  # the heading alone: it is the chunk's heading already
        text = "\n\n".join(texts)
        if len(text) <= self._chunk_chars:
            return [text]
        lead, rest = "", text
        while True:
            first, sep, after = rest.partition("\n\n")
            if not sep or len(lead) + len(first) + 2 > self._min_chars:
                break
            lead, rest = (f"{lead}\n\n{first}" if lead else first), after
        if not lead:
            return self.cut(text)
        first, *others = self.cut(rest, self._chunk_chars - len(lead) - 2)
        return [f"{lead}\n\n{first}", *others]

    def _fitted(self, piece: str, context: str) -> list[str]:
        """`piece`, or smaller pieces of it, each within the embedding model's window."""
        pieces = self._word_pieces
        if pieces is None:
            return [piece]
        embedded = f"{context}\n\n{piece}" if context else piece
        used = pieces.count(embedded)
        if used <= pieces.window:
            return [piece]
        room = pieces.window - (pieces.count(context) if context else 2) - 2
        size = max(len(piece) * room // used, 50)
        out: list[str] = []
        for part in self.cut(piece, size):
            out.extend(self._fitted(part, context) if len(part) < len(piece) else [part])
        return out

    def chunks(self, doc: ParsedDocument, doc_id: str, source: str, groups: Sequence[str]) -> list[Chunk]:
        out: list[Chunk] = []
        for run in self.runs(doc.sections):
            like = Chunk(
                chunk_id="",
                doc_id=doc_id,
                text="",
                source=source,
                groups=tuple(sorted(set(groups))),
                title=doc.title,
                section=run.heading,
                page=run.page,
            )
            for piece in self.pieces(run):
                for text in self._fitted(piece, like.context):
                    if text.strip():
                        index = len(out)
                        out.append(
                            dataclasses.replace(
                                like, chunk_id=chunk_id(doc_id, index), text=text, index=index
                            )
                        )
        return out


def embedding_text(chunk: Chunk) -> str:
    """What the embedder sees: the chunk with its document title and heading as context."""
    context = chunk.context
    return f"{context}\n\n{chunk.text}" if context else chunk.text
