"""What every source connector is: a full listing of entries with the source's own change
markers, and a byte stream per entry. Also the filtering every source shares (include/exclude
patterns, a size limit, names a mirror can hold) and the credentials file format.

Errors (core/errors.py): a connector raises SourceUnavailable when the source cannot be reached,
refuses the credentials, or fails part-way through a listing or a download (a partial listing
never looks complete); and IngestError, naming the entry, when one entry alone cannot be read
(gone since the listing, access denied, locked) while the source answers.
"""

from __future__ import annotations

import re
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import BinaryIO, Protocol
from urllib.parse import quote, urlsplit

from core.errors import ConfigError, SourceError, SourceShrank, SourceUnavailable
from ingest.pipeline import human_size

__all__ = [
    "Connector",
    "Credentials",
    "Entry",
    "Selection",
    "SourceError",
    "SourceShrank",
    "SourceUnavailable",
    "path_problem",
    "read_credentials",
    "shown_location",
]

MAX_NAME_BYTES = 255  # a file name longer than this cannot be held by the mirror's filesystem


@dataclass(frozen=True)
class Entry:
    """One file (or message) of a source, as its listing gives it.

    `path` is relative and POSIX inside the source ("hr/policy.pdf", "INBOX/1234.eml"). `marker`
    is the source's own change marker: a different marker means different bytes ("<mtime_ns>:
    <size>" for folders and SMB, the ETag for WebDAV, "<UIDVALIDITY>:<UID>" for IMAP).
    `identity` names these bytes wherever they sit, so that a rename or a move is recognised:
    two entries with the same identity hold the same bytes (file id plus marker for folders and
    SMB; Message-ID, arrival time and size for mail); None where the source has no such id.
    `modified_ns` is the source's modification time where it gives one (the mirror dates its copy
    by it). `readers`: who may read it at the source (ingest.sources.permissions), where the
    connector was asked for permissions; `groups`: the Enclave groups they map to, set by the
    mirror (`groups: from-source`), () where none may read it. Neither is part of the marker: a
    change of permissions alone is no change of bytes."""

    path: str
    size: int
    marker: str
    identity: str | None = None
    modified_ns: int | None = None
    readers: tuple[str, ...] | None = None
    groups: tuple[str, ...] | None = None


class Connector(Protocol):
    """A source of files. `location` names it in messages and reports, never with a secret."""

    kind: str
    location: str

    def list(self) -> list[Entry]:
        """Every entry of the source, or SourceUnavailable: never a partial listing."""
        ...

    def fetch(self, entry: Entry, dest: BinaryIO) -> None:
        """Write the entry's bytes to `dest`: SourceUnavailable if the source fails, IngestError
        if this entry alone cannot be read."""
        ...

    def close(self) -> None:
        """Drop any connection; a later call connects again."""
        ...


