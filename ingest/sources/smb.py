"""An SMB/CIFS share as a source (Windows file servers, Samba, NAS boxes), through smbprotocol's
smbclient, without mounting it.

Markers are "<mtime_ns>:<size>" from the directory listing (no file is opened to list it); the
identity is the server's file id with the marker, so a file renamed or moved within the share is
recognised. With `permissions`, each file's security descriptor is read too (one open per file,
for READ_CONTROL only) and its DACL gives the entry's readers (ingest.sources.permissions). The
user name and password come from a credentials file (base.read_credentials),
never from settings. A folder that cannot be listed fails the whole listing; a file that is
gone, locked (an open Office document) or denied since the listing fails alone.
"""

from __future__ import annotations

import select
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

import smbclient
import smbprotocol.transport
from smbprotocol.exceptions import SMBAuthenticationError, SMBConnectionClosed, SMBException, SMBOSError
from smbprotocol.header import NtStatus
from smbprotocol.open import FilePipePrinterAccessMask, InfoType, SMB2QueryInfoRequest, SMB2QueryInfoResponse
from smbprotocol.security_descriptor import SMB2CreateSDBuffer

from core.errors import IngestError, SourceUnavailable
from ingest.sources.base import Entry, read_credentials
from ingest.sources.permissions import sid_readers


class _PollSelect:
    """What smbprotocol's transport calls as `select.select` to wait for its one socket, done
    with poll(): select() refuses a descriptor numbered 1024 or above (FD_SETSIZE), which a
    server holding many connections and files reaches, and every SMB sync then failed with
    "filedescriptor out of range in select()". smbprotocol 1.17 waits only to read one socket."""

    @staticmethod
    def select(
        rlist: list[Any], wlist: list[Any], xlist: list[Any], timeout: float | None = None
    ) -> tuple[list[Any], list[Any], list[Any]]:
        poller = select.poll()
        for sock in rlist:
            poller.register(sock, select.POLLIN | select.POLLPRI)
        for sock in wlist:
            poller.register(sock, select.POLLOUT)
        ready = {fd for fd, _ in poller.poll(None if timeout is None else timeout * 1000)}
        return (
            [s for s in rlist if s.fileno() in ready],
            [s for s in wlist if s.fileno() in ready],
            [],
        )


smbprotocol.transport.select = _PollSelect  # type: ignore[attr-defined]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DACL_SECURITY_INFORMATION = 0x00000004
_SD_PRESENT_DACL = 0x0004  # SE_DACL_PRESENT in the descriptor's control flags
_GONE_STATUSES = {
    NtStatus.STATUS_OBJECT_NAME_NOT_FOUND,
    NtStatus.STATUS_OBJECT_PATH_NOT_FOUND,
    NtStatus.STATUS_DELETE_PENDING,
}
# Statuses about one file while the share answers: that file fails, the sync goes on.
_ENTRY_STATUSES = {
    NtStatus.STATUS_OBJECT_NAME_NOT_FOUND,
    NtStatus.STATUS_OBJECT_PATH_NOT_FOUND,
    NtStatus.STATUS_ACCESS_DENIED,
    NtStatus.STATUS_SHARING_VIOLATION,
    NtStatus.STATUS_DELETE_PENDING,
    NtStatus.STATUS_FILE_IS_A_DIRECTORY,
}
_NOT_FOUND_STATUSES = {
    NtStatus.STATUS_BAD_NETWORK_NAME,
    NtStatus.STATUS_NOT_FOUND,  # what a missing share becomes once smbclient has tried DFS
    NtStatus.STATUS_OBJECT_NAME_NOT_FOUND,
    NtStatus.STATUS_OBJECT_PATH_NOT_FOUND,
}
_LOGON_STATUSES = {
    NtStatus.STATUS_LOGON_FAILURE,
    NtStatus.STATUS_WRONG_PASSWORD,
    NtStatus.STATUS_PASSWORD_EXPIRED,
}


