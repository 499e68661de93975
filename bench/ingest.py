"""Ingest speed: Enclave's pipeline next to a plain LangChain pipeline on the same files, same run.

    .venv/bin/python bench/ingest.py [--corpus external|synthetic|both] [--limit N]
        [--backend torch-fp32|torch-bf16|onnx-int8[,...]] [--workers N] [--quick] [--wait-quiet S]

Corpora: "external" is ../shared/corpus/18f-handbook and ../shared/corpus/github-site-policy
(skipped with a message where absent); "synthetic" is Markdown made here from a fixed vocabulary
and seed, sized to about 10,000 Enclave chunks of about 230 tokens.

Each side runs in a fresh subprocess on a fresh temp data folder, with the same file list and the
same local embedding model folder, so that its peak RSS (ru_maxrss) is its own, imports included:

- Enclave: `enclave.wiring.build_pipeline(settings)` with the chosen backend and worker count.
  Its embedding model loads as in `enclave ingest`: inside the run, in a thread of its own while
  the first files parse, so Enclave's "model load" row is only building the embedder object and
  its torch / ONNX Runtime import and model load fall in "ingest".
- plain: per file `UnstructuredLoader(path).load()`, its elements joined into one Document per
  file (what the classic loader's mode="single" did; a Document per element would make chunks
  far smaller than Enclave's and metadata Chroma refuses), `RecursiveCharacterTextSplitter`,
  `HuggingFaceEmbeddings(model_name=<folder>)`, `Chroma.from_documents(persist_directory=...)`.
  Its one concession: `ingest._spacy_offline.ensure_offline_nlp()`, without which unstructured
  tries to download its spaCy model. A file the loader fails on is counted and skipped.

Fairness: the plain splitter's chunk size is calibrated (in a separate, untimed process, on a
sample of the files) so that its average tokens per embedded text, counted with the model's own
tokenizer.json, is within 10% of Enclave's; outside that the comparison is reported as failed
and the exit status is 1. Timings are never asserted by tests; they are recorded here.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import platform
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make the project importable
    sys.path.insert(0, str(ROOT))

EXTERNAL_ROOTS = ("18f-handbook", "github-site-policy")
RESULTS = ROOT / "bench" / "results"
FAIR_TOLERANCE = 0.10
TARGET_SPEEDUP = 2.5
BUSY_LOADAVG = 1.5
QUIET_LOADAVG = 1.0
GROUPS = ["public"]
BACKENDS = ("torch-fp32", "torch-bf16", "onnx-int8")
# Versions worth knowing when reading the figures later.
PACKAGES = (
    "torch",
    "onnxruntime",
    "sentence-transformers",
    "transformers",
    "tokenizers",
    "chromadb",
    "unstructured",
    "langchain",
    "langchain-core",
    "langchain-text-splitters",
    "langchain-chroma",
    "langchain-huggingface",
    "langchain-unstructured",
)


# -- measuring inside a side's process ------------------------------------------------------------


class PeakRss(threading.Thread):
    """Sampled peak RSS of this process plus all its descendants (worker processes included)."""

    def __init__(self, interval: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.peak = 0
        self.loads: list[float] = []  # 1-minute load average while the side ran: was the CPU shared?
        self._stop_event = threading.Event()

    def run(self) -> None:
        import psutil

        me = psutil.Process()
        while not self._stop_event.is_set():
            total = 0
            for proc in [me, *me.children(recursive=True)]:
                try:
                    total += proc.memory_info().rss
                except psutil.Error:
                    pass  # a worker that just exited
            self.peak = max(self.peak, total)
            self.loads.append(loadavg())
            self._stop_event.wait(self.interval)

    def stop(self) -> int:
        self._stop_event.set()
        self.join()
        return self.peak


def _rusage() -> dict[str, float]:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "self_cpu_s": me.ru_utime + me.ru_stime,
        "children_cpu_s": kids.ru_utime + kids.ru_stime,
        "self_maxrss_mb": me.ru_maxrss / 1024,  # Linux reports KiB
        "children_maxrss_mb": kids.ru_maxrss / 1024,  # the largest waited-for child, not a sum
    }


class TimedCalls:
    """Wraps an object, timing (and for embedders recording the texts of) the named methods.

    The recorded texts are what the embedder was given, so tokens are counted on exactly that.
    """

    def __init__(self, inner: Any, timed: Sequence[str], record: str | None = None) -> None:
        self._inner = inner
        self.seconds = 0.0
        self.texts: list[str] = []
        for name in timed:
            setattr(self, name, self._wrap(getattr(inner, name), record == name))

    def _wrap(self, method: Any, record: bool) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - started
                if record:
                    self.texts.extend(args[0])

        return call

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _tokenizer(model_dir: Path) -> tuple[Any, int]:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    max_seq = 256
    config = model_dir / "sentence_bert_config.json"
    if config.is_file():
        max_seq = int(json.loads(config.read_text()).get("max_seq_length", max_seq))
    return tok, max_seq


def token_stats(texts: Sequence[str], model_dir: Path) -> dict[str, Any]:
    """Tokens per text (no special tokens) and tokens the model actually ran on (with [CLS]/[SEP],
    cut at max_seq_length, padding not counted)."""
    if not texts:
        return {
            "chunks": 0,
            "avg_tokens": 0.0,
            "tokens": 0,
            "embedded_tokens": 0,
            "truncated": 0,
            "avg_chars": 0.0,
        }
    tok, max_seq = _tokenizer(model_dir)
    lengths = [len(e.ids) for e in tok.encode_batch(list(texts), add_special_tokens=False)]
    return {
        "chunks": len(texts),
        "avg_tokens": sum(lengths) / len(lengths),
        "tokens": sum(lengths),
        "embedded_tokens": sum(min(n + 2, max_seq) for n in lengths),
        "truncated": sum(1 for n in lengths if n + 2 > max_seq),
        "max_seq_length": max_seq,
        "avg_chars": sum(len(t) for t in texts) / len(texts),
    }


def _offline() -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    from core.offline import disable_telemetry

    disable_telemetry()


def _model_dir() -> Path:
    from vectorstore.embedding import default_model_path

    return default_model_path()


def _read_files(path: Path) -> list[str]:
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line]


def side_enclave(args: argparse.Namespace) -> dict[str, Any]:
    entered = time.time()
    _offline()
    sampler = PeakRss()
    sampler.start()
    t0 = time.perf_counter()
    import chromadb  # noqa: F401  (imported here so that the imports phase is measured apart)

    import ingest.pipeline  # noqa: F401
    from core.settings import Settings
    from enclave import wiring

    backend = args.backend[0]
    t_imported = time.perf_counter()

    data = Path(args.data)
    settings = Settings(
        data_dir=data,
        embedding={"backend": backend, "cache_dir": args.models_cache},
        ingest={"workers": args.workers},
    )
    wiring.guard(settings)
    embedder = wiring.build_embedder(settings)
    # onnx-int8 exports once, on first use, into a folder named by the model and export recipe: the
    # main process exports before the sides run (untimed), so this says whether that worked.
    cache_warm = bool(getattr(embedder, "onnx_path", None) and embedder.onnx_path.is_file())
    # The embedding model (and torch or ONNX Runtime with it) loads as in `enclave ingest`: inside
    # the run, in a thread of its own while the first files parse (IngestPipeline._warm_up).
    store = wiring.build_store(settings)
    timed_embedder = TimedCalls(embedder, ["embed_documents", "embed_query"], record="embed_documents")
    timed_store = TimedCalls(store, ["upsert", "delete_document", "move_document"])
    pipeline = wiring.build_pipeline(settings, embedder=timed_embedder, store=timed_store)  # type: ignore[arg-type]
    t_loaded = time.perf_counter()

    files = [Path(p) for p in _read_files(Path(args.files))]
    report = pipeline.run(files, GROUPS, progress=io.StringIO())  # no progress bar
    t_done = time.perf_counter()
    ended = time.time()
    usage = _rusage()
    peak_tree = sampler.stop()

    ingest_s = t_done - t_loaded
    failures = [{"path": f.path, "error": f.error} for f in report.files if f.status in ("failed", "skipped")]
    return {
        "side": "enclave",
        "backend": backend,
        "models_cache_warm": cache_warm,
        "workers": pipeline.workers,
        "entered_epoch": entered,
        "ended_epoch": ended,
        "imports_s": t_imported - t0,
        "model_load_s": t_loaded - t_imported,
        "ingest_s": ingest_s,
        "phases_s": {
            "embed": timed_embedder.seconds,
            "store": timed_store.seconds,
            # waiting on the parse workers, chunking, hashing, the manifest
            "parse_chunk_manifest": ingest_s - timed_embedder.seconds - timed_store.seconds,
        },
        "files": len(files),
        "files_ok": report.count("new") + report.count("changed") + report.count("linked"),
        "files_linked": report.count("linked"),  # same bytes as a file already stored: not embedded again
        "failures": failures,
        "chunks": report.chunks_added,
        "peak_rss_tree_mb": peak_tree / 2**20,
        "loadavg_during": {
            "mean": statistics.fmean(sampler.loads or [0.0]),
            "max": max(sampler.loads or [0.0]),
        },
        **usage,
        "texts": timed_embedder.texts,
    }


def _plain_load(files: Sequence[str]) -> tuple[list[Any], list[dict[str, str]]]:
    """The plain loader: one Document per file, its elements' texts joined by blank lines."""
    from langchain_core.documents import Document
    from langchain_unstructured import UnstructuredLoader

    docs, failures = [], []
    for path in files:
        try:
            elements = UnstructuredLoader(path).load()
        except Exception as exc:  # a plain loop would stop here; count the file and go on
            failures.append({"path": path, "error": f"{type(exc).__name__}: {exc}"[:300]})
            continue
        text = "\n\n".join(e.page_content for e in elements if e.page_content and e.page_content.strip())
        if not text.strip():
            failures.append({"path": path, "error": "no text"})
            continue
        docs.append(Document(page_content=text, metadata={"source": path}))
    return docs, failures


