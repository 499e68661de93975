"""Domain types that cross package boundaries. Plain frozen dataclasses, no library types."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Literal

Role = Literal["staff", "auditor", "admin"]
AnswerMode = Literal["llm", "extractive", "no_answer", "error"]


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Principal:
    """Who is asking: a signed-in user, or a name given on the command line by an operator."""

    name: str
    role: Role = "staff"
    groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class Chunk:
    """One retrievable passage of a document, with where it came from."""

    chunk_id: str
    doc_id: str
    text: str
    source: str
    groups: tuple[str, ...]
    index: int = 0
    title: str = ""
    section: str = ""
    page: int | None = None

    @property
    def content_hash(self) -> str:
        return sha256_text(self.text)

    @property
    def context(self) -> str:
        """Title / heading, the words that say what the chunk is about; the heading is left out
        when it only repeats the title (a document whose first heading is its title)."""
        section = self.section if " ".join(self.section.split()) != " ".join(self.title.split()) else ""
        return " / ".join(p for p in (self.title, section) if p)


@dataclass(frozen=True)
class Hit:
    """A chunk returned by a search. `score` orders hits (higher is better): the cosine for a
    dense search, BM25 for a lexical one, the fused score for hybrid retrieval. `cosine` is the
    chunk's similarity to the query when known (it decides relevance); `lexical` its BM25 score
    when the lexical index found it."""

    chunk: Chunk
    score: float
    cosine: float | None = None
    lexical: float | None = None


@dataclass(frozen=True)
class Citation:
    """A numbered source as shown to the user: `[n]` in the answer refers to it. `source` is the
    file Enclave ingested (for a synced source, its local mirror copy); `location` where the
    document lives for its users (`\\\\server\\share\\a.xlsx`, an https or imap URL) when it came
    from a synced share, site or mailbox, else None."""

    n: int
    chunk_id: str
    doc_id: str
    source: str
    title: str
    section: str
    page: int | None
    snippet: str
    location: str | None = None


SupportLevel = Literal["supported", "weak", "uncited"]


@dataclass(frozen=True)
class SentenceSupport:
    """How well one sentence of a generated answer is backed by the sources it cites.

    `start`/`end` index the sentence in `Answer.text`. `level`: supported, weak (its cited
    sources share too little with it) or uncited (it cites nothing, and no supplied source backs
    it). `lexical` is the share of its content words found in the cited sources, `semantic` the
    highest cosine between it and a cited source (None when not computed). `attributed`: the
    model cited nothing here; Enclave found the source in `cited` that backs the sentence
    after generation (never true of a number the model wrote itself).
    """

    start: int
    end: int
    text: str
    cited: tuple[int, ...]
    level: SupportLevel
    lexical: float | None = None
    semantic: float | None = None
    attributed: bool = False


@dataclass
class Answer:
    """The outcome of one question: what the user sees and what the auditor needs."""

    question: str
    text: str
    mode: AnswerMode
    citations: list[Citation] = field(default_factory=list)
    hits: list[Hit] = field(default_factory=list)
    reasoning: str = ""
    model: str = ""
    error: str | None = None
    finish_reason: str | None = None
    latency_ms: float = 0.0
    audit_id: int | None = None
    # The query retrieval ran with: the question, or a follow-up rewritten to stand alone.
    search_query: str = ""
    # Per sentence of an LLM answer, how well its citations back it (empty for other modes).
    support: list[SentenceSupport] = field(default_factory=list)

    @property
    def attributed(self) -> bool:
        """Whether Enclave, not the model, chose the sources of some of its sentences."""
        return any(s.attributed for s in self.support)


StreamKind = Literal["sources", "reasoning", "token", "done"]


@dataclass(frozen=True)
class StreamEvent:
    """One step of a streamed answer.

    sources: the numbered citations available to the answer (before any token);
    reasoning / token: a text delta of the model's reasoning or of the answer;
    done: the final Answer, already written to the audit log (answer.audit_id).
    """

    kind: StreamKind
    text: str = ""
    citations: tuple[Citation, ...] = ()
    answer: Answer | None = None


@dataclass(frozen=True)
class OriginalFile:
    """Where the original of an indexed document lies, for the web UI to serve after its group
    check. `paths` are the files on disk that held it when ingested (absolute), whose bytes had
    the SHA-256 `sha256`; `attached_as` the `<mail>#<name>` sources of mails holding it as an
    attachment."""

    doc_id: str
    title: str
    groups: tuple[str, ...]
    sha256: str | None = None
    paths: tuple[str, ...] = ()
    attached_as: tuple[str, ...] = ()
