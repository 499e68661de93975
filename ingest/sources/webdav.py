"""A WebDAV folder as a source (Nextcloud, ownCloud, SharePoint's WebDAV, Apache mod_dav), over
plain HTTP(S) with httpx: PROPFIND to list, GET to fetch.

Collections are listed one level at a time (Depth: 1; many servers refuse Depth: infinity), and
a collection that does not answer with its listing fails the whole listing. Markers are the
ETag (getlastmodified and size where a server gives none). WebDAV has no standard id that
survives a rename, so a renamed file is fetched again under its new name. The user name and
password (Basic authentication: use HTTPS, or an app password) come from a credentials file.
"""

from __future__ import annotations

import builtins  # `list` is a method here
import ssl
import xml.etree.ElementTree as ET
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote, unquote, urlsplit

import httpx

from core.errors import IngestError, SourceUnavailable
from ingest.sources.base import Entry, read_credentials

_DAV = "{DAV:}"
_PROPFIND = b"""<?xml version="1.0" encoding="utf-8"?>
<d:propfind xmlns:d="DAV:"><d:prop>
<d:resourcetype/><d:getcontentlength/><d:getetag/><d:getlastmodified/>
</d:prop></d:propfind>"""
# Answers about one file while the server answers: that file fails, the sync goes on.
_ENTRY_STATUSES = {403, 404, 410, 423}


class WebDavConnector:
    kind = "webdav"

    def __init__(
        self,
        url: str,
        *,
        credentials_file: Path | None = None,
        ca_file: Path | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{url!r} is not an http(s) URL")
        self.base = f"{parts.scheme}://{parts.netloc}"
        self.root = unquote(parts.path).rstrip("/") + "/"  # decoded, with a trailing slash
        self.location = f"{self.base}{quote(self.root)}"
        self.credentials_file = Path(credentials_file) if credentials_file else None
        self.ca_file = ca_file
        self.timeout_s = timeout_s
        self._client: httpx.Client | None = None

    def _http(self) -> httpx.Client:
        if self._client is None:
            auth = None
            if self.credentials_file is not None:
                credentials = read_credentials(self.credentials_file)
                auth = httpx.BasicAuth(credentials.username, credentials.password)
            verify: ssl.SSLContext | bool = True
            if self.ca_file is not None:
                verify = ssl.create_default_context(cafile=str(self.ca_file))
            # trust_env off: no proxy or CA from the environment stands between us and the source.
            self._client = httpx.Client(
                auth=auth, verify=verify, timeout=self.timeout_s, trust_env=False, follow_redirects=False
            )
        return self._client

    def _refused(self, status: int, doing: str) -> SourceUnavailable:
        if status == 401:
            who = f"of {self.credentials_file}" if self.credentials_file else "(none given: credentials_file)"
            why = f"the server refused the user name or password {who}"
        elif status == 403:
            why = "access denied (HTTP 403)"
        elif status == 404:
            why = "no such folder on the server (HTTP 404)"
        else:
            why = f"the server answered HTTP {status}"
        self.close()
        return SourceUnavailable(f"{self.location}: {doing} failed: {why}")

    def _broken(self, exc: Exception, doing: str) -> SourceUnavailable:
        self.close()
        return SourceUnavailable(f"{self.location}: {doing} failed: {exc or type(exc).__name__}")

    def list(self) -> list[Entry]:
        entries: list[Entry] = []
        pending = [""]
        while pending:
            rel = pending.pop()
            for path, is_folder, entry in self._propfind(rel):
                if path.rsplit("/", 1)[-1].startswith("."):
                    continue
                if is_folder:
                    pending.append(path)
                elif entry is not None:
                    entries.append(entry)
        return sorted(entries, key=lambda e: e.path)

    def _propfind(self, rel: str) -> builtins.list[tuple[str, bool, Entry | None]]:
        """The members of one collection: (path, is a folder, the entry of a file)."""
        doing = f"listing {rel or '/'}"
        url = self.base + quote(self.root + (rel + "/" if rel else ""))
        try:
            reply = self._http().request(
                "PROPFIND", url, content=_PROPFIND, headers={"Depth": "1", "Content-Type": "application/xml"}
            )
        except httpx.HTTPError as exc:
            raise self._broken(exc, doing) from exc
        if reply.status_code != 207:
            raise self._refused(reply.status_code, doing)
        try:
            tree = ET.fromstring(reply.content)  # expat >= 2.4: no entity expansion bombs
        except ET.ParseError as exc:
            raise self._broken(exc, f"{doing} (a listing that is not XML)") from exc
        members: builtins.list[tuple[str, bool, Entry | None]] = []
        for response in tree.iter(f"{_DAV}response"):
            href = response.findtext(f"{_DAV}href") or ""
            full = unquote(urlsplit(href).path)
            if not (full + "/").startswith(self.root):
                continue  # not below the source's folder
            path = full[len(self.root) :].strip("/")
            if path == rel:
                continue  # the collection itself
            props = _ok_props(response)
            if props is None:
                raise self._broken(ValueError(f"no properties for {href}"), doing)
            kind = props.find(f"{_DAV}resourcetype")
            if kind is not None and kind.find(f"{_DAV}collection") is not None:
                members.append((path, True, None))
                continue
            size = int(props.findtext(f"{_DAV}getcontentlength") or 0)
            modified = props.findtext(f"{_DAV}getlastmodified")
            modified_ns = int(parsedate_to_datetime(modified).timestamp()) * 10**9 if modified else None
            marker = props.findtext(f"{_DAV}getetag") or f"{modified}:{size}"
            members.append((path, False, Entry(path, size, marker, None, modified_ns)))
        return members

    def fetch(self, entry: Entry, dest: BinaryIO) -> None:
        doing = f"reading {entry.path}"
        url = self.base + quote(self.root + entry.path)
        try:
            with self._http().stream("GET", url) as reply:
                if reply.status_code in _ENTRY_STATUSES:
                    raise IngestError(
                        f"{self.location}: {entry.path}: cannot be read: HTTP {reply.status_code}"
                    )
                if reply.status_code != 200:
                    raise self._refused(reply.status_code, doing)
                for block in reply.iter_bytes(1 << 20):
                    dest.write(block)
        except httpx.HTTPError as exc:  # a connection lost or cut short mid-body
            raise self._broken(exc, doing) from exc

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()


def _ok_props(response: ET.Element) -> ET.Element | None:
    """The properties a <response> gives with status 200."""
    for propstat in response.iter(f"{_DAV}propstat"):
        status = propstat.findtext(f"{_DAV}status") or ""
        if " 200 " in f"{status} ":
            return propstat.find(f"{_DAV}prop")
    return None
