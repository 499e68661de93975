"""`enclave eval --grounding`: are answers grounded in the passage that holds the answer?

A question file (bench/grounding/README.md) gives, per line, a question about one document of a
corpus folder, its `kind` (answerable or unanswerable), its `split` (tune or heldout, always
reported apart), and for answerable lines the exact `answer` strings and the `evidence` text.
The corpus is ingested by the real ingest into `<data_dir>/eval/<corpus name>/` (incremental;
done again from scratch when the ingest code or its settings changed, since unchanged files would
otherwise keep chunks made by older code), and every question is asked of the real Assistant
(enclave.wiring) as a principal who may read the whole corpus. Per question:

- evidence_in_context: the normalised evidence occurs in the passages the Assistant gave the
  answerer (`Answer.hits`) that belong to the expected document, joined in document order
  (neighbouring chunks merged over their overlap). Only when the evidence cannot be found in the
  document's indexed text at all (markup the parser drops, a cut the merge cannot mend) do all
  `answer` strings stand in for it; `evidence_match` says which rule decided;
- answer_contains: every `answer` string occurs in the answer's text;
- refused: the answer's mode is `no_answer`; empty: the mode is extractive or llm but the text
  holds no sentence;
- source_shown / source_cited: the expected document is among the sources shown with the answer /
  cited in it.

Matching (`normalise`) folds Unicode (NFKC), case, quotes, dashes and whitespace, joins words
hyphenated across a line break, and drops Markdown markup the parser drops (emphasis, code
ticks, table pipes, link targets); a string matches only at word boundaries ("30" is not in
"300"). Nothing fuzzier: a paraphrase is a miss.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import statistics
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import ConfigError, EnclaveError
from core.settings import Settings
from core.types import Answer, Chunk, Citation, Principal
from enclave.evaluate import read_jsonl

log = logging.getLogger(__name__)

EVAL_GROUP = "eval"
SPLITS = ("tune", "heldout")
KINDS = ("answerable", "unanswerable")
ANSWER_MODES = ("extractive", "llm")
REQUIRED = {
    "id": str,
    "split": str,
    "kind": str,
    "question": str,
    "source": str,
    "answer": list,
    "evidence": str,
}
STAMP = "grounding-ingest.json"
FIRST_PASSAGES = 3  # how many of the given passages the extractive answerer reads today

_QUOTES = str.maketrans(
    {"\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'"}
    | {"\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"'}
    | dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2015\u2212", "-")
    | {"\u00ad": "", "*": " ", "`": " ", "|": " "}
)
_LINK = re.compile(r"\[([^\]]*)\]\([^)\s]*\)")  # [text](target) -> text
_HYPHEN = re.compile(r"\s*-\s*")
_SPACE = re.compile(r"\s+")
_CITE = re.compile(r"\[\d+\]")
_LIST_MARK = re.compile(r"^\s*(?:[-*+\u2022]|\d+[.)])\s+")  # a list item's bullet or number


def normalise(text: str) -> str:
    """The form both sides of every comparison are put in (see the module doc)."""
    text = unicodedata.normalize("NFKC", text)
    text = _LINK.sub(r"\1", text).translate(_QUOTES).casefold()
    return _SPACE.sub(" ", _HYPHEN.sub("-", text)).strip()


def occurs(needle: str, haystack: str) -> bool:
    """`needle` in `haystack`, both normalised, at word boundaries."""
    n = normalise(needle)
    if not n:
        return False
    left = r"(?<!\w)" if n[0].isalnum() else ""
    right = r"(?!\w)" if n[-1].isalnum() else ""
    return re.search(left + re.escape(n) + right, normalise(haystack)) is not None


@dataclass(frozen=True)
class GroundingQuestion:
    qid: str
    split: str
    kind: str
    question: str
    source: str
    answers: tuple[str, ...]
    evidence: str
    type: str = ""
    page: int | None = None
    line: int = 0


def load_questions(path: Path) -> list[GroundingQuestion]:
    """The question file, checked line by line: a bad line is named with its file and number."""
    questions: list[GroundingQuestion] = []
    seen: dict[str, int] = {}
    for n, row in read_jsonl(path):
        where = f"{path}, line {n}"
        for name, kind in REQUIRED.items():
            if name not in row:
                raise ConfigError(f"{where}: missing field `{name}` (each line needs {', '.join(REQUIRED)})")
            if not isinstance(row[name], kind):
                raise ConfigError(f"{where}: `{name}` must be {'a list' if kind is list else 'text'}")
        if row["split"] not in SPLITS:
            raise ConfigError(f"{where}: unknown split {row['split']!r}: use {' or '.join(SPLITS)}")
        if row["kind"] not in KINDS:
            raise ConfigError(f"{where}: unknown kind {row['kind']!r}: use {' or '.join(KINDS)}")
        answers = tuple(str(a) for a in row["answer"])
        if row["kind"] == "answerable" and (not answers or not all(a.strip() for a in answers)):
            raise ConfigError(f"{where}: an answerable question needs `answer` strings (none may be empty)")
        if row["id"] in seen:
            raise ConfigError(f"{where}: id {row['id']!r} already used on line {seen[row['id']]}")
        seen[row["id"]] = n
        page = row.get("page")
        questions.append(
            GroundingQuestion(
                row["id"],
                row["split"],
                row["kind"],
                row["question"],
                row["source"],
                answers,
                row["evidence"],
                str(row.get("type") or ""),
                page if isinstance(page, int) else None,
                n,
            )
        )
    if not questions:
        raise ConfigError(f"{path} holds no questions")
    return questions


# -- the index -----------------------------------------------------------------------------------


def corpus_folders(corpus: Path) -> list[tuple[Path, tuple[str, ...]]]:
    """What to ingest with which groups: the demo corpus as `enclave demo` does (each top folder
    for the group of its name), any other folder whole for one group."""
    from enclave.demo import DEMO_CORPUS, demo_folders

    if corpus.resolve() == DEMO_CORPUS.resolve():
        return demo_folders()
    return [(corpus, (EVAL_GROUP,))]


def grounding_settings(settings: Settings, corpus: Path, llm: bool) -> Settings:
    """The corpus's own index under <data_dir>/eval/<name>; same models and retrieval; the LLM
    only for llm mode."""
    return settings.model_copy(
        update={
            "data_dir": settings.data_dir / "eval" / corpus.resolve().name,
            "embedding": settings.embedding.model_copy(update={"cache_dir": settings.models_cache}),
            "store": settings.store.model_copy(
                update={"path": None, "lexical_path": None, "mode": "embedded"}
            ),
            "ingest": settings.ingest.model_copy(update={"manifest_path": None}),
            "audit": settings.audit.model_copy(update={"path": None, "backend": "sqlite"}),
            "llm": settings.llm if llm else settings.llm.model_copy(update={"base_url": None}),
        }
    )


_NOT_CHUNKING = frozenset({"reports.py", "acl.py"})


def ingest_fingerprint(settings: Settings) -> str:
    """The ingest code and settings the index was made with: chunks made by other code are stale
    even though their files did not change. The code that only fetches files from elsewhere
    (ingest/sources/), reports runs or reads ACL files shapes no chunk of a folder's files, so
    its changes do not make the corpus be ingested again."""
    import ingest

    digest = hashlib.sha256(settings.ingest.model_dump_json(exclude={"manifest_path"}).encode())
    root = Path(ingest.__file__).parent
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root)
        if relative.parts[0] == "sources" or relative.name in _NOT_CHUNKING:
            continue
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


@dataclass
class CorpusIndex:
    """The corpus as ingested: each document's chunks in order, and the file each came from."""

    root: Path
    chunks: dict[str, list[Chunk]] = field(default_factory=dict)
    doc_of_path: dict[str, str] = field(default_factory=dict)  # absolute file path -> doc_id
    _merged: dict[str, str] = field(default_factory=dict, repr=False)

    def document_text(self, doc_id: str) -> str:
        """The document's indexed text, neighbouring chunks merged (computed once)."""
        if doc_id not in self._merged:
            self._merged[doc_id] = merged_text(self.chunks.get(doc_id, []))
        return self._merged[doc_id]

    def doc_for(self, source: str) -> str | None:
        return self.doc_of_path.get(str((self.root / source).resolve()))

    def relative(self, source: str) -> str:
        path = Path(source.split("#", 1)[0])
        return str(path.relative_to(self.root)) if path.is_relative_to(self.root) else source


