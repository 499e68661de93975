"""The incremental ingest: walk files, decide what changed, parse in worker processes, chunk,
embed in large batches, store, and keep the manifest in step.

Content decides identity: a document is the sha256 of its bytes. Unchanged files (same size,
mtime and groups, or same hash) are skipped; a renamed or copied file is linked to the document
it already holds, without parsing or embedding. A document's access class is the union of the
groups of the files that hold it.

Crash safety rests on the manifest's `pending` table (see ingest/manifest.py): every store write
is announced there first and vouched for by a manifest commit after; `recover()` at the start of
each run removes whatever a killed run left unvouched.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import dataclasses
import fcntl
import hashlib
import logging
import multiprocessing
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

from core.errors import IngestError
from core.types import Chunk
from ingest.acl import GroupPolicy
from ingest.chunking import Chunker, document_id, embedding_text
from ingest.manifest import DocEntry, FileEntry, Manifest
from ingest.parsing import ParsedDocument, Unsupported, parse_file, unsupported_reason

log = logging.getLogger(__name__)

_SKIP_DIRS = {".git", ".svn", ".hg", "__pycache__", ".venv", "node_modules"}
_MIN_FILES_FOR_WORKERS = 12
STATUSES = ("new", "changed", "linked", "unchanged", "failed", "skipped", "pruned")


class Embedder(Protocol):
    model_id: str

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]: ...


class Store(Protocol):
    def upsert(self, chunks: Sequence[Chunk], embeddings: Sequence[Sequence[float]]) -> None: ...
    def delete_document(self, doc_id: str, groups: Sequence[str]) -> int: ...
    def move_document(self, doc_id: str, from_groups: Sequence[str], to_groups: Sequence[str]) -> int: ...


@dataclass
class FileOutcome:
    path: str
    status: str  # one of STATUSES; with dry_run, what would happen
    chunks: int = 0
    error: str | None = None
    doc_id: str | None = None


@dataclass
class IngestReport:
    files: list[FileOutcome] = field(default_factory=list)
    seconds: float = 0.0
    dry_run: bool = False
    recovered: int = 0

    def count(self, status: str) -> int:
        return sum(1 for f in self.files if f.status == status)

    @property
    def chunks_added(self) -> int:
        return sum(f.chunks for f in self.files if f.status in ("new", "changed"))

    @property
    def failed(self) -> bool:
        return any(f.status == "failed" for f in self.files)

    def summary(self) -> str:
        parts = [f"{self.count(s)} {s}" for s in STATUSES]
        head = "dry run, would do: " if self.dry_run else ""
        return f"{head}files: {', '.join(parts)}; chunks added: {self.chunks_added}; {self.seconds:.1f} s"

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "counts": {s: self.count(s) for s in STATUSES},
            "chunks_added": self.chunks_added,
            "recovered_writes": self.recovered,
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
    """Files under `paths` in a stable order. Hidden files, VCS folders and symlinked folders
    are left out (a symlink loop cannot trap the walk); symlinked files are followed."""
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


@dataclass
class _Todo:
    """A file that must be parsed and embedded."""

    path: Path
    sha: str
    size: int
    mtime_ns: int
    groups: tuple[str, ...]
    previous: FileEntry | None


class _Progress:
    """A live bar (files, chunks, ETA) on a terminal; one log line per file otherwise."""

    def __init__(self, total: int, stream: IO[str]) -> None:
        self._bar: Any = None
        if stream.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit="file", file=stream, dynamic_ncols=True)
        self.total = total
        self.done = 0
        self.chunks = 0

    def update(self, outcome: FileOutcome) -> None:
        self.done += 1
        self.chunks += outcome.chunks if outcome.status in ("new", "changed") else 0
        if self._bar is not None:
            self._bar.set_postfix(chunks=self.chunks, refresh=False)
            self._bar.update(1)
        else:
            detail = f" ({outcome.error})" if outcome.error else ""
            log.info("[%d/%d] %s %s%s", self.done, self.total, outcome.status, outcome.path, detail)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _worker_init(guard_mode: str, allowed: list[str]) -> None:
    from core.offline import disable_telemetry, install_guard

    disable_telemetry()
    install_guard(guard_mode, allowed)


class IngestPipeline:
    def __init__(
        self,
        store: Store,
        embedder: Embedder,
        manifest: Manifest,
        chunker: Chunker,
        max_file_bytes: int,
        lock_path: Path | None = None,
        workers: int = 1,
        embed_batch: int = 256,
        guard: tuple[str, list[str]] = ("strict", []),
        parse: Callable[[Path], ParsedDocument] = parse_file,
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.manifest = manifest
        self.chunker = chunker
        self.max_file_bytes = max_file_bytes
        self.lock_path = lock_path
        self.workers = workers or os.cpu_count() or 1
        self.embed_batch = embed_batch
        self.guard = guard
        self._parse = parse

    # -- the run ---------------------------------------------------------------------------------

    def run(
        self,
        paths: Sequence[Path],
        groups: Sequence[str] | GroupPolicy,
        prune: bool = False,
        dry_run: bool = False,
        force: bool = False,
        progress: IO[str] | None = None,
    ) -> IngestReport:
        started = time.perf_counter()
        policy = groups if isinstance(groups, GroupPolicy) else GroupPolicy(tuple(groups))
        roots = [p.resolve() for p in paths]
        report = IngestReport(dry_run=dry_run)
        with self._exclusive():
            if not dry_run:
                report.recovered = self.recover()
            files = list(walk(roots))
            bar = _Progress(len(files), progress or sys.stderr)
            try:
                todo: list[_Todo] = []
                for path in files:
                    outcome, job = self._classify(path, policy, force, dry_run)
                    if job is not None:
                        todo.append(job)
                    if outcome is not None:
                        report.files.append(outcome)
                        bar.update(outcome)
                if dry_run:
                    report.files.extend(FileOutcome(str(j.path), "changed" if j.previous else "new") for j in todo)
                else:
                    for outcome in self._ingest(todo):
                        report.files.append(outcome)
                        bar.update(outcome)
            finally:
                bar.close()
            if prune:
                report.files.extend(self._prune(roots, dry_run))
        order = {str(p): i for i, p in enumerate(files)}
        report.files.sort(key=lambda f: order.get(f.path, len(order)))
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

    # -- deciding what to do with each file ----------------------------------------------------

    def _classify(
        self, path: Path, policy: GroupPolicy, force: bool, dry_run: bool
    ) -> tuple[FileOutcome | None, _Todo | None]:
        source = str(path)
        previous = self.manifest.file(source)
        try:
            groups = policy.groups_for(path)
            st = path.stat()
            unsupported = unsupported_reason(path)
            if unsupported is not None:
                reason = unsupported if unsupported.startswith(source) else f"{source}: {unsupported}"
                if not dry_run:
                    self._record_problem(source, "skipped", groups, reason, previous)
                return FileOutcome(source, "skipped", error=reason), None
            if st.st_size > self.max_file_bytes:
                raise IngestError(
                    f"{source}: {st.st_size / 1e6:.1f} MB is over the limit of "
                    f"{self.max_file_bytes / 1e6:.1f} MB (ingest.max_file_mb)"
                )
            with path.open("rb"):
                pass  # unreadable files fail here, with the OS's reason
        except OSError as exc:
            reason = f"{source}: cannot be read: {exc.strerror or exc}"
            if not dry_run:
                self._record_problem(source, "failed", policy.default, reason, previous)
            return FileOutcome(source, "failed", error=reason), None
        except IngestError as exc:
            if not dry_run:
                self._record_problem(source, "failed", groups, str(exc), previous)
            return FileOutcome(source, "failed", error=str(exc)), None

        current = self._current_doc(previous)
        if (
            not force and previous and current and previous.groups == groups
            and previous.size == st.st_size and previous.mtime_ns == st.st_mtime_ns
        ):
            if not dry_run:
                self._regroup(current.doc_id)
            return FileOutcome(source, "unchanged", chunks=current.chunks, doc_id=current.doc_id), None

        sha = sha256_file(path)
        doc_id = document_id(sha)
        if not force and previous and current and previous.sha256 == sha and previous.groups == groups:
            if not dry_run:
                self._link(source, doc_id, groups, sha, st, previous)
            return FileOutcome(source, "unchanged", chunks=current.chunks, doc_id=doc_id), None
        held = self.manifest.doc(doc_id)
        if not force and held is not None and held.embed_model == self.embedder.model_id:
            status = "changed" if previous and previous.sha256 == sha else "linked"
            if not dry_run:
                self._link(source, doc_id, groups, sha, st, previous)
            return FileOutcome(source, status, doc_id=doc_id), None
        return None, _Todo(path, sha, st.st_size, st.st_mtime_ns, groups, previous)

    def _current_doc(self, previous: FileEntry | None) -> DocEntry | None:
        """The document a file held, if it is still whole and made with the current model."""
        if previous is None or previous.status != "ingested" or previous.doc_id is None:
            return None
        doc = self.manifest.doc(previous.doc_id)
        return doc if doc is not None and doc.embed_model == self.embedder.model_id else None

    def _record_problem(
        self, source: str, status: str, groups: Sequence[str], reason: str, previous: FileEntry | None
    ) -> None:
        """A failed or skipped file. One that held a document keeps it: a broken new version
        must not wipe the last good one from the index."""
        if status == "failed":
            log.warning("%s", reason)
        if previous is not None and previous.status == "ingested":
            return
        with self.manifest.transaction() as db:
            self.manifest.put_file(db, source, status, groups, error=reason)

    # -- parsing and embedding -------------------------------------------------------------------

    def _parsed(self, todo: list[_Todo]) -> Iterator[tuple[_Todo, ParsedDocument | Exception]]:
        """Parse results in input order; worker processes when there is more than one file."""
        # Starting a worker costs seconds (it imports unstructured, spaCy and torch): small runs
        # parse in this process.
        if self.workers <= 1 or len(todo) < _MIN_FILES_FOR_WORKERS:
            for job in todo:
                try:
                    yield job, self._parse(job.path)
                except Exception as exc:  # a bug or a library failure on one file must not stop the run
                    yield job, exc
            return
        ctx = multiprocessing.get_context("spawn")  # torch and threads do not survive fork
        window: deque[tuple[_Todo, cf.Future[ParsedDocument]]] = deque()
        pending = iter(todo)
        pool = cf.ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=_worker_init, initargs=self.guard)
        try:
            while True:
                while len(window) < self.workers * 2:
                    job = next(pending, None)
                    if job is None:
                        break
                    window.append((job, pool.submit(self._parse, job.path)))
                if not window:
                    return
                job, future = window.popleft()
                try:
                    yield job, future.result()
                except cf.process.BrokenProcessPool as exc:
                    # A parser crashed its process (a native library on hostile input): this file
                    # fails, the others are parsed again in a fresh pool.
                    yield job, IngestError(f"{job.path}: the parser crashed on this file ({exc})")
                    pool.shutdown(wait=False, cancel_futures=True)
                    pool = cf.ProcessPoolExecutor(
                        self.workers, mp_context=ctx, initializer=_worker_init, initargs=self.guard
                    )
                    retry = [j for j, _ in window]
                    window.clear()
                    pending = iter(retry + list(pending))
                except Exception as exc:
                    yield job, exc
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _ingest(self, todo: list[_Todo]) -> Iterator[FileOutcome]:
        batch: list[tuple[_Todo, ParsedDocument, list[Chunk]]] = []
        size = 0
        for job, result in self._parsed(todo):
            source = str(job.path)
            if isinstance(result, Unsupported):  # needs OCR or LibreOffice: skipped, with the fix
                self._record_problem(source, "skipped", job.groups, str(result), job.previous)
                yield FileOutcome(source, "skipped", error=str(result))
                continue
            if isinstance(result, Exception):
                reason = str(result) if isinstance(result, IngestError) else f"{source}: {type(result).__name__}: {result}"
                log.debug("parse of %s failed", source, exc_info=result)
                self._record_problem(source, "failed", job.groups, reason, job.previous)
                yield FileOutcome(source, "failed", error=reason)
                continue
            chunks = self.chunker.chunks(result, document_id(job.sha), source, job.groups)
            if not chunks:
                reason = f"{source}: no text found"
                self._record_problem(source, "failed", job.groups, reason, job.previous)
                yield FileOutcome(source, "failed", error=reason)
                continue
            batch.append((job, result, chunks))
            size += len(chunks)
            if size >= self.embed_batch:
                yield from self._flush(batch)
                batch, size = [], 0
        yield from self._flush(batch)

    def _flush(self, batch: list[tuple[_Todo, ParsedDocument, list[Chunk]]]) -> Iterator[FileOutcome]:
        if not batch:
            return
        texts = [embedding_text(c) for _, _, chunks in batch for c in chunks]
        vectors = self.embedder.embed_documents(texts)
        offset = 0
        for job, parsed, chunks in batch:
            doc_vectors = vectors[offset : offset + len(chunks)]
            offset += len(chunks)
            self._store(job, parsed, chunks, doc_vectors)
            status = "changed" if job.previous and job.previous.status == "ingested" else "new"
            yield FileOutcome(str(job.path), status, chunks=len(chunks), doc_id=chunks[0].doc_id)

    # -- writes, each crash-safe ----------------------------------------------------------------

    def _store(self, job: _Todo, parsed: ParsedDocument, chunks: list[Chunk], vectors: list[list[float]]) -> None:
        m, source = self.manifest, str(job.path)
        doc_id = chunks[0].doc_id
        existing = m.doc(doc_id)
        with m.transaction() as db:
            target = tuple(sorted(set(m.holder_groups(doc_id, excluding=source)) | set(job.groups)))
            # While the chunks are rewritten the manifest must not vouch for the document: drop
            # its row (its files then look changed to a later run) and announce the write.
            if existing is not None:
                m.drop_doc(db, doc_id)
                m.pend(db, doc_id, existing.groups)
            m.pend(db, doc_id, target)
        if existing is not None:
            self.store.delete_document(doc_id, existing.groups)
            if existing.groups != target:
                self.store.delete_document(doc_id, target)
        self.store.upsert([dataclasses.replace(c, groups=target) for c in chunks], vectors)
        with m.transaction() as db:
            m.put_doc(db, DocEntry(doc_id, target, len(chunks), parsed.title, job.size,
                                   self.embedder.model_id, existing.source if existing else source, ""))
            m.put_file(db, source, "ingested", job.groups, doc_id, job.sha, job.size, job.mtime_ns)
        m.clear_pending(doc_id, target)
        if existing is not None and existing.groups != target:
            m.clear_pending(doc_id, existing.groups)
        if job.previous and job.previous.doc_id and job.previous.doc_id != doc_id:
            self._regroup(job.previous.doc_id)

    def _link(
        self, source: str, doc_id: str, groups: tuple[str, ...], sha: str, st: os.stat_result,
        previous: FileEntry | None,
    ) -> None:
        """Point a file at a document the store already holds (a copy, a rename, new groups)."""
        with self.manifest.transaction() as db:
            self.manifest.put_file(db, source, "ingested", groups, doc_id, sha, st.st_size, st.st_mtime_ns)
        self._regroup(doc_id)
        if previous and previous.doc_id and previous.doc_id != doc_id:
            self._regroup(previous.doc_id)

    def _regroup(self, doc_id: str) -> None:
        """Bring a document's access class in line with the files that hold it: delete it when
        none does, move it (embeddings and all, no re-embedding) when their groups changed."""
        m = self.manifest
        doc = m.doc(doc_id)
        if doc is None:
            return
        wanted = m.holder_groups(doc_id)
        if wanted == doc.groups:
            return
        if wanted:
            m.mark_pending(doc_id, wanted)
            self.store.move_document(doc_id, doc.groups, wanted)
        with m.transaction() as db:
            if wanted:
                m.put_doc(db, dataclasses.replace(doc, groups=wanted))
            else:
                m.drop_doc(db, doc_id)
            m.pend(db, doc_id, doc.groups)
        self.store.delete_document(doc_id, doc.groups)
        m.clear_pending(doc_id, doc.groups)
        if wanted:
            m.clear_pending(doc_id, wanted)

    def recover(self) -> int:
        """Undo what a killed run left half-done; returns how many writes were rolled back."""
        m = self.manifest
        undone = 0
        for doc_id, groups in m.pending():
            doc = m.doc(doc_id)
            if doc is None or doc.groups != groups:
                undone += 1
                self.store.delete_document(doc_id, groups)
            m.clear_pending(doc_id, groups)
        for doc_id in m.orphan_docs():
            undone += 1
            self._regroup(doc_id)
        if undone:
            log.warning("recovered from an interrupted ingest: %d unfinished writes rolled back", undone)
        return undone

    def _prune(self, roots: Sequence[Path], dry_run: bool) -> list[FileOutcome]:
        pruned: list[FileOutcome] = []
        for entry in self.manifest.files():
            path = Path(entry.path)
            if not any(path == r or r in path.parents for r in roots) or path.exists():
                continue
            if not dry_run:
                with self.manifest.transaction() as db:
                    self.manifest.drop_file(db, entry.path)
                if entry.doc_id:
                    self._regroup(entry.doc_id)
            pruned.append(FileOutcome(entry.path, "pruned", doc_id=entry.doc_id))
        return pruned

    def remove(self, doc_id: str) -> list[str]:
        """Remove a document and forget the files that held it; returns their paths."""
        with self._exclusive():
            paths = [f.path for f in self.manifest.files(doc_id)]
            with self.manifest.transaction() as db:
                for p in paths:
                    self.manifest.drop_file(db, p)
            self._regroup(doc_id)
            return paths