def path_problem(path: str) -> str | None:
    """Why a listed path cannot be held in a mirror folder (it would leave it, or no filesystem
    takes the name), or None. A hostile server's "../../etc/passwd" stops here."""
    if not path or path.startswith("/"):
        return "not a relative path"
    if "\0" in path:
        return "a NUL character in the name"
    for part in path.split("/"):
        if part in ("", ".", ".."):
            return f"a path component {part!r}"
        if len(part.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
            return f"a name longer than {MAX_NAME_BYTES} bytes"
    return None


def shown_location(location: str, path: str) -> str | None:
    """Where the entry at `path` of the source at `location` (a connector's `location`) lives for
    the people who use it, for citations and the audit log; None for a folder source, whose path
    is the server's own and opens nothing for staff.

    An SMB share gives the UNC path Windows Explorer and Office show (`\\\\server\\share\\a\\b.xlsx`),
    an smb:// URL only where a port other than 445 is needed (UNC has no port); WebDAV the file's
    URL; IMAP the message's IMAP URL (RFC 5092: `imap://host/INBOX;UID=42`; the folder is the
    mirror's, its levels joined by "/"). A mail attachment (`<mail>#<name>`) keeps its `#<name>`.
    A connector's location never holds a user name or password (core.sources refuses them)."""
    path, sep, part = path.partition("#")
    suffix = sep + part
    parts = urlsplit(location)
    scheme = parts.scheme.lower()
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"  # an IPv6 address
    # Rebuilt from the host and port alone: no user name or password can come along.
    if scheme == "smb":
        names = [p for p in parts.path.split("/") if p] + path.split("/")
        if parts.port not in (None, 445):
            return f"smb://{host}:{parts.port}/" + quote("/".join(names)) + suffix
        return "\\\\" + "\\".join([host, *names]) + suffix
    if scheme in ("http", "https"):
        port = f":{parts.port}" if parts.port is not None else ""
        return f"{scheme}://{host}{port}{parts.path.rstrip('/')}/{quote(path)}{suffix}"
    if scheme in ("imap", "imaps"):
        folder, _, name = path.rpartition("/")
        uid = name.removesuffix(".eml")
        port = f":{parts.port}" if parts.port not in (None, 143, 993) else ""
        return f"imap://{host}{port}/{quote(folder)};UID={uid}{suffix}"
    return None


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """A glob over POSIX paths: `*` and `?` stay within one name, `**` spans folders."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out), re.IGNORECASE | re.DOTALL)


@dataclass(frozen=True)
class Selection:
    """Which entries of a source are mirrored, the same for every kind of source.

    A pattern with a "/" matches the whole path from the source's top ("hr/**", "*/drafts/*.docx");
    one without matches the file's name or the name of any folder above it ("*.pdf", "archive",
    "~$*"). Matching ignores case (SMB and most WebDAV servers do). An entry is kept when it
    matches an `include` pattern (or there are none) and no `exclude` pattern. Hidden names (a
    leading ".") are left out, as the ingest's own walk does. An entry over `max_bytes` is left
    out and reported as skipped with its size."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    max_bytes: int | None = None

    @cached_property
    def _include(self) -> tuple[tuple[bool, re.Pattern[str]], ...]:
        return tuple(("/" in p.strip("/"), _glob_regex(p.strip("/"))) for p in self.include)

    @cached_property
    def _exclude(self) -> tuple[tuple[bool, re.Pattern[str]], ...]:
        return tuple(("/" in p.strip("/"), _glob_regex(p.strip("/"))) for p in self.exclude)

    @staticmethod
    def _matches(path: str, patterns: Iterable[tuple[bool, re.Pattern[str]]]) -> bool:
        parts = path.split("/")
        for whole, regex in patterns:
            if whole and regex.fullmatch(path):
                return True
            if not whole and any(regex.fullmatch(part) for part in parts):
                return True
        return False

    def wants(self, path: str) -> bool:
        """Whether the patterns keep `path` (the size limit aside)."""
        if any(part.startswith(".") for part in path.split("/")):
            return False
        if self.include and not self._matches(path, self._include):
            return False
        return not self._matches(path, self._exclude)

    def apply(self, entries: Sequence[Entry]) -> tuple[list[Entry], list[tuple[str, str]]]:
        """The entries to mirror, and (path, reason) for those left out that an administrator
        should hear about: over the size limit, or a name no mirror can hold."""
        kept: list[Entry] = []
        skipped: list[tuple[str, str]] = []
        for entry in entries:
            problem = path_problem(entry.path)
            if problem is not None:
                skipped.append((entry.path, f"cannot be mirrored: {problem}"))
            elif not self.wants(entry.path):
                continue
            elif self.max_bytes is not None and entry.size > self.max_bytes:
                limit = human_size(self.max_bytes)
                skipped.append(
                    (entry.path, f"{human_size(entry.size)} is over the source's size limit of {limit}")
                )
            else:
                kept.append(entry)
        return kept, skipped


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)
    domain: str | None = None


_CREDENTIAL_KEYS = {"username": "username", "user": "username", "password": "password", "domain": "domain"}


def read_credentials(path: Path) -> Credentials:
    """A credentials file as mount.cifs reads it: `username=`, `password=` and optionally
    `domain=` lines; `#` starts a comment. The file must not be readable by other users: the
    secret lives only there, never in settings or logs."""
    try:
        st = path.stat()
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"credentials file {path}: cannot be read: {exc.strerror or exc}") from exc
    if st.st_mode & stat.S_IROTH:
        raise ConfigError(f"credentials file {path} is readable by every user: chmod 600 {path}")
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        name = _CREDENTIAL_KEYS.get(key.strip().lower())
        if not sep or name is None:
            raise ConfigError(
                f"credentials file {path}, line {number}: expected username=, password= or domain="
            )
        values[name] = value.strip()
    if not values.get("username") or "password" not in values:
        raise ConfigError(f"credentials file {path}: needs a username= and a password= line")
    return Credentials(values["username"], values["password"], values.get("domain") or None)