def prepare_corpus(
    settings: Settings, corpus: Path, embedder: Any, store: Any
) -> tuple[dict[str, Any], CorpusIndex]:
    """Ingest the corpus into its index (again from scratch when the ingest code changed)."""
    from enclave import wiring

    stamp_path = settings.data_dir / STAMP
    fingerprint = ingest_fingerprint(settings)
    try:
        stamp = json.loads(stamp_path.read_text(encoding="utf-8")).get("fingerprint")
    except (OSError, ValueError):
        stamp = None
    force = stamp != fingerprint and settings.manifest_path.exists()
    pipeline = wiring.build_pipeline(settings, embedder=embedder, store=store)
    counts: dict[str, int] = {}
    failed: list[str] = []
    seconds = 0.0
    try:
        for folder, groups in corpus_folders(corpus):
            report = pipeline.run([folder], groups, prune=True, force=force)
            seconds += report.seconds
            for f in report.files:
                counts[f.status] = counts.get(f.status, 0) + 1
                if f.status == "failed":
                    failed.append(f"{f.path}: {f.error}")
        index = CorpusIndex(corpus.resolve())
        for entry in pipeline.manifest.files():
            if entry.status == "ingested" and entry.doc_id:
                index.doc_of_path[entry.path] = entry.doc_id
        for doc in pipeline.manifest.docs():
            pairs = store.document_embeddings(doc.doc_id, doc.groups)
            index.chunks[doc.doc_id] = [c for c, _ in pairs]
    finally:
        pipeline.manifest.close()
    stamp_path.write_text(json.dumps({"fingerprint": fingerprint}) + "\n", encoding="utf-8")
    info = {
        "data_dir": str(settings.data_dir),
        "files": sum(counts.values()),
        "counts": counts,
        "reingested": force,
        "seconds": round(seconds, 1),
        "failed": failed[:20],
    }
    return info, index


