"""The lexical (BM25) index: SQLite FTS5, kept in step with Chroma by the same writes.

One SQLite file holds every chunk's text and metadata (`chunks`) and an FTS5 index over its
title and text (`fts`, Porter-stemmed, diacritics folded). Each chunk row also carries its access
class as a token in the FTS column `cls`, so a search is one FTS5 query

    {title body} : ("term1" OR "term2" ...) AND cls : ("c<class1>" OR "c<class2>" ...)

in which the user's groups are a condition *inside* the index lookup (postings intersected),
never a filter applied afterwards. The `cls` column has weight 0 in `bm25()`, so it does not
change scores. Statistics (document frequencies, average length) are global over the index,
as in any search engine; they reveal nothing of a document's text.

A chunk is keyed by (chunk_id, access class), like Chroma where each class is its own
collection: `move_document` copies, and the caller deletes the old copy once the move is
recorded. Writes are transactions, so a crash leaves either all or none of one call's rows; the
ingest manifest's `pending` protocol covers the gap between this index and Chroma.

sqlite3 types stay inside this module.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from core.errors import RetrievalError
from core.types import Chunk, Hit
from vectorstore import fusion

SCHEMA_VERSION = 1
TOKENIZER = "porter unicode61 remove_diacritics 2"
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS chunks (
    rowid    INTEGER PRIMARY KEY,
    chunk_id TEXT NOT NULL,
    cls      TEXT NOT NULL,
    doc_id   TEXT NOT NULL,
    meta     TEXT NOT NULL,
    UNIQUE (chunk_id, cls)
);
CREATE INDEX IF NOT EXISTS chunks_doc ON chunks (doc_id, cls);
CREATE VIRTUAL TABLE IF NOT EXISTS fts USING fts5(
    title, body, cls, tokenize = '{TOKENIZER}'
);
CREATE VIRTUAL TABLE IF NOT EXISTS fts_rows USING fts5vocab(fts, 'row');
CREATE TABLE IF NOT EXISTS classes (cls TEXT PRIMARY KEY, groups TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS info (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

# BM25 weights of the columns (title, body, cls): title and text alike (a heavier title gained
# nothing beyond noise on SciFact train, see vectorstore/fusion.py); cls is a filter, not text.
COLUMN_WEIGHTS = (fusion.FTS5_TITLE_WEIGHT, fusion.FTS5_TEXT_WEIGHT, 0.0)


def class_token(groups: Iterable[str]) -> str:
    """The FTS token of an access class: stable, alphanumeric, one per exact set of groups."""
    key = sorted({g for g in groups if g})
    if not key:
        raise ValueError("a document needs at least one group")
    return "c" + hashlib.sha256("\x1f".join(key).encode()).hexdigest()[:24]


def query_terms(text: str) -> list[str]:
    """The distinct words of a query, in order, casefolded, English function words dropped
    (fusion.LEXICAL_STOP_WORDS), or all its words if nothing else is left."""
    return fusion.lexical_query_terms(text) or fusion.lexical_query_terms(text, stop_words=())


def match_expression(terms: Sequence[str], classes: Iterable[str]) -> str:
    """An FTS5 query: any of the terms in title or body, within the given class tokens. Every
    term is a quoted string, so no FTS5 syntax can come from the user's text."""
    quoted = " OR ".join('"' + t.replace('"', '""') + '"' for t in terms)
    allowed = " OR ".join(f'"{c}"' for c in classes)
    return f"{{title body}} : ({quoted}) AND cls : ({allowed})"


def _meta(chunk: Chunk) -> str:
    data = dataclasses.asdict(chunk)
    data.pop("text")
    return json.dumps(data, ensure_ascii=False)


_CHUNK_FIELDS = {f.name for f in dataclasses.fields(Chunk)}


def _chunk(meta: str, text: str) -> Chunk:
    data: dict[str, Any] = {k: v for k, v in json.loads(meta).items() if k in _CHUNK_FIELDS}
    data["groups"] = tuple(data.get("groups", ()))
    return Chunk(text=text, **data)


