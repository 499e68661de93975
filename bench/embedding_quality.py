"""Retrieval quality and speed of each embedding backend on BEIR SciFact (../shared/eval/scifact).

    .venv/bin/python bench/embedding_quality.py [--backends torch-fp32,torch-bf16,onnx-int8]
        [--limit-docs N] [--batch 32] [--speed-docs 128] [--repeats 3] [--wait-quiet S]
        [--onnx-variant NAME='{"weight_type": "QInt8"}'] [--cache-dir DIR] [--work-dir DIR]

For each backend, in a fresh subprocess (so that its peak RSS is its own, imports included), the
corpus ("title + ' ' + text", as MTEB embeds it) goes through the backend's `embed_documents` and
each of the 300 test queries through `embed_query`, as Enclave ingests and searches. Search is
exact (numpy dot product over the L2-normalised vectors, no Chroma); nDCG@10, Recall@10 and MRR@10
are computed as pytrec_eval / MTEB do (linear gains, log2 discount). "cos to fp32" compares each
passage's (and query's) vector with the torch-fp32 one.

Speed, on a shared machine, is reported three ways beside the load average sampled while the side
ran: passages per second on a fixed, seeded sample of the corpus (best of --repeats passes after a
warm-up), passages per CPU-second of the process over those passes (less sensitive to other jobs
than wall time, though not immune: caches and memory bandwidth are shared too), and both rates
over the one timed pass of the whole corpus. Quality figures do not depend on the load.

--onnx-variant adds an onnx-int8 run with entries of RECIPE in vectorstore/onnx_embedding.py
overridden (its own export and cache key), to compare quantisation choices on the same data. The
ONNX export runs in a subprocess of its own first, so its time and memory are reported apart.
With --work-dir the vectors and per-side results are kept there and a rerun reuses the sides that
finished (the runs take hours on a busy 2-core machine); results say which sides were reused.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import random
import resource
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

SCIFACT = ROOT.parent / "shared" / "eval" / "scifact"
RESULT = ROOT / "bench" / "results" / "embedding_quality.json"
BACKENDS = ("torch-fp32", "torch-bf16", "onnx-int8")
# MTEB's published all-MiniLM-L6-v2 SciFact test scores (../shared/eval/scifact/reference_scores).
REFERENCE = {"ndcg@10": 0.64508, "recall@10": 0.78333, "mrr@10": 0.60472}
QUALITY_TOLERANCE = 0.01  # onnx-int8 may become the default only within 1% nDCG@10 of fp32
PACKAGES = ("torch", "transformers", "sentence-transformers", "onnx", "onnxruntime", "tokenizers", "numpy")
SPEED_SEED = 20240501
K = 10


# -- data ------------------------------------------------------------------------------------------


def load_scifact() -> tuple[list[str], list[str], list[str], list[str], dict[str, dict[str, int]]]:
    """Corpus ids and texts, test query ids and texts, qrels (test split)."""
    if not (SCIFACT / "corpus.jsonl").is_file():
        raise SystemExit(f"{SCIFACT} holds no BEIR SciFact copy (corpus.jsonl, queries.jsonl, qrels/)")
    qrels: dict[str, dict[str, int]] = {}
    lines = (SCIFACT / "qrels" / "test.tsv").read_text(encoding="utf-8").splitlines()
    for line in lines[1:]:  # header: query-id corpus-id score
        qid, did, score = line.split("\t")
        qrels.setdefault(qid, {})[did] = int(score)
    with (SCIFACT / "corpus.jsonl").open(encoding="utf-8") as f:
        docs = [json.loads(line) for line in f]
    queries = {}
    with (SCIFACT / "queries.jsonl").open(encoding="utf-8") as f:
        for line in f:
            q = json.loads(line)
            if q["_id"] in qrels:
                queries[q["_id"]] = q["text"]
    qids = sorted(queries, key=int)
    doc_ids = [d["_id"] for d in docs]
    doc_texts = [(d.get("title", "") + " " + d["text"]).strip() for d in docs]
    return doc_ids, doc_texts, qids, [queries[q] for q in qids], qrels


def subset(doc_ids: Sequence[str], qrels: dict[str, dict[str, int]], limit: int | None) -> list[int]:
    """Positions of the judged documents plus the first others, up to limit (all when None)."""
    if limit is None or limit >= len(doc_ids):
        return list(range(len(doc_ids)))
    judged = {did for q in qrels.values() for did in q}
    keep = [i for i, d in enumerate(doc_ids) if d in judged]
    others = [i for i, d in enumerate(doc_ids) if d not in judged]
    return sorted(keep + others[: max(0, limit - len(keep))])


def token_lengths(texts: Sequence[str]) -> list[int]:
    """Tokens of each text with the model's tokenizer, special tokens included, before truncation."""
    from tokenizers import Tokenizer

    from vectorstore.embedding import default_model_path

    tok = Tokenizer.from_file(str(default_model_path() / "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    return [len(e.ids) for e in tok.encode_batch(list(texts))]


# -- metrics ---------------------------------------------------------------------------------------


def retrieval_metrics(
    doc_ids: Sequence[str], docs: Any, qids: Sequence[str], queries: Any, qrels: dict[str, dict[str, int]]
) -> dict[str, float]:
    """nDCG@10, Recall@10, MRR@10 of exact dot-product search, averaged over the queries."""
    import numpy as np

    scores = queries @ docs.T
    top = np.argsort(-scores, axis=1, kind="stable")[:, :K]
    ndcg = recall = mrr = 0.0
    for row, qid in enumerate(qids):
        judged = qrels[qid]
        gains = [judged.get(doc_ids[j], 0) for j in top[row]]
        dcg = sum(g / math.log2(rank + 2) for rank, g in enumerate(gains))
        ideal = sorted((g for g in judged.values() if g > 0), reverse=True)[:K]
        idcg = sum(g / math.log2(rank + 2) for rank, g in enumerate(ideal))
        ndcg += dcg / idcg if idcg else 0.0
        relevant = {d for d, g in judged.items() if g > 0}
        recall += sum(1 for j in top[row] if doc_ids[j] in relevant) / len(relevant)
        mrr += next((1 / (rank + 1) for rank, g in enumerate(gains) if g > 0), 0.0)
    n = len(qids)
    return {"ndcg@10": round(ndcg / n, 5), "recall@10": round(recall / n, 5), "mrr@10": round(mrr / n, 5)}


# -- one side, in its own process ------------------------------------------------------------------


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _peak_rss_mb() -> int:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)  # Linux: KiB


def build(spec: dict[str, Any]) -> Any:
    if spec["backend"] == "onnx-int8":
        from vectorstore import onnx_embedding

        onnx_embedding.RECIPE.update(spec["recipe"])
        return onnx_embedding.OnnxEmbedder(None, Path(spec["cache_dir"]))
    from vectorstore.embedding import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder(None, spec["batch"], bf16=spec["backend"] == "torch-bf16")


def side_export(spec: dict[str, Any]) -> dict[str, Any]:
    from vectorstore import onnx_embedding

    onnx_embedding.RECIPE.update(spec["recipe"])
    embedder = onnx_embedding.OnnxEmbedder(None, Path(spec["cache_dir"]))
    reused = embedder.onnx_path.is_file()
    started = time.perf_counter()
    path = embedder.ensure_exported()
    seconds = time.perf_counter() - started
    info = json.loads((path.parent / "export.json").read_text(encoding="utf-8"))
    return {
        "seconds": round(seconds, 1),
        "reused": reused,
        "cache_key": embedder.cache_key(),
        "recipe": info["recipe"],
        "weights_bytes": (embedder.model_path / info["weights"]).stat().st_size,
        "fp32_onnx_bytes": info["fp32_bytes"],
        "int8_onnx_bytes": info["int8_bytes"],
        "peak_rss_mb": _peak_rss_mb(),
    }


def side_embed(work: Path, spec: dict[str, Any]) -> dict[str, Any]:
    import numpy as np

    data = json.loads((work / "texts.json").read_text(encoding="utf-8"))
    embedder = build(spec)
    sample = data["speed_sample"]
    embedder.embed_documents(sample[:8])  # load the model, warm up
    walls, cpus = [], []
    for _ in range(spec["repeats"]):
        wall, cpu = time.perf_counter(), _cpu_s()
        embedder.embed_documents(sample)
        walls.append(time.perf_counter() - wall)
        cpus.append(_cpu_s() - cpu)
    docs_texts = [data["docs"][i] for i in spec["positions"]]
    wall, cpu = time.perf_counter(), _cpu_s()
    docs = np.asarray(embedder.embed_documents(docs_texts), dtype=np.float32)
    corpus_wall, corpus_cpu = time.perf_counter() - wall, _cpu_s() - cpu
    queries = np.asarray([embedder.embed_query(q) for q in data["queries"]], dtype=np.float32)
    np.save(work / f"{spec['name']}-docs.npy", docs)
    np.save(work / f"{spec['name']}-queries.npy", queries)
    return {
        "model_id": embedder.model_id,
        "batch_size": spec["batch"] if spec["backend"] != "onnx-int8" else 1,
        "speed_docs": len(sample),
        "speed_passages_per_s": round(len(sample) / min(walls), 2),
        "speed_passages_per_cpu_s": round(len(sample) / min(cpus), 2),
        "speed_runs_s": [round(r, 2) for r in walls],
        "corpus_docs": len(docs_texts),
        "corpus_seconds": round(corpus_wall, 1),
        "corpus_passages_per_s": round(len(docs_texts) / corpus_wall, 2),
        "corpus_passages_per_cpu_s": round(len(docs_texts) / corpus_cpu, 2),
        "peak_rss_mb": _peak_rss_mb(),
    }


def run_side(kind: str, work: Path) -> int:
    from core.offline import disable_telemetry, install_guard

    disable_telemetry()
    install_guard("strict")  # the benchmark shows the backends need no network either
    spec = json.loads((work / "spec.json").read_text(encoding="utf-8"))
    result = side_export(spec) if kind == "export" else side_embed(work, spec)
    (work / "side.json").write_text(json.dumps(result), encoding="utf-8")
    return 0


# -- the parent ------------------------------------------------------------------------------------


class LoadSampler:
    """Samples the 1-minute load average every few seconds while a side runs."""

    def __init__(self, every_s: float = 10.0) -> None:
        self.samples: list[float] = [os.getloadavg()[0]]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, args=(every_s,), daemon=True)

    def _loop(self, every_s: float) -> None:
        while not self._stop.wait(every_s):
            self.samples.append(os.getloadavg()[0])

    def __enter__(self) -> LoadSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append(os.getloadavg()[0])

    def summary(self) -> dict[str, float]:
        s = self.samples
        return {"start": round(s[0], 2), "mean": round(sum(s) / len(s), 2), "max": round(max(s), 2)}