def chunk_statistics(index: CorpusIndex) -> dict[str, Any]:
    """Words per chunk (share under 5 and under 15, median) and, for PDFs, chunks per page."""
    words = [len(c.text.split()) for chunks in index.chunks.values() for c in chunks]
    out: dict[str, Any] = {
        "documents": len(index.chunks),
        "chunks": len(words),
        "share_lt5_words": round(sum(w < 5 for w in words) / max(len(words), 1), 4),
        "share_lt15_words": round(sum(w < 15 for w in words) / max(len(words), 1), 4),
        "median_words": statistics.median(words) if words else 0,
    }
    pdf_chunks = pdf_pages = pdf_docs = 0
    for chunks in index.chunks.values():
        if not chunks or not chunks[0].source.lower().endswith(".pdf"):
            continue
        pdf_docs += 1
        pdf_chunks += len(chunks)
        pdf_pages += _pages(Path(chunks[0].source), chunks)
    if pdf_docs:
        out["pdf"] = {
            "documents": pdf_docs,
            "pages": pdf_pages,
            "chunks": pdf_chunks,
            "chunks_per_page": round(pdf_chunks / max(pdf_pages, 1), 2),
        }
    return out


def _pages(path: Path, chunks: Sequence[Chunk]) -> int:
    try:
        import pypdf

        return len(pypdf.PdfReader(str(path)).pages)
    except Exception:  # the count is a statistic: fall back on the last page a chunk names
        log.debug("pages of %s not read", path, exc_info=True)
        return max((c.page or 0 for c in chunks), default=0)


