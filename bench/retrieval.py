"""Retrieval speed at scale: query latency through the product's retriever at 10k, 100k and 1M chunks.

    .venv/bin/python bench/retrieval.py [--sizes 10k,100k,1M] [--modes embedded,http]
        [--queries 200] [--work-dir DIR] [--vectors pool|model|random] [--pool 40000]
        [--skip-build] [--nice N] [--no-baseline] [--output FILE] [--quick]

The chunks are SYNTHETIC, made by this script from a fixed seed. Every chunk's TEXT is its own:
~150 pseudo-words drawn from a Zipf-distributed vocabulary of 30,000 made-up words (so BM25 sees
a realistic spread of common and rare terms, but no real language), with a title and a heading
of 3 words each. Their VECTORS (384 dimensions, all-MiniLM-L6-v2's) are made one of three ways
(--vectors; the work dir remembers which, and refuses another):

- pool (the default): the first --pool chunks (40,000) are embedded by the real model, as the
  product embeds a chunk (`ingest.chunking.embedding_text`: title / heading, then the text;
  truncated at the model's 256 tokens). Every chunk after them gets the vector of a pool chunk
  (its "parent", drawn with a seed fixed by its batch) moved by a small step inside the pool's
  own spread: v = parent + 0.35 x (pool[a] - pool[b]) for two other drawn pool chunks a, b,
  then renormalised (cosine to the parent ~0.975). So beyond the pool a vector is NOT the
  embedding of its own text; the vectors keep the model's distribution (the narrow cone where
  its embeddings of this gibberish lie, mean pairwise cosine ~0.78; ~0.74 with derived ones),
  which random vectors do not, and HNSW's cost depends on that distribution. The result JSON
  records the measured cosines.
- model: every chunk embedded by the real model (the pool is all of them). Honest all through,
  but ~3-15 chunks/s on 2 shared cores: days for 1M.
- random: random unit vectors, not embeddings at all (the first version of this script).

Pool vectors are kept in the work dir (pool/bNNNNN.npy, one file per batch of 5,000 chunks), so
the pool is embedded once and reused across sizes and runs. A pool file found there that this
build did not write (embedded elsewhere, e.g. on a GPU with the same model folder) is checked
first: three of its rows are embedded again here with the product's embedder and must agree
within 1e-4, or the build stops. Ten chunks make a document;
each document belongs to one access class (groups, shares of the corpus): public 50%, finance
15%, hr 10%, legal 10%, board 10%, board+finance 5%. The figures therefore measure search cost
(HNSW, FTS5, fusion, the group filter), not retrieval quality.

What is timed is the product's path: `assistant.retrieval.Retriever.retrieve` with the settings'
defaults (hybrid score fusion, 300 candidates from each retriever, top 6) over
`vectorstore.index.SearchIndex` (Chroma, one collection per access class, and the SQLite FTS5
lexical index), with the real all-MiniLM-L6-v2 embedding each query (torch fp32, the default).
Queries are 6 words drawn from the same Zipf vocabulary, leaving out its 100 most frequent
words (a real query's function words are dropped before BM25). Two users ask: "wide" (groups
public + finance: 3 access classes, 70% of the chunks) and "narrow" (hr: 1 class, 10%). Each
query's time is split into its stages (embedding, dense search, lexical search, BM25 ceiling,
the stored vectors of lexical-only hits, and the rest: fusion and bookkeeping).

Both Chroma modes read the same data: embedded (in the query process) and a `chroma run` server
on 127.0.0.1 (tests/support/chroma_server.py) over the same folder. Each measurement runs in a
fresh process, so memory is its own: for embedded, the query process's RSS after its queries
less its RSS with the model loaded but no store opened; for the server, the server's RSS. Disk
is the Chroma folder plus the lexical index. "Per million chunks" scales those linearly, which
small sizes overstate (fixed costs), so read it at the largest size.

Beside each, in the same process: the plain LangChain query (`langchain_chroma.Chroma` over the
public collection, `similarity_search(k=6)` with `HuggingFaceEmbeddings` of the same model
folder): dense only, one collection, no group logic, no lexical search. The ratio is plain /
Enclave (above 1: Enclave faster), as in bench/ingest.py.

Building 1M chunks takes hours on two cores (Chroma's inserts, not the embedding, set the pace),
so the build is incremental and resumable: the store lives in --work-dir and grows in batches of
5,000 chunks (each batch's chunks depend only on the seed and its number); `state.json` records
what is done after each batch, and a run picks up where the last one stopped. The sizes are
measured in increasing order on the one growing store (a rerun on a kept store leaves out the
sizes below it). --skip-build measures the store as it stands (its one size), building nothing:
a rerun of the queries on a quiet machine takes minutes. --nice N lowers the build's CPU
priority (not the queries'). Open the work dir's Chroma from no other process while a build
runs: embedded Chroma belongs to one process, and a second one reading during a build once left
vectors unreadable. Timings are never asserted by tests; they are recorded here.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make the project importable
    sys.path.insert(0, str(ROOT))

from bench.machine import loadavg, machine  # noqa: E402

RESULTS = ROOT / "bench" / "results"
SEED = 20261130
DIM = 384
BATCH = 5000
CHUNKS_PER_DOC = 10
WORDS_PER_CHUNK = 150
VOCAB_SIZE = 30_000
ZIPF_S = 1.07
QUERY_WORDS = 6
QUERY_SKIP_TOP = 100
PREFIX = "bench"
BUSY_LOADAVG = 1.5
POOL = 40_000
STEP = 0.35  # the pool-mode perturbation: parent + STEP x (pool[a] - pool[b])
CHECK_TOLERANCE = 1e-4
VECTOR_MODES = ("pool", "model", "random")
# (groups, share of the documents)
CLASSES: tuple[tuple[tuple[str, ...], float], ...] = (
    (("public",), 0.50),
    (("finance",), 0.15),
    (("hr",), 0.10),
    (("legal",), 0.10),
    (("board",), 0.10),
    (("board", "finance"), 0.05),
)
USERS = {"wide": ("finance", "public"), "narrow": ("hr",)}
STAGES = ("embed_query", "search", "search_lexical", "lexical_ceiling", "embeddings")
PACKAGES = (
    "chromadb",
    "torch",
    "sentence-transformers",
    "langchain-chroma",
    "langchain-huggingface",
    "numpy",
)


# -- the synthetic corpus ---------------------------------------------------------------------------


def vocabulary() -> list[str]:
    """VOCAB_SIZE distinct pronounceable made-up words, the same on every run."""
    import random

    rng = random.Random(SEED)
    onsets = (
        "b c d f g h j k l m n p r s t v w z br cr dr fr gr pr tr st sk sp pl bl cl fl gl sh ch th".split()
    )
    vowels = "a e i o u ai ea ou io ee oo".split()
    codas = ["", "", "n", "r", "s", "t", "l", "m", "nd", "st", "rk", "x"]
    words: set[str] = set()
    ordered: list[str] = []
    while len(ordered) < VOCAB_SIZE:
        word = "".join(
            rng.choice(onsets) + rng.choice(vowels) for _ in range(rng.randint(1, 3))
        ) + rng.choice(codas)
        if len(word) > 2 and word not in words:
            words.add(word)
            ordered.append(word)
    return ordered


def zipf_cdf(size: int, skip: int = 0) -> Any:
    import numpy as np

    weights = 1.0 / np.arange(1, size + 1) ** ZIPF_S
    weights[:skip] = 0.0
    cdf = np.cumsum(weights)
    return cdf / cdf[-1]


def class_of_doc(doc: int) -> tuple[str, ...]:
    """A document's access class: fixed by its number, in the CLASSES shares."""
    import numpy as np

    u = np.random.default_rng([SEED, 7, doc]).random()
    total = 0.0
    for groups, share in CLASSES:
        total += share
        if u < total:
            return groups
    return CLASSES[-1][0]


