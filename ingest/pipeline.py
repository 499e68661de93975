"""The incremental ingest: walk files, decide what changed, parse in worker processes, chunk,
embed in large batches, store, and keep the manifest in step.

Content decides identity: a document is the sha256 of its bytes. Unchanged files (same size,
mtime and groups, or same hash) are skipped; a renamed or copied file is linked to the document
it already holds, without parsing or embedding. A document's access class is the union of the
groups of the files that hold it.

Mail attachments (EML, MSG) are documents of their own. The process that parsed the mail parses
each attachment with the same parser, from a temporary file with the attachment's name (see
ingest/workers.py); mails attached to mails are followed MAX_ATTACHMENT_DEPTH deep. An
attachment's identity is the sha256 of its bytes, as for a file, so one attached to several
mails, or also a file elsewhere, is stored once. Its source is `<mail path>#<attachment name>`
(`<mail>#<inner.eml>#<name>` when nested), which the UI and the audit log show as the chunk's
source; its title is "<its title> (attached to mail: <the mail's subject>)"; its groups are
those of the mails holding it (and of any file holding it). The manifest's `attachments` table
records which mail holds which documents, and `enclave docs show` shows the link both ways.
Attachments follow their mail: when the mail changes, is removed or pruned, those that no other
file or mail holds go too, and one lost from the store makes its mail parse again. An
attachment that cannot be ingested (corrupt, unsupported, needs OCR, over the size or time
limit) is reported as `<mail>#<name>` with its reason, and the mail is ingested all the same.
Attachments are looked at again when their mail is parsed again (changed, or `docs reindex`).

Parsing runs in spawned worker processes, one parse at a time each. With `parse_timeout_s` set
(the default), every parse runs in a worker process, even for a one-file run, and a parse that
runs past it is stopped by killing its process (see ingest/workers.py): a parse inside the
ingest process could not be stopped. Without a limit, runs under _MIN_FILES_FOR_WORKERS files,
or with one worker, parse in the ingest process.

Crash safety rests on the manifest's `pending` table (see ingest/manifest.py): every store write
is announced there first and vouched for by a manifest commit after; `recover()` at the start of
each run removes whatever a killed run left unvouched. The documents of one embedding batch are
stored together, in three steps:

  1. one manifest transaction announces every write of the batch: each document's target access
     class goes into `pending`, and a document about to be rewritten also loses its `docs` row
     (its files then look changed to a later run) and has its old class pended;
  2. the store writes: the old copies of rewritten documents are deleted, then one `upsert`
     takes every chunk of the batch (the store sorts them into their access classes);
  3. one manifest transaction vouches for the batch: the `docs`, `files` and `attachments` rows
     are written and the batch's `pending` rows cleared, all or nothing.

A kill before step 3 commits leaves `pending` rows for documents the manifest does not vouch
for: `recover()` deletes their chunks from those classes, and the next run parses their files
(and the mails holding them) again. After step 3 there is nothing to undo. Moving a document
between access classes, or deleting it, keeps the same protocol one document at a time
(`_regroup`). Only the store's `upsert`, `delete_document` and `move_document` are used.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import hashlib
import logging
import os
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

from core.errors import IngestError
from core.types import Chunk
from ingest.acl import GroupPolicy
from ingest.chunking import Chunker, document_id, embedding_text
from ingest.manifest import AttachmentEntry, DocEntry, FileEntry, Manifest
from ingest.parsing import ParsedDocument, Unsupported, parse_file, unsupported_reason
from ingest.workers import Limits, ParserPool, Piece, parse_tree

log = logging.getLogger(__name__)

_SKIP_DIRS = {".git", ".svn", ".hg", "__pycache__", ".venv", "node_modules"}
_MIN_FILES_FOR_WORKERS = 12
MAX_ATTACHMENT_DEPTH = 3  # a mail attached to a mail attached to a mail: its attachments are read
STATUSES = ("new", "changed", "linked", "unchanged", "failed", "skipped", "pruned")


class Embedder(Protocol):
    model_id: str

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]: ...


class Store(Protocol):
    def upsert(self, chunks: Sequence[Chunk], embeddings: Sequence[Sequence[float]]) -> None: ...
    def document_embeddings(self, doc_id: str, groups: Sequence[str]) -> list[tuple[Chunk, list[float]]]: ...
    def delete_document(self, doc_id: str, groups: Sequence[str]) -> int: ...
    def move_document(self, doc_id: str, from_groups: Sequence[str], to_groups: Sequence[str]) -> int: ...
    def sync_lexical(self, quick: bool = False) -> int: ...


@dataclass
class FileOutcome:
    path: str
    status: str  # one of STATUSES; with dry_run, what would happen
    chunks: int = 0
    error: str | None = None
    doc_id: str | None = None
    attached_to: str | None = None  # a mail attachment (path "<mail>#<name>"): the mail's path


@dataclass
class IngestReport:
    files: list[FileOutcome] = field(default_factory=list)
    seconds: float = 0.0
    dry_run: bool = False
    recovered: int = 0
    embedded: int = 0  # passages the embedder was given
    reused: int = 0  # chunks whose vector came from an earlier version of their document

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
        attachments = sum(1 for f in self.files if f.attached_to)
        among = f" ({attachments} of them mail attachments)" if attachments else ""
        reused = f" ({self.reused} reused from earlier versions)" if self.reused else ""
        return (
            f"{head}files: {', '.join(parts)}{among}; chunks added: {self.chunks_added}{reused}; "
            f"{self.seconds:.1f} s"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "counts": {s: self.count(s) for s in STATUSES},
            "chunks_added": self.chunks_added,
            "chunks_embedded": self.embedded,
            "chunks_reused": self.reused,
            "attachments": sum(1 for f in self.files if f.attached_to),
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


class ProgressDisplay:
    """A live bar (files, chunks, ETA) on a terminal; one log line per file otherwise. The CLI
    draws it for a run in its own process, and for one the server runs for it (enclave/admin_channel.py)."""

    def __init__(self, total: int, stream: IO[str]) -> None:
        self._bar: Any = None
        if stream.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit="file", file=stream, dynamic_ncols=True)
        self.total = total
        self.done = 0
        self.chunks = 0

    def update(self, outcome: FileOutcome) -> None:
        attachment = outcome.attached_to is not None  # counted in chunks, not among the files walked
        self.done += 0 if attachment else 1
        self.chunks += outcome.chunks if outcome.status in ("new", "changed") else 0
        if self._bar is not None:
            self._bar.set_postfix(chunks=self.chunks, refresh=False)
            self._bar.update(0 if attachment else 1)
        else:
            detail = f" ({outcome.error})" if outcome.error else ""
            log.info("[%d/%d] %s %s%s", self.done, self.total, outcome.status, outcome.path, detail)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


@dataclass
class _Reported:
    """A run's progress handed to `report_to` (see IngestPipeline.run) instead of drawn."""

    total: int
    report_to: Callable[[int, FileOutcome], None]

    def update(self, outcome: FileOutcome) -> None:
        self.report_to(self.total, outcome)

    def close(self) -> None:
        pass