# -- scoring -------------------------------------------------------------------------------------


def merged_text(chunks: Iterable[Chunk]) -> str:
    """The chunks of one document, normalised, in index order; neighbours (index i, i+1) are
    joined over the text they share, others kept apart so that no match spans a gap."""
    parts: list[str] = []
    previous: int | None = None
    for chunk in sorted(chunks, key=lambda c: c.index):
        text = normalise(chunk.text)
        if previous is not None and chunk.index == previous + 1 and parts:
            parts[-1] = _join(parts[-1], text)
        else:
            parts.append(text)
        previous = chunk.index
    return _GAP.join(parts)


_GAP = " \x00 "  # no needle holds it, and normalise keeps it
_MIN_OVERLAP = 8


def _join(a: str, b: str) -> str:
    """`a` then `b`, less the start of `b` that `a` ends with (the splitter's overlap)."""
    head = b[:_MIN_OVERLAP]
    tail = a[-4000:]
    start = tail.find(head) if len(head) == _MIN_OVERLAP else -1
    while start >= 0:
        if b.startswith(tail[start:]):
            return a + b[len(tail) - start :]
        start = tail.find(head, start + 1)
    return a + " " + b


def has_sentence(answer: Answer) -> bool:
    """Whether the text says anything beyond the answerer's labels and citation markers."""
    text = _answer_words(answer)
    placeholders = ["The language model returned no answer. Please try again."]
    for p in placeholders:
        text = text.replace(p, " ")
    return re.search(r"\w\w", text) is not None


def _answer_words(answer: Answer) -> str:
    text = answer.text
    try:
        from assistant.extractive import LABEL

        text = text.replace(LABEL, " ")
    except ImportError:
        pass
    return _CITE.sub(" ", re.sub(r"(?m)^\s*>\s?", "", text))


def score(
    q: GroundingQuestion,
    answer: Answer,
    shown: Sequence[Citation],
    index: CorpusIndex,
) -> dict[str, Any]:
    """The flags of one question (see the module doc)."""
    doc_id = index.doc_for(q.source)
    refused = answer.mode == "no_answer"
    flags: dict[str, Any] = {
        "refused": refused,
        "empty": answer.mode in ANSWER_MODES and not has_sentence(answer),
        "source_shown": doc_id is not None and any(c.doc_id == doc_id for c in shown),
        "source_cited": doc_id is not None and any(c.doc_id == doc_id for c in answer.citations),
    }
    row: dict[str, Any] = {"flags": flags}
    if q.kind != "answerable":
        return row
    words = _answer_words(answer) if not refused else ""
    missing = [a for a in q.answers if not occurs(a, words)]
    flags["answer_contains"] = not missing
    row["answers_missing"] = missing
    if doc_id is None:
        flags["evidence_in_context"] = False
        row["evidence_match"] = "source not indexed"
        return row
    evidence = _LIST_MARK.sub("", q.evidence)
    located = bool(evidence) and occurs(evidence, index.document_text(doc_id))
    needles = [evidence] if located else list(q.answers)
    row["evidence_match"] = "evidence" if located else "answers"
    given = [h.chunk for h in answer.hits if h.chunk.doc_id == doc_id]
    flags["evidence_in_context"] = bool(given) and all(occurs(n, merged_text(given)) for n in needles)
    rank = None
    for i, hit in enumerate(answer.hits, start=1):
        if hit.chunk.doc_id == doc_id and all(occurs(n, hit.chunk.text) for n in needles):
            rank = i
            break
    row["evidence_rank"] = rank  # the first single passage holding it whole (None: none, or split)
    if not located:
        in_doc = [c for c in index.chunks.get(doc_id, []) if all(occurs(a, c.text) for a in q.answers)]
        row["answers_in_document"] = bool(in_doc) or all(
            occurs(a, index.document_text(doc_id)) for a in q.answers
        )
    return row