def make_batch(batch: int, vocab: list[str], cdf: Any) -> tuple[list[Any], list[list[float]]]:
    """Chunks [batch*BATCH, (batch+1)*BATCH): text, metadata and random unit vectors."""
    import numpy as np

    from core.types import Chunk

    rng = np.random.default_rng([SEED, batch])
    vectors = rng.standard_normal((BATCH, DIM))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    words = np.searchsorted(cdf, rng.random((BATCH, WORDS_PER_CHUNK + 6)))
    chunks = []
    for row in range(BATCH):
        n = batch * BATCH + row
        doc = n // CHUNKS_PER_DOC
        ids = words[row]
        doc_id = f"d{doc:07d}"
        chunks.append(
            Chunk(
                chunk_id=f"{doc_id}:{n % CHUNKS_PER_DOC:04d}",
                doc_id=doc_id,
                text=" ".join(vocab[i] for i in ids[6:]),
                source=f"synthetic/{doc_id}.md",
                groups=class_of_doc(doc),
                index=n % CHUNKS_PER_DOC,
                title=" ".join(vocab[i] for i in ids[:3]).capitalize(),
                section=" ".join(vocab[i] for i in ids[3:6]).capitalize(),
            )
        )
    return chunks, vectors.tolist()


def queries(count: int, vocab: list[str]) -> list[str]:
    import numpy as np

    rng = np.random.default_rng([SEED, 99])
    cdf = zipf_cdf(len(vocab), skip=QUERY_SKIP_TOP)
    picks = np.searchsorted(cdf, rng.random((count, QUERY_WORDS)))
    return [" ".join(vocab[i] for i in row) for row in picks]


# -- helpers --------------------------------------------------------------------------------------


