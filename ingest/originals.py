"""Finding the original file of an indexed document, from the manifest: for the web UI's
source links, which must never take a path from the browser. A mail attachment is taken out of
its mail again, by ingest's own parsing code."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from pathlib import Path

from core.types import OriginalFile
from ingest.manifest import Manifest

log = logging.getLogger(__name__)


class OriginalFiles:
    """Look-ups in the manifest at `manifest_path`; each opens and closes it, so the files an
    ingest adds or removes show at once, and nothing is held between requests."""

    def __init__(self, manifest_path: Path) -> None:
        self.manifest_path = manifest_path

    def find(self, doc_id: str) -> OriginalFile | None:
        """The document's groups, title and where it lies; None when no such document is indexed."""
        if not self.manifest_path.exists():
            return None
        manifest = Manifest(self.manifest_path)
        try:
            doc = manifest.doc(doc_id)
            if doc is None:
                return None
            files = manifest.files(doc_id)
            paths = tuple(f.path for f in files)
            sha = next((f.sha256 for f in files if f.sha256), None)
            attached = tuple(s for s in manifest.sources(doc_id) if s not in paths)
            return OriginalFile(doc.doc_id, doc.title, doc.groups, sha, paths, attached)
        finally:
            manifest.close()

    def read_attachment(self, doc_id: str) -> tuple[str, bytes] | None:
        """(file name, bytes) of the mail attachment that is document `doc_id`, taken out of a mail
        holding it (nested mails followed as ingest followed them), or None: no mail holds it, the
        mail is gone or unreadable, or the bytes found are not the document's any more (the
        document id is their SHA-256), so a mail changed since ingest never serves new bytes under
        the old document's groups."""
        if not self.manifest_path.exists():
            return None
        manifest = Manifest(self.manifest_path)
        try:
            routes = list(_routes(manifest, doc_id, 1))
        finally:
            manifest.close()
        for path, steps in routes:
            found = _extract(path, steps)
            # The document id is the start of the bytes' SHA-256 (ingest.chunking.document_id).
            if found is not None and hashlib.sha256(found[1]).hexdigest()[: len(doc_id)] == doc_id:
                return found
        return None


def _routes(manifest: Manifest, doc_id: str, depth: int) -> Iterator[tuple[str, tuple[int, ...]]]:
    """(path of a mail file, 1-based attachment positions from it down): each way a mail on disk
    holds `doc_id`, nested mails followed as deep as ingest follows them."""
    from ingest.pipeline import MAX_ATTACHMENT_DEPTH

    if depth > MAX_ATTACHMENT_DEPTH:  # ingest reads no deeper; also ends a loop in a damaged manifest
        return
    for row in manifest.holding_mails(doc_id):
        if row.mail_id == doc_id:
            continue
        for entry in manifest.files(row.mail_id):
            yield entry.path, (row.seq,)
        for path, steps in _routes(manifest, row.mail_id, depth + 1):
            yield path, (*steps, row.seq)


def _extract(path: str, steps: tuple[int, ...]) -> tuple[str, bytes] | None:
    from ingest.parsing import mail_attachments

    name = Path(path).name
    try:
        data = Path(path).read_bytes()
        for seq in steps:
            attachments = mail_attachments(data, name)
            if seq > len(attachments):
                return None
            name, data = attachments[seq - 1].name, attachments[seq - 1].data
    except OSError as exc:  # gone or unreadable since ingest: the caller says it cannot be opened
        log.info("%s: cannot be read for its attachment: %s", path, exc.strerror or exc)
        return None
    except Exception:  # broken since ingest (or a library fault): likewise, with the traceback logged
        log.warning("%s: an attachment could not be taken out of it again", path, exc_info=True)
        return None
    return name, data
