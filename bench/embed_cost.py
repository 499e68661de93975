"""What one passage costs to embed on this CPU, per backend and graph, on one thread.

    .venv/bin/python bench/embed_cost.py [--passages 160] [--work-dir DIR] [--output FILE.json]

The ingest speed target (issue 3: end-to-end wall 2.5x shorter than a plain LangChain pipeline)
hangs on this number: embedding is 80-90% of both pipelines' work. Each variant runs in a fresh
subprocess pinned to one core with one intra-op thread, and is timed in CPU seconds of that
process (`time.process_time`), which other jobs on the machine disturb far less than wall time
(they still share caches and memory bandwidth). The passages are SciFact abstracts
(../shared/eval/scifact, "title. text", every 20th of the first 4,000), cut at the model's 256
tokens as the product does; mean ~240 tokens, about what Enclave's chunks hold.

Variants (all from the shipped all-MiniLM-L6-v2 folder, nothing downloaded):
  torch-fp32      sentence-transformers, batch 32 (what the plain pipeline and torch-fp32 run)
  ort-fp32        the product's ONNX export (vectorstore/onnx_embedding.py), fp32, one text a run
  ort-fp32-fused  the same after onnxruntime.transformers' BERT optimiser (fused attention,
                  SkipLayerNorm, BiasGelu)
  ort-int8        the product's onnx-int8 model (its RECIPE: dynamic, per-channel, FFN output in
                  fp32), one text a run
  ort-int8-fused  that recipe applied to the fused graph
Each reports passages per CPU-second, mean and min cosine to torch-fp32, and an ONNX Runtime
profile of where a ~240-token run's time goes, by operator.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import glob
import itertools
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.machine import loadavg, machine  # noqa: E402

SCIFACT = ROOT.parent / "shared" / "eval" / "scifact" / "corpus.jsonl"
VARIANTS = ("torch-fp32", "ort-fp32", "ort-fp32-fused", "ort-int8", "ort-int8-fused")


def passages(n: int) -> list[str]:
    with SCIFACT.open(encoding="utf-8") as f:
        rows = [json.loads(line) for line in itertools.islice(f, 0, 4000, 20)]
    return [(r.get("title", "") + ". " + r["text"]).strip() for r in rows][:n]


def export(work: Path) -> dict[str, str]:
    """The ONNX files of every ort-* variant, made once in `work`."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers import optimizer

    from vectorstore.onnx_embedding import RECIPE, OnnxEmbedder

    embedder = OnnxEmbedder(cache_dir=work / "cache")
    files = {
        "ort-fp32": work / "fp32.onnx",
        "ort-fp32-fused": work / "fp32-fused.onnx",
        "ort-int8": embedder.ensure_exported(),
        "ort-int8-fused": work / "int8-fused.onnx",
    }
    if not files["ort-fp32"].is_file():
        embedder._export_fp32(files["ort-fp32"])
    if not files["ort-fp32-fused"].is_file():
        fused = optimizer.optimize_model(
            str(files["ort-fp32"]), model_type="bert", num_heads=12, hidden_size=384, opt_level=1
        )
        fused.save_model_to_file(str(files["ort-fp32-fused"]))
    if not files["ort-int8-fused"].is_file():
        import onnx

        graph = onnx.load(str(files["ort-fp32-fused"]), load_external_data=False).graph
        pattern = re.compile(RECIPE["exclude"])
        quantize_dynamic(
            str(files["ort-fp32-fused"]),
            str(files["ort-int8-fused"]),
            op_types_to_quantize=RECIPE["op_types"],
            per_channel=RECIPE["per_channel"],
            reduce_range=RECIPE["reduce_range"],
            weight_type=getattr(QuantType, RECIPE["weight_type"]),
            nodes_to_exclude=[n.name for n in graph.node if n.op_type == "MatMul" and pattern.search(n.name)],
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},  # the fused ops' outputs
        )
    return {k: str(v) for k, v in files.items()}


