"""What the tests' file and mail servers (Samba, WsgiDAV, Dovecot) share: a process started in a
throwaway folder, listening on 127.0.0.1, killed with every process it forked, and a credentials
file for its one user."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path


class LocalDaemon:
    """Subclasses set `name`, `base`, `log_path`, `process`, `user`, `password` and the ports,
    and start the process themselves, then call `wait_listening()`."""

    name = "server"
    start_timeout_s = 30.0
    base: Path
    log_path: Path
    process: subprocess.Popen[bytes] | None
    user: str
    password: str

    def ports(self) -> tuple[int, ...]:
        raise NotImplementedError

    @property
    def output(self) -> Path:
        """Where the process's stdout and stderr go."""
        return self.log_path

    def wait_listening(self) -> None:
        """Until every port accepts a connection; the log's tail if the process ends first."""
        assert self.process is not None
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = self.output.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{tail}")
            with contextlib.suppress(OSError):
                for port in self.ports():
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(
            f"{self.name} did not listen on 127.0.0.1:{self.ports()[0]} within {self.start_timeout_s:.0f} s"
        )

    def stop(self) -> None:
        """Kill the server and every process it forked (a crash, a host gone), keeping its files:
        `start()` brings it back."""
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
        path.write_text(f"username={self.user}\npassword={password or self.password}\n")
        path.chmod(0o600)
        return path
