"""The manifest: what ingest knows about files, documents and unfinished writes (SQLite).

- `files`: one row per path seen, with its status, error, groups and the document it holds.
- `docs`: one row per distinct content (doc_id = sha256 of the bytes), with its access class
  (the union of the groups of the files that hold it), chunk count and embedding model.
  Identical files under two paths share one document; a renamed file keeps its document.
- `attachments`: which documents a mail holds (its attachments, each a document of its own),
  keyed by the mail's document, so that every copy of a mail holds them too. A row whose
  attachment failed or was skipped keeps the reason and no document. A mail attached to a mail
  has rows of its own.
- `pending`: (doc_id, groups) pairs whose chunks may sit in that access class without the
  manifest vouching for them yet: written before any store write, cleared after the manifest
  commit. After a crash, `recover()` deletes what the manifest does not vouch for. This is what
  makes SIGKILL at any moment safe.

A document is *held* by the ingested files whose row names it, and by the mails (documents
themselves) whose `attachments` rows name it; its access class is the union of the groups of the
files that hold it, directly or through the mails that hold it. A document held by nothing is
an orphan, removed by `recover()`.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from core.errors import IngestError

SCHEMA_VERSION = 2  # 2: attachments
_SCHEMA = """
CREATE TABLE IF NOT EXISTS docs (
    doc_id      TEXT PRIMARY KEY,
    groups      TEXT NOT NULL,
    chunks      INTEGER NOT NULL,
    title       TEXT NOT NULL,
    size        INTEGER NOT NULL,
    embed_model TEXT NOT NULL,
    source      TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS files (
    path       TEXT PRIMARY KEY,
    status     TEXT NOT NULL CHECK (status IN ('ingested', 'failed', 'skipped')),
    doc_id     TEXT,
    sha256     TEXT,
    size       INTEGER,
    mtime_ns   INTEGER,
    groups     TEXT NOT NULL,
    error      TEXT,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS files_doc_id ON files (doc_id);
CREATE TABLE IF NOT EXISTS attachments (
    mail_id    TEXT NOT NULL,
    seq        INTEGER NOT NULL,
    name       TEXT NOT NULL,
    doc_id     TEXT,
    status     TEXT NOT NULL CHECK (status IN ('ingested', 'failed', 'skipped')),
    error      TEXT,
    PRIMARY KEY (mail_id, seq)
);
CREATE INDEX IF NOT EXISTS attachments_doc_id ON attachments (doc_id);
CREATE TABLE IF NOT EXISTS pending (
    doc_id     TEXT NOT NULL,
    groups     TEXT NOT NULL,
    since      TEXT NOT NULL,
    PRIMARY KEY (doc_id, groups)
);
"""


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _groups(value: Sequence[str]) -> str:
    return json.dumps(sorted(set(value)))


@dataclass(frozen=True)
class FileEntry:
    path: str
    status: str
    doc_id: str | None
    sha256: str | None
    size: int | None
    mtime_ns: int | None
    groups: tuple[str, ...]
    error: str | None
    updated_at: str


@dataclass(frozen=True)
class DocEntry:
    doc_id: str
    groups: tuple[str, ...]
    chunks: int
    title: str
    size: int
    embed_model: str
    source: str
    updated_at: str


@dataclass(frozen=True)
class AttachmentEntry:
    """One attachment of a mail: the document it became, or why it did not."""

    mail_id: str  # the mail's document
    seq: int  # 1-based position among the mail's attachments
    name: str  # its file name in the mail
    doc_id: str | None  # None when it failed or was skipped
    status: str  # ingested, failed, skipped
    error: str | None


# Documents held by an ingested file, and, recursively, the attachments of held mails.
_HELD = """
WITH RECURSIVE held(doc_id) AS (
    SELECT doc_id FROM files WHERE status = 'ingested' AND doc_id IS NOT NULL
    UNION
    SELECT a.doc_id FROM attachments a JOIN held h ON a.mail_id = h.doc_id
    WHERE a.status = 'ingested' AND a.doc_id IS NOT NULL
)
"""
# The attachments of one mail, of the mails attached to it, and so on.
_BELOW = """
WITH RECURSIVE below(doc_id) AS (
    SELECT doc_id FROM attachments WHERE mail_id = ? AND status = 'ingested' AND doc_id IS NOT NULL
    UNION
    SELECT a.doc_id FROM attachments a JOIN below b ON a.mail_id = b.doc_id
    WHERE a.status = 'ingested' AND a.doc_id IS NOT NULL
)
"""


class Manifest:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.RLock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA busy_timeout=10000")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version < SCHEMA_VERSION:  # every statement is CREATE ... IF NOT EXISTS
                self._db.executescript(f"BEGIN;\n{_SCHEMA}\nPRAGMA user_version={SCHEMA_VERSION};\nCOMMIT;")
            elif version > SCHEMA_VERSION:
                raise IngestError(
                    f"manifest {path} has schema {version}, newer than this Enclave ({SCHEMA_VERSION}): upgrade Enclave"
                )
        except (OSError, sqlite3.Error) as exc:
            raise IngestError(f"manifest {path} cannot be opened: {exc}") from exc

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # -- reads ---------------------------------------------------------------------------------

    def file(self, path: str) -> FileEntry | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM files WHERE path = ?", (path,)).fetchone()
        return _file(row) if row else None

    def files(self, doc_id: str | None = None) -> list[FileEntry]:
        with self._lock:
            if doc_id is None:
                rows = self._db.execute("SELECT * FROM files ORDER BY path").fetchall()
            else:
                rows = self._db.execute(
                    "SELECT * FROM files WHERE doc_id = ? AND status = 'ingested' ORDER BY path", (doc_id,)
                ).fetchall()
        return [_file(r) for r in rows]

    def doc(self, doc_id: str) -> DocEntry | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM docs WHERE doc_id = ?", (doc_id,)).fetchone()
        return _doc(row) if row else None

    def docs(self) -> list[DocEntry]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM docs ORDER BY source").fetchall()
        return [_doc(r) for r in rows]

    def embed_models(self) -> dict[str, int]:
        """How many documents each embedding model (an embedder's model_id) stored."""
        with self._lock:
            rows = self._db.execute("SELECT embed_model, COUNT(*) FROM docs GROUP BY embed_model").fetchall()
        return {str(model): int(count) for model, count in rows}

    def orphan_docs(self) -> list[str]:
        """Documents that no ingested file holds any more, directly or as an attachment of a
        held mail (left by a crash mid-removal)."""
        with self._lock:
            rows = self._db.execute(
                f"{_HELD} SELECT doc_id FROM docs WHERE doc_id NOT IN (SELECT doc_id FROM held)"
            ).fetchall()
        return [str(r[0]) for r in rows]

    def attachments(self, mail_id: str) -> list[AttachmentEntry]:
        """The attachments of a mail document, in the mail's order (failed and skipped included)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM attachments WHERE mail_id = ? ORDER BY seq", (mail_id,)
            ).fetchall()
        return [_attachment(r) for r in rows]

    def holding_mails(self, doc_id: str) -> list[AttachmentEntry]:
        """The attachment rows through which mails hold this document."""
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM attachments WHERE doc_id = ? AND status = 'ingested' ORDER BY mail_id, seq",
                (doc_id,),
            ).fetchall()
        return [_attachment(r) for r in rows]

    def attachments_whole(self, mail_id: str, embed_model: str) -> bool:
        """Whether every ingested attachment below this mail (nested mails' too) is stored with
        `embed_model`; one that is not (removed, or lost to a crash) makes the mail parse again."""
        with self._lock:
            row = self._db.execute(
                f"{_BELOW} SELECT count(*) FROM below LEFT JOIN docs d ON d.doc_id = below.doc_id "
                "WHERE d.doc_id IS NULL OR d.embed_model != ?",
                (mail_id, embed_model),
            ).fetchone()
        return int(row[0]) == 0

    def sources(self, doc_id: str) -> list[str]:
        """Where a document is found: the paths of the files holding it, and `<mail>#<name>` for
        each mail holding it (`<mail>` itself a path, or a source of this form for nested mails)."""
        out = [f.path for f in self.files(doc_id)]
        for row in self.holding_mails(doc_id):
            if row.mail_id != doc_id:  # content cannot hold itself; guards a damaged manifest
                out.extend(f"{mail}#{row.name}" for mail in self.sources(row.mail_id))
        return out

    def pending(self) -> list[tuple[str, tuple[str, ...]]]:
        with self._lock:
            rows = self._db.execute("SELECT doc_id, groups FROM pending").fetchall()
        return [(str(d), tuple(json.loads(g))) for d, g in rows]

    # -- writes (each a transaction of its own unless called inside one) -----------------------

    def mark_pending(self, doc_id: str, groups: Sequence[str]) -> None:
        with self.transaction() as db:
            self.pend(db, doc_id, groups)

    def clear_pending(self, doc_id: str, groups: Sequence[str]) -> None:
        with self._lock:
            self.unpend(self._db, doc_id, groups)

    def put_doc(self, db: sqlite3.Connection, doc: DocEntry) -> None:
        db.execute(
            "INSERT OR REPLACE INTO docs VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                doc.doc_id,
                _groups(doc.groups),
                doc.chunks,
                doc.title,
                doc.size,
                doc.embed_model,
                doc.source,
                _now(),
            ),
        )

    def put_file(
        self,
        db: sqlite3.Connection,
        path: str,
        status: str,
        groups: Sequence[str],
        doc_id: str | None = None,
        sha256: str | None = None,
        size: int | None = None,
        mtime_ns: int | None = None,
        error: str | None = None,
    ) -> None:
        db.execute(
            "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (path, status, doc_id, sha256, size, mtime_ns, _groups(groups), error, _now()),
        )

    def drop_file(self, db: sqlite3.Connection, path: str) -> None:
        db.execute("DELETE FROM files WHERE path = ?", (path,))

    def drop_doc(self, db: sqlite3.Connection, doc_id: str) -> None:
        db.execute("DELETE FROM docs WHERE doc_id = ?", (doc_id,))

    def pend(self, db: sqlite3.Connection, doc_id: str, groups: Sequence[str]) -> None:
        db.execute("INSERT OR IGNORE INTO pending VALUES (?, ?, ?)", (doc_id, _groups(groups), _now()))

    def unpend(self, db: sqlite3.Connection, doc_id: str, groups: Sequence[str]) -> None:
        db.execute("DELETE FROM pending WHERE doc_id = ? AND groups = ?", (doc_id, _groups(groups)))

    def put_attachments(self, db: sqlite3.Connection, mail_id: str, rows: Sequence[AttachmentEntry]) -> None:
        """Replace the attachment rows of a mail."""
        self.drop_attachments(db, mail_id)
        db.executemany(
            "INSERT INTO attachments VALUES (?, ?, ?, ?, ?, ?)",
            [(mail_id, r.seq, r.name, r.doc_id, r.status, r.error) for r in rows],
        )

    def drop_attachments(self, db: sqlite3.Connection, mail_id: str) -> None:
        db.execute("DELETE FROM attachments WHERE mail_id = ?", (mail_id,))

    def holder_groups(self, doc_id: str, excluding: Iterable[str] = ()) -> tuple[str, ...]:
        """The union of the groups of the ingested files that hold this document, directly or
        through the mails that hold it as an attachment; files at `excluding` paths left out."""
        skip = {excluding} if isinstance(excluding, str) else set(excluding)
        groups: set[str] = set()
        seen: set[str] = set()
        todo = [doc_id]
        while todo:
            current = todo.pop()
            if current in seen:
                continue
            seen.add(current)
            groups.update(g for f in self.files(current) if f.path not in skip for g in f.groups)
            todo.extend(row.mail_id for row in self.holding_mails(current))
        return tuple(sorted(groups))


def _file(row: tuple[object, ...]) -> FileEntry:
    path, status, doc_id, sha, size, mtime, groups, error, updated = row
    return FileEntry(
        str(path),
        str(status),
        None if doc_id is None else str(doc_id),
        None if sha is None else str(sha),
        None if size is None else int(size),  # type: ignore[call-overload]
        None if mtime is None else int(mtime),  # type: ignore[call-overload]
        tuple(json.loads(str(groups))),
        None if error is None else str(error),
        str(updated),
    )


def _attachment(row: tuple[object, ...]) -> AttachmentEntry:
    mail_id, seq, name, doc_id, status, error = row
    return AttachmentEntry(
        str(mail_id),
        int(seq),
        str(name),
        None if doc_id is None else str(doc_id),  # type: ignore[call-overload]
        str(status),
        None if error is None else str(error),
    )


def _doc(row: tuple[object, ...]) -> DocEntry:
    doc_id, groups, chunks, title, size, model, source, updated = row
    return DocEntry(
        str(doc_id),
        tuple(json.loads(str(groups))),
        int(chunks),
        str(title),  # type: ignore[call-overload]
        int(size),
        str(model),
        str(source),
        str(updated),  # type: ignore[call-overload]
    )