def rss_mib(pid: int | None = None) -> float:
    path = Path(f"/proc/{pid or 'self'}/status")
    for line in path.read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def disk_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def percentiles(values: Sequence[float]) -> dict[str, float | int | None]:
    if not values:
        return {"p50": None, "p95": None, "p99": None, "mean": None, "n": 0}
    ms = [v * 1000 for v in values]
    if len(ms) == 1:
        return {
            "p50": round(ms[0], 2),
            "p95": round(ms[0], 2),
            "p99": round(ms[0], 2),
            "mean": round(ms[0], 2),
            "n": 1,
        }
    q = statistics.quantiles(ms, n=100, method="inclusive")
    return {
        "p50": round(q[49], 2),
        "p95": round(q[94], 2),
        "p99": round(q[98], 2),
        "mean": round(statistics.fmean(ms), 2),
        "n": len(ms),
    }


def paths(work: Path) -> dict[str, Path]:
    return {"chroma": work / "chroma", "lexical": work / "lexical.sqlite3", "state": work / "state.json"}


def read_state(work: Path, vectors: str | None = None, pool: int | None = None) -> dict[str, Any]:
    """The work dir's progress; `vectors`/`pool` (None: whatever it holds) must match its own."""
    state_path = paths(work)["state"]
    if state_path.exists():
        state: dict[str, Any] = json.loads(state_path.read_text())
        if state.get("batch") != BATCH or state.get("seed") != SEED:
            raise SystemExit(f"{work} was built with another batch size or seed: use another --work-dir")
        state.setdefault("vectors", "random")  # stores from before --vectors
        state.setdefault("pool", 0)
        state.setdefault("embed_s", 0.0)
        state.setdefault("pool_checked", {})
        if vectors is not None and (state["vectors"], state["pool"]) != (vectors, pool_size(vectors, pool)):
            raise SystemExit(
                f"{work} holds vectors made by --vectors {state['vectors']}"
                + (f" --pool {state['pool']}" if state["vectors"] == "pool" else "")
                + ": use the same options or another --work-dir"
            )
        return state
    return {
        "built": 0,
        "batch": BATCH,
        "seed": SEED,
        "dim": DIM,
        "vectors": vectors or "pool",
        "pool": pool_size(vectors or "pool", pool),
        "seconds": 0.0,
        "chroma_s": 0.0,
        "lexical_s": 0.0,
        "generate_s": 0.0,
        "embed_s": 0.0,
        "pool_checked": {},
    }


def pool_size(vectors: str, pool: int | None) -> int:
    """How many chunks the real model embeds: --pool in pool mode, all in model mode, none in random."""
    return {"pool": POOL if pool is None else pool, "model": -1, "random": 0}[vectors]


def write_state(work: Path, state: dict[str, Any]) -> None:
    target = paths(work)["state"]
    tmp = target.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=1))
    os.replace(tmp, target)


def open_index(work: Path, mode: str, port: int | None) -> Any:
    from vectorstore.chroma import ChromaStore
    from vectorstore.index import SearchIndex
    from vectorstore.lexical import LexicalIndex

    p = paths(work)
    dense = (
        ChromaStore.http("127.0.0.1", port or 0, PREFIX)
        if mode == "http"
        else ChromaStore.embedded(p["chroma"], PREFIX)
    )
    return SearchIndex(dense, LexicalIndex(p["lexical"]))


def side_env() -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    from core.offline import disable_telemetry, install_guard

    disable_telemetry()
    install_guard("strict")  # loopback only: the Chroma server is on 127.0.0.1


# -- side: build ------------------------------------------------------------------------------------