@dataclass
class _Doc:
    """A document to store in the batch: one distinct content, whoever holds it."""

    doc_id: str
    chunks: list[Chunk]
    title: str
    size: int
    source: str
    groups: set[str]  # of its holders in this batch
    vectors: list[list[float]] = field(default_factory=list)
    existing: DocEntry | None = None  # set when the batch is stored
    target: tuple[str, ...] = ()


@dataclass
class _Entry:
    """A parsed file of the batch: its outcome first, then its attachments'."""

    job: _Todo
    doc_id: str
    outcomes: list[FileOutcome] = field(default_factory=list)
    links: dict[str, list[AttachmentEntry]] = field(default_factory=dict)  # mail doc -> its rows
    linked: list[str] = field(default_factory=list)  # attachments already stored: regrouped after


@dataclass
class _Batch:
    entries: list[_Entry] = field(default_factory=list)
    docs: dict[str, _Doc] = field(default_factory=dict)
    chunks: int = 0

    def add(
        self, doc_id: str, chunks: list[Chunk], title: str, size: int, source: str, groups: Sequence[str]
    ) -> None:
        doc = self.docs.get(doc_id)
        if doc is None:  # the same content twice in one batch is stored once, for all its holders
            self.docs[doc_id] = _Doc(doc_id, chunks, title, size, source, set(groups))
            self.chunks += len(chunks)
        else:
            doc.groups.update(groups)


