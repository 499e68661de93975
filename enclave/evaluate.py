"""`enclave eval`: retrieval quality of the real pipeline on a question set.

Three kinds of input:

- a BEIR folder (`corpus.jsonl`, `queries.jsonl`, `qrels/<split>.tsv`), e.g. SciFact: each corpus
  entry is written as a Markdown file `<_id>.md` ("# title" then the text) and ingested through
  the real ingest into an index of its own; a hit's document is its file's stem;
- a folder of documents with questions (`docs/`, `queries.jsonl`, `qrels/<split>.tsv`), e.g.
  sec-10-q: `docs/` is ingested as it is; a hit's document is its file name;
- a question file (JSONL, one object a line: `question`, `relevant` (document ids, file paths or
  file names), optional `id` and `reference_answer`), asked against the configured index itself.

The dataset indexes live under `<data_dir>/eval/<name>/` and are ingested incrementally, so a
second run only re-embeds what changed (another embedding model re-embeds everything). Every
retriever is the one the assistant uses (assistant.retrieval.Retriever); only the relevance cut
is left out, as ranking metrics need the whole ranking.
"""

from __future__ import annotations

import csv
import json
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from assistant.evaluation import Scores, dedupe
from assistant.retrieval import MODES, Mode
from core.errors import ConfigError
from core.settings import Settings
from core.types import Hit, Principal
from vectorstore.embedding import resolve_backend

log = logging.getLogger(__name__)

EVAL_GROUP = "eval"
CHUNK_DEPTH = 50  # chunks ranked per query; enough for 10 distinct documents in practice


@dataclass
class Question:
    qid: str
    text: str
    relevant: dict[str, int]
    reference_answer: str = ""


@dataclass
class QuestionSet:
    name: str
    kind: str  # "beir", "docs" or "questions"
    questions: list[Question]
    root: Path
    key: str  # what a hit's document key is: "stem", "name" or "any"
    info: dict[str, Any] = field(default_factory=dict)


def read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) of each non-blank line of a JSON Lines file; a ConfigError naming the
    file and line for anything else."""
    try:
        with path.open(encoding="utf-8") as fh:
            for n, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except ValueError as exc:
                    raise ConfigError(f"{path}, line {n}: not valid JSON ({exc})") from exc
                if not isinstance(row, dict):
                    raise ConfigError(f"{path}, line {n}: each line must be a JSON object")
                yield n, row
    except OSError as exc:
        raise ConfigError(f"{path} cannot be read: {exc.strerror or exc}") from exc


def _read_qrels(path: Path) -> dict[str, dict[str, int]]:
    if not path.is_file():
        splits = sorted(p.stem for p in path.parent.glob("*.tsv"))
        raise ConfigError(f"no judgements {path}; splits present: {', '.join(splits) or 'none'}")
    qrels: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf-8", newline="") as fh:
        rows = csv.reader(fh, delimiter="\t")
        for row in rows:
            if len(row) < 3 or row[0] == "query-id":
                continue
            qrels.setdefault(row[0], {})[row[1]] = int(row[2])
    return qrels


def load_question_set(path: Path, split: str = "test") -> QuestionSet:
    """A BEIR folder, a documents-and-questions folder, or a question file (see the module doc)."""
    if path.is_dir():
        queries = path / "queries.jsonl"
        if not queries.is_file():
            raise ConfigError(f"{path} has no queries.jsonl: not an evaluation set")
        qrels = _read_qrels(path / "qrels" / f"{split}.tsv")
        texts = {str(q["_id"]): str(q["text"]) for _, q in read_jsonl(queries)}
        missing = sorted(set(qrels) - set(texts))
        if missing:
            raise ConfigError(f"{path}: judged queries missing from queries.jsonl: {', '.join(missing[:5])}")
        questions = [Question(qid, texts[qid], rel) for qid, rel in qrels.items()]
        if (path / "corpus.jsonl").is_file():
            return QuestionSet(f"{path.name}-{split}", "beir", questions, path, "stem", {"split": split})
        if (path / "docs").is_dir():
            return QuestionSet(f"{path.name}-{split}", "docs", questions, path, "name", {"split": split})
        raise ConfigError(f"{path} has neither corpus.jsonl nor docs/: nothing to ingest")
    questions = []
    for n, row in read_jsonl(path):
        if not isinstance(row.get("question"), str) or not isinstance(row.get("relevant"), list):
            raise ConfigError(f"{path}, line {n}: needs `question` (text) and `relevant` (a list)")
        relevant = {str(r): 1 for r in row["relevant"]}
        questions.append(
            Question(str(row.get("id", n)), row["question"], relevant, str(row.get("reference_answer", "")))
        )
    if not questions:
        raise ConfigError(f"{path} holds no questions")
    return QuestionSet(path.stem, "questions", questions, path, "any")


def materialize_beir(corpus: Path, dest: Path) -> Path:
    """Write each corpus entry as `<_id>.md`, leaving unchanged files alone (so that their mtime,
    and so the incremental ingest, sees them as unchanged)."""
    dest.mkdir(parents=True, exist_ok=True)
    for _, row in read_jsonl(corpus):
        doc_id = str(row["_id"])
        if "/" in doc_id or doc_id.startswith("."):
            raise ConfigError(f"{corpus}: document id {doc_id!r} cannot be a file name")
        title = " ".join(str(row.get("title") or "").split())
        text = str(row.get("text") or "").strip()
        body = (f"# {title}\n\n" if title else "") + text + "\n"
        target = dest / f"{doc_id}.md"
        if not target.is_file() or target.read_text(encoding="utf-8") != body:
            target.write_text(body, encoding="utf-8")
    return dest


def _hit_key(hit: Hit, key: str, relevant: dict[str, int]) -> str:
    source = Path(hit.chunk.source.split("#", 1)[0])
    if key == "stem":
        return source.stem
    if key == "name":
        return source.name
    for candidate in (hit.chunk.doc_id, hit.chunk.source, source.name, source.stem):
        if candidate in relevant:
            return candidate
    return hit.chunk.doc_id


def _cosines(hits: Sequence[Hit], key: str, relevant: dict[str, int]) -> dict[str, float | None]:
    """The best cosine overall, among relevant and among other documents (to calibrate the
    relevance threshold: where answerable and unanswerable questions part)."""
    best: dict[str, float | None] = {"top_cosine": None, "relevant_cosine": None, "other_cosine": None}
    for h in hits:
        if h.cosine is None:
            continue
        side = "relevant_cosine" if relevant.get(_hit_key(h, key, relevant), 0) > 0 else "other_cosine"
        for name in ("top_cosine", side):
            value = best[name]
            best[name] = h.cosine if value is None else max(value, h.cosine)
    return best


def evaluation_settings(settings: Settings, qset: QuestionSet) -> Settings:
    """The settings of the dataset's own index: same models and retrieval, own data folder."""
    if qset.kind == "questions":
        return settings
    return settings.model_copy(
        update={
            "data_dir": settings.data_dir / "eval" / qset.root.name,
            "store": settings.store.model_copy(
                update={"path": None, "lexical_path": None, "mode": "embedded"}
            ),
            "ingest": settings.ingest.model_copy(update={"manifest_path": None}),
            "audit": settings.audit.model_copy(update={"path": None}),
            "llm": settings.llm.model_copy(update={"base_url": None}),
        }
    )