class Vectors:
    """A build's vectors for each batch, by the work dir's --vectors mode (see the module doc)."""

    def __init__(self, work: Path, state: dict[str, Any]) -> None:
        self.work = work
        self.state = state
        self.mode: str = state["vectors"]
        self.pool: int = state["pool"]  # -1: every chunk
        self._embedder: Any = None
        self._matrix: Any = None

    @property
    def embedder(self) -> Any:
        if self._embedder is None:
            from core.settings import load_settings
            from enclave import wiring

            self._embedder = wiring.build_embedder(load_settings(None, data_dir=self.work / "unused"))
        return self._embedder

    def pool_file(self, batch: int) -> Path:
        return self.work / "pool" / f"b{batch:05d}.npy"

    def embedded(self, batch: int, chunks: list[Any], rows: int) -> Any:
        """The real model's vectors of the batch's first `rows` chunks, kept in the pool file."""
        import numpy as np

        from ingest.chunking import embedding_text

        path = self.pool_file(batch)
        have = np.load(path) if path.exists() else np.zeros((0, DIM), np.float32)
        key = str(batch)
        if len(have) and key not in self.state["pool_checked"]:
            # Made by another build (or elsewhere): three rows must be what this embedder gives.
            started = time.perf_counter()
            picks = sorted({0, len(have) // 2, len(have) - 1})
            again = np.array(self.embedder.embed_documents([embedding_text(chunks[i]) for i in picks]))
            diff = float(np.abs(again - have[picks]).max())
            if diff > CHECK_TOLERANCE:
                raise SystemExit(f"{path}: rows {picks} differ from this embedder's by {diff:.2g}")
            self.state["pool_checked"][key] = diff
            self.state["embed_s"] += time.perf_counter() - started  # the model's load included
        if len(have) < rows:
            started = time.perf_counter()
            new = self.embedder.embed_documents([embedding_text(c) for c in chunks[len(have) : rows]])
            have = np.concatenate([have, np.asarray(new, np.float32)])
            path.parent.mkdir(exist_ok=True)
            tmp = path.with_suffix(".tmp.npy")
            np.save(tmp, have)
            os.replace(tmp, path)
            self.state["pool_checked"][key] = 0.0  # written by this embedder
            self.state["embed_s"] += time.perf_counter() - started
        return have[:rows]

    def matrix(self) -> Any:
        """The whole pool, once built: (pool, DIM)."""
        import numpy as np

        if self._matrix is None:
            parts = [np.load(self.pool_file(b)) for b in range(-(-self.pool // BATCH))]
            self._matrix = np.concatenate(parts)[: self.pool]
            if len(self._matrix) != self.pool:
                raise SystemExit(f"{self.work}/pool holds {len(self._matrix)} vectors, not {self.pool}")
        return self._matrix

    def derived(self, batch: int) -> Any:
        """Vectors for a batch's chunks beyond the pool: a pool vector moved inside the pool's spread."""
        return derive(self.matrix(), batch)

    def batch(self, batch: int, chunks: list[Any], random_vectors: list[list[float]], end: int) -> Any:
        """Vectors of the batch's chunks [0, end) (a resumed batch uses only its tail)."""
        import numpy as np

        if self.mode == "random":
            return np.asarray(random_vectors[:end], np.float32)
        in_pool = end if self.pool < 0 else max(0, min(end, self.pool - batch * BATCH))
        parts = [self.embedded(batch, chunks, in_pool)] if in_pool else []
        if in_pool < end:
            parts.append(self.derived(batch)[in_pool:end])
        return np.concatenate(parts)


def derive(pool: Any, batch: int) -> Any:
    import numpy as np

    rng = np.random.default_rng([SEED, 11, batch])
    parent, a, b = rng.integers(0, len(pool), (3, BATCH))
    v = pool[parent] + STEP * (pool[a] - pool[b])
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v.astype(np.float32)


def vector_stats(work: Path, sample: int = 2000) -> dict[str, Any] | None:
    """Cosines of the pool and of derived vectors (one batch's worth), to show what derivation does."""
    import numpy as np

    state = read_state(work)
    if state["vectors"] != "pool" or state["built"] <= state["pool"]:
        return None
    vectors = Vectors(work, state)
    pool = vectors.matrix()
    batch = -(-state["pool"] // BATCH)
    rng = np.random.default_rng([SEED, 12, batch])
    parent, _, _ = np.random.default_rng([SEED, 11, batch]).integers(0, len(pool), (3, BATCH))
    derived = derive(pool, batch)
    to_parent = (derived * pool[parent]).sum(axis=1)
    pick = rng.choice(len(pool), min(sample, len(pool)), replace=False)

    def pairwise(m: Any) -> tuple[float, float]:
        sims = m @ m.T
        np.fill_diagonal(sims, np.nan)
        return round(float(np.nanmean(sims)), 3), round(float(np.nanmax(sims, axis=1).mean()), 3)

    pool_mean, pool_nn = pairwise(pool[pick])
    derived_mean, derived_nn = pairwise(derived[: len(pick)])
    return {
        "sample": len(pick),
        "derived_cosine_to_parent_mean": round(float(to_parent.mean()), 3),
        "derived_cosine_to_parent_min": round(float(to_parent.min()), 3),
        "pool_pairwise_cosine_mean": pool_mean,
        "pool_nearest_cosine_mean_in_sample": pool_nn,
        "derived_pairwise_cosine_mean": derived_mean,
        "derived_nearest_cosine_mean_in_sample": derived_nn,
    }


def side_build(
    work: Path, target: int, vectors: str = "pool", pool: int | None = None, nice: int = 0
) -> dict[str, Any]:
    """Grow the store to `target` chunks, a batch at a time, recording progress after each."""
    side_env()
    if nice:
        os.nice(nice)
    work.mkdir(parents=True, exist_ok=True)
    state = read_state(work, vectors, pool)
    write_state(work, state)
    index = open_index(work, "embedded", None)
    make_vectors = Vectors(work, state)
    vocab = vocabulary()
    cdf = zipf_cdf(len(vocab))
    start_built = state["built"]
    while state["built"] < target:
        # A batch's chunks depend only on its number, so a partly added batch is made again
        # and added from where it stopped.
        batch, offset = divmod(state["built"], BATCH)
        end = min(BATCH, target - batch * BATCH)
        t0 = time.perf_counter()
        embed_before = state["embed_s"]
        chunks, random_vectors = make_batch(batch, vocab, cdf)
        vectors_np = make_vectors.batch(batch, chunks, random_vectors, end)
        chunks, batch_vectors = chunks[offset:end], vectors_np[offset:end].tolist()
        t1 = time.perf_counter()
        index.dense.upsert(chunks, batch_vectors)
        t2 = time.perf_counter()
        index.lexical.upsert(chunks)
        t3 = time.perf_counter()
        state["built"] = batch * BATCH + end
        state["generate_s"] += t1 - t0 - (state["embed_s"] - embed_before)
        state["chroma_s"] += t2 - t1
        state["lexical_s"] += t3 - t2
        state["seconds"] += t3 - t0
        write_state(work, state)
        rate = len(chunks) / (t3 - t0)
        print(f"  built {state['built']:,} chunks ({rate:,.0f} chunks/s this batch)", flush=True)
    return {
        "built": state["built"],
        "added": state["built"] - start_built,
        "state": state,
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


# -- side: query --------------------------------------------------------------------------------------


class Timed:
    """Delegates to `inner`, adding up the time spent in the named methods."""

    def __init__(self, inner: Any, names: Sequence[str]) -> None:
        self._inner = inner
        self._names = set(names)
        self.spent: dict[str, float] = dict.fromkeys(names, 0.0)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if name not in self._names:
            return attr

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return attr(*args, **kwargs)
            finally:
                self.spent[name] += time.perf_counter() - started

        return timed


def side_query(work: Path, mode: str, port: int | None, count: int, baseline: bool) -> dict[str, Any]:
    side_env()
    from assistant.retrieval import Retriever
    from core.settings import load_settings
    from core.types import Principal
    from enclave import wiring

    settings = load_settings(None, data_dir=work / "unused")
    embedder = wiring.build_embedder(settings)
    embedder.embed_query("warm up the model")
    rss_model = rss_mib()
    r = settings.retrieval
    index = open_index(work, mode, port)
    store = Timed(index, STAGES[1:])
    timed_embedder = Timed(embedder, STAGES[:1])
    retriever = Retriever(
        store, timed_embedder, r.top_k, r.min_score, r.mode, r.candidates, dense_weight=r.dense_weight
    )
    texts = queries(count + 5, vocabulary())
    result: dict[str, Any] = {
        "mode": mode,
        "chunks": index.count(),
        "retrieval": {"mode": r.mode, "candidates": r.candidates, "top_k": r.top_k},
    }
    t0 = time.perf_counter()
    retriever.retrieve(Principal("wide", groups=USERS["wide"]), texts[0])
    result["first_query_ms"] = round((time.perf_counter() - t0) * 1000, 1)
    for text in texts[1:5]:  # warm-up
        retriever.retrieve(Principal("wide", groups=USERS["wide"]), text)
    for who, groups in USERS.items():
        principal = Principal(who, groups=groups)
        totals: list[float] = []
        stages: dict[str, list[float]] = {s: [] for s in (*STAGES, "fusion_and_rest")}
        for text in texts[5:]:
            before = {**store.spent, **timed_embedder.spent}
            started = time.perf_counter()
            retriever.retrieve(principal, text)
            total = time.perf_counter() - started
            after = {**store.spent, **timed_embedder.spent}
            spent = {s: after[s] - before[s] for s in STAGES}
            for s in STAGES:
                stages[s].append(spent[s])
            stages["fusion_and_rest"].append(total - sum(spent.values()))
            totals.append(total)
        result[who] = {
            "groups": list(groups),
            "total_ms": percentiles(totals),
            "stages_ms": {s: percentiles(v) for s, v in stages.items()},
        }
    result["rss_mib_model_only"] = rss_model
    result["rss_mib_after_queries"] = rss_mib()
    result["store_rss_mib"] = round(result["rss_mib_after_queries"] - rss_model, 1)
    result["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    if baseline:
        result["plain_langchain"] = plain_langchain(index, texts)
    return result


def plain_langchain(index: Any, texts: list[str]) -> dict[str, Any]:
    """A plain LangChain dense query over the public collection (no groups, no lexical)."""
    from langchain_chroma import Chroma
    from langchain_huggingface import HuggingFaceEmbeddings

    from vectorstore.chroma import collection_name
    from vectorstore.embedding import default_model_path

    embeddings = HuggingFaceEmbeddings(model_name=str(default_model_path()))
    store = Chroma(
        client=index.dense._client,
        collection_name=collection_name(PREFIX, ("public",)),
        embedding_function=embeddings,
    )
    for text in texts[:5]:
        store.similarity_search(text, k=6)
    times = []
    for text in texts[5:]:
        started = time.perf_counter()
        store.similarity_search(text, k=6)
        times.append(time.perf_counter() - started)
    return {
        "what": "langchain_chroma.Chroma.similarity_search(k=6), public collection, HuggingFaceEmbeddings",
        "total_ms": percentiles(times),
    }


# -- the orchestrator -------------------------------------------------------------------------------------


def run_side(args: list[str]) -> dict[str, Any]:
    """Run this script as a side in a fresh process; return its JSON result."""
    with tempfile.NamedTemporaryFile("r", suffix=".json", delete=False) as out:
        result_path = Path(out.name)
    try:
        done = subprocess.run([sys.executable, __file__, *args, "--result", str(result_path)], check=False)
        if done.returncode != 0:
            raise SystemExit(f"side {' '.join(args)} failed with exit status {done.returncode}")
        data: dict[str, Any] = json.loads(result_path.read_text())
        return data
    finally:
        result_path.unlink(missing_ok=True)


@contextlib.contextmanager
def chroma_server(work: Path) -> Any:
    """`chroma run` over the work dir's Chroma folder (linked into the test server's own folder,
    which it removes on stop; the link goes, the data stays)."""
    import psutil

    from tests.support.chroma_server import ChromaServer

    server = ChromaServer()
    (server.base / "data").symlink_to(paths(work)["chroma"].resolve(), target_is_directory=True)
    started = time.perf_counter()
    server.start()
    assert server.process is not None
    try:
        yield server, time.perf_counter() - started, psutil.Process(server.process.pid)
    finally:
        server.stop()


def parse_size(text: str) -> int:
    text = text.strip().lower().replace("_", "").replace(",", "")
    factor = 1
    if text.endswith("k"):
        factor, text = 1000, text[:-1]
    elif text.endswith("m"):
        factor, text = 1_000_000, text[:-1]
    try:
        return int(float(text) * factor)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size such as 10k, 100k or 1M") from None


def sizes_arg(text: str) -> list[int]:
    sizes = sorted({parse_size(t) for t in text.split(",") if t.strip()})
    if not sizes or sizes[0] < 1:
        raise argparse.ArgumentTypeError("give sizes above 0, e.g. 10k,100k,1M")
    return sizes


def describe_vectors(state: dict[str, Any]) -> str:
    mode, pool = state["vectors"], state["pool"]
    if mode == "random":
        return f"random unit vectors, {DIM} dimensions (not embeddings of the text)"
    if mode == "model":
        return f"every chunk embedded by the real all-MiniLM-L6-v2 ({DIM} dimensions)"
    return (
        f"the first {pool:,} chunks embedded by the real all-MiniLM-L6-v2 ({DIM} dimensions); every "
        f"later chunk (unique text) has a pool chunk's vector moved by {STEP} x the difference of two "
        "other pool vectors, renormalised (not the embedding of its own text)"
    )


def fmt(v: float | None, digits: int = 1) -> str:
    return "—" if v is None else f"{v:,.{digits}f}"


def table(result: dict[str, Any]) -> str:
    head = [
        "chunks",
        "Chroma",
        "user (share read)",
        "p50 ms",
        "p95 ms",
        "embed p50",
        "dense p50",
        "lexical p50",
        "plain LangChain p50 ms",
        "ratio plain / Enclave (p50)",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    share = {"wide": "public+finance (70%)", "narrow": "hr (10%)"}
    for m in result["measurements"]:
        base = (m.get("plain_langchain") or {}).get("total_ms", {}).get("p50")
        for who in USERS:
            u = m[who]
            st = u["stages_ms"]
            p50 = u["total_ms"]["p50"]
            ratio = f"{base / p50:.2f}x" if base and p50 and who == "wide" else ""
            lines.append(
                "| "
                + " | ".join(
                    [
                        f"{m['chunks']:,}",
                        m["mode"],
                        share[who],
                        fmt(p50),
                        fmt(u["total_ms"]["p95"]),
                        fmt(st["embed_query"]["p50"]),
                        fmt(st["search"]["p50"]),
                        fmt(st["search_lexical"]["p50"]),
                        fmt(base) if who == "wide" else "",
                        ratio,
                    ]
                )
                + " |"
            )
    lines.append("")
    head = [
        "chunks",
        "build rate, chunks/s (Chroma / FTS5 / embedding share)",
        "disk, MB",
        "disk per 1M chunks, GB",
        "embedded: store RSS, MB",
        "server RSS, MB",
        "memory per 1M chunks (embedded / server), GB",
    ]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in result["sizes"]:
        per_m = 1e6 / s["chunks"]
        emb = next(
            (m for m in result["measurements"] if m["chunks"] == s["chunks"] and m["mode"] == "embedded"),
            None,
        )
        srv = next(
            (m for m in result["measurements"] if m["chunks"] == s["chunks"] and m["mode"] == "http"), None
        )
        emb_rss = emb["store_rss_mib"] if emb else None
        srv_rss = srv["server_rss_mib"] if srv else None
        build = s["build"]
        rate = build["chunks_per_s"]
        share = (
            f"{build['chroma_share']:.0%} / {build['lexical_share']:.0%} / {build.get('embed_share') or 0:.0%}"
            if rate
            else ""
        )
        lines.append(
            "| "
            + " | ".join(
                [
                    f"{s['chunks']:,}",
                    f"{fmt(rate, 0)} ({share})",
                    fmt(s["disk_bytes"] / 1e6),
                    fmt(s["disk_bytes"] * per_m / 1e9, 2),
                    fmt(emb_rss, 0),
                    fmt(srv_rss, 0),
                    f"{fmt(emb_rss * per_m / 1024 if emb_rss is not None else None, 2)} / {fmt(srv_rss * per_m / 1024 if srv_rss is not None else None, 2)}",
                ]
            )
            + " |"
        )
    corpus = result.get("corpus", {})
    stats = corpus.get("vector_stats")
    if stats:
        lines += [
            "",
            f"Vectors beyond the {corpus['pool']:,}-chunk pool are derived (not embeddings of their "
            f"text): cosine to their parent {stats['derived_cosine_to_parent_mean']} mean "
            f"({stats['derived_cosine_to_parent_min']} min); mean pairwise cosine "
            f"{stats['derived_pairwise_cosine_mean']} (the real pool's: {stats['pool_pairwise_cosine_mean']}); "
            f"mean nearest-neighbour cosine in a sample of {stats['sample']:,}: "
            f"{stats['derived_nearest_cosine_mean_in_sample']} (pool: {stats['pool_nearest_cosine_mean_in_sample']}).",
        ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--sizes",
        type=sizes_arg,
        default=sizes_arg("10k,100k,1M"),
        help="chunk counts to measure at, e.g. 10k,100k,1M (default)",
    )
    ap.add_argument(
        "--modes", default="embedded,http", help="Chroma modes: embedded, http or both (default both)"
    )
    ap.add_argument(
        "--queries", type=int, default=200, help="timed queries per user and measurement (default 200)"
    )
    ap.add_argument(
        "--work-dir",
        type=Path,
        help="where the store is built and kept; a rerun resumes it (default: a temp folder, removed)",
    )
    ap.add_argument(
        "--vectors",
        choices=VECTOR_MODES,
        default="pool",
        help="how chunk vectors are made (see above): pool (default), model or random",
    )
    ap.add_argument(
        "--pool",
        type=parse_size,
        default=POOL,
        help=f"--vectors pool: how many chunks the real model embeds (default {POOL:,})",
    )
    ap.add_argument(
        "--skip-build",
        action="store_true",
        help="measure the --work-dir store at its present size; build nothing (--sizes ignored)",
    )
    ap.add_argument("--nice", type=int, default=0, help="niceness added to the build process (default 0)")
    ap.add_argument("--no-baseline", action="store_true", help="skip the plain LangChain query")
    ap.add_argument(
        "--output", type=Path, help="result JSON (default bench/results/retrieval-<UTC date>[-quick].json)"
    )
    ap.add_argument("--quick", action="store_true", help="a smoke run: 10k chunks, 50 queries")
    # A side's own process (internal).
    ap.add_argument("--side", choices=["build", "query"], help=argparse.SUPPRESS)
    ap.add_argument("--target", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--mode", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.side:
        if args.side == "build":
            side = side_build(args.work_dir, args.target, args.vectors, args.pool, args.nice)
        else:
            side = side_query(args.work_dir, args.mode, args.port, args.queries, not args.no_baseline)
        args.result.write_text(json.dumps(side), encoding="utf-8")
        return 0

    if args.quick:
        args.sizes = [min(args.sizes[0], 10_000)]
        args.queries = min(args.queries, 50)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not modes or set(modes) - {"embedded", "http"}:
        ap.error("--modes: embedded, http or embedded,http")
    started = dt.datetime.now(dt.UTC)
    loads = [loadavg()]
    info = machine(PACKAGES)
    print(
        f"{info['cpu_model']}, {info['cores']} cores, {info['ram_gib']} GiB; load average {loads[0]}",
        flush=True,
    )
    keep = args.work_dir is not None
    if args.skip_build and not keep:
        ap.error("--skip-build needs the --work-dir of a built store")
    work = (args.work_dir or Path(tempfile.mkdtemp(prefix="enclave-bench-retrieval-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    if args.skip_build:
        held = read_state(work)
        if not held["built"]:
            ap.error(f"--skip-build: {work} holds no store")
        args.sizes, args.vectors, args.pool = [held["built"]], held["vectors"], held["pool"]
    built = read_state(work, args.vectors, args.pool)["built"]
    too_small = [s for s in args.sizes if s < built]
    if too_small:
        # A store only grows: a rerun on a kept store measures the sizes still ahead of it.
        args.sizes = [s for s in args.sizes if s >= built]
        if not args.sizes:
            raise SystemExit(
                f"{work} already holds {built:,} chunks, more than every size asked for: use --skip-build "
                "to measure it as it stands, or another --work-dir"
            )
        print(f"{work} already holds {built:,} chunks: sizes {too_small} left out", flush=True)
    sizes_out: list[dict[str, Any]] = []
    measurements: list[dict[str, Any]] = []
    try:
        for size in args.sizes:
            if args.skip_build:
                print(f"measuring the store in {work} as it stands ({size:,} chunks)", flush=True)
                build = {"added": 0, "state": read_state(work), "peak_rss_mib": None}
            else:
                print(f"building to {size:,} chunks in {work}", flush=True)
                build = run_side(
                    [
                        "--side", "build", "--work-dir", str(work), "--target", str(size),
                        "--vectors", args.vectors, "--pool", str(args.pool), "--nice", str(args.nice),
                    ]
                )  # fmt: skip
            state = build["state"]
            p = paths(work)
            disk = disk_bytes(p["chroma"]) + sum(disk_bytes(f) for f in work.glob("lexical.sqlite3*"))
            seconds = state["seconds"]
            sizes_out.append(
                {
                    "chunks": state["built"],
                    "disk_bytes": disk,
                    "chroma_bytes": disk_bytes(p["chroma"]),
                    "build": {
                        "seconds_total": round(seconds, 1),
                        "chunks_per_s": round(state["built"] / seconds, 1) if seconds else None,
                        "chroma_share": state["chroma_s"] / seconds if seconds else None,
                        "lexical_share": state["lexical_s"] / seconds if seconds else None,
                        "generate_share": state["generate_s"] / seconds if seconds else None,
                        "embed_share": state["embed_s"] / seconds if seconds else None,
                        "seconds_embedding_pool_here": round(state["embed_s"], 1),
                        "added_this_run": build["added"],
                        "peak_rss_mib_this_run": build["peak_rss_mib"],
                        "note": "seconds accumulate over every run that built this store, on this machine; "
                        "pool vectors embedded elsewhere (checked here) cost nothing here",
                    },
                }
            )
            for mode in modes:
                loads.append(loadavg())
                side_args = [
                    "--side",
                    "query",
                    "--work-dir",
                    str(work),
                    "--mode",
                    mode,
                    "--queries",
                    str(args.queries),
                ]
                if args.no_baseline:
                    side_args.append("--no-baseline")
                print(
                    f"querying {state['built']:,} chunks, {mode} Chroma, {args.queries} queries per user",
                    flush=True,
                )
                if mode == "http":
                    with chroma_server(work) as (server, start_s, proc):
                        rss_start = round(proc.memory_info().rss / 2**20, 1)
                        m = run_side([*side_args, "--port", str(server.port)])
                        m["server_start_s"] = round(start_s, 1)
                        m["server_rss_mib_at_start"] = rss_start
                        m["server_rss_mib"] = round(proc.memory_info().rss / 2**20, 1)
                else:
                    m = run_side(side_args)
                loads.append(loadavg())
                m["loadavg_end"] = loads[-1]
                measurements.append(m)
                wide = m["wide"]["total_ms"]
                print(f"  wide user: p50 {wide['p50']} ms, p95 {wide['p95']} ms", flush=True)
        vectors_state = read_state(work)
        stats = vector_stats(work)
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    loads.append(loadavg())
    busy = max(loads)
    result = {
        "benchmark": "retrieval",
        "command": "python bench/retrieval.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "started_utc": started.isoformat(timespec="seconds"),
        "finished_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": info,
        "loadavg": {"samples": loads, "max_seen": busy, "reliable": busy <= BUSY_LOADAVG},
        "corpus": {
            "synthetic": True,
            "vectors": describe_vectors(vectors_state),
            "vector_mode": vectors_state["vectors"],
            "pool": vectors_state["pool"],
            "pool_step": STEP if vectors_state["vectors"] == "pool" else None,
            "pool_checked_max_diff": max(vectors_state["pool_checked"].values(), default=None),
            "vector_stats": stats,
            "text": f"{WORDS_PER_CHUNK} pseudo-words a chunk from a Zipf(s={ZIPF_S}) vocabulary of {VOCAB_SIZE:,} made-up words",
            "classes": [{"groups": list(g), "share": s} for g, s in CLASSES],
            "queries": f"{QUERY_WORDS} words from the same vocabulary without its {QUERY_SKIP_TOP} most frequent, embedded by the real model",
            "seed": SEED,
        },
        "settings": {
            "sizes": args.sizes,
            "modes": modes,
            "queries_per_user": args.queries,
            "users": {k: list(v) for k, v in USERS.items()},
        },
        "sizes": sizes_out,
        "measurements": measurements,
    }
    result["markdown"] = table(result)
    print("\n" + result["markdown"] + "\n", flush=True)
    if busy > BUSY_LOADAVG:
        print(
            f"WARNING: load average reached {busy} (> {BUSY_LOADAVG}): other work shared the CPU; the timings are unreliable",
            flush=True,
        )
    out = args.output or RESULTS / f"retrieval-{started:%Y-%m-%d}{'-quick' if args.quick else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(f"results: {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
