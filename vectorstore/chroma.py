"""Chunks in Chroma, one collection per access class.

An access class is the exact set of groups a document carries. Each class has its own
collection, so a search for a user only touches the classes the user may read: no `where`
filter scans the whole store, and nothing is filtered after the search (measured at 1M chunks:
a `where` group filter costs 0.2-1.6 s, per-class collections ~9 ms p95). A document lives in
exactly one class, so it is stored once and deleted from one place.

Chroma types stay inside this module. We always pass our own embeddings: Chroma's default
embedding function would download a model.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import fcntl
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from core.errors import RetrievalError
from core.types import Chunk, Hit

log = logging.getLogger(__name__)

_GROUPS_KEY = "enclave_groups"
_ADD_BATCH = 2000  # below Chroma's max batch size on every backend


def class_key(groups: Iterable[str]) -> tuple[str, ...]:
    key = tuple(sorted({g for g in groups if g}))
    if not key:
        raise ValueError("a document needs at least one group")
    return key


def collection_name(prefix: str, groups: Iterable[str]) -> str:
    digest = hashlib.sha256("\x1f".join(class_key(groups)).encode()).hexdigest()[:20]
    return f"{prefix}_acl_{digest}"


def _metadata(chunk: Chunk) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "doc_id": chunk.doc_id,
        "source": chunk.source,
        "title": chunk.title,
        "section": chunk.section,
        "index": chunk.index,
        "groups": json.dumps(list(chunk.groups)),
    }
    if chunk.page is not None:
        meta["page"] = chunk.page
    return meta


def _chunk(chunk_id: str, text: str, meta: dict[str, Any]) -> Chunk:
    return Chunk(
        chunk_id=chunk_id,
        doc_id=str(meta["doc_id"]),
        text=text,
        source=str(meta["source"]),
        groups=tuple(json.loads(meta["groups"])),
        index=int(meta.get("index", 0)),
        title=str(meta.get("title", "")),
        section=str(meta.get("section", "")),
        page=int(meta["page"]) if meta.get("page") is not None else None,
    )


class StoreInUse(RetrievalError):
    """An embedded store that another process (the web UI) holds for itself."""

    def __init__(self, message: str, owner: dict[str, Any]) -> None:
        super().__init__(message)
        self.owner = owner


# Embedded Chroma is safe for one process only: a second process reading the same folder sees
# stale vectors (each process caches the HNSW index) and, reading while the first writes, can
# damage it. One lock file beside the folder, <folder>.owner.lock, keeps processes apart:
# - the long-running process (`enclave serve`) claims the folder for its lifetime with an
#   exclusive lock (`claim_embedded`);
# - a command-line command holds it for the command's duration (`store_session`): exclusive to
#   write (ingest, remove, reindex), shared to read (ask). Readers run side by side; a writer waits
#   a while for readers to finish, then gives up; a reader beside a writer is refused at once.
# The exclusive holder writes who it is into the file, so those it refuses can name it.
_claims: dict[str, Any] = {}  # folder -> the open, locked owner file of this process
_sessions: dict[str, int] = {}  # folder -> how many `store_session` blocks of this process hold it
READERS_WAIT_S = 30.0  # how long a writer waits for readers (an `enclave ask` takes seconds)


def _owner_file(path: Path) -> Path:
    return path.parent / f"{path.name}.owner.lock"


def _owner(lock_path: Path) -> dict[str, Any]:
    try:
        data = json.loads(lock_path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        data = {}
    return data if isinstance(data, dict) else {}


def _in_use(path: Path, owner: dict[str, Any]) -> StoreInUse:
    who = f"`{owner.get('role', 'another Enclave process')}` (pid {owner.get('pid', '?')}, since {owner.get('since', '?')})"
    role = str(owner.get("role", ""))
    if role in ("enclave serve", "enclave demo") or not role:
        advice = (
            "While the web UI runs, it carries out `enclave ingest` and `enclave docs remove|reindex` "
            "itself (the command line hands them to it over its admin channel) and answers questions "
            "in the browser; for anything else stop the web UI first, or run Chroma as a server "
            "(store.mode: http; docs/deploy.md) so that the web UI and the command line can share it"
        )
    else:  # a command-line command that writes (an ingest): it ends by itself
        advice = (
            "Try again when it has finished, or run Chroma as a server (store.mode: http; "
            "docs/deploy.md) so that several processes can share it"
        )
    return StoreInUse(
        f"the embedded Chroma store {path} is in use by {who}. Embedded Chroma is safe for one "
        f"process only: another would read stale vectors and could damage the store. {advice}",
        owner,
    )


def _read_by_others(path: Path, waited_s: float) -> StoreInUse:
    return StoreInUse(
        f"the embedded Chroma store {path} is being read by another Enclave command (such as "
        f"`enclave ask`) and did not come free within {waited_s:.0f} s. Embedded Chroma is safe "
        "for one process only while it is written: try again when it has finished, or run Chroma as "
        "a server (store.mode: http; docs/deploy.md)",
        {"role": "a reader"},
    )


def _held_by_readers(lock_path: Path) -> bool:
    """Whether an exclusive lock just refused was refused by readers only (no writer or owner)."""
    with lock_path.open("r", encoding="utf-8") as probe:
        try:
            fcntl.flock(probe, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
    return True


def _lock_exclusive(path: Path, lock_path: Path, role: str, readers_wait_s: float) -> Any:
    """The owner file, locked exclusively and naming this process. StoreInUse when another process
    holds it exclusively for longer than a brief check would (2 s), or readers hold it for longer
    than `readers_wait_s`."""
    handle = lock_path.open("a+", encoding="utf-8")
    started = time.monotonic()
    told = False
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            readers = _held_by_readers(lock_path)
            waited = time.monotonic() - started
            if waited >= (readers_wait_s if readers else 2.0):
                handle.close()
                refusal = _read_by_others(path, waited) if readers else _in_use(path, _owner(lock_path))
                raise refusal from None
            if readers and not told:
                log.warning(
                    "waiting up to %.0f s for other Enclave commands that read %s to finish",
                    readers_wait_s,
                    path,
                )
                told = True
            time.sleep(0.2)
    handle.seek(0)
    handle.truncate()
    since = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    handle.write(json.dumps({"pid": os.getpid(), "role": role, "since": since}))
    handle.flush()
    return handle


def claim_embedded(path: Path, role: str, readers_wait_s: float = READERS_WAIT_S) -> None:
    """Make this process the only one that may open the embedded store at `path`, until it exits.
    Raises StoreInUse, naming the holder, when another process holds it."""
    path = Path(path).resolve()
    if str(path) in _claims:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    _claims[str(path)] = _lock_exclusive(path, _owner_file(path), role, readers_wait_s)


@contextmanager
def store_session(path: Path, role: str, write: bool, readers_wait_s: float | None = None) -> Iterator[None]:
    """Hold the embedded store at `path` while the block runs: exclusively to write, shared to
    read. A reader beside a writer or owner, and a writer beside an owner, raise StoreInUse naming
    it; a writer waits up to `readers_wait_s` (default READERS_WAIT_S) for readers to finish.
    Inside a process that already holds the store (the web UI, an enclosing session) it adds nothing."""
    path = Path(path).resolve()
    key = str(path)
    if key in _claims or key in _sessions:
        _sessions[key] = _sessions.get(key, 0) + 1
        try:
            yield
        finally:
            _sessions[key] -= 1
            if not _sessions[key]:
                del _sessions[key]
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    lock_path = _owner_file(path)
    if write:
        wait = READERS_WAIT_S if readers_wait_s is None else readers_wait_s
        handle = _lock_exclusive(path, lock_path, role, wait)
    else:
        handle = lock_path.open("a+", encoding="utf-8")
        for attempt in range(10):  # another process's brief check holds it exclusively for microseconds
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if attempt == 9:
                    handle.close()
                    raise _in_use(path, _owner(lock_path)) from None
                time.sleep(0.2)
    _sessions[key] = 1
    try:
        yield
    finally:
        del _sessions[key]
        handle.close()  # releases the lock


def check_not_claimed(path: Path) -> None:
    """Raise StoreInUse when another process holds the embedded store at `path` exclusively."""
    path = Path(path).resolve()
    lock_path = _owner_file(path)
    if str(path) in _claims or str(path) in _sessions or not lock_path.exists():
        return
    with lock_path.open("r", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _in_use(path, _owner(lock_path)) from None


class ChromaStore:
    """Stores chunks with their embeddings and searches them within a user's groups."""

    def __init__(self, client: Any, prefix: str = "enclave", location: str = "") -> None:
        self._client = client
        self.prefix = prefix
        self.location = location
        self._collections: dict[str, Any] = {}
        self._lock = threading.Lock()

    @classmethod
    def embedded(cls, path: Path, prefix: str = "enclave") -> ChromaStore:
        import chromadb
        from chromadb.config import Settings as ChromaSettings

        check_not_claimed(path)
        path.mkdir(parents=True, exist_ok=True)
        client = chromadb.PersistentClient(
            path=str(path), settings=ChromaSettings(anonymized_telemetry=False, allow_reset=False)
        )
        return cls(client, prefix, location=str(path))

    @classmethod
    def http(cls, host: str, port: int, prefix: str = "enclave") -> ChromaStore:
        import chromadb
        from chromadb.config import Settings as ChromaSettings

        try:
            client = chromadb.HttpClient(
                host=host, port=port, settings=ChromaSettings(anonymized_telemetry=False)
            )
        except Exception as exc:
            raise RetrievalError(f"Chroma server at {host}:{port} is not reachable: {exc}") from exc
        return cls(client, prefix, location=f"http://{host}:{port}")

    # -- collections -------------------------------------------------------------------------

    def _collection(self, groups: Iterable[str], create: bool) -> Any | None:
        key = class_key(groups)
        name = collection_name(self.prefix, key)
        with self._lock:
            if name in self._collections:
                return self._collections[name]
            try:
                if create:
                    col = self._client.get_or_create_collection(
                        name=name,
                        metadata={_GROUPS_KEY: json.dumps(list(key))},
                        configuration={"hnsw": {"space": "cosine"}},
                        embedding_function=None,
                    )
                else:
                    col = self._client.get_collection(name=name, embedding_function=None)
            except Exception as exc:  # chromadb raises NotFoundError or ValueError by version
                message = str(exc).lower()
                if not create and ("not exist" in message or "not found" in message):
                    return None
                raise RetrievalError(f"Chroma collection {name} failed: {exc}") from exc
            self._collections[name] = col
            return col

    def access_classes(self) -> dict[str, tuple[str, ...]]:
        """Collection name -> the groups of that access class, for this store's prefix."""
        try:
            listed = self._client.list_collections()
        except Exception as exc:
            raise RetrievalError(f"Chroma at {self.location} failed to list collections: {exc}") from exc
        classes: dict[str, tuple[str, ...]] = {}
        for col in listed:
            meta = getattr(col, "metadata", None) or {}
            if col.name.startswith(f"{self.prefix}_acl_") and _GROUPS_KEY in meta:
                classes[col.name] = tuple(json.loads(meta[_GROUPS_KEY]))
        return classes

    # -- writes --------------------------------------------------------------------------------

    def upsert(self, chunks: Sequence[Chunk], embeddings: Sequence[Sequence[float]]) -> None:
        """Add or replace chunks (by chunk id). All chunks of one call may span classes."""
        if len(chunks) != len(embeddings):
            raise ValueError("one embedding per chunk")
        by_class: dict[tuple[str, ...], list[int]] = {}
        for i, chunk in enumerate(chunks):
            by_class.setdefault(class_key(chunk.groups), []).append(i)
        for groups, indices in by_class.items():
            col = self._collection(groups, create=True)
            assert col is not None  # create=True never answers None
            for start in range(0, len(indices), _ADD_BATCH):
                part = indices[start : start + _ADD_BATCH]
                try:
                    col.upsert(
                        ids=[chunks[i].chunk_id for i in part],
                        embeddings=[list(embeddings[i]) for i in part],
                        documents=[chunks[i].text for i in part],
                        metadatas=[_metadata(chunks[i]) for i in part],
                    )
                except Exception as exc:
                    raise RetrievalError(f"Chroma upsert into {col.name} failed: {exc}") from exc

    def delete_document(self, doc_id: str, groups: Sequence[str]) -> int:
        """Remove every chunk of a document from one access class; returns how many went.

        Chroma's metadata index answers `doc_id` equality without scanning the vectors, and only
        the document's own access class is touched."""
        col = self._collection(groups, create=False)
        if col is None:
            return 0
        try:
            ids = list(col.get(where={"doc_id": doc_id}, include=[])["ids"])
            for start in range(0, len(ids), _ADD_BATCH):
                col.delete(ids=ids[start : start + _ADD_BATCH])
        except Exception as exc:
            raise RetrievalError(f"Chroma delete of document {doc_id} failed: {exc}") from exc
        return len(ids)

    def move_document(self, doc_id: str, from_groups: Sequence[str], to_groups: Sequence[str]) -> int:
        """Copy a document's chunks, with their embeddings, into another access class (the old
        copy is left for the caller to delete once the move is recorded). No re-embedding."""
        source = self._collection(from_groups, create=False)
        if source is None:
            return 0
        try:
            got = source.get(where={"doc_id": doc_id}, include=["documents", "metadatas", "embeddings"])
        except Exception as exc:
            raise RetrievalError(f"Chroma read of document {doc_id} failed: {exc}") from exc
        groups = class_key(to_groups)
        chunks = [
            dataclasses.replace(_chunk(cid, text, meta), groups=groups)
            for cid, text, meta in zip(got["ids"], got["documents"], got["metadatas"])
        ]
        self.upsert(chunks, [list(map(float, e)) for e in got["embeddings"]])
        return len(chunks)

    def count(self) -> int:
        total = 0
        for groups in self.access_classes().values():
            col = self._collection(groups, create=False)
            total += col.count() if col is not None else 0
        return total

    def document_ids(self) -> dict[str, int]:
        """doc_id -> number of chunks stored, over all classes (for consistency checks)."""
        counts: dict[str, int] = {}
        for groups in self.access_classes().values():
            col = self._collection(groups, create=False)
            if col is None:
                continue
            got = col.get(include=["metadatas"])
            for meta in got["metadatas"] or []:
                doc = str(meta["doc_id"])
                counts[doc] = counts.get(doc, 0) + 1
        return counts

    def class_doc_counts(self) -> dict[tuple[tuple[str, ...], str], int]:
        """(access class groups, doc_id) -> number of chunks stored there."""
        counts: dict[tuple[tuple[str, ...], str], int] = {}
        for groups in self.access_classes().values():
            col = self._collection(groups, create=False)
            if col is None:
                continue
            for meta in col.get(include=["metadatas"])["metadatas"] or []:
                key = (groups, str(meta["doc_id"]))
                counts[key] = counts.get(key, 0) + 1
        return counts

    def documents_in_class(
        self, groups: Sequence[str], doc_ids: Iterable[str]
    ) -> Iterable[tuple[str, list[Chunk]]]:
        """Each requested document's chunks (text and metadata, no embeddings) in one class."""
        col = self._collection(groups, create=False)
        if col is None:
            return
        for doc_id in sorted(doc_ids):
            try:
                got = col.get(where={"doc_id": doc_id}, include=["documents", "metadatas"])
            except Exception as exc:
                raise RetrievalError(f"Chroma read of document {doc_id} failed: {exc}") from exc
            chunks = [
                _chunk(cid, text, meta)
                for cid, text, meta in zip(got["ids"], got["documents"], got["metadatas"])
            ]
            yield doc_id, sorted(chunks, key=lambda c: c.index)

    def document_embeddings(self, doc_id: str, groups: Sequence[str]) -> list[tuple[Chunk, list[float]]]:
        """A document's chunks in one access class, each with its stored embedding (in chunk
        order): what an edited version of the document can reuse instead of embedding again."""
        col = self._collection(groups, create=False)
        if col is None:
            return []
        try:
            got = col.get(where={"doc_id": doc_id}, include=["documents", "metadatas", "embeddings"])
        except Exception as exc:
            raise RetrievalError(f"Chroma read of document {doc_id} failed: {exc}") from exc
        pairs = [
            (_chunk(cid, text, meta), [float(x) for x in vector])
            for cid, text, meta, vector in zip(
                got["ids"], got["documents"], got["metadatas"], got["embeddings"]
            )
        ]
        return sorted(pairs, key=lambda pair: pair[0].index)

    def embeddings(self, chunks: Sequence[Chunk]) -> dict[str, list[float]]:
        """chunk_id -> stored embedding, for chunks found by another retriever."""
        by_class: dict[tuple[str, ...], list[str]] = {}
        for chunk in chunks:
            by_class.setdefault(class_key(chunk.groups), []).append(chunk.chunk_id)
        vectors: dict[str, list[float]] = {}
        for groups, ids in by_class.items():
            col = self._collection(groups, create=False)
            if col is None:
                continue
            try:
                got = col.get(ids=ids, include=["embeddings"])
            except Exception as exc:
                raise RetrievalError(f"Chroma read of embeddings from {col.name} failed: {exc}") from exc
            for cid, vector in zip(got["ids"], got["embeddings"]):
                vectors[str(cid)] = [float(x) for x in vector]
        return vectors

    # -- search --------------------------------------------------------------------------------

    def search(self, query_embedding: Sequence[float], k: int, allowed_groups: Sequence[str]) -> list[Hit]:
        """The k nearest chunks among the access classes that share a group with the user."""
        allowed = set(allowed_groups)
        if not allowed:
            return []
        hits: list[Hit] = []
        for groups in self.access_classes().values():
            if not allowed.intersection(groups):
                continue
            col = self._collection(groups, create=False)
            if col is None:
                continue
            try:
                res = col.query(
                    query_embeddings=[list(query_embedding)],
                    n_results=k,
                    include=["documents", "metadatas", "distances"],
                )
            except Exception as exc:
                raise RetrievalError(f"Chroma query on {col.name} failed: {exc}") from exc
            for cid, text, meta, dist in zip(
                res["ids"][0], res["documents"][0], res["metadatas"][0], res["distances"][0]
            ):
                hits.append(
                    Hit(chunk=_chunk(cid, text, meta), score=1.0 - float(dist), cosine=1.0 - float(dist))
                )
        hits.sort(key=lambda h: h.score, reverse=True)
        return hits[:k]