def side_plain(args: argparse.Namespace) -> dict[str, Any]:
    entered = time.time()
    _offline()
    sampler = PeakRss()
    sampler.start()
    t0 = time.perf_counter()
    import chromadb.config
    import langchain_unstructured  # noqa: F401
    import sentence_transformers  # noqa: F401  (else imported by the model load below)
    from langchain_chroma import Chroma
    from langchain_core.embeddings import Embeddings
    from langchain_huggingface import HuggingFaceEmbeddings
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    from core.offline import install_guard
    from ingest._spacy_offline import ensure_offline_nlp

    install_guard("strict", [])  # fail fast rather than wait on a connection that cannot succeed
    ensure_offline_nlp()  # the one concession: unstructured would otherwise download its spaCy model
    t_imported = time.perf_counter()

    model_dir = _model_dir()
    embeddings = HuggingFaceEmbeddings(model_name=str(model_dir))
    t_loaded = time.perf_counter()

    class Recorded(Embeddings):
        """Times and records embed_documents; adds nothing to what the model is asked."""

        def __init__(self) -> None:
            self.seconds = 0.0
            self.texts: list[str] = []

        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            started = time.perf_counter()
            vectors = embeddings.embed_documents(texts)
            self.seconds += time.perf_counter() - started
            self.texts.extend(texts)
            return vectors

        def embed_query(self, text: str) -> list[float]:
            return embeddings.embed_query(text)

    files = _read_files(Path(args.files))
    docs, failures = _plain_load(files)
    t_parsed = time.perf_counter()
    splitter = RecursiveCharacterTextSplitter(chunk_size=args.chunk_size, chunk_overlap=args.chunk_overlap)
    chunks = splitter.split_documents(docs)
    t_split = time.perf_counter()
    recorded = Recorded()
    Chroma.from_documents(
        chunks,
        recorded,
        persist_directory=str(Path(args.data) / "chroma"),
        client_settings=chromadb.config.Settings(anonymized_telemetry=False),
    )
    t_done = time.perf_counter()
    ended = time.time()
    usage = _rusage()
    peak_tree = sampler.stop()

    stored_s = t_done - t_split
    return {
        "side": "plain",
        "chunk_size": args.chunk_size,
        "chunk_overlap": args.chunk_overlap,
        "entered_epoch": entered,
        "ended_epoch": ended,
        "imports_s": t_imported - t0,
        "model_load_s": t_loaded - t_imported,
        "ingest_s": t_done - t_loaded,
        "phases_s": {
            "parse": t_parsed - t_loaded,
            "split": t_split - t_parsed,
            "embed": recorded.seconds,
            "store": stored_s - recorded.seconds,
        },
        "files": len(files),
        "files_ok": len(docs),
        "failures": failures,
        "chunks": len(chunks),
        "peak_rss_tree_mb": peak_tree / 2**20,
        "loadavg_during": {
            "mean": statistics.fmean(sampler.loads or [0.0]),
            "max": max(sampler.loads or [0.0]),
        },
        **usage,
        "texts": recorded.texts,
    }


