"""A real `enclave serve` process on a data folder, and the real `enclave` command beside it, for
the tests of who holds the store and of the admin channel."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support.net import free_port

ENCLAVE = str(Path(sys.executable).with_name("enclave"))
START_TIMEOUT_S = 240.0


def enclave(env: dict[str, str], *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run `enclave ARGS` to its end; stdout and stderr captured (neither is a terminal)."""
    return subprocess.run(
        [ENCLAVE, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=600, check=False
    )


@dataclass
class WebUI:
    process: subprocess.Popen[bytes]
    url: str
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        """SIGTERM, as systemd stops it; SIGKILL if it does not go."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


@contextlib.contextmanager
def web_ui(env: dict[str, str], log_path: Path) -> Iterator[WebUI]:
    """`enclave serve` on a free port, once it answers; stopped when the block ends (unless the
    test stopped it itself)."""
    port = free_port()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [ENCLAVE, "serve", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
    served = WebUI(process, f"http://127.0.0.1:{port}/", log_path)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        answered = False
        while not answered and time.monotonic() < deadline and process.poll() is None:
            try:
                with urllib.request.urlopen(f"{served.url}login", timeout=5):
                    answered = True
            except OSError:
                time.sleep(1)
        assert answered, served.log()[-3000:]
        yield served
    finally:
        served.stop()
