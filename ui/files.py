"""`GET /files/{doc_id}`: the original bytes of an indexed document, after the retrieval group
check, never by path.

A file is served only while its bytes are still the ones ingest hashed, so a file changed since
ingest is never served under the old document's groups. The bytes are hashed in blocks while
they are copied into a private spool (memory up to SPOOL_MEMORY_BYTES, then an unlinked
temporary file), and the response streams that copy: what is served is exactly what was hashed,
even if the file changes meanwhile, and no request holds a whole file in memory. At most
`MAX_CONCURRENT_READS` files are read at once; other requests wait their turn.
"""

from __future__ import annotations

import hashlib
import mimetypes
import re
import tempfile
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

import anyio
from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from core.types import OriginalFile, Principal
from ui.login import ACCESS_DENIED_EVENT
from ui.pages import message_page, wants_html

Sources = Callable[[str], OriginalFile | None]
# (file name, bytes) of the mail attachment that is this document, taken out of its mail again;
# None when they cannot be found or are not the document's any more.
Attachments = Callable[[str], tuple[str, bytes] | None]
AuditEvent = Callable[[str, str, dict[str, Any]], bool]

DOC_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
BLOCK_BYTES = 1024 * 1024
SPOOL_MEMORY_BYTES = 1024 * 1024
MAX_CONCURRENT_READS = 4

# Types a browser could run code in: served with a CSP that forbids scripts and sandboxes them.
_ACTIVE_TYPES = frozenset(
    {"text/html", "application/xhtml+xml", "image/svg+xml", "text/xml", "application/xml"}
)
_FILE_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; sandbox"


def safe_filename(name: str) -> str:
    """A file name fit for Content-Disposition: no directories, controls, quotes or backslashes."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    clean = "".join(c for c in base if unicodedata.category(c)[0] != "C" and c not in "\"';")
    return clean.strip(" .") or "document"


def disposition(name: str) -> str:
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii") or "document"
    return f"inline; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"


@dataclass
class Copy:
    """A verified copy of a document's bytes: `name` for the download, `body` rewound to its start."""

    name: str
    body: IO[bytes]
    size: int


def copy_matching(paths: tuple[str, ...], sha256: str | None) -> Copy | None:
    """A copy of the first file still on disk whose bytes hash to `sha256`; None when none does."""
    if not sha256:
        return None
    for path in paths:
        spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES)
        digest = hashlib.sha256()
        size = 0
        try:
            with open(path, "rb") as source:
                while block := source.read(BLOCK_BYTES):
                    digest.update(block)
                    spool.write(block)
                    size += len(block)
        except OSError:
            spool.close()
            continue
        if digest.hexdigest() != sha256:
            spool.close()
            continue
        spool.seek(0)
        return Copy(path, spool, size)  # type: ignore[arg-type]
    return None


def stream_blocks(body: IO[bytes]) -> Iterator[bytes]:
    """The bytes of `body` in blocks, closing it at the end (or when the client goes)."""
    try:
        while block := body.read(BLOCK_BYTES):
            yield block
    finally:
        body.close()


class SourceFiles:
    """Serves `/files/{doc_id}` for signed-in users who share one of the document's groups."""

    def __init__(
        self,
        org_name: str,
        sources: Sources | None,
        attachments: Attachments | None,
        audit_event: AuditEvent,
    ) -> None:
        self.org_name = org_name
        self.sources = sources
        self.attachments = attachments
        self.audit_event = audit_event
        self.limiter = anyio.CapacityLimiter(MAX_CONCURRENT_READS)

    async def open(self, request: Request, doc_id: str, principal: Principal | None) -> Response:
        if principal is None:
            return self.refuse(request, 401, "You are not signed in, or your account no longer exists.")
        found = None
        if self.sources is not None and DOC_ID.match(doc_id):
            found = await anyio.to_thread.run_sync(self.sources, doc_id, limiter=self.limiter)
        if found is None:
            return self.refuse(
                request,
                404,
                f"No document with id {doc_id!r} is indexed. It may have been removed since the answer was given.",
            )
        if not set(found.groups) & set(principal.groups):
            data = {"doc_id": doc_id, "reason": "groups", "path": request.url.path}
            await anyio.to_thread.run_sync(self.audit_event, ACCESS_DENIED_EVENT, principal.name, data)
            return self.refuse(
                request, 403, "You may not open this document: it belongs to none of your groups."
            )
        copy = await anyio.to_thread.run_sync(self._copy, found, limiter=self.limiter)
        if copy is None:
            if found.attached_as and not found.paths:
                message = (
                    "This mail attachment can no longer be taken out of its mail: the mail has been "
                    "moved, removed or changed since it was indexed. Ask an administrator to re-run the ingest."
                )
            else:
                message = "The original file is no longer where it was indexed, or has changed since. Ask an administrator to re-run the ingest."
            return self.refuse(request, 404, message)
        name = safe_filename(Path(copy.name).name)
        media_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
        headers = {
            "Content-Disposition": disposition(name),
            "Content-Length": str(copy.size),
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "private, no-store",
            "Referrer-Policy": "no-referrer",
            "Cross-Origin-Resource-Policy": "same-origin",
        }
        if media_type in _ACTIVE_TYPES:
            headers["Content-Security-Policy"] = _FILE_CSP
        data = {"doc_id": doc_id, "title": found.title}
        await anyio.to_thread.run_sync(self.audit_event, "file_opened", principal.name, data)
        return StreamingResponse(stream_blocks(copy.body), media_type=media_type, headers=headers)

    def _copy(self, found: OriginalFile) -> Copy | None:
        copy = copy_matching(found.paths, found.sha256)
        if copy is None and found.attached_as and self.attachments is not None:
            taken = self.attachments(found.doc_id)  # only bytes that are still the document's
            if taken is not None:
                name, data = taken
                spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES)
                spool.write(data)
                spool.seek(0)
                copy = Copy(name, spool, len(data))  # type: ignore[arg-type]
        return copy

    def refuse(self, request: Request, status: int, message: str) -> Response:
        if wants_html(request):
            return message_page(self.org_name, "Cannot open the file", message, status)
        return JSONResponse(
            {"detail": message}, status_code=status, headers={"X-Content-Type-Options": "nosniff"}
        )