# -- the run -------------------------------------------------------------------------------------


def run_grounding(
    settings: Settings,
    questions_path: Path,
    corpus: Path,
    split: str = "all",
    modes: Sequence[str] = ("extractive",),
    limit: int = 0,
) -> dict[str, Any]:
    """Ingest the corpus, ask every question of the chosen split in each answer mode, score."""
    from enclave import wiring

    if split not in (*SPLITS, "all"):
        raise ConfigError(f"unknown split {split!r}: use tune, heldout or all")
    for mode in modes:
        if mode not in ANSWER_MODES:
            raise ConfigError(f"unknown answer mode {mode!r}: use extractive, llm or both")
    if "llm" in modes and not (settings.llm.base_url and settings.llm.model):
        raise ConfigError(
            "llm mode needs an LLM: set llm.base_url and llm.model (or --llm-url and --llm-model)"
        )
    if not corpus.is_dir():
        raise ConfigError(
            f"corpus folder {corpus} does not exist: give the folder the `source` paths are relative to"
        )
    questions = load_questions(questions_path)
    if split != "all":
        questions = [q for q in questions if q.split == split]
    if limit:
        questions = questions[:limit]
    own = grounding_settings(settings, corpus, llm=False)
    embedder = wiring.build_embedder(own)
    store = wiring.build_store(own)
    ingest, index = prepare_corpus(own, corpus, embedder, store)
    missing = sorted({q.source for q in questions if index.doc_for(q.source) is None})
    if missing:
        log.warning("%d expected sources are not in the index: %s", len(missing), ", ".join(missing[:5]))
    groups = tuple(sorted({g for _, gs in corpus_folders(corpus) for g in gs}))
    principal = Principal("grounding-eval", "staff", groups)
    rows: dict[str, dict[str, Any]] = {
        q.qid: {"id": q.qid, "split": q.split, "kind": q.kind, "type": q.type, "source": q.source}
        for q in questions
    }
    models: dict[str, str] = {}
    retrieval: dict[str, Any] = {}
    for mode in modes:
        assistant = wiring.build_assistant(
            grounding_settings(settings, corpus, llm=mode == "llm"), embedder, store
        )
        r = assistant.retriever
        retrieval = {"mode": r.mode, "top_k": r.top_k, "min_score": r.min_score, "candidates": r.candidates}
        for q in questions:
            rows[q.qid][mode] = _ask(assistant, principal, q, index)
        models[mode] = (
            assistant.llm.model if mode == "llm" and assistant.llm else f"extractive/{embedder.model_id}"
        )
    return {
        "set": questions_path.stem,
        "questions_file": str(questions_path),
        "corpus": str(corpus),
        "split": split,
        "modes": list(modes),
        "models": models,
        "embedding": embedder.model_id,
        "retrieval": retrieval,
        "ingest": ingest,
        "chunks": chunk_statistics(index),
        "missing_sources": missing,
        "summary": summarise(list(rows.values()), modes),
        "rows": list(rows.values()),
    }


