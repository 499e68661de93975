"""The incremental ingest: walk files, parse, chunk, embed, store, and keep the manifest.

Order of writes for one file: remove the document's old chunks, add the new ones, then write
its manifest row. A crash at any point leaves a manifest row that does not match the file, so
the next run redoes the file; removing the old chunks first keeps exactly one copy.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

from core.errors import IngestError
from core.types import Chunk
from ingest.chunking import Chunker, document_id, embedding_text
from ingest.manifest import Manifest
from ingest.parsing import ParsedDocument, is_supported, parse_file

log = logging.getLogger(__name__)

_SKIP_DIRS = {".git", ".svn", ".hg", "__pycache__", ".venv", "node_modules"}


class Embedder(Protocol):
    model_id: str

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]: ...


class Store(Protocol):
    def upsert(self, chunks: Sequence[Chunk], embeddings: Sequence[Sequence[float]]) -> None: ...
    def delete_document(self, doc_id: str, groups: Sequence[str]) -> int: ...
    def access_classes(self) -> dict[str, tuple[str, ...]]: ...


@dataclass
class FileOutcome:
    path: str
    status: str  # new | changed | unchanged | failed | skipped | pruned
    chunks: int = 0
    error: str | None = None


@dataclass
class IngestReport:
    files: list[FileOutcome] = field(default_factory=list)
    seconds: float = 0.0

    def count(self, status: str) -> int:
        return sum(1 for f in self.files if f.status == status)

    @property
    def chunks_added(self) -> int:
        return sum(f.chunks for f in self.files if f.status in ("new", "changed"))

    @property
    def failed(self) -> bool:
        return any(f.status == "failed" for f in self.files)

    def summary(self) -> str:
        parts = [f"{self.count(s)} {s}" for s in ("new", "changed", "unchanged", "failed", "skipped", "pruned")]
        return f"files: {', '.join(parts)}; chunks added: {self.chunks_added}; {self.seconds:.1f} s"

    def as_dict(self) -> dict[str, Any]:
        counts = {s: self.count(s) for s in ("new", "changed", "unchanged", "failed", "skipped", "pruned")}
        return {
            "counts": counts,
            "chunks_added": self.chunks_added,
            "seconds": round(self.seconds, 3),
            "files": [asdict(f) for f in self.files],
        }


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def walk(paths: Iterable[Path]) -> Iterator[Path]:
    """Files under `paths`, in a stable order; hidden files and VCS folders are left out."""
    for root in paths:
        if root.is_file():
            yield root
            continue
        if not root.is_dir():
            raise IngestError(f"{root}: no such file or folder")
        for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
            dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS and not d.startswith("."))
            for name in sorted(filenames):
                if not name.startswith("."):
                    yield Path(dirpath) / name


class _Progress:
    """A tqdm bar on a terminal; one log line per file otherwise."""

    def __init__(self, total: int, stream: IO[str]) -> None:
        self.tty = stream.isatty()
        self._bar: Any = None
        if self.tty:
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit="file", file=stream, dynamic_ncols=True)
        self.total = total
        self.done = 0

    def update(self, outcome: FileOutcome, chunks_total: int) -> None:
        self.done += 1
        if self._bar is not None:
            self._bar.set_postfix(chunks=chunks_total, refresh=False)
            self._bar.update(1)
        else:
            detail = f" ({outcome.error})" if outcome.error else ""
            log.info("[%d/%d] %s %s%s", self.done, self.total, outcome.status, outcome.path, detail)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


class IngestPipeline:
    def __init__(
        self,
        store: Store,
        embedder: Embedder,
        manifest: Manifest,
        chunker: Chunker,
        max_file_bytes: int,
        lock_path: Path | None = None,
        parse: Callable[[Path], ParsedDocument] = parse_file,
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.manifest = manifest
        self.chunker = chunker
        self.max_file_bytes = max_file_bytes
        self.lock_path = lock_path
        self._parse = parse

    def run(
        self,
        paths: Sequence[Path],
        groups: Sequence[str],
        prune: bool = False,
        progress: IO[str] | None = None,
    ) -> IngestReport:
        started = time.perf_counter()
        if not groups:
            raise IngestError("documents need at least one group: pass --groups")
        groups_t = tuple(sorted(set(groups)))
        roots = [p.resolve() for p in paths]
        with self._exclusive():
            files = list(walk(roots))
            report = IngestReport()
            bar = _Progress(len(files), progress or sys.stderr)
            try:
                for path in files:
                    outcome = self._one(path, groups_t)
                    report.files.append(outcome)
                    bar.update(outcome, report.chunks_added)
            finally:
                bar.close()
            if prune:
                report.files.extend(self._prune(roots))
        report.seconds = time.perf_counter() - started
        return report

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        """An advisory lock so that two ingests into one data folder never interleave."""
        if self.lock_path is None:
            yield
            return
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        with self.lock_path.open("w") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                raise IngestError(
                    f"another ingest is running on this data folder (lock {self.lock_path}); "
                    "wait for it to finish"
                ) from exc
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _one(self, path: Path, groups: tuple[str, ...]) -> FileOutcome:
        source = str(path)
        previous = self.manifest.get(source)
        doc_id = document_id(source)
        try:
            size = path.stat().st_size
            if not is_supported(path):
                self.manifest.record(source, doc_id, "", size, "skipped", groups,
                                     error=f"unsupported file type '{path.suffix or path.name}'")
                return FileOutcome(source, "skipped", error=f"unsupported file type '{path.suffix or path.name}'")
            if size > self.max_file_bytes:
                raise IngestError(
                    f"{source}: {size / 1e6:.1f} MB is over the limit of "
                    f"{self.max_file_bytes / 1e6:.1f} MB (ingest.max_file_mb)"
                )
            sha = sha256_file(path)
        except OSError as exc:
            return self._failed(source, doc_id, previous, groups, f"{source}: cannot be read: {exc.strerror or exc}")
        except IngestError as exc:
            return self._failed(source, doc_id, previous, groups, str(exc))

        if previous and previous.status == "ingested" and previous.sha256 == sha and previous.groups == groups:
            return FileOutcome(source, "unchanged", chunks=previous.chunks)

        try:
            doc = self._parse(path)
            chunks = self.chunker.chunks(doc, source, groups)
            if not chunks:
                raise IngestError(f"{source}: no text found")
            vectors = self.embedder.embed_documents([embedding_text(c) for c in chunks])
        except IngestError as exc:
            return self._failed(source, doc_id, previous, groups, str(exc))
        except Exception as exc:  # a bug or a library failure on one file must not stop the run
            log.debug("ingest of %s failed", source, exc_info=True)
            return self._failed(source, doc_id, previous, groups, f"{source}: {type(exc).__name__}: {exc}")

        self._remove_everywhere(doc_id)
        self.store.upsert(chunks, vectors)
        self.manifest.record(source, doc_id, sha, size, "ingested", groups, chunks=len(chunks), title=doc.title)
        status = "changed" if previous and previous.status == "ingested" else "new"
        return FileOutcome(source, status, chunks=len(chunks))

    def _failed(self, source: str, doc_id: str, previous: Any, groups: tuple[str, ...], error: str) -> FileOutcome:
        """Record the failure. A file that was ingested before keeps its chunks: a broken new
        version must not wipe the last good one."""
        if previous is None or previous.status != "ingested":
            self.manifest.record(source, doc_id, "", 0, "failed", groups, error=error)
        log.warning("%s", error)
        return FileOutcome(source, "failed", error=error)

    def _remove_everywhere(self, doc_id: str) -> None:
        # The document may sit in another access class than now (its groups changed, or an
        # earlier run crashed after storing): remove it from every class.
        for groups in self.store.access_classes().values():
            self.store.delete_document(doc_id, groups)

    def _prune(self, roots: Sequence[Path]) -> list[FileOutcome]:
        pruned: list[FileOutcome] = []
        for entry in self.manifest.all():
            path = Path(entry.path)
            if not any(path == r or r in path.parents for r in roots) or path.exists():
                continue
            if entry.status == "ingested":
                self._remove_everywhere(entry.doc_id)
            self.manifest.remove(entry.path)
            pruned.append(FileOutcome(entry.path, "pruned", chunks=entry.chunks))
        return pruned
