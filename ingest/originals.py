"""Finding the original file of an indexed document, from the manifest: for the web UI's
source links, which must never take a path from the browser."""

from __future__ import annotations

from pathlib import Path

from core.types import OriginalFile
from ingest.manifest import Manifest


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