def prepare_index(settings: Settings, qset: QuestionSet) -> dict[str, Any]:
    """Ingest the dataset's documents into its own index (incremental). Returns the ingest figures."""
    from enclave import wiring

    if qset.kind == "questions":
        return {}
    if qset.kind == "beir":
        files = materialize_beir(qset.root / "corpus.jsonl", settings.data_dir / "files")
    else:
        files = qset.root / "docs"
    pipeline = wiring.build_pipeline(settings)
    report = pipeline.run([files], [EVAL_GROUP], prune=True)
    return {
        "files": len(report.files),
        "counts": {s: report.count(s) for s in ("new", "changed", "unchanged", "failed", "skipped")},
        "seconds": round(report.seconds, 1),
        "failed": [f"{f.path}: {f.error}" for f in report.files if f.status == "failed"][:20],
    }


def run_eval(
    settings: Settings,
    qset: QuestionSet,
    modes: Sequence[Mode] = MODES,
    groups: Sequence[str] = (),
    limit: int = 0,
    per_query: bool = False,
) -> dict[str, Any]:
    """Rank every question with each retriever and score the rankings."""
    from enclave import wiring

    for mode in modes:
        if mode not in MODES:
            raise ConfigError(f"unknown retriever {mode!r}: choose from {', '.join(MODES)}")
    settings = evaluation_settings(settings, qset)
    ingest = prepare_index(settings, qset)
    assistant = wiring.build_assistant(settings)
    retriever = assistant.retriever
    if qset.kind != "questions":
        groups = (EVAL_GROUP,)
    elif not groups:
        store = retriever.store
        classes = store.access_classes() if hasattr(store, "access_classes") else {}
        groups = tuple(sorted({g for c in classes.values() for g in c}))
    principal = Principal("eval", "auditor", tuple(groups))
    questions = qset.questions[:limit] if limit else qset.questions
    scores = {mode: Scores() for mode in modes}
    rows: list[dict[str, Any]] = []
    seconds = dict.fromkeys(modes, 0.0)
    for q in questions:
        row: dict[str, Any] = {"id": q.qid, "relevant": q.relevant}
        for mode in modes:
            started = time.perf_counter()
            hits = retriever.rank(principal, q.text, CHUNK_DEPTH, mode)
            seconds[mode] += time.perf_counter() - started
            ranking = dedupe(_hit_key(h, qset.key, q.relevant) for h in hits)
            one = scores[mode].add(ranking, q.relevant)
            if per_query:
                row[mode] = {"ranking": ranking[:10], "metrics": one, **_cosines(hits, qset.key, q.relevant)}
        if per_query:
            rows.append(row)
    result: dict[str, Any] = {
        "set": qset.name,
        "kind": qset.kind,
        "questions": len(questions),
        "embedding": {
            "backend": resolve_backend(settings.embedding.backend),
            "model": retriever.embedder.model_id,
        },
        "retrieval": {
            "candidates": retriever.candidates,
            "dense_weight": retriever.dense_weight,
            "chunk_depth": CHUNK_DEPTH,
        },
        "ingest": ingest,
        "scores": {mode: scores[mode].means() for mode in modes},
        "judged": {mode: scores[mode].queries for mode in modes},
        "ms_per_query": {m: round(1000 * s / max(len(questions), 1), 1) for m, s in seconds.items()},
    }
    if per_query:
        result["per_query"] = rows
    return result


def format_table(result: dict[str, Any]) -> str:
    metrics = ("ndcg@10", "recall@5", "recall@10", "mrr@10")
    lines = [
        f"{result['set']}: {result['questions']} questions, embedding {result['embedding']['backend']}",
        f"{'retriever':<11}" + "".join(f"{m:>11}" for m in metrics) + f"{'ms/query':>11}",
    ]
    for mode, means in result["scores"].items():
        cells = "".join(f"{means.get(m, 0.0):>11.4f}" for m in metrics)
        lines.append(f"{mode:<11}{cells}{result['ms_per_query'][mode]:>11.1f}")
    return "\n".join(lines)


__all__ = ["QuestionSet", "evaluation_settings", "format_table", "load_question_set", "run_eval"]