def side(variant: str, texts: list[str], onnx_path: str, work: Path) -> dict[str, Any]:
    """One variant, in this (pinned, one-thread) process."""
    import numpy as np

    from vectorstore.embedding import default_model_path

    model = default_model_path()
    if variant == "torch-fp32":
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(1)
        st = SentenceTransformer(str(model), device="cpu")
        st.encode(texts[:8])
        started = time.process_time()
        vectors = st.encode(texts, batch_size=32, normalize_embeddings=True)
        seconds = time.process_time() - started
        np.save(work / "torch-fp32.npy", vectors)
        return {"passages_per_cpu_s": round(len(texts) / seconds, 3), "cpu_s": round(seconds, 2)}

    import onnxruntime as ort
    from tokenizers import Tokenizer

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
    tokenizer = Tokenizer.from_file(str(model / "tokenizer.json"))
    tokenizer.enable_truncation(max_length=256)
    encodings = tokenizer.encode_batch(texts)

    def run(ids: list[int]) -> Any:
        batch = np.asarray([ids], dtype=np.int64)
        feeds = {
            "input_ids": batch,
            "attention_mask": np.ones_like(batch),
            "token_type_ids": np.zeros_like(batch),
        }
        hidden = session.run(None, {k: v for k, v in feeds.items() if k in names})[0][0]
        vector = hidden.mean(axis=0)
        return vector / np.linalg.norm(vector)

    run(encodings[0].ids)
    started = time.process_time()
    vectors = np.stack([run(e.ids) for e in encodings])
    seconds = time.process_time() - started
    reference = np.load(work / "torch-fp32.npy")
    cosines = (vectors * reference).sum(axis=1)
    return {
        "passages_per_cpu_s": round(len(texts) / seconds, 3),
        "cpu_s": round(seconds, 2),
        "cosine_to_torch_fp32_mean": round(float(cosines.mean()), 5),
        "cosine_to_torch_fp32_min": round(float(cosines.min()), 5),
        "profile_ms_per_run": profile(onnx_path, names, work),
    }


def profile(
    onnx_path: str, names: set[str], work: Path, tokens: int = 240, runs: int = 20
) -> dict[str, float]:
    """Milliseconds per run, by operator, for one `tokens`-token text (ONNX Runtime's profiler)."""
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    options.enable_profiling = True
    options.profile_file_prefix = str(work / "profile")
    session = ort.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])
    ids = np.random.default_rng(0).integers(1000, 20000, (1, tokens)).astype(np.int64)
    feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    for _ in range(runs):
        session.run(None, {k: v for k, v in feeds.items() if k in names})
    path = session.end_profiling()
    by_op: collections.Counter[str] = collections.Counter()
    for event in json.loads(Path(path).read_text()):
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            by_op[event["args"]["op_name"]] += event["dur"]
    Path(path).unlink()
    return {op: round(us / runs / 1000, 2) for op, us in by_op.most_common()}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--passages", type=int, default=160)
    parser.add_argument("--work-dir", type=Path)
    parser.add_argument("--output", type=Path)
    parser.add_argument("--side", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--onnx", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    texts = passages(args.passages)
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="embed-cost-"))
    work.mkdir(parents=True, exist_ok=True)
    if args.side:
        print(json.dumps(side(args.side, texts, args.onnx, work)))
        return 0

    from tokenizers import Tokenizer

    from vectorstore.embedding import default_model_path

    tokenizer = Tokenizer.from_file(str(default_model_path() / "tokenizer.json"))
    tokenizer.enable_truncation(max_length=256)
    lengths = [len(e.ids) for e in tokenizer.encode_batch(texts)]
    files = export(work)
    core = str(max(os.sched_getaffinity(0)))
    result: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(["torch", "onnxruntime", "sentence-transformers", "transformers"]),
        "cpu_flags": sorted(
            flag
            for flag in Path("/proc/cpuinfo").read_text().split("flags", 1)[1].split("\n", 1)[0].split()
            if re.match(r"(avx|fma|amx|f16c)", flag)
        ),
        "passages": len(texts),
        "mean_tokens": round(sum(lengths) / len(lengths), 1),
        "pinned_core": core,
        "variants": {},
    }
    for variant in VARIANTS:
        load_before = loadavg()
        out = subprocess.run(
            [
                "taskset",
                "-c",
                core,
                sys.executable,
                __file__,
                "--side",
                variant,
                "--onnx",
                files.get(variant, ""),
                "--passages",
                str(args.passages),
                "--work-dir",
                str(work),
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        figures = json.loads(out.stdout.strip().splitlines()[-1])
        figures["load_average"] = [load_before, loadavg()]
        result["variants"][variant] = figures
        print(
            variant, json.dumps({k: v for k, v in figures.items() if k != "profile_ms_per_run"}), flush=True
        )
    for path in glob.glob(str(work / "profile*.json")):
        Path(path).unlink()
    text = json.dumps(result, indent=2)
    if args.output:
        args.output.write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