def spawn(work: Path, kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    (work / "spec.json").write_text(json.dumps(spec), encoding="utf-8")
    out = work / "side.json"
    out.unlink(missing_ok=True)
    with LoadSampler() as load:
        proc = subprocess.run([sys.executable, __file__, "--side", kind, "--work", str(work)], check=False)
    if proc.returncode != 0:
        raise SystemExit(
            f"bench side {kind} {spec.get('name', '')} failed with exit status {proc.returncode}"
        )
    result: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    result["load_avg"] = load.summary()
    return result


def machine() -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines()
    cpu = next((ln.split(":", 1)[1].strip() for ln in cpuinfo if ln.startswith("model name")), "")
    flags = next((set(ln.split(":", 1)[1].split()) for ln in cpuinfo if ln.startswith("flags")), set())
    meminfo = Path("/proc/meminfo").read_text(encoding="utf-8").split()
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "cpu_model": cpu,
        "cores": os.cpu_count(),
        "affinity_cores": len(os.sched_getaffinity(0)),
        "ram_gib": round(int(meminfo[meminfo.index("MemTotal:") + 1]) / 2**20, 1),
        "simd": sorted(f for f in flags if f.startswith(("avx", "amx")) or f in {"fma", "f16c"}),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
    }


def wait_quiet(max_wait_s: float, quiet: float = 1.0) -> None:
    deadline = time.monotonic() + max_wait_s
    while (load := os.getloadavg()[0]) >= quiet and time.monotonic() < deadline:
        print(f"load average {load:.2f} >= {quiet}: waiting for a quieter machine", flush=True)
        time.sleep(30)


