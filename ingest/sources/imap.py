"""An IMAP mailbox as a source (a shared mailbox, a team's archive), through imapclient. Each
message is the entry `<folder>/<UID>.eml`, so the ingest's EML support takes the message and
each of its attachments as documents.

Markers are "<UIDVALIDITY>:<UID>": a message never changes under its UID, and a folder whose
UIDVALIDITY changed (rebuilt, restored) has all its entries changed. The identity is the
Message-ID with the arrival time (INTERNALDATE) and size, which a message keeps when it is moved
or copied to another folder, so a move is taken from the mirror; a message without a Message-ID
has none. Folders are read-only selected (EXAMINE): nothing is marked seen. The user name and
password come from a credentials file; the connection is TLS (IMAPS, or STARTTLS) unless told
otherwise.
"""

from __future__ import annotations

import builtins  # `list` is a method here
import contextlib
import hashlib
import ssl
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Any, BinaryIO, Literal

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientAbortError, IMAPClientError, LoginError

from core.errors import IngestError, SourceUnavailable
from ingest.sources.base import Entry, read_credentials

Security = Literal["ssl", "starttls", "none"]
_FETCH_BATCH = 500  # UIDs per FETCH while listing: a command line stays well under servers' limits
_HEADER = "BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"
_SKIP_FLAGS = {b"\\Noselect", b"\\NonExistent"}


class ImapConnector:
    kind = "imap"

    def __init__(
        self,
        host: str,
        *,
        credentials_file: Path,
        port: int | None = None,
        security: Security = "ssl",
        folders: tuple[str, ...] | None = None,
        ca_file: Path | None = None,
        timeout_s: float = 60.0,
    ) -> None:
        if security not in ("ssl", "starttls", "none"):
            raise ValueError(f"security must be ssl, starttls or none, not {security!r}")
        self.host = host
        self.port = port or (993 if security == "ssl" else 143)
        self.security = security
        self.folders = folders  # None: every folder that can be selected
        self.credentials_file = Path(credentials_file)
        self.ca_file = ca_file
        self.timeout_s = timeout_s
        scheme = "imaps" if security == "ssl" else "imap"
        self.location = f"{scheme}://{host}:{self.port}"
        self._client: IMAPClient | None = None
        self._selected: tuple[str, int] | None = None  # folder, its UIDVALIDITY
        self._where: dict[str, str] = {}  # an entry's folder path in the mirror -> the IMAP folder

    def _connect(self) -> IMAPClient:
        if self._client is not None:
            return self._client
        credentials = read_credentials(self.credentials_file)
        context = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        client = IMAPClient(
            self.host, port=self.port, ssl=self.security == "ssl", ssl_context=context, timeout=self.timeout_s
        )
        try:
            client.normalise_times = False  # INTERNALDATE with its zone
            if self.security == "starttls":
                client.starttls(context)
            client.login(credentials.username, credentials.password)
        except BaseException:
            with contextlib.suppress(OSError):
                client.shutdown()
            raise
        self._client = client
        return client

    def _unavailable(self, exc: BaseException, doing: str) -> SourceUnavailable:
        if isinstance(exc, LoginError):
            why = f"the server refused the user name or password of {self.credentials_file}"
        else:
            why = str(exc) or type(exc).__name__
        self.close()
        return SourceUnavailable(f"{self.location}: {doing} failed: {why}")

    def list(self) -> builtins.list[Entry]:
        doing = "listing"
        try:
            client = self._connect()
            entries: builtins.list[Entry] = []
            self._where = {}
            for name, delimiter in self._mail_folders(client):
                doing = f"listing {name}"
                prefix = "/".join(
                    part.replace("/", "_") for part in (name.split(delimiter) if delimiter else [name])
                )
                self._where[prefix] = name
                entries.extend(self._messages(client, name, prefix))
        except (IMAPClientError, OSError) as exc:  # IMAPClientAbortError: the connection is gone
            raise self._unavailable(exc, doing) from exc
        return sorted(entries, key=lambda e: e.path)

    def _mail_folders(self, client: IMAPClient) -> builtins.list[tuple[str, str | None]]:
        found: dict[str, str | None] = {}
        for flags, delimiter, name in client.list_folders():
            if not _SKIP_FLAGS & set(flags):
                found[name] = delimiter.decode() if delimiter else None
        if self.folders is None:
            return sorted(found.items())
        missing = [name for name in self.folders if name not in found]
        if missing:
            raise IMAPClientError(f"no folder named {', '.join(map(repr, missing))} on the server")
        return [(name, found[name]) for name in self.folders]

    def _messages(self, client: IMAPClient, folder: str, prefix: str) -> builtins.list[Entry]:
        info = client.select_folder(folder, readonly=True)
        uidvalidity = int(info[b"UIDVALIDITY"])
        self._selected = (folder, uidvalidity)
        uids = sorted(client.search("ALL"))
        entries: builtins.list[Entry] = []
        for start in range(0, len(uids), _FETCH_BATCH):
            batch = uids[start : start + _FETCH_BATCH]
            for uid, data in client.fetch(batch, ["RFC822.SIZE", "INTERNALDATE", _HEADER]).items():
                size = int(data[b"RFC822.SIZE"])
                arrived = data[b"INTERNALDATE"]
                header = next((v for k, v in data.items() if k.startswith(b"BODY[HEADER")), b"")
                message_id = BytesHeaderParser().parsebytes(header or b"").get("Message-ID")
                identity = None
                if message_id:
                    key = f"{message_id.strip()}\0{arrived.isoformat()}\0{size}"
                    identity = "mail:" + hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()
                entries.append(
                    Entry(
                        path=f"{prefix}/{uid}.eml",
                        size=size,
                        marker=f"{uidvalidity}:{uid}",
                        identity=identity,
                        modified_ns=int(arrived.timestamp()) * 10**9,
                    )
                )
        return entries

    def fetch(self, entry: Entry, dest: BinaryIO) -> None:
        prefix, _, name = entry.path.rpartition("/")
        folder = self._where.get(prefix)
        uidvalidity, _, uid_text = entry.marker.partition(":")
        if folder is None or not name.endswith(".eml"):
            raise IngestError(f"{self.location}: {entry.path}: not a message of this mailbox's last listing")
        uid = int(uid_text)
        doing = f"reading {entry.path}"
        try:
            client = self._connect()
            if self._selected is None or self._selected[0] != folder:
                info = client.select_folder(folder, readonly=True)
                self._selected = (folder, int(info[b"UIDVALIDITY"]))
            if str(self._selected[1]) != uidvalidity:
                raise SourceUnavailable(
                    f"{self.location}: the folder {folder} was rebuilt during the sync (its UIDVALIDITY "
                    "changed), so the listing no longer names its messages; nothing was removed, sync again"
                )
            data: dict[int, dict[bytes, Any]] = client.fetch([uid], ["BODY.PEEK[]"])
        except (IMAPClientError, OSError) as exc:
            raise self._unavailable(exc, doing) from exc
        body = data.get(uid, {}).get(b"BODY[]")
        if body is None:
            raise IngestError(
                f"{self.location}: {entry.path}: the message is gone (expunged since the listing)"
            )
        dest.write(body)

    def close(self) -> None:
        client, self._client, self._selected = self._client, None, None
        if client is None:
            return
        try:
            client.logout()
        except (IMAPClientError, IMAPClientAbortError, OSError):
            with contextlib.suppress(OSError):
                client.shutdown()
