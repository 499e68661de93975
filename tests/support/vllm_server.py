"""Runs a real vLLM OpenAI-compatible server (CPU build, from .venv-vllm) for the duration of a test
session: started on a free loopback port, declared ready only once it has answered a completion,
and stopped by its process group whatever happens. A fault test may kill it (SIGKILL, as a crash
or an OOM kill would) and start it again on the same port.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VLLM_VENV = ROOT / ".venv-vllm"
MISSING_VENV = f"vLLM's CPU venv {VLLM_VENV} is missing: run `make vllm-venv` (deploy/vllm/make-cpu-venv.sh)"
START_TIMEOUT_S = 600.0
STOP_TIMEOUT_S = 20.0

# vLLM must neither download nor phone home: the model folder is local and the tokenizer is passed.
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "VLLM_DO_NOT_TRACK": "1",
    "DO_NOT_TRACK": "1",
}


def vllm_command() -> Path | None:
    """The `vllm` command of .venv-vllm, or None when the venv has not been (fully) made."""
    command = VLLM_VENV / "bin" / "vllm"
    return command if command.exists() and (VLLM_VENV / ".installed").exists() else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class VllmServer:
    base_url: str  # ends in /v1, as VllmChatModel expects
    model: str
    pid: int
    log_path: Path
    startup_s: float
    _launch: Callable[[], subprocess.Popen[bytes]] | None = field(default=None, repr=False)
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def peak_rss_mib(self) -> float:
        """Summed high-water RSS of the server and its engine processes (for bench, never asserted)."""
        return sum(_peak_rss_kib(pid) for pid in _process_tree(self.pid)) / 1024

    def kill(self) -> None:
        """SIGKILL the server and its engine at once, mid-request or not: nothing is flushed."""
        assert self._proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._proc.pid, signal.SIGKILL)
        self._proc.wait(timeout=STOP_TIMEOUT_S)

    def restart(self) -> None:
        """Start the same server again on the same port; returns once it answers a completion."""
        assert self._launch is not None and self._proc is not None and self._proc.poll() is not None
        started = time.monotonic()
        self._proc = self._launch()
        self.pid = self._proc.pid
        _wait_ready(self._proc, self.base_url.removesuffix("/v1"), self.model, self.log_path)
        self.startup_s = time.monotonic() - started


def _process_tree(pid: int) -> list[int]:
    pids, i = [pid], 0
    while i < len(pids):
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{pids[i]}/task").iterdir():
                pids += [int(c) for c in (task / "children").read_text().split()]
        i += 1
    return pids


def _peak_rss_kib(pid: int) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def _log_tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def post_json(url: str, body: dict[str, object], timeout: float) -> dict[str, object]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return dict(json.load(response))


def _wait_ready(proc: subprocess.Popen[bytes], root_url: str, model: str, log_path: Path) -> None:
    """/health answers before the engine can serve, so a first completion is what proves it ready."""
    deadline = time.monotonic() + START_TIMEOUT_S
    healthy = False
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"vLLM exited with code {proc.returncode} while starting; log {log_path}:\n{_log_tail(log_path)}"
            )
        try:
            if not healthy:
                with urllib.request.urlopen(f"{root_url}/health", timeout=5) as response:
                    healthy = response.status == 200
            if healthy:
                post_json(
                    f"{root_url}/v1/chat/completions",
                    {"model": model, "messages": [{"role": "user", "content": "ready?"}], "max_tokens": 1},
                    timeout=120,
                )
                return
        except (urllib.error.URLError, OSError):
            pass  # not listening yet, or the engine is still loading
        time.sleep(0.5)
    raise RuntimeError(
        f"vLLM was not ready within {START_TIMEOUT_S:g} s; log {log_path}:\n{_log_tail(log_path)}"
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server's own process group (the API server and its engine core), then SIGKILL."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pass
    # The engine core may outlive the API server that spawned it: clear the whole group.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=STOP_TIMEOUT_S)


@contextlib.contextmanager
def running_vllm(
    model_dir: Path,
    served_name: str,
    log_path: Path,
    max_model_len: int,
    extra_args: tuple[str, ...] = (),
    while_loading: Callable[[str], None] | None = None,
    reasoning_parser: str | None = "deepseek_r1",
    kv_cache_mib: int = 64,
) -> Iterator[VllmServer]:
    """Serve `model_dir` with vLLM on 127.0.0.1 until the block ends. `while_loading`, if given,
    is called with the server's base URL once it is launched, before waiting for it to be ready:
    work that needs the URL but not yet the server overlaps vLLM's start (the longest wait).
    `reasoning_parser` None serves a model that does not reason (deepseek_r1 would take all of
    its output for reasoning); `kv_cache_mib` must hold one sequence of `max_model_len` tokens."""
    vllm = vllm_command()
    if vllm is None:
        raise FileNotFoundError(MISSING_VENV)
    port = free_port()
    cache = log_path.parent / f"{served_name}-cache"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("VLLM_", "HF_", "PYTHON"))},
        **OFFLINE_ENV,
        "HF_HOME": str(cache / "hf"),  # nothing from, or into, the operator's caches
        "VLLM_CACHE_ROOT": str(cache / "vllm"),
        "VLLM_CONFIG_ROOT": str(cache / "config"),
        "VLLM_CPU_OMP_THREADS_BIND": "nobind",  # containers and CI runners rarely own whole cores
        "VLLM_HOST_IP": "127.0.0.1",  # else it probes the network for this machine's address
        # With --distributed-executor-backend uni (below) the model runs in the engine-core process
        # rather than a third one; vLLM's CPU platform honours that only with this set to 0.
        "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
    }
    command = [
        str(vllm), "serve", str(model_dir),
        "--tokenizer", str(model_dir),
        "--served-model-name", served_name,
        "--host", "127.0.0.1",
        "--port", str(port),
        "--max-model-len", str(max_model_len),
        *(("--reasoning-parser", reasoning_parser) if reasoning_parser else ()),
        "--dtype", "float32",
        "--enforce-eager",  # no torch.compile at start-up: slow on two cores, and needs a C++ compiler
        "--max-num-seqs", "8",
        # ~1 KiB of KV cache per token for the tiny model: 64 MiB holds every sequence at full
        # length. Without it vLLM CPU claims --gpu-memory-utilization of the machine's memory and
        # refuses to start when less than that is free.
        "--kv-cache-memory-bytes", str(kv_cache_mib * 2**20),
        "--distributed-executor-backend", "uni",  # each process imports torch and vLLM: ~20 s
        *extra_args,
    ]  # fmt: skip

    def launch() -> subprocess.Popen[bytes]:
        with log_path.open("ab") as log:
            return subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                cwd=log_path.parent, start_new_session=True,
            )  # fmt: skip

    started = time.monotonic()
    proc = launch()
    server: VllmServer | None = None
    try:
        if while_loading is not None:
            while_loading(f"http://127.0.0.1:{port}/v1")
        _wait_ready(proc, f"http://127.0.0.1:{port}", served_name, log_path)
        server = VllmServer(
            base_url=f"http://127.0.0.1:{port}/v1",
            model=served_name,
            pid=proc.pid,
            log_path=log_path,
            startup_s=time.monotonic() - started,
            _launch=launch,
            _proc=proc,
        )
        print(f"vLLM {served_name} ready in {server.startup_s:.1f} s (pid {proc.pid})", file=sys.stderr)
        yield server
    finally:
        _stop(server._proc if server is not None and server._proc is not None else proc)
