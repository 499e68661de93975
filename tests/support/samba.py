"""A throwaway Samba server for the tests: Debian's smbd with a config of its own in a temporary
folder, one share (a folder the test writes into) and one user, on 127.0.0.1 on a free port.

With `nt_acls`, the share keeps Windows NT ACLs of their own (Samba's acl_xattr module, Debian's
samba-vfs-modules, in the security.NTACL xattr; the POSIX permissions underneath are ignored), so
a file's DACL can name any SID, a domain group's included, and deny as well as allow: `set_dacl`
sets one over SMB, as Windows Explorer would.

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
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from tests.support.daemon import LocalDaemon
from tests.support.net import free_port

REQUIRE_ENV = "REQUIRE_SAMBA"
APT_HINT = "install Debian's samba package (deploy/tools/install-system-packages.sh)"
SMBD = "/usr/sbin/smbd"
PDBEDIT = "/usr/bin/pdbedit"
VFS_HINT = "install Debian's samba-vfs-modules package (deploy/tools/install-system-packages.sh)"


def missing() -> str | None:
    """Why smbd cannot run here, or None."""
    if not (os.access(SMBD, os.X_OK) and os.access(PDBEDIT, os.X_OK)):
        return f"Samba's smbd and pdbedit not found: {APT_HINT}"
    if os.geteuid() != 0:
        return "smbd serves files as their Unix user and must run as root"
    return None


def require(nt_acls: bool = False) -> None:
    """Skip the calling test when smbd cannot run here (with `nt_acls`: or keep NT ACLs); fail it
    where CI requires it (REQUIRE_SAMBA=1)."""
    import pytest

    reason = missing()
    if reason is None and nt_acls and not any(Path("/usr/lib").glob("*/samba/vfs/acl_xattr.so")):
        reason = f"Samba's acl_xattr module not found: {VFS_HINT}"
    if reason is None:
        return
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{REQUIRE_ENV}=1 but {reason}")
    pytest.skip(reason)


class SambaServer(LocalDaemon):
    SHARE = "docs"

    def __init__(self, nt_acls: bool = False) -> None:
        self.nt_acls = nt_acls
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
        # NT ACLs of the share's own; writable, so that a DACL can be set over SMB.
        share_acls = (
            "vfs objects = acl_xattr\nacl_xattr:ignore system acls = yes\nread only = no\n"
            if nt_acls
            else "read only = yes\n"
        )
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
{share_acls}valid users = {self.user}
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

    def set_dacl(self, path: str, aces: Iterable[tuple[int, int, str]]) -> None:
        """Give the share's file `path` the DACL `aces`, each (type: 0 allow, 1 deny; access
        mask; SID), in the order given, over SMB (SET_INFO of the security descriptor, as a
        Windows client sets one). Needs `nt_acls`."""
        import smbclient
        from smbprotocol.open import InfoType, SMB2SetInfoRequest, SMB2SetInfoResponse
        from smbprotocol.security_descriptor import (
            AccessAllowedAce,
            AccessDeniedAce,
            AclPacket,
            SDControl,
            SIDPacket,
            SMB2CreateSDBuffer,
        )

        assert self.nt_acls, "set_dacl needs SambaServer(nt_acls=True)"
        built: list[Any] = []
        for ace_type, mask, sid in aces:
            ace = AccessDeniedAce() if ace_type == 1 else AccessAllowedAce()
            ace["mask"] = mask
            packet = SIDPacket()
            packet.from_string(sid)
            ace["sid"] = packet
            built.append(ace)
        acl = AclPacket()
        acl["aces"] = built
        descriptor = SMB2CreateSDBuffer()
        descriptor["control"].set_flag(SDControl.SELF_RELATIVE)
        descriptor.set_dacl(acl)
        cache: dict[str, Any] = {}
        unc = f"\\\\127.0.0.1\\{self.SHARE}\\" + path.replace("/", "\\")
        write_dac_read_control = 0x00040000 | 0x00020000
        try:
            with smbclient.open_file(
                unc, "rb", buffering=0, share_access="rwd", desired_access=write_dac_read_control,
                username=self.user, password=self.password, port=self.port, connection_cache=cache,
            ) as raw:  # fmt: skip
                fd = raw.fd
                request = SMB2SetInfoRequest()
                request["info_type"] = InfoType.SMB2_0_INFO_SECURITY
                request["file_info_class"] = 0
                request["additional_information"] = 0x00000004  # DACL_SECURITY_INFORMATION
                request["file_id"] = fd.file_id
                request["buffer"] = descriptor
                sent = fd.connection.send(
                    request, fd.tree_connect.session.session_id, fd.tree_connect.tree_connect_id
                )
                SMB2SetInfoResponse().unpack(fd.connection.receive(sent)["data"].get_value())
        finally:
            smbclient.reset_connection_cache(fail_on_error=False, connection_cache=cache)


@contextlib.contextmanager
def running_samba(nt_acls: bool = False) -> Iterator[SambaServer]:
    """A Samba of the caller's own, closed after it (skipped, or failed under REQUIRE_SAMBA, without
    smbd, or with `nt_acls` without acl_xattr)."""
    require(nt_acls)
    server = SambaServer(nt_acls).start()
    try:
        yield server
    finally:
        server.close()