def table(result: dict[str, Any]) -> str:
    rows = [
        "| backend | nDCG@10 | Recall@10 | MRR@10 | nDCG@10 vs fp32 | cos to fp32, passages mean / min "
        "| cos to fp32, queries mean / min | passages/s (sample, best of "
        f"{result['settings']['repeats']}) | passages/CPU-s (sample) | passages/s (corpus) "
        "| passages/CPU-s (corpus) | peak RSS MB | load avg start / mean / max |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in result["backends"].items():
        m, load = r["metrics"], r["load_avg"]
        rows.append(
            f"| {name} | {m['ndcg@10']:.4f} | {m['recall@10']:.4f} | {m['mrr@10']:.4f} "
            f"| {r['ndcg@10_relative_to_fp32']:+.2%} "
            f"| {r['cosine_to_fp32_mean']:.5f} / {r['cosine_to_fp32_min']:.4f} "
            f"| {r['query_cosine_to_fp32_mean']:.5f} / {r['query_cosine_to_fp32_min']:.4f} "
            f"| {r['speed_passages_per_s']} | {r['speed_passages_per_cpu_s']} "
            f"| {r['corpus_passages_per_s']} | {r['corpus_passages_per_cpu_s']} | {r['peak_rss_mb']} "
            f"| {load['start']} / {load['mean']} / {load['max']} |"
        )
    ref = result["reference_mteb"]
    rows.append(
        f"| MTEB published (all-MiniLM-L6-v2, fp32) | {ref['ndcg@10']:.4f} | {ref['recall@10']:.4f} "
        f"| {ref['mrr@10']:.4f} | | | | | | | | | |"
    )
    return "\n".join(rows)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated; torch-fp32 always runs")
    p.add_argument("--limit-docs", type=int, default=None, help="smaller corpus (judged documents kept)")
    p.add_argument("--batch", type=int, default=32, help="batch size of the torch backends")
    p.add_argument("--speed-docs", type=int, default=128, help="size of the seeded speed sample")
    p.add_argument("--repeats", type=int, default=3, help="timed passes over the speed sample; best kept")
    p.add_argument(
        "--onnx-variant",
        action="append",
        default=[],
        metavar="NAME=JSON",
        help="an extra onnx-int8 run with these RECIPE overrides",
    )
    p.add_argument("--cache-dir", type=Path, default=None, help="ONNX cache (default: in the work folder)")
    p.add_argument("--work-dir", type=Path, default=None, help="keep vectors here; reuse finished sides")
    p.add_argument("--wait-quiet", type=float, default=0, help="wait up to S s for load average < 1 per side")
    p.add_argument("--result", type=Path, default=RESULT)
    p.add_argument("--side", help=argparse.SUPPRESS)
    p.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def plan(args: argparse.Namespace) -> list[tuple[str, str, dict[str, Any]]]:
    """(name, backend, RECIPE overrides) of each side, torch-fp32 first: the others compare to it."""
    runs: list[tuple[str, str, dict[str, Any]]] = []
    for b in ["torch-fp32", *[b for b in args.backends.split(",") if b and b != "torch-fp32"]]:
        if b not in BACKENDS:
            raise SystemExit(f"--backends: unknown backend {b!r}; choose from {', '.join(BACKENDS)}")
        runs.append((b, b, {}))
    for variant in args.onnx_variant:
        name, _, overrides = variant.partition("=")
        try:
            recipe = json.loads(overrides)
        except ValueError as exc:
            raise SystemExit(f"--onnx-variant {variant!r}: not NAME=JSON ({exc})") from exc
        if not isinstance(recipe, dict):
            raise SystemExit(f"--onnx-variant {variant!r}: the JSON must be an object of RECIPE entries")
        runs.append((f"onnx-int8:{name}", "onnx-int8", recipe))
    return runs


def same_side(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether a finished side can stand for this one: where the ONNX cache lives does not matter."""
    return {k: v for k, v in a.items() if k != "cache_dir"} == {
        k: v for k, v in b.items() if k != "cache_dir"
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.side:
        return run_side(args.side, args.work)
    import numpy as np

    from core.offline import disable_telemetry

    disable_telemetry()
    runs = plan(args)
    doc_ids, doc_texts, qids, query_texts, qrels = load_scifact()
    keep = subset(doc_ids, qrels, args.limit_docs)
    doc_ids, doc_texts = [doc_ids[i] for i in keep], [doc_texts[i] for i in keep]
    lengths = token_lengths(doc_texts)
    speed_sample = random.Random(SPEED_SEED).sample(doc_texts, min(args.speed_docs, len(doc_texts)))
    speed_lengths = token_lengths(speed_sample)
    query_lengths = token_lengths(query_texts)
    result: dict[str, Any] = {
        "benchmark": "BEIR SciFact test (300 queries), exact dot-product search over L2-normalised vectors",
        "command": " ".join(["bench/embedding_quality.py", *(argv if argv is not None else sys.argv[1:])]),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "settings": {
            "docs": len(doc_texts),
            "queries": len(qids),
            "limit_docs": args.limit_docs,
            "torch_batch_size": args.batch,
            "onnx": "one text per run (no batch)",
            "speed_docs": len(speed_sample),
            "speed_seed": SPEED_SEED,
            "repeats": args.repeats,
            "doc_text": "title + ' ' + text",
            "queries_embedded_with": "embed_query, one at a time",
            "mean_tokens_corpus": round(sum(lengths) / len(lengths), 1),
            "mean_tokens_corpus_after_truncation_256": round(
                sum(min(n, 256) for n in lengths) / len(lengths), 1
            ),
            "mean_tokens_speed_sample_after_truncation_256": round(
                sum(min(n, 256) for n in speed_lengths) / len(speed_lengths), 1
            ),
            "mean_tokens_queries": round(sum(query_lengths) / len(query_lengths), 1),
            "passages_over_max_seq_length_256": sum(1 for n in lengths if n > 256),
            "threads": "runtime default (torch: cores; onnxruntime: physical cores)",
        },
        "reference_mteb": REFERENCE,
        "onnx_export": {},
        "backends": {},
    }
    with tempfile.TemporaryDirectory(prefix="enclave-bench-embq-") as tmp:
        work = args.work_dir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        cache_dir = args.cache_dir or work / "models"
        texts = {"docs": doc_texts, "queries": query_texts, "speed_sample": speed_sample}
        texts_file = work / "texts.json"
        if texts_file.is_file() and json.loads(texts_file.read_text(encoding="utf-8")) != texts:
            raise SystemExit(f"--work-dir {work} holds a run on other texts: choose an empty folder")
        texts_file.write_text(json.dumps(texts), encoding="utf-8")
        for name, backend, recipe in runs:
            spec = {
                "name": name,
                "backend": backend,
                "recipe": recipe,
                "batch": args.batch,
                "cache_dir": str(cache_dir),
                "repeats": args.repeats,
                "positions": list(range(len(doc_texts))),
            }
            done = work / f"{name}.json"
            if done.is_file() and same_side(json.loads(done.read_text(encoding="utf-8"))["spec"], spec):
                side = json.loads(done.read_text(encoding="utf-8"))
                side["reused_from_earlier_run"] = True
                print(f"{name}: reusing the finished side in {work}", flush=True)
            else:
                side = {"spec": spec}
                if backend == "onnx-int8":
                    wait_quiet(args.wait_quiet)
                    print(f"exporting the ONNX int8 model for {name} ...", flush=True)
                    side["export"] = spawn(work, "export", {"cache_dir": str(cache_dir), "recipe": recipe})
                wait_quiet(args.wait_quiet)
                print(f"embedding with {name} ({len(doc_texts)} docs) ...", flush=True)
                side.update(spawn(work, "embed", spec))
                side["finished"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
                done.write_text(json.dumps(side), encoding="utf-8")
            if "export" in side:
                result["onnx_export"][name] = side["export"]
            docs = np.load(work / f"{name}-docs.npy")
            queries = np.load(work / f"{name}-queries.npy")
            fp32_docs = np.load(work / "torch-fp32-docs.npy")
            fp32_queries = np.load(work / "torch-fp32-queries.npy")
            cos = (docs * fp32_docs).sum(axis=1)
            qcos = (queries * fp32_queries).sum(axis=1)
            metrics = retrieval_metrics(doc_ids, docs, qids, queries, qrels)
            fp32_metrics = retrieval_metrics(doc_ids, fp32_docs, qids, fp32_queries, qrels)
            report = {k: v for k, v in side.items() if k not in ("spec", "export")}
            report.update(
                recipe_overrides=recipe or None,
                metrics=metrics,
                **{"ndcg@10_relative_to_fp32": round(metrics["ndcg@10"] / fp32_metrics["ndcg@10"] - 1, 5)},
                cosine_to_fp32_mean=round(float(cos.mean()), 6),
                cosine_to_fp32_min=round(float(cos.min()), 6),
                cosine_to_fp32_p01=round(float(np.quantile(cos, 0.01)), 6),
                query_cosine_to_fp32_mean=round(float(qcos.mean()), 6),
                query_cosine_to_fp32_min=round(float(qcos.min()), 6),
                top10_overlap_with_fp32=round(top_overlap(docs, queries, fp32_docs, fp32_queries), 4),
            )
            result["backends"][name] = report
            print(f"  {json.dumps(report)}", flush=True)
    if "onnx-int8" in result["backends"]:
        drop = -result["backends"]["onnx-int8"]["ndcg@10_relative_to_fp32"]
        result["onnx_int8_within_1pct_ndcg"] = drop <= QUALITY_TOLERANCE
    args.result.parent.mkdir(parents=True, exist_ok=True)
    args.result.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print()
    print(table(result))
    for name, e in result["onnx_export"].items():
        print(
            f"\nONNX export ({name}): {e['seconds']} s{' (reused)' if e['reused'] else ''}; weights "
            f"{e['weights_bytes'] / 1e6:.1f} MB, fp32 ONNX {e['fp32_onnx_bytes'] / 1e6:.1f} MB, int8 ONNX "
            f"{e['int8_onnx_bytes'] / 1e6:.1f} MB, peak RSS {e['peak_rss_mb']} MB"
        )
    if "onnx_int8_within_1pct_ndcg" in result:
        print(f"onnx-int8 within 1% nDCG@10 of torch-fp32: {result['onnx_int8_within_1pct_ndcg']}")
    print(f"written to {args.result}")
    return 0


def top_overlap(docs: Any, queries: Any, fp32_docs: Any, fp32_queries: Any) -> float:
    """Mean share of each query's top 10 passages that the torch-fp32 top 10 also holds."""
    import numpy as np

    mine = np.argsort(-(queries @ docs.T), axis=1, kind="stable")[:, :K]
    theirs = np.argsort(-(fp32_queries @ fp32_docs.T), axis=1, kind="stable")[:, :K]
    return float(np.mean([len(set(a) & set(b)) / K for a, b in zip(mine, theirs, strict=True)]))


if __name__ == "__main__":
    raise SystemExit(main())
