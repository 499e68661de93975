"""A real WebDAV server for the tests: WsgiDAV (pinned in requirements.lock) on its cheroot HTTP
server, publishing a folder the test writes into, with one user (Basic authentication), on
127.0.0.1 on a free port. Its config is a file in a temporary folder; stopped by its process
group (`stop()`), it can be started again on the same port with the same files.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.support.daemon import LocalDaemon
from tests.support.net import free_port


class WebDavServer(LocalDaemon):
    USER = "enclave"
    user = USER
    name = "wsgidav"
    start_timeout_s = 60.0

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

    def ports(self) -> tuple[int, ...]:
        return (self.port,)

    def start(self) -> WebDavServer:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-c", "import sys; from wsgidav.server.server_cli import run; sys.exit(run())",
                 "--config", str(self.config)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                cwd=self.base,
            )  # fmt: skip
        self.wait_listening()
        return self