def _ns(when: datetime) -> int:
    """A listing's time (smbprotocol gives microseconds) as nanoseconds since the epoch."""
    return (when - _EPOCH) // timedelta(microseconds=1) * 1000


class SmbConnector:
    kind = "smb"

    def __init__(
        self,
        server: str,
        share: str,
        folder: str = "",
        *,
        credentials_file: Path,
        port: int = 445,
        encrypt: bool = False,
        timeout_s: float = 30.0,
        permissions: bool = False,
    ) -> None:
        self.server = server
        self.share = share
        self.folder = folder.strip("/\\").replace("\\", "/")
        self.port = port
        self.credentials_file = Path(credentials_file)
        self.encrypt = encrypt
        self.timeout_s = timeout_s
        self.permissions = permissions
        where = f"{server}:{port}" if port != 445 else server
        self.location = f"smb://{where}/{share}" + (f"/{self.folder}" if self.folder else "")
        self._cache: dict[str, Any] = {}  # this connector's own connections, not smbclient's global pool
        self._session: dict[str, Any] | None = None

    def _unc(self, rel: str = "") -> str:
        parts = [p for p in (self.folder, rel) if p]
        tail = "\\".join("/".join(parts).split("/"))
        return f"\\\\{self.server}\\{self.share}" + (f"\\{tail}" if tail else "")

    def _options(self) -> dict[str, Any]:
        """smbclient's connection arguments; the credentials file is read again after close()."""
        if self._session is not None:
            return self._session
        credentials = read_credentials(self.credentials_file)
        user = f"{credentials.domain}\\{credentials.username}" if credentials.domain else credentials.username
        self._session = {
            "username": user,
            "password": credentials.password,
            "port": self.port,
            "encrypt": self.encrypt or None,
            "connection_timeout": self.timeout_s,
            "connection_cache": self._cache,
        }
        return self._session

    def _unavailable(self, exc: Exception, doing: str, top: bool = False) -> SourceUnavailable:
        """The source's failure, said for an administrator; `top`: at the share's top folder."""
        status = getattr(exc, "ntstatus", None) or getattr(exc, "status", None)
        if status in _LOGON_STATUSES or isinstance(exc, SMBAuthenticationError):
            why = f"the server refused the user name or password of {self.credentials_file}"
        elif top and status in _NOT_FOUND_STATUSES:
            why = f"the server has no share named {self.share!r}" + (
                f" or no folder {self.folder!r} in it" if self.folder else ""
            )
        elif status == NtStatus.STATUS_ACCESS_DENIED:
            why = f"the user of {self.credentials_file} may not read it (access denied)"
        elif isinstance(exc, SMBConnectionClosed):
            why = "the server closed the connection"
        else:
            why = str(exc)
        self.close()  # whatever is left of the connection is of no use
        return SourceUnavailable(f"{self.location}: {doing} failed: {why}")

    def list(self) -> list[Entry]:
        options = self._options()
        entries: list[Entry] = []
        seen_folders: set[int] = set()  # a server-side symlink loop cannot trap the walk
        pending = [""]
        rel = ""
        try:
            while pending:
                rel = pending.pop()
                with smbclient.scandir(self._unc(rel), **options) as found:
                    for item in found:
                        if item.name.startswith(".") or item.is_symlink():
                            continue
                        info = item.smb_info
                        path = f"{rel}/{item.name}" if rel else item.name
                        if item.is_dir():
                            if info.file_id not in seen_folders:
                                seen_folders.add(info.file_id)
                                pending.append(path)
                            continue
                        mtime_ns = _ns(info.last_write_time)
                        marker = f"{mtime_ns}:{info.end_of_file}"
                        entries.append(
                            Entry(path, info.end_of_file, marker, f"{info.file_id}@{marker}", mtime_ns)
                        )
        except (SMBException, OSError, ValueError) as exc:  # ValueError: smbclient cannot connect
            raise self._unavailable(exc, "listing", top=rel == "") from exc
        if self.permissions:
            entries = [e for e in (self._with_readers(e) for e in entries) if e is not None]
        return sorted(entries, key=lambda e: e.path)

    def _with_readers(self, entry: Entry) -> Entry | None:
        """The entry with the readers its security descriptor gives; None when it is gone since
        the listing. A descriptor that cannot be read fails the listing: a file whose permissions
        are unknown must neither keep its old groups nor look deleted."""
        try:
            dacl = self._dacl(entry.path)
        except SMBOSError as exc:
            if exc.ntstatus in _GONE_STATUSES:
                return None
            if exc.ntstatus == NtStatus.STATUS_ACCESS_DENIED:
                self.close()
                raise SourceUnavailable(
                    f"{self.location}: the permissions of {entry.path} cannot be read (access denied to "
                    f"the user of {self.credentials_file}); nothing was removed. Let that user read "
                    "permissions, or exclude the file"
                ) from exc
            raise self._unavailable(exc, f"reading the permissions of {entry.path}") from exc
        except (SMBException, OSError, ValueError) as exc:
            raise self._unavailable(exc, f"reading the permissions of {entry.path}") from exc
        return Entry(
            entry.path, entry.size, entry.marker, entry.identity, entry.modified_ns, readers=sid_readers(dacl)
        )

    def _dacl(self, path: str) -> list[tuple[int, int, int, str]] | None:
        """The file's DACL as (type, flags, mask, SID) per ACE; None when it has none (all may
        read). smbclient has no call for it: a QUERY_INFO of the security descriptor on an open
        that asks for READ_CONTROL only, so a file open elsewhere is not disturbed."""
        with smbclient.open_file(
            self._unc(path),
            "rb",
            buffering=0,
            share_access="rwd",
            desired_access=FilePipePrinterAccessMask.READ_CONTROL,
            **self._options(),
        ) as raw:
            fd = raw.fd
            request = SMB2QueryInfoRequest()
            request["info_type"] = InfoType.SMB2_0_INFO_SECURITY
            request["file_info_class"] = 0
            request["file_id"] = fd.file_id
            request["output_buffer_length"] = 65536
            request["additional_information"] = _DACL_SECURITY_INFORMATION
            sent = fd.connection.send(
                request, fd.tree_connect.session.session_id, fd.tree_connect.tree_connect_id
            )
            response = SMB2QueryInfoResponse()
            response.unpack(fd.connection.receive(sent)["data"].get_value())
        descriptor = SMB2CreateSDBuffer()
        descriptor.unpack(response["buffer"].get_value())
        if not descriptor["control"].get_value() & _SD_PRESENT_DACL:
            return None
        dacl = descriptor.get_dacl()
        if dacl is None:
            return None
        return [
            (
                ace["ace_type"].get_value(),
                ace["ace_flags"].get_value(),
                ace["mask"].get_value(),
                str(ace["sid"]),
            )
            for ace in dacl["aces"].get_value()
            if not isinstance(ace, bytes)  # a type smbprotocol does not parse (object ACEs: directories)
        ]

    def fetch(self, entry: Entry, dest: BinaryIO) -> None:
        options = self._options()
        try:
            with smbclient.open_file(self._unc(entry.path), "rb", share_access="r", **options) as fh:
                shutil.copyfileobj(fh, dest, 1 << 20)
        except SMBOSError as exc:
            if exc.ntstatus in _ENTRY_STATUSES:
                raise IngestError(f"{self.location}: {entry.path}: cannot be read: {exc.strerror}") from exc
            raise self._unavailable(exc, f"reading {entry.path}") from exc
        except (SMBException, OSError, ValueError) as exc:
            raise self._unavailable(exc, f"reading {entry.path}") from exc

    def close(self) -> None:
        cache, self._cache, self._session = self._cache, {}, None
        smbclient.reset_connection_cache(fail_on_error=False, connection_cache=cache)
