"""A throwaway Samba server for the tests: Debian's smbd with a config of its own in a temporary
folder, one share (a folder the test writes into) and one user, on 127.0.0.1 on a free port.

The user is the account running the tests (smbd serves files as a Unix user, and adding one
would touch /etc/passwd), with a random password in the server's own passdb. smbd runs in the
foreground in a process group of its own, which `stop()` signals whole (smbd forks one process
per client connection). Nothing outside the temporary folder is read or written but the smbd
binaries; no systemd. smbd must run as root.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tests.support.daemon import LocalDaemon
from tests.support.net import free_port

REQUIRE_ENV = "REQUIRE_SAMBA"
APT_HINT = "install Debian's samba package (deploy/tools/install-system-packages.sh)"
SMBD = "/usr/sbin/smbd"
PDBEDIT = "/usr/bin/pdbedit"


def missing() -> str | None:
    """Why smbd cannot run here, or None."""
    if not (os.access(SMBD, os.X_OK) and os.access(PDBEDIT, os.X_OK)):
        return f"Samba's smbd and pdbedit not found: {APT_HINT}"
    if os.geteuid() != 0:
        return "smbd serves files as their Unix user and must run as root"
    return None


def require() -> None:
    """Skip the calling test when smbd cannot run here; fail it where CI requires it (REQUIRE_SAMBA=1)."""
    import pytest

    reason = missing()
    if reason is None:
        return
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{REQUIRE_ENV}=1 but {reason}")
    pytest.skip(reason)


class SambaServer(LocalDaemon):
    SHARE = "docs"

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="enclave-samba-"))
        self.share_dir = self.base / "share"
        self.port = free_port()
        self.user = pwd.getpwuid(os.geteuid()).pw_name
        self.password = secrets.token_urlsafe(16)
        self.config = self.base / "smb.conf"
        self.log_path = self.base / "smbd.out"
        self.process: subprocess.Popen[bytes] | None = None
        for name in ("share", "private", "lock", "state", "cache", "run", "ncalrpc", "logs"):
            (self.base / name).mkdir()
        b = self.base
        self.config.write_text(
            f"""[global]
workgroup = WORKGROUP
server role = standalone server
smb ports = {self.port}
interfaces = 127.0.0.1
bind interfaces only = yes
disable netbios = yes
server min protocol = SMB2_02
passdb backend = tdbsam:{b}/private/passdb.tdb
private dir = {b}/private
lock directory = {b}/lock
state directory = {b}/state
cache directory = {b}/cache
pid directory = {b}/run
ncalrpc dir = {b}/ncalrpc
log file = {b}/logs/log.%m
log level = 1
load printers = no
printing = bsd
printcap name = /dev/null
disable spoolss = yes

[{self.SHARE}]
path = {self.share_dir}
read only = yes
valid users = {self.user}
"""
        )
        secret = f"{self.password}\n{self.password}\n"
        done = subprocess.run(
            [PDBEDIT, "-s", str(self.config), "-a", "-u", self.user, "-t"],
            input=secret, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"pdbedit failed ({done.returncode}): {done.stderr or done.stdout}")

    name = "smbd"

    def ports(self) -> tuple[int, ...]:
        return (self.port,)

    def start(self) -> SambaServer:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [SMBD, "--foreground", "--no-process-group", "--debug-stdout", "-s", str(self.config)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        self.wait_listening()
        return self


@contextlib.contextmanager
def running_samba() -> Iterator[SambaServer]:
    """A Samba of the caller's own, closed after it (skipped, or failed under REQUIRE_SAMBA, without smbd)."""
    require()
    server = SambaServer().start()
    try:
        yield server
    finally:
        server.close()