def side_calibrate(args: argparse.Namespace) -> dict[str, Any]:
    """The plain splitter's chunk size whose average tokens per chunk is nearest the target."""
    _offline()
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    from ingest._spacy_offline import ensure_offline_nlp

    ensure_offline_nlp()
    files = _read_files(Path(args.files))
    step = max(1, len(files) // args.sample)
    docs, _ = _plain_load(files[::step][: args.sample])
    tok, _ = _tokenizer(_model_dir())

    def average(size: int) -> float:
        splitter = RecursiveCharacterTextSplitter(
            chunk_size=size, chunk_overlap=round(size * args.overlap_ratio)
        )
        texts = [c.page_content for c in splitter.split_documents(docs)]
        lengths = [len(e.ids) for e in tok.encode_batch(texts, add_special_tokens=False)]
        return sum(lengths) / max(1, len(lengths))

    low, high = 100, 8000
    best = (float("inf"), args.chunk_size, 0.0)
    for _ in range(14):  # average() grows with the size: bisect
        size = (low + high) // 2
        got = average(size)
        best = min(best, (abs(got - args.target_tokens), size, got))
        if got < args.target_tokens:
            low = size + 1
        else:
            high = size - 1
        if low > high:
            break
    _, size, got = best
    return {
        "chunk_size": size,
        "chunk_overlap": round(size * args.overlap_ratio),
        "predicted_avg_tokens": got,
        "sample_files": len(docs),
    }


def run_side(args: argparse.Namespace) -> int:
    result = {"enclave": side_enclave, "plain": side_plain, "calibrate": side_calibrate}[args.side](args)
    texts = result.pop("texts", None)
    if texts is not None:  # counted after the clock stopped, so it costs the side nothing
        result["tokens"] = token_stats(texts, _model_dir())
    Path(args.result).write_text(json.dumps(result, indent=1), encoding="utf-8")
    return 0


# -- the orchestrating process -----------------------------------------------------------------------


def loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def machine() -> dict[str, Any]:
    model = ""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        model = next(
            (ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name")), ""
        )
    except OSError:
        pass
    mem_kb = next(
        (
            int(ln.split()[1])
            for ln in Path("/proc/meminfo").read_text().splitlines()
            if ln.startswith("MemTotal")
        ),
        0,
    )
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "cpu_model": model,
        "cores": os.cpu_count(),
        "affinity_cores": len(os.sched_getaffinity(0)),
        "ram_gib": round(mem_kb / 2**20, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
    }


def wait_quiet(max_wait_s: float) -> float:
    deadline = time.monotonic() + max_wait_s
    load = loadavg()
    while load >= QUIET_LOADAVG and time.monotonic() < deadline:
        print(f"load average {load:.2f} >= {QUIET_LOADAVG}: waiting for a quiet machine", flush=True)
        time.sleep(60)
        load = loadavg()
    return load


# Synthetic text: plausible, varied English from a fixed vocabulary (with the trade terms, codes,
# dates and amounts that enterprise documents carry), so that the tokenizer sees ordinary text at
# ~4.4 characters a token, not a stream of unknown pieces.
_NOUNS = (
    "policy request budget contract invoice supplier vessel berth crane container warehouse audit "
    "report review meeting schedule deadline manager officer team department committee board risk "
    "incident inspection permit licence record archive account payment refund expense travel leave "
    "employee contractor visitor badge access system server network backup password device laptop "
    "training course certificate safety hazard procedure standard guideline template form approval "
    "signature project milestone estimate forecast quarter target customer complaint tender bid "
    "shipment cargo manifest customs tariff pilot tug harbour quay terminal gate fence "
    "vehicle driver route timetable shift roster overtime salary pension benefit claim insurance "
    "document folder version draft summary appendix section clause term condition notice period"
).split()
_TERMS = (
    "demurrage stevedoring bunkering transhipment indemnification reconciliation subcontractor "
    "decommissioning interoperability cybersecurity geofencing pseudonymisation recertification "
    "dredging hydrographic ballast mooring lashing reefer quarantine fumigation accrual depreciation "
    "remittance escrow procurement whistleblowing grievance onboarding offboarding encryption "
    "provenance retention redaction escalation contingency throughput"
).split()
_ADJECTIVES = (
    "annual monthly quarterly weekly urgent routine internal external public confidential senior "
    "junior regional national temporary permanent formal informal written digital physical minor "
    "major previous current future standard special additional relevant approved pending overdue "
    "secure shared local central primary secondary detailed brief complete partial new existing "
    "contractual statutory hazardous refrigerated bonded unaudited encrypted provisional"
).split()
_VERBS = (
    "approves reviews records submits checks updates signs sends receives prepares files reports "
    "confirms requests schedules assigns closes opens tracks verifies archives replaces manages "
    "inspects plans supports covers explains describes lists requires allows limits reconciles "
    "countersigns escalates"
).split()
_BASE_VERBS = (
    "approve review record submit check update sign send receive prepare file report confirm "
    "request schedule assign close open track verify archive replace manage inspect plan reconcile"
).split()
_PARTICIPLES = (
    "approved reviewed recorded submitted checked updated signed sent received prepared filed "
    "reported confirmed requested scheduled assigned closed opened tracked verified archived"
).split()
_ADVERBS = "promptly carefully usually always often before later quickly jointly separately again".split()
_PREPS = "for with under before after during within across without about against between".split()
_ROLES = (
    "the harbour master|the finance team|each line manager|the duty officer|the security desk|"
    "the records office|every new starter|the safety committee|the port engineer|the procurement lead"
).split("|")
_KINDS = "Policy Procedure Guideline Standard Handbook Notice Plan Checklist Charter Manual".split()
_MONTHS = "January February March April May June July August September October November December".split()


def _sentence(rng: random.Random) -> str:
    c = rng.choice

    def thing() -> str:
        return c(_TERMS) if rng.random() < 0.45 else c(_NOUNS)

    def code() -> str:
        return f"{c(_KINDS).upper()[:3]}-{rng.randint(2015, 2025)}-{rng.randint(1, 9999):04d}"

    def date() -> str:
        return f"{rng.randint(1, 28)} {c(_MONTHS)} {rng.randint(2015, 2025)}"

    def amount() -> str:
        return f"£{rng.randint(100, 250_000):,}.{rng.randint(0, 99):02d}"

    forms = (
        lambda: (
            f"{c(_ROLES).capitalize()} {c(_VERBS)} the {c(_ADJECTIVES)} {thing()} {c(_PREPS)} the {thing()}."
        ),
        lambda: (
            f"Each {c(_ADJECTIVES)} {thing()} must be {c(_PARTICIPLES)} within {rng.randint(2, 30)} "
            f"working days, and {c(_ROLES)} {c(_VERBS)} it {c(_ADVERBS)}."
        ),
        lambda: (
            f"If the {thing()} is {c(_ADJECTIVES)}, {c(_ROLES)} {c(_VERBS)} the {thing()} and "
            f"{c(_VERBS)} the {c(_ADJECTIVES)} {thing()} (see clause {rng.randint(1, 19)}.{rng.randint(1, 9)})."
        ),
        lambda: (
            f"Staff should {c(_BASE_VERBS)} each {thing()} {c(_ADVERBS)}; the {c(_ADJECTIVES)} "
            f"{thing()} is kept {c(_PREPS)} the {thing()} for {rng.randint(2, 12)} years."
        ),
        lambda: (
            f"Since {date()}, the {thing()} {c(_VERBS)} how the {c(_ADJECTIVES)} {thing()} and the "
            f"{thing()} are {c(_PARTICIPLES)}, up to {amount()} per {c(_NOUNS)}."
        ),
        lambda: (
            f"Record {code()} of {amount()}, dated {date()}, was {c(_PARTICIPLES)} against {code()} "
            f"by {c(_ROLES)}."
        ),
        lambda: (
            f"Questions about the {thing()} go to {c(_ROLES)}, who {c(_VERBS)} them "
            f"{c(_ADVERBS)} (reference {code()}, {date()})."
        ),
    )
    return c(forms)()


def _section_body(rng: random.Random) -> str:
    """Paragraphs (now and then a list) of 880-950 characters: with its heading, one Enclave chunk."""
    limit = rng.randint(880, 950)
    blocks: list[str] = []
    size = 0
    while size < limit - 120:
        if blocks and rng.random() < 0.15:
            block = "\n".join(f"- {_sentence(rng)}" for _ in range(rng.randint(2, 4)))
        else:
            block = " ".join(_sentence(rng) for _ in range(rng.randint(2, 5)))
        if size + len(block) + 2 <= limit:
            blocks.append(block)
            size += len(block) + 2
    for _ in range(30):  # top the last paragraph up with sentences that still fit
        sentence = _sentence(rng)
        if size + len(sentence) + 1 <= limit:
            blocks[-1] += " " + sentence
            size += len(sentence) + 1
    return "\n\n".join(blocks)


def make_synthetic(folder: Path, target_chunks: int, seed: int = 20240501) -> list[Path]:
    """Markdown files of 7-13 headed sections (mean 10), one Enclave chunk per section."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    sections = 0
    while sections < target_chunks:
        n = min(rng.randint(7, 13), target_chunks - sections)
        title = f"{rng.choice(_ADJECTIVES).capitalize()} {rng.choice(_NOUNS)} {rng.choice(_KINDS)} {len(paths) + 1:04d}"
        parts = [f"# {title}", _section_body(rng)]
        for _ in range(n - 1):
            heading = f"{rng.choice(_ADJECTIVES).capitalize()} {rng.choice(_NOUNS)} and {rng.choice(_NOUNS)}"
            parts += [f"## {heading}", _section_body(rng)]
        sub = folder / f"d{len(paths) // 100:02d}"
        sub.mkdir(exist_ok=True)
        path = sub / f"doc-{len(paths) + 1:04d}.md"
        path.write_text("\n\n".join(parts) + "\n", encoding="utf-8")
        paths.append(path)
        sections += n
    return paths


def external_files(limit: int | None) -> list[Path]:
    from ingest.parsing import is_supported
    from ingest.pipeline import walk

    roots = []
    for name in EXTERNAL_ROOTS:
        root = (ROOT / ".." / "shared" / "corpus" / name).resolve()
        if root.is_dir():
            roots.append(root)
        else:
            print(f"external corpus {root} is absent: skipped", flush=True)
    files = [p for p in walk(roots) if is_supported(p)]
    return files[:limit] if limit else files


def _warm_cache(paths: Sequence[Path]) -> None:
    """Read every input once so that neither side pays for a cold page cache the other does not."""
    for path in paths:
        path.read_bytes()
    for path in _model_dir().rglob("*"):
        if path.is_file():
            path.read_bytes()


def _env() -> dict[str, str]:
    from core.offline import TELEMETRY_ENV

    env = {k: v for k, v in os.environ.items() if not k.startswith("ENCLAVE_")}  # code defaults only
    env.update(TELEMETRY_ENV)
    env["HF_HUB_OFFLINE"] = "1"
    return env


def spawn(side: str, work: Path, extra: Sequence[str], label: str = "") -> dict[str, Any]:
    """Run one side in a fresh interpreter; its end-to-end wall runs from spawn to the end of its
    ingest (token counting and the result file come after and are not counted)."""
    result = work / f"{label or side}.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--side", side, "--result", str(result), *extra]
    load = loadavg()
    spawned = time.time()
    proc = subprocess.run(cmd, cwd=ROOT, env=_env(), check=False)
    exited = time.time()
    if proc.returncode != 0 or not result.is_file():
        raise SystemExit(f"the {label or side} side failed (exit {proc.returncode}); its output is above")
    out: dict[str, Any] = json.loads(result.read_text())
    out["loadavg_at_start"] = load
    out["process_s"] = exited - spawned
    print(f"   {exited - spawned:.0f} s (load average {load:.2f} at its start)", flush=True)
    if "ended_epoch" in out:
        out["interpreter_start_s"] = out["entered_epoch"] - spawned
        out["end_to_end_s"] = out["ended_epoch"] - spawned
    return out


def bench_corpus(name: str, files: list[Path], work: Path, args: argparse.Namespace) -> dict[str, Any]:
    print(f"\n== {name}: {len(files)} files", flush=True)
    listing = work / "files.txt"
    listing.write_text("".join(f"{p}\n" for p in files), encoding="utf-8")
    _warm_cache(files)
    common = ["--files", str(listing)]

    enclave: dict[str, dict[str, Any]] = {}
    if "onnx-int8" in args.backend:
        # The one-off export (~15-25 s here) is not part of an ingest: make it now, untimed.
        from vectorstore.onnx_embedding import OnnxEmbedder

        print("-- exporting the onnx-int8 model into the models cache (untimed, once)", flush=True)
        OnnxEmbedder(cache_dir=args.models_cache).ensure_exported()
    for backend in args.backend:
        print(f"-- Enclave ({backend}, {args.workers} workers)", flush=True)
        enclave[backend] = spawn(
            "enclave",
            work,
            [
                *common,
                "--data",
                str(work / f"enclave-{backend}-data"),
                "--backend",
                backend,
                "--workers",
                str(args.workers),
                "--models-cache",
                str(args.models_cache),
            ],
            label=f"enclave-{backend}",
        )
    target = enclave[args.backend[0]]["tokens"]["avg_tokens"]  # the chunker is the same for every backend
    if args.plain_chunk_size:
        size, overlap = args.plain_chunk_size, round(args.plain_chunk_size * args.overlap_ratio)
        calibration: dict[str, Any] = {"chunk_size": size, "chunk_overlap": overlap, "given": True}
    else:
        print(f"-- calibrating the plain splitter to {target:.1f} tokens per chunk (untimed)", flush=True)
        calibration = spawn(
            "calibrate",
            work,
            [
                *common,
                "--target-tokens",
                str(target),
                "--sample",
                str(args.calibration_sample),
                "--overlap-ratio",
                str(args.overlap_ratio),
            ],
        )
        size, overlap = calibration["chunk_size"], calibration["chunk_overlap"]
    print(f"-- plain LangChain (chunk_size={size}, chunk_overlap={overlap})", flush=True)
    plain = spawn(
        "plain",
        work,
        [
            *common,
            "--data",
            str(work / "plain-data"),
            "--chunk-size",
            str(size),
            "--chunk-overlap",
            str(overlap),
        ],
    )
    deviation = plain["tokens"]["avg_tokens"] / target - 1 if target else float("inf")
    return {
        "corpus": name,
        "files": len(files),
        "enclave": enclave,
        "plain": plain,
        "calibration": calibration,
        "tokens_per_chunk_deviation": deviation,
        "fair": abs(deviation) <= FAIR_TOLERANCE,
        "speedup_end_to_end": {b: plain["end_to_end_s"] / e["end_to_end_s"] for b, e in enclave.items()},
    }


# (metric, how the ratio reads): "time" plain/Enclave (also memory: lower is better), "rate"
# Enclave/plain, "count" Enclave/plain for information only. Above 1 means Enclave does better.
def _rows(e: dict[str, Any], p: dict[str, Any], files: int) -> list[tuple[str, float, float, str]]:
    ep, pp = e["phases_s"], p["phases_s"]
    et, pt = e["tokens"], p["tokens"]
    e2e_e, e2e_p = e["end_to_end_s"], p["end_to_end_s"]
    return [
        ("end-to-end wall, s (spawn to stored)", e2e_e, e2e_p, "time"),
        ("  interpreter start, s", e["interpreter_start_s"], p["interpreter_start_s"], "time"),
        ("  imports, s", e["imports_s"], p["imports_s"], "time"),
        ("  model load, s", e["model_load_s"], p["model_load_s"], "time"),
        ("  ingest, s", e["ingest_s"], p["ingest_s"], "time"),
        (
            "    parse (Enclave: waiting on parse workers, chunk, manifest), s",
            ep["parse_chunk_manifest"],
            pp["parse"] + pp["split"],
            "time",
        ),
        ("    embed, s", ep["embed"], pp["embed"], "time"),
        ("    store, s", ep["store"], pp["store"], "time"),
        ("files/s (end to end)", files / e2e_e, files / e2e_p, "rate"),
        ("chunks/s (end to end)", e["chunks"] / e2e_e, p["chunks"] / e2e_p, "rate"),
        (
            "tokens embedded/s (end to end)",
            et["embedded_tokens"] / e2e_e,
            pt["embedded_tokens"] / e2e_p,
            "rate",
        ),
        ("chunks/s (ingest phase only)", e["chunks"] / e["ingest_s"], p["chunks"] / p["ingest_s"], "rate"),
        ("peak RSS, main process (ru_maxrss), MB", e["self_maxrss_mb"], p["self_maxrss_mb"], "time"),
        (
            "peak RSS, with worker processes (sampled), MB",
            e["peak_rss_tree_mb"],
            p["peak_rss_tree_mb"],
            "time",
        ),
        (
            "CPU time, all processes, s",
            e["self_cpu_s"] + e["children_cpu_s"],
            p["self_cpu_s"] + p["children_cpu_s"],
            "time",
        ),
        ("files ingested", e["files_ok"], p["files_ok"], "count"),
        ("chunks", e["chunks"], p["chunks"], "count"),
        ("tokens/chunk (embedded text)", et["avg_tokens"], pt["avg_tokens"], "count"),
        ("chars/chunk (embedded text)", et["avg_chars"], pt["avg_chars"], "count"),
        ("chunks cut at max_seq_length", et["truncated"], pt["truncated"], "count"),
        ("CPU use: CPU time / (wall x cores)", _cpu_share(e), _cpu_share(p), "info"),
        ("load average while it ran (mean; the side alone makes ~2-3)", _load(e), _load(p), "info"),
    ]


def _cpu_share(side: dict[str, Any]) -> float:
    return (side["self_cpu_s"] + side["children_cpu_s"]) / (side["end_to_end_s"] * (os.cpu_count() or 1))


def _load(side: dict[str, Any]) -> float:
    return float(side.get("loadavg_during", {}).get("mean", float("nan")))


def _fmt(value: float) -> str:
    if value != value:  # NaN: not measured
        return "—"
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 100 or value == int(value):
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _ratio(e: float, p: float, kind: str) -> str:
    if kind == "time":
        return f"{p / e:.2f}x" if e else "—"
    if kind == "rate":
        return f"{e / p:.2f}x" if p else "—"
    if kind == "info":
        return "—"
    return f"({e / p:.2f})" if p else "—"


def table(r: dict[str, Any]) -> str:
    backends = list(r["enclave"])
    per = {b: _rows(r["enclave"][b], r["plain"], r["files"]) for b in backends}
    if len(backends) == 1:
        head = ["metric", "Enclave", "plain LangChain", "ratio"]
    else:
        head = [
            "metric",
            *(f"Enclave {b}" for b in backends),
            "plain LangChain",
            *(f"ratio {b}" for b in backends),
        ]
    lines = ["| " + " | ".join(head) + " |", "| --- |" + " ---: |" * (len(head) - 1)]
    for i, (metric, _, plain, kind) in enumerate(per[backends[0]]):
        values = [per[b][i][1] for b in backends]
        cells = [metric, *map(_fmt, values), _fmt(plain), *(_ratio(v, plain, kind) for v in values)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary(r: dict[str, Any]) -> str:
    p = r["plain"]
    lines = []
    for backend, speedup in r["speedup_end_to_end"].items():
        verdict = "met" if speedup >= TARGET_SPEEDUP else "NOT met"
        lines.append(
            f"end-to-end speed-up, Enclave {backend} (plain wall / Enclave wall): {speedup:.2f}x; "
            f"target {TARGET_SPEEDUP}x: {verdict}"
        )
    first = next(iter(r["enclave"].values()))
    lines.append(
        f"tokens per chunk: Enclave {first['tokens']['avg_tokens']:.1f}, plain {p['tokens']['avg_tokens']:.1f} "
        f"({r['tokens_per_chunk_deviation']:+.1%}; plain chunk_size={p['chunk_size']}, "
        f"chunk_overlap={p['chunk_overlap']})"
    )
    for side, label in [*((e, f"Enclave {b}") for b, e in r["enclave"].items()), (p, "plain")]:
        if side["failures"]:
            shown = "; ".join(f"{Path(f['path']).name}: {f['error']}" for f in side["failures"][:5])
            lines.append(f"{label}: {len(side['failures'])} files not ingested ({shown})")
    if not r["fair"]:
        lines.append(
            f"!!! UNFAIR COMPARISON: average tokens per chunk differ by {r['tokens_per_chunk_deviation']:+.1%}, "
            f"more than {FAIR_TOLERANCE:.0%}; these figures do not compare like with like. "
            "Rerun with --plain-chunk-size N."
        )
    return "\n".join(lines)


def _backends(text: str) -> list[str]:
    names = [b.strip() for b in text.split(",") if b.strip()]
    bad = [b for b in names if b not in BACKENDS]
    if bad or not names:
        raise argparse.ArgumentTypeError(
            f"unknown backend {', '.join(bad)}; choose from {', '.join(BACKENDS)}"
        )
    return names


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    from core.settings import EmbeddingSettings
    from vectorstore.embedding import resolve_backend

    default_backend = resolve_backend(EmbeddingSettings.model_fields["backend"].default)
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--corpus", choices=["external", "synthetic", "both"], default="both")
    ap.add_argument("--limit", type=int, help="only the first N files of the external corpus")
    ap.add_argument(
        "--backend",
        type=_backends,
        default=[default_backend],
        help=f"Enclave's embedding backend, or several separated by commas, each run against the one plain "
        f"run ({', '.join(BACKENDS)}; default: the settings default, {default_backend})",
    )
    ap.add_argument("--workers", type=int, default=2, help="Enclave's parser processes (default 2)")
    ap.add_argument(
        "--synthetic-chunks",
        type=int,
        default=10_000,
        help="Enclave chunks the synthetic corpus is made to give (default 10,000)",
    )
    ap.add_argument(
        "--quick", action="store_true", help="a smoke run: 24 external files, a 300-chunk synthetic corpus"
    )
    ap.add_argument("--plain-chunk-size", type=int, help="skip calibration: the plain splitter's chunk_size")
    ap.add_argument(
        "--overlap-ratio",
        type=float,
        default=0.12,
        help="plain chunk_overlap as a share of chunk_size (Enclave's default is 120/1000)",
    )
    ap.add_argument(
        "--calibration-sample", type=int, default=120, help="files parsed to calibrate the plain splitter"
    )
    ap.add_argument(
        "--models-cache",
        type=Path,
        default=Path(tempfile.gettempdir()) / "enclave-bench-models",
        help="Enclave's derived-model cache (the onnx-int8 export), kept between runs",
    )
    ap.add_argument(
        "--wait-quiet",
        type=float,
        default=0,
        help=f"first wait up to this many seconds for a load average under {QUIET_LOADAVG}",
    )
    ap.add_argument(
        "--output", type=Path, help="result JSON (default bench/results/ingest-<UTC date>[-quick].json)"
    )
    ap.add_argument("--keep", action="store_true", help="keep the temp folders (corpora, data dirs)")
    # A side's own process (internal).
    ap.add_argument("--side", choices=["enclave", "plain", "calibrate"], help=argparse.SUPPRESS)
    for name in ("--result", "--files", "--data"):
        ap.add_argument(name, help=argparse.SUPPRESS)
    ap.add_argument("--chunk-size", type=int, default=1000, help=argparse.SUPPRESS)
    ap.add_argument("--chunk-overlap", type=int, default=120, help=argparse.SUPPRESS)
    ap.add_argument("--target-tokens", type=float, help=argparse.SUPPRESS)
    ap.add_argument("--sample", type=int, default=120, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.quick:
        args.limit = args.limit or 24
        args.synthetic_chunks = min(args.synthetic_chunks, 300)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.side:
        return run_side(args)

    if args.wait_quiet:
        wait_quiet(args.wait_quiet)
    started = dt.datetime.now(dt.UTC)
    load_start = loadavg()
    if load_start > BUSY_LOADAVG:
        print(
            f"WARNING: load average {load_start:.2f} > {BUSY_LOADAVG}: other work shares the CPU, "
            "the figures are unreliable",
            flush=True,
        )
    info = machine()
    print(
        f"{info['cpu_model']}, {info['cores']} cores, {info['ram_gib']} GiB, Python {info['python']}, "
        f"torch {info['versions']['torch']}, onnxruntime {info['versions']['onnxruntime']}",
        flush=True,
    )

    work_root = Path(tempfile.mkdtemp(prefix="enclave-bench-ingest-"))
    results: list[dict[str, Any]] = []
    try:
        if args.corpus in ("external", "both"):
            files = external_files(args.limit)
            if files:
                work = work_root / "external"
                work.mkdir()
                results.append(bench_corpus("external", files, work, args))
            else:
                print("no external corpus found: skipped", flush=True)
        if args.corpus in ("synthetic", "both"):
            work = work_root / "synthetic"
            work.mkdir()
            files = make_synthetic(work / "corpus", args.synthetic_chunks)
            results.append(bench_corpus("synthetic", files, work, args))
    finally:
        if args.keep:
            print(f"temp folders kept under {work_root}")
        else:
            shutil.rmtree(work_root, ignore_errors=True)

    load_end = loadavg()
    finished = dt.datetime.now(dt.UTC)
    seen = [load_start, load_end]
    for r in results:
        seen += [r["plain"]["loadavg_at_start"], *(e["loadavg_at_start"] for e in r["enclave"].values())]
    busy = max(seen)
    command = "python bench/ingest.py " + " ".join(sys.argv[1:] if argv is None else argv)
    for r in results:
        print(f"\n### {r['corpus']} ({r['files']} files)\n\n{table(r)}\n\n{summary(r)}")
    if busy > BUSY_LOADAVG:
        print(
            f"\nWARNING: load average reached {busy:.2f} (> {BUSY_LOADAVG}) during the run: "
            "the figures are unreliable",
            flush=True,
        )

    out = args.output or RESULTS / f"ingest-{started:%Y-%m-%d}{'-quick' if args.quick else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "command": command,
        "started_utc": started.isoformat(timespec="seconds"),
        "finished_utc": finished.isoformat(timespec="seconds"),
        "machine": info,
        "loadavg": {"start": load_start, "end": load_end, "max_seen": busy, "reliable": busy <= BUSY_LOADAVG},
        "settings": {
            "backends": args.backend,
            "workers": args.workers,
            "quick": args.quick,
            "limit": args.limit,
            "synthetic_chunks": args.synthetic_chunks,
        },
        "target_speedup": TARGET_SPEEDUP,
        "corpora": [
            {
                **r,
                "table": {
                    b: [
                        {"metric": m, "enclave": e, "plain": p, "kind": k}
                        for m, e, p, k in _rows(enc, r["plain"], r["files"])
                    ]
                    for b, enc in r["enclave"].items()
                },
                "markdown": table(r),
            }
            for r in results
        ],
    }
    out.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    print(f"\nresults: {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return 0 if all(r["fair"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
