"""The manifest: what ingest knows about files, documents and unfinished writes (SQLite).

- `files`: one row per path seen, with its status, error, groups and the document it holds.
- `docs`: one row per distinct content (doc_id = sha256 of the bytes), with its access class
  (the union of the groups of the files that hold it), chunk count and embedding model.
  Identical files under two paths share one document; a renamed file keeps its document.
- `pending`: (doc_id, groups) pairs whose chunks may sit in that access class without the
  manifest vouching for them yet: written before any store write, cleared after the manifest
  commit. After a crash, `recover()` deletes what the manifest does not vouch for. This is what
  makes SIGKILL at any moment safe.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from core.errors import IngestError

SCHEMA_VERSION = 1
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
            if version == 0:
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

    def orphan_docs(self) -> list[str]:
        """Documents that no ingested file holds any more (left by a crash mid-removal)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT doc_id FROM docs WHERE doc_id NOT IN "
                "(SELECT doc_id FROM files WHERE status = 'ingested' AND doc_id IS NOT NULL)"
            ).fetchall()
        return [str(r[0]) for r in rows]

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
            self._db.execute("DELETE FROM pending WHERE doc_id = ? AND groups = ?", (doc_id, _groups(groups)))

    def put_doc(self, db: sqlite3.Connection, doc: DocEntry) -> None:
        db.execute(
            "INSERT OR REPLACE INTO docs VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (doc.doc_id, _groups(doc.groups), doc.chunks, doc.title, doc.size, doc.embed_model, doc.source, _now()),
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

    def holder_groups(self, doc_id: str, excluding: str | None = None) -> tuple[str, ...]:
        """The union of the groups of the ingested files that hold this document."""
        return tuple(sorted({g for f in self.files(doc_id) if f.path != excluding for g in f.groups}))


def _file(row: tuple[object, ...]) -> FileEntry:
    path, status, doc_id, sha, size, mtime, groups, error, updated = row
    return FileEntry(
        str(path), str(status), None if doc_id is None else str(doc_id), None if sha is None else str(sha),
        None if size is None else int(size),  # type: ignore[call-overload]
        None if mtime is None else int(mtime),  # type: ignore[call-overload]
        tuple(json.loads(str(groups))), None if error is None else str(error), str(updated),
    )


def _doc(row: tuple[object, ...]) -> DocEntry:
    doc_id, groups, chunks, title, size, model, source, updated = row
    return DocEntry(
        str(doc_id), tuple(json.loads(str(groups))), int(chunks), str(title),  # type: ignore[call-overload]
        int(size), str(model), str(source), str(updated),  # type: ignore[call-overload]
    )