_STORED = "stored"  # an attachment outcome's status until its batch is stored: then new or changed


# An I/O error on a disk with less than this free is taken for a full disk: SQLite reports only
# "disk I/O error" when it cannot grow a file it needs, such as the 32 KiB index of its WAL.
NEARLY_FULL_BYTES = 1 << 20


def free_bytes(folder: Path) -> int:
    """Free space on the disk holding `folder` (or its nearest existing parent), for its users."""
    folder = Path(folder).absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    st = os.statvfs(folder)
    return st.f_bavail * st.f_frsize


def human_size(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def disk_full(exc: BaseException, folder: Path | None = None) -> bool:
    """Whether `exc`, or an exception it was raised from, is a full disk: ENOSPC from the OS, or
    SQLITE_FULL from SQLite (whose message Chroma's Rust core passes on as text). Given the
    `folder` written to, also an I/O error while the disk holding it has next to nothing free."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno == errno.ENOSPC:
            return True
        code = getattr(current, "sqlite_errorcode", None)  # only on errors SQLite itself raised
        if isinstance(current, sqlite3.Error) and code is not None and code & 0xFF == sqlite3.SQLITE_FULL:
            return True
        if "database or disk is full" in str(current) or os.strerror(errno.ENOSPC) in str(current):
            return True
        io_error = (
            (isinstance(current, OSError) and current.errno == errno.EIO)
            or (
                isinstance(current, sqlite3.Error)
                and code is not None
                and code & 0xFF == sqlite3.SQLITE_IOERR
            )
            or "disk I/O error" in str(current)
        )
        if io_error and folder is not None and free_bytes(folder) < NEARLY_FULL_BYTES:
            return True
        current = current.__cause__ or current.__context__
    return False


@contextlib.contextmanager
def disk_full_explained(data_dir: Path, started: bool) -> Iterator[None]:
    """A full disk stops the ingest with what to do about it, whichever store hit it (manifest,
    Chroma, lexical index: each says only that it could not write). Before the run has `started`
    (opening the stores), it changed nothing; after, the next run rolls back what it left."""
    try:
        yield
    except Exception as exc:
        if not disk_full(exc, data_dir):
            raise
        if not started:
            raise IngestError(
                f"the disk is full, so the ingest did not start: {human_size(free_bytes(data_dir))} free on the "
                f"disk holding the data folder {data_dir} ({exc}). Nothing stored was changed. Free space "
                "on that disk, or move the data folder (--data-dir or ENCLAVE_DATA_DIR) to a disk with "
                "room, and run the ingest again"
            ) from exc
        raise IngestError(
            f"the disk is full, so the ingest stopped ({exc}). Free space on the disk holding "
            f"the data folder {data_dir} (or the Chroma server's) and run the ingest again: it "
            "rolls back what this run left unfinished; documents stored before are unchanged"
        ) from exc


@contextlib.contextmanager
def exclusive(lock_path: Path, busy: str = "another ingest is running on this data folder") -> Iterator[None]:
    """An advisory lock so that two ingests into one data folder (or two syncs of one source
    mirror) never interleave: whoever comes second is refused at once (IngestError, saying
    `busy`), before it has changed anything."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise IngestError(f"{busy} (lock {lock_path}); wait for it to finish") from exc
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


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
        parse_timeout_s: float = 0.0,
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
        self.parse_timeout_s = parse_timeout_s

    # -- the run ---------------------------------------------------------------------------------

    def run(
        self,
        paths: Sequence[Path],
        groups: Sequence[str] | GroupPolicy,
        prune: bool = False,
        dry_run: bool = False,
        force: bool = False,
        progress: IO[str] | None = None,
        report_to: Callable[[int, FileOutcome], None] | None = None,
    ) -> IngestReport:
        """Ingest the files under `paths`. Each file's outcome is shown as it comes, on a
        ProgressDisplay drawn on `progress` (default stderr), or, given `report_to`, handed to it
        with the number of files walked instead (the admin channel streams them to its caller)."""
        started = time.perf_counter()
        policy = groups if isinstance(groups, GroupPolicy) else GroupPolicy(tuple(groups))
        roots = [p.resolve() for p in paths]
        report = IngestReport(dry_run=dry_run)
        with self._exclusive(), disk_full_explained(self.manifest.path.parent, started=True):
            if not dry_run:
                # Under the lock: run beside another ingest, this would copy its half-stored batch.
                self.store.sync_lexical(quick=True)
                report.recovered = self.recover()
            files = list(walk(roots))
            bar = (
                _Reported(len(files), report_to)
                if report_to
                else ProgressDisplay(len(files), progress or sys.stderr)
            )
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
                    report.files.extend(
                        FileOutcome(str(j.path), "changed" if j.previous else "new") for j in todo
                    )
                else:
                    for outcome in self._ingest(todo, force, report):
                        report.files.append(outcome)
                        bar.update(outcome)
            finally:
                bar.close()
            if prune:
                report.files.extend(self._prune(roots, dry_run))
        order = {str(p): i for i, p in enumerate(files)}
        mail_of = {f.path: f.attached_to for f in report.files if f.attached_to}

        def walked(path: str) -> str:  # an attachment sorts with the file its mail came from
            while path in mail_of:
                path = mail_of[path]
            return path

        report.files.sort(key=lambda f: order.get(walked(f.path), len(order)))
        report.seconds = time.perf_counter() - started
        return report

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        if self.lock_path is None:
            yield
            return
        with exclusive(self.lock_path):
            yield

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
            not force
            and previous
            and current
            and previous.groups == groups
            and previous.size == st.st_size
            and previous.mtime_ns == st.st_mtime_ns
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
        if not force and self._whole(held):
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
        return doc if self._whole(doc) else None

    def _whole(self, doc: DocEntry | None) -> bool:
        """Stored with the current model, and so is every attachment below it (a mail's)."""
        model = self.embedder.model_id
        return (
            doc is not None
            and doc.embed_model == model
            and self.manifest.attachments_whole(doc.doc_id, model)
        )

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

    def _parsed(self, todo: list[_Todo]) -> Iterator[tuple[_Todo, Piece]]:
        """Parse results (each file with its attachments) in input order."""
        limits = Limits(self.max_file_bytes, MAX_ATTACHMENT_DEPTH)
        # Starting a worker costs seconds (it imports unstructured, spaCy and torch): without a
        # time limit, small runs parse in this process. With one, every parse runs in a worker,
        # the only place a parse can be stopped.
        if self.parse_timeout_s <= 0 and (self.workers <= 1 or len(todo) < _MIN_FILES_FOR_WORKERS):
            for index, job in enumerate(todo):
                yield job, parse_tree(self._parse, job.path, index, limits, {})
            return
        pool = ParserPool(self._parse, min(self.workers, len(todo)), self.guard, limits, self.parse_timeout_s)
        yield from zip(todo, pool.parse_all([job.path for job in todo]), strict=True)

    def _ingest(self, todo: list[_Todo], force: bool, report: IngestReport) -> Iterator[FileOutcome]:
        warming = self._warm_up() if todo else None
        try:
            batch = _Batch()
            for job, piece in self._parsed(todo):
                failed = self._take(job, piece, batch, force)
                if failed is not None:
                    yield failed
                    continue
                if batch.chunks >= self.embed_batch:
                    yield from self._flush(batch, report)
                    batch = _Batch()
            yield from self._flush(batch, report)
        finally:
            if warming is not None:
                warming.join()

    def _warm_up(self) -> threading.Thread:
        """Load the embedding model while the first files parse rather than after them: torch's
        import alone takes ~5 s, which the first batch would otherwise wait for (bench/ingest.py)."""

        def load() -> None:
            try:
                self.embedder.embed_query("warm-up")
            except Exception:  # the first real embedding raises it again, where it is reported
                log.debug("loading the embedding model ahead failed", exc_info=True)

        thread = threading.Thread(target=load, name="embedder-warm-up", daemon=True)
        thread.start()
        return thread

    def _take(self, job: _Todo, piece: Piece, batch: _Batch, force: bool) -> FileOutcome | None:
        """Add a parsed file, and its attachments, to the batch; or say why the file failed."""
        source = str(job.path)
        result = piece.result
        if isinstance(result, Unsupported):  # needs OCR or LibreOffice: skipped, with the fix
            self._record_problem(source, "skipped", job.groups, str(result), job.previous)
            return FileOutcome(source, "skipped", error=str(result))
        if isinstance(result, Exception):
            reason = (
                str(result)
                if isinstance(result, IngestError)
                else f"{source}: {type(result).__name__}: {result}"
            )
            self._record_problem(source, "failed", job.groups, reason, job.previous)
            return FileOutcome(source, "failed", error=reason)
        doc_id = document_id(job.sha)
        chunks = self.chunker.chunks(result, doc_id, source, job.groups)
        if not chunks:
            reason = f"{source}: no text found"
            self._record_problem(source, "failed", job.groups, reason, job.previous)
            return FileOutcome(source, "failed", error=reason)
        status = "changed" if job.previous and job.previous.status == "ingested" else "new"
        entry = _Entry(job, doc_id, [FileOutcome(source, status, chunks=len(chunks), doc_id=doc_id)])
        batch.add(doc_id, chunks, result.title, job.size, source, job.groups)
        self._take_attachments(piece, doc_id, job.groups, entry, batch, force)
        batch.entries.append(entry)
        return None

    def _take_attachments(
        self, mail: Piece, mail_id: str, groups: Sequence[str], entry: _Entry, batch: _Batch, force: bool
    ) -> None:
        rows: list[AttachmentEntry] = []
        for part in mail.parts:
            seq, result = part.key[-1], part.result
            outcome = FileOutcome(part.source, _STORED, attached_to=mail.source)
            entry.outcomes.append(outcome)
            doc_id = document_id(part.sha256)
            chunks = (
                []
                if isinstance(result, Exception)
                else self.chunker.chunks(result, doc_id, part.source, groups)
            )
            if not chunks:
                outcome.status = "skipped" if isinstance(result, Unsupported) else "failed"
                if not isinstance(result, Exception):
                    outcome.error = f"{part.source}: no text found"
                elif isinstance(result, IngestError):
                    outcome.error = str(result)
                else:
                    outcome.error = f"{part.source}: {type(result).__name__}: {result}"
                if outcome.status == "failed":
                    log.warning("%s", outcome.error)
                rows.append(AttachmentEntry(mail_id, seq, part.name, None, outcome.status, outcome.error))
                continue
            assert isinstance(result, ParsedDocument)
            rows.append(AttachmentEntry(mail_id, seq, part.name, doc_id, "ingested", None))
            outcome.doc_id = doc_id
            if doc_id in batch.docs:  # attached twice, or also a file of this batch: stored once
                batch.docs[doc_id].groups.update(groups)
                outcome.chunks = len(chunks)
            elif not force and self._whole(self.manifest.doc(doc_id)):
                outcome.status = "linked"  # stored already: its groups follow once the batch is
                entry.linked.append(doc_id)
            else:
                outcome.chunks = len(chunks)
                batch.add(doc_id, chunks, result.title, part.size, part.source, groups)
                self._take_attachments(part, doc_id, groups, entry, batch, force)
        if rows:
            entry.links[mail_id] = rows

    def _flush(self, batch: _Batch, report: IngestReport) -> Iterator[FileOutcome]:
        if not batch.entries:
            return
        docs = list(batch.docs.values())
        vectors = self._embed([embedding_text(c) for d in docs for c in d.chunks], batch, report)
        offset = 0
        for doc in docs:
            doc.vectors = vectors[offset : offset + len(doc.chunks)]
            offset += len(doc.chunks)
        self._store(batch)
        for entry in batch.entries:
            for outcome in entry.outcomes:
                if outcome.status == _STORED:
                    assert outcome.doc_id is not None
                    outcome.status = "changed" if batch.docs[outcome.doc_id].existing else "new"
            yield from entry.outcomes

    def _embed(self, texts: list[str], batch: _Batch, report: IngestReport) -> list[list[float]]:
        """One vector per text. A text the batch holds twice is embedded once, and one that an
        earlier version of its file already had (same words, title and heading, same model) takes
        that version's stored vector: editing a page of a long manual re-embeds that page's chunks,
        not the manual. The embedder's vector depends on the text alone (see vectorstore/), so a
        reused vector is the one embedding it again would give."""
        known = self._earlier_vectors(batch)
        todo = list(dict.fromkeys(t for t in texts if t not in known))
        fresh = dict(zip(todo, self.embedder.embed_documents(todo), strict=True)) if todo else {}
        report.embedded += len(todo)
        report.reused += sum(1 for t in texts if t in known)
        return [known[t] if t in known else fresh[t] for t in texts]

    def _earlier_vectors(self, batch: _Batch) -> dict[str, list[float]]:
        """Embedding text -> stored vector, over the earlier versions of the batch's changed files
        that were embedded by the current model."""
        known: dict[str, list[float]] = {}
        for held in batch.entries:
            previous = held.job.previous
            if previous is None or not previous.doc_id or previous.doc_id in batch.docs:
                continue
            doc = self.manifest.doc(previous.doc_id)
            if doc is None or doc.embed_model != self.embedder.model_id:
                continue
            for chunk, vector in self.store.document_embeddings(doc.doc_id, doc.groups):
                known.setdefault(embedding_text(chunk), vector)
        return known

    # -- writes, each crash-safe ----------------------------------------------------------------

    def _store(self, batch: _Batch) -> None:
        """Store a batch: announce every write, write, vouch for all (module docstring)."""
        m = self.manifest
        docs = list(batch.docs.values())
        rewritten = [str(e.job.path) for e in batch.entries]  # their rows are about to be replaced
        with m.transaction() as db:
            for doc in docs:
                doc.existing = m.doc(doc.doc_id)
                doc.target = tuple(sorted(set(m.holder_groups(doc.doc_id, excluding=rewritten)) | doc.groups))
                # While the chunks are rewritten the manifest must not vouch for the document:
                # drop its row (its files then look changed to a later run) and announce the write.
                if doc.existing is not None:
                    m.drop_doc(db, doc.doc_id)
                    m.pend(db, doc.doc_id, doc.existing.groups)
                m.pend(db, doc.doc_id, doc.target)
            unlinked = {r.doc_id for e in batch.entries for mail in e.links for r in m.attachments(mail)}
        for doc in docs:
            if doc.existing is not None:
                self.store.delete_document(doc.doc_id, doc.existing.groups)
                if doc.existing.groups != doc.target:
                    self.store.delete_document(doc.doc_id, doc.target)
        self.store.upsert(
            [dataclasses.replace(c, groups=doc.target) for doc in docs for c in doc.chunks],
            [v for doc in docs for v in doc.vectors],
        )
        with m.transaction() as db:
            for doc in docs:
                source = doc.existing.source if doc.existing else doc.source
                entry = DocEntry(
                    doc.doc_id,
                    doc.target,
                    len(doc.chunks),
                    doc.title,
                    doc.size,
                    self.embedder.model_id,
                    source,
                    "",
                )
                m.put_doc(db, entry)
                m.unpend(db, doc.doc_id, doc.target)
                if doc.existing is not None:
                    m.unpend(db, doc.doc_id, doc.existing.groups)
            for held in batch.entries:
                job = held.job
                m.put_file(
                    db, str(job.path), "ingested", job.groups, held.doc_id, job.sha, job.size, job.mtime_ns
                )
                for mail_id, rows in held.links.items():
                    m.put_attachments(db, mail_id, rows)
        # Then the access classes of what the batch let go of or newly holds: the documents the
        # files held before, attachments stored earlier, attachments a mail no longer has.
        after: list[str] = []
        for held in batch.entries:
            previous = held.job.previous
            if previous and previous.doc_id and previous.doc_id != held.doc_id:
                after.append(previous.doc_id)
            after.extend(held.linked)
        after.extend(sorted(d for d in unlinked - set(batch.docs) if d is not None))
        for doc_id in dict.fromkeys(after):
            self._regroup(doc_id)

    def _link(
        self,
        source: str,
        doc_id: str,
        groups: tuple[str, ...],
        sha: str,
        st: os.stat_result,
        previous: FileEntry | None,
    ) -> None:
        """Point a file at a document the store already holds (a copy, a rename, new groups)."""
        with self.manifest.transaction() as db:
            self.manifest.put_file(db, source, "ingested", groups, doc_id, sha, st.st_size, st.st_mtime_ns)
        self._regroup(doc_id)
        if previous and previous.doc_id and previous.doc_id != doc_id:
            self._regroup(previous.doc_id)

    def _regroup(self, doc_id: str) -> None:
        """Bring a document's access class in line with the files (and mails) that hold it:
        delete it when none does, move it (embeddings and all, no re-embedding) when their
        groups changed; then its attachments, if it is a mail."""
        m = self.manifest
        doc = m.doc(doc_id)
        if doc is None:
            return
        attachments = [r.doc_id for r in m.attachments(doc_id) if r.doc_id]
        wanted = m.holder_groups(doc_id)
        if wanted != doc.groups:
            if wanted:
                m.mark_pending(doc_id, wanted)
                self.store.move_document(doc_id, doc.groups, wanted)
            with m.transaction() as db:
                if wanted:
                    m.put_doc(db, dataclasses.replace(doc, groups=wanted))
                else:
                    m.drop_doc(db, doc_id)
                    m.drop_attachments(db, doc_id)  # they become orphans unless held elsewhere
                m.pend(db, doc_id, doc.groups)
            self.store.delete_document(doc_id, doc.groups)
            m.clear_pending(doc_id, doc.groups)
            if wanted:
                m.clear_pending(doc_id, wanted)
        # Always, not only after a change: this also repairs an attachment left behind by a run
        # killed between its mail's move and its own.
        for attachment in dict.fromkeys(attachments):
            if attachment != doc_id:
                self._regroup(attachment)

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
                    self._regroup(entry.doc_id)  # a mail's attachments follow it
            pruned.append(FileOutcome(entry.path, "pruned", doc_id=entry.doc_id))
        return pruned

    def remove(self, doc_id: str) -> list[str]:
        """Remove a document, its mail's attachments that nothing else holds, and forget the
        files that held it; returns where it was found (file paths, `<mail>#<name>`).

        An attachment removed this way comes back when its mail is next ingested, as a removed
        file does when it is ingested again."""
        m = self.manifest
        with self._exclusive():
            found = m.sources(doc_id)
            doc = m.doc(doc_id)
            attachments = [r.doc_id for r in m.attachments(doc_id) if r.doc_id]
            with m.transaction() as db:
                for f in m.files(doc_id):
                    m.drop_file(db, f.path)
                m.drop_attachments(db, doc_id)
                if doc is not None:
                    m.drop_doc(db, doc_id)
                    m.pend(db, doc_id, doc.groups)
            if doc is not None:
                self.store.delete_document(doc_id, doc.groups)
                m.clear_pending(doc_id, doc.groups)
            for attachment in dict.fromkeys(attachments):
                self._regroup(attachment)
            return found