class LexicalIndex:
    """BM25 search over chunk text, restricted to the access classes a user may read."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        try:
            self._db().executescript(_SCHEMA)  # idempotent; executescript runs its own transaction
        except sqlite3.Error as exc:
            raise RetrievalError(f"lexical index {path} cannot be created: {exc}") from exc
        with self._write() as db:
            db.execute("INSERT OR IGNORE INTO info VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            db.execute("INSERT OR IGNORE INTO info VALUES ('tokenizer', ?)", (TOKENIZER,))
        stored = self._info("tokenizer")
        if stored != TOKENIZER:
            raise RetrievalError(
                f"lexical index {path} was built with tokenizer {stored!r}, this version uses "
                f"{TOKENIZER!r}: delete the file and run `enclave docs reindex --lexical`"
            )

    def _db(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            try:
                db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                # How the tokenizer stems a query's words (for the BM25 ceiling): a scratch table
                # in this connection's own temp database, never in the index file.
                db.execute(f"CREATE VIRTUAL TABLE temp.query_words USING fts5(w, tokenize = '{TOKENIZER}')")
                db.execute(
                    "CREATE VIRTUAL TABLE temp.query_stems USING fts5vocab('temp', 'query_words', 'instance')"
                )
            except sqlite3.Error as exc:
                raise RetrievalError(f"lexical index {self.path} cannot be opened: {exc}") from exc
            self._local.db = db
        return db

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        db = self._db()
        try:
            db.execute("BEGIN IMMEDIATE")
            self._local.rows = None
            yield db
            db.execute("COMMIT")
        except BaseException as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise RetrievalError(f"lexical index {self.path}: {exc}") from exc
            raise

    def _info(self, key: str) -> str | None:
        row = self._db().execute("SELECT value FROM info WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None
            self._local.rows = None

    # -- writes --------------------------------------------------------------------------------

    def upsert(self, chunks: Sequence[Chunk]) -> None:
        """Add or replace chunks (by chunk id within their access class), in one transaction."""
        with self._write() as db:
            for chunk in chunks:
                cls = class_token(chunk.groups)
                db.execute(
                    "INSERT OR IGNORE INTO classes VALUES (?, ?)",
                    (cls, json.dumps(sorted(set(chunk.groups)))),
                )
                self._delete_rows(db, "chunk_id = ? AND cls = ?", (chunk.chunk_id, cls))
                cur = db.execute(
                    "INSERT INTO chunks (chunk_id, cls, doc_id, meta) VALUES (?, ?, ?, ?)",
                    (chunk.chunk_id, cls, chunk.doc_id, _meta(chunk)),
                )
                db.execute(
                    "INSERT INTO fts (rowid, title, body, cls) VALUES (?, ?, ?, ?)",
                    (cur.lastrowid, chunk.context, chunk.text, cls),
                )

    @staticmethod
    def _delete_rows(db: sqlite3.Connection, where: str, args: tuple[str, ...]) -> int:
        rowids = [r[0] for r in db.execute(f"SELECT rowid FROM chunks WHERE {where}", args)]
        for start in range(0, len(rowids), 500):
            part = rowids[start : start + 500]
            marks = ",".join("?" * len(part))
            db.execute(f"DELETE FROM fts WHERE rowid IN ({marks})", part)
            db.execute(f"DELETE FROM chunks WHERE rowid IN ({marks})", part)
        return len(rowids)

    def delete_document(self, doc_id: str, groups: Sequence[str]) -> int:
        """Remove a document's chunks from one access class; returns how many went."""
        with self._write() as db:
            return self._delete_rows(db, "doc_id = ? AND cls = ?", (doc_id, class_token(groups)))

    def move_document(self, doc_id: str, from_groups: Sequence[str], to_groups: Sequence[str]) -> int:
        """Copy a document's chunks into another access class (the caller deletes the old copy)."""
        rows = (
            self._db()
            .execute(
                "SELECT c.meta, f.body FROM chunks c JOIN fts f ON f.rowid = c.rowid "
                "WHERE c.doc_id = ? AND c.cls = ?",
                (doc_id, class_token(from_groups)),
            )
            .fetchall()
        )
        groups = tuple(sorted(set(to_groups)))
        chunks = [dataclasses.replace(_chunk(meta, text), groups=groups) for meta, text in rows]
        self.upsert(chunks)
        return len(chunks)

    # -- reads ---------------------------------------------------------------------------------

    def count(self) -> int:
        return int(self._db().execute("SELECT count(*) FROM chunks").fetchone()[0])

    def class_doc_counts(self) -> dict[tuple[str, str], int]:
        """(class token, doc_id) -> number of chunks held."""
        rows = self._db().execute("SELECT cls, doc_id, count(*) FROM chunks GROUP BY cls, doc_id")
        return {(str(c), str(d)): int(n) for c, d, n in rows}

    def document_ids(self) -> dict[str, int]:
        """doc_id -> number of chunks held, over all classes (for consistency checks)."""
        rows = self._db().execute("SELECT doc_id, count(*) FROM chunks GROUP BY doc_id")
        return {str(d): int(n) for d, n in rows}

    def access_classes(self) -> dict[str, tuple[str, ...]]:
        """Class token -> the groups of that access class."""
        rows = self._db().execute("SELECT cls, groups FROM classes")
        return {str(c): tuple(json.loads(g)) for c, g in rows}

    def _rows(self) -> int:
        """Rows in the index (bm25()'s N), recounted only after a write (data_version counts
        other connections' commits; this connection's own writes clear the cache)."""
        db = self._db()
        version = int(db.execute("PRAGMA data_version").fetchone()[0])
        cached = getattr(self._local, "rows", None)
        if cached is None or cached[0] != version:
            cached = (version, self.count())
            self._local.rows = cached
        return int(cached[1])

    def ceiling(self, query: str) -> float:
        """The BM25 score a row matching every word of `query` many times approaches
        (fusion.fts5_bm25_ceiling), for putting `search` scores on a [0, 1) scale; 0.0 when the
        query has no words. Statistics are the whole index's, as bm25() uses them."""
        terms = query_terms(query)
        if not terms:
            return 0.0
        db = self._db()
        try:
            db.execute("DELETE FROM temp.query_words")
            db.executemany("INSERT INTO temp.query_words (rowid, w) VALUES (?, ?)", list(enumerate(terms)))
            stems = [str(t) for (t,) in db.execute("SELECT term FROM temp.query_stems ORDER BY doc, offset")]
            freqs = []
            for stem in stems:
                row = db.execute("SELECT doc FROM fts_rows WHERE term = ?", (stem,)).fetchone()
                freqs.append(int(row[0]) if row else 0)
            n_rows = self._rows()
        except sqlite3.Error as exc:
            raise RetrievalError(f"lexical statistics in {self.path} could not be read: {exc}") from exc
        return fusion.fts5_bm25_ceiling([min(f, n_rows) for f in freqs], n_rows)

    def search(self, query: str, k: int, allowed_groups: Sequence[str]) -> list[Hit]:
        """The k best BM25 matches among the access classes that share a group with the user.
        Scores are FTS5's bm25 negated (higher is better; not comparable to cosines)."""
        allowed = set(allowed_groups)
        tokens = [c for c, groups in self.access_classes().items() if allowed.intersection(groups)]
        terms = query_terms(query)
        if not tokens or not terms or k <= 0:
            return []
        weights = ", ".join(str(w) for w in COLUMN_WEIGHTS)
        try:
            rows = (
                self._db()
                .execute(
                    f"SELECT c.meta, f.body, bm25(fts, {weights}) AS rank FROM fts f "
                    "JOIN chunks c ON c.rowid = f.rowid WHERE fts MATCH ? ORDER BY rank LIMIT ?",
                    (match_expression(terms, tokens), k),
                )
                .fetchall()
            )
        except sqlite3.Error as exc:
            raise RetrievalError(f"lexical search in {self.path} failed: {exc}") from exc
        return [
            Hit(chunk=_chunk(meta, text), score=-float(rank), lexical=-float(rank))
            for meta, text, rank in rows
        ]


__all__ = ["LexicalIndex", "class_token", "match_expression", "query_terms"]
