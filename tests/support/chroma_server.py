"""A real Chroma server for the tests: chromadb's own `chroma run` (the package the app installs),
on 127.0.0.1 on a free port, with its data in a temporary folder. Ready once its heartbeat
answers; stopped by its process group whatever happens.

No config file is passed, so the server has no open_telemetry section and exports nothing;
ANONYMIZED_TELEMETRY=False is set as well, as deploy/ does. Tests share one server and keep
apart by collection prefix (`ChromaServer.fresh_prefix`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0


def chroma_command() -> list[str]:
    """`chroma` beside this interpreter (the venv's console script), else the same entry point
    through the interpreter."""
    script = Path(sys.executable).with_name("chroma")
    if script.exists():
        return [str(script)]
    return [
        sys.executable,
        "-c",
        "import sys; from chromadb.cli.cli import app; sys.argv[0] = 'chroma'; app()",
    ]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ChromaServer:
    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="enclave-chroma-"))
        self.host = "127.0.0.1"
        self.port = free_port()
        self.log_path = self.base / "server.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> ChromaServer:
        env = {**os.environ, "ANONYMIZED_TELEMETRY": "False", "NO_COLOR": "1"}
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [*chroma_command(), "run", "--path", str(self.base / "data"),
                 "--host", self.host, "--port", str(self.port)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=env, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-2000:]
                self.stop()
                raise RuntimeError(f"`chroma run` exited with {self.process.returncode}:\n{tail}")
            if self.answers():
                return self
            time.sleep(0.2)
        tail = self.log_path.read_text(errors="replace")[-2000:]
        self.stop()
        raise RuntimeError(
            f"`chroma run` on {self.url} did not answer within {START_TIMEOUT_S:.0f} s:\n{tail}"
        )

    def answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/api/v2/heartbeat", timeout=2) as reply:
                return bool(reply.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def kill(self) -> None:
        """SIGKILL the server (a crash, an OOM kill), keeping its data: `start()` brings it back
        on the same port with the same collections."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=STOP_TIMEOUT_S)

    def stop(self) -> None:
        process, self.process = self.process, None
        try:
            if process is not None and process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(process.pid, signal.SIGKILL)
                    process.wait(timeout=STOP_TIMEOUT_S)
        finally:
            shutil.rmtree(self.base, ignore_errors=True)

    @staticmethod
    def fresh_prefix() -> str:
        """A collection prefix no other test uses (Chroma names: letters, digits, . _ -)."""
        return "t" + uuid.uuid4().hex[:16]


# Runs a test on embedded Chroma and on the server; the test must use the `settings` fixture.
both_store_modes = pytest.mark.parametrize("store_mode", ["embedded", "http"], indirect=True)