def _ask(assistant: Any, principal: Principal, q: GroundingQuestion, index: CorpusIndex) -> dict[str, Any]:
    shown: tuple[Citation, ...] = ()
    answer: Answer | None = None
    try:
        for event in assistant.stream(principal, q.question):
            if event.kind == "sources":
                shown = event.citations
            elif event.kind == "done":
                answer = event.answer
    except EnclaveError as exc:
        log.warning("%s: %s", q.qid, exc)
        return {"error": str(exc), "flags": {}}
    assert answer is not None
    row = score(q, answer, shown, index)
    row["mode"] = answer.mode
    row["answer"] = answer.text[:800]
    by_chunk = {h.chunk.chunk_id: h for h in answer.hits}
    cited = {c.n for c in answer.citations}
    row["sources"] = [
        {
            "n": c.n,
            "source": index.relative(c.source),
            "page": c.page,
            "cosine": _round(by_chunk[c.chunk_id].cosine) if c.chunk_id in by_chunk else None,
            "cited": c.n in cited,
        }
        for c in shown
    ]
    searched = assistant.retriever.rank(
        principal, answer.search_query or q.question, assistant.retriever.top_k
    )
    row["top_cosine"] = _round(max((h.cosine for h in searched if h.cosine is not None), default=None))
    return row


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def summarise(rows: Sequence[dict[str, Any]], modes: Sequence[str]) -> list[dict[str, Any]]:
    """Per split (tune, heldout) and answer mode: the shares the issue asks for."""
    out = []
    for split in SPLITS:
        for mode in modes:
            scored = [r[mode] for r in rows if r["split"] == split and mode in r]
            kinds = [r["kind"] for r in rows if r["split"] == split and mode in r]
            if not scored:
                continue
            ans = [s for s, k in zip(scored, kinds) if k == "answerable" and "error" not in s]
            una = [s for s, k in zip(scored, kinds) if k == "unanswerable" and "error" not in s]

            def share(items: Sequence[dict[str, Any]], flag: str) -> float | None:
                return (
                    round(sum(bool(i["flags"].get(flag)) for i in items) / len(items), 4) if items else None
                )

            out.append(
                {
                    "split": split,
                    "mode": mode,
                    "answerable": len(ans),
                    "evidence_in_context": share(ans, "evidence_in_context"),
                    f"evidence_in_first_{FIRST_PASSAGES}": round(
                        sum(1 for s in ans if s.get("evidence_rank") and s["evidence_rank"] <= FIRST_PASSAGES)
                        / len(ans),
                        4,
                    )
                    if ans
                    else None,
                    "answer_contains": share(ans, "answer_contains"),
                    "source_shown": share(ans, "source_shown"),
                    "source_cited": share(ans, "source_cited"),
                    "refused_wrongly": share(ans, "refused"),
                    "empty": share(ans + una, "empty"),
                    "empty_answerable": share(ans, "empty"),
                    "unanswerable": len(una),
                    "refused_rightly": share(una, "refused"),
                    "empty_unanswerable": share(una, "empty"),
                    "evidence_by_answers": sum(1 for s in ans if s.get("evidence_match") == "answers"),
                    "errors": sum(1 for s in scored if "error" in s),
                }
            )
    return out


def format_table(results: Sequence[dict[str, Any]]) -> str:
    """One line per question set, split and mode; shares in %."""
    head = (
        f"{'set':<15}{'split':<9}{'mode':<11}{'ans':>5}{'ev.ctx':>8}{'contains':>9}{'refused':>8}"
        f"{'empty':>7}{'unans':>6}{'refused':>8}{'empty':>7}{'errors':>7}"
    )
    lines = [
        f"{'':<40}{'--------- answerable ---------':>37}{'-- unanswerable --':>21}",
        head,
    ]

    def pct(v: float | None) -> str:
        return "—" if v is None else f"{100 * v:.0f}%"

    for result in results:
        for s in result["summary"]:
            lines.append(
                f"{result['set']:<15}{s['split']:<9}{s['mode']:<11}{s['answerable']:>5}"
                f"{pct(s['evidence_in_context']):>8}{pct(s['answer_contains']):>9}{pct(s['refused_wrongly']):>8}"
                f"{pct(s['empty_answerable']):>7}{s['unanswerable']:>6}{pct(s['refused_rightly']):>8}"
                f"{pct(s['empty_unanswerable']):>7}{s['errors']:>7}"
            )
    models = {f"{m}: {name}" for r in results for m, name in r.get("models", {}).items()}
    if models:
        lines.append("models: " + "; ".join(sorted(models)))
    return "\n".join(lines)


__all__ = [
    "GroundingQuestion",
    "chunk_statistics",
    "format_table",
    "load_questions",
    "normalise",
    "occurs",
    "run_grounding",
    "summarise",
]
