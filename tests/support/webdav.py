"""A real WebDAV server for the tests: WsgiDAV (pinned in requirements.lock) on its cheroot HTTP
server, publishing a folder the test writes into, with one user (Basic authentication), on
127.0.0.1 on a free port. Its config is a file in a temporary folder; stopped by its process
group (`stop()`), it can be started again on the same port with the same files.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.support.net import free_port

START_TIMEOUT_S = 60.0


class WebDavServer:
    USER = "enclave"

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="enclave-webdav-"))
        self.share_dir = self.base / "share"
        self.share_dir.mkdir()
        self.port = free_port()
        self.password = secrets.token_urlsafe(16)
        self.config = self.base / "wsgidav.json"
        self.log_path = self.base / "wsgidav.out"
        self.process: subprocess.Popen[bytes] | None = None
        self.config.write_text(
            json.dumps(
                {
                    "host": "127.0.0.1",
                    "port": self.port,
                    "provider_mapping": {"/dav": str(self.share_dir)},
                    "simple_dc": {"user_mapping": {"*": {self.USER: {"password": self.password}}}},
                    "http_authenticator": {
                        "accept_basic": True,
                        "accept_digest": False,
                        "default_to_digest": False,
                    },
                    "dir_browser": {"enable": False},
                    "verbose": 1,
                }
            )
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/dav/"

    def start(self) -> WebDavServer:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-c", "import sys; from wsgidav.server.server_cli import run; sys.exit(run())",
                 "--config", str(self.config)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                cwd=self.base,
            )  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"wsgidav exited with {self.process.returncode}:\n{tail}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"wsgidav did not listen on 127.0.0.1:{self.port} within {START_TIMEOUT_S:.0f} s")

    def stop(self) -> None:
        """Kill the server (a crash, a host gone), keeping its files: `start()` brings it back."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)

    def credentials(self, path: Path, password: str | None = None) -> Path:
        """A credentials file for the server's user (with `password` instead, a wrong one)."""
        path.write_text(f"username={self.USER}\npassword={password or self.password}\n")
        path.chmod(0o600)
        return path
