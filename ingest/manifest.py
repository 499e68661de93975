"""The manifest: one SQLite row per file seen by ingest, with its hash, status and error.

It is the source of truth for incremental runs: a file whose sha256 and groups match its
row is unchanged. Rows are written only after the store holds the document's chunks, so a
crash leaves an old row and the next run redoes that file.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from core.errors import IngestError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    path       TEXT PRIMARY KEY,
    doc_id     TEXT NOT NULL,
    sha256     TEXT NOT NULL,
    size       INTEGER NOT NULL,
    status     TEXT NOT NULL CHECK (status IN ('ingested', 'failed', 'skipped')),
    error      TEXT,
    groups     TEXT NOT NULL,
    chunks     INTEGER NOT NULL DEFAULT 0,
    title      TEXT NOT NULL DEFAULT '',
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS files_doc_id ON files (doc_id);
"""


@dataclass(frozen=True)
class ManifestEntry:
    path: str
    doc_id: str
    sha256: str
    size: int
    status: str
    error: str | None
    groups: tuple[str, ...]
    chunks: int
    title: str
    updated_at: str


class Manifest:
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA busy_timeout=10000")
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise IngestError(f"manifest {path} cannot be opened: {exc}") from exc
        self._lock = threading.Lock()

    def close(self) -> None:
        self._db.close()

    @staticmethod
    def _entry(row: tuple[object, ...]) -> ManifestEntry:
        path, doc_id, sha, size, status, error, groups, chunks, title, updated = row
        return ManifestEntry(
            str(path), str(doc_id), str(sha), int(size), str(status),  # type: ignore[call-overload]
            None if error is None else str(error), tuple(json.loads(str(groups))),
            int(chunks), str(title), str(updated),  # type: ignore[call-overload]
        )

    def get(self, path: str) -> ManifestEntry | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM files WHERE path = ?", (path,)).fetchone()
        return self._entry(row) if row else None

    def all(self) -> list[ManifestEntry]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM files ORDER BY path").fetchall()
        return [self._entry(r) for r in rows]

    def record(
        self,
        path: str,
        doc_id: str,
        sha256: str,
        size: int,
        status: str,
        groups: tuple[str, ...],
        chunks: int = 0,
        error: str | None = None,
        title: str = "",
    ) -> None:
        now = datetime.now(timezone.utc).isoformat()
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (path, doc_id, sha256, size, status, error, json.dumps(list(groups)), chunks, title, now),
            )

    def remove(self, path: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM files WHERE path = ?", (path,))
