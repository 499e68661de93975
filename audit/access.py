"""What a user could read, and was shown, over a time range, told from the audit log alone
(`enclave audit access`; docs/audit-format.md, "Who held which groups, and what they could read").
`access_report` is pure over the records it is given; `read_access` gathers them from a log.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any, Protocol

from audit.query import ANSWER_EVENTS, CHECKPOINT_EVENT, RecordFilter
from audit.records import AuditRecord

# Records that say which role and groups a user holds from then on.
IDENTITY_EVENTS: tuple[str, ...] = ("sign_in", "identity_changed", "identity_revoked", "user_changed")
# Records that change what is in the index.
INDEX_EVENTS: tuple[str, ...] = ("ingest", "source_sync", "source_removed", "document_removed")
# What the user asked, and was shown.
SHOWN_EVENTS: tuple[str, ...] = (*ANSWER_EVENTS, "question_refused", "file_opened")


@dataclass(frozen=True)
class Readable:
    """A document the user could read from `start` to `end` (within one standing)."""

    doc_id: str
    label: str  # its title, else the path of a file that held it
    groups: tuple[str, ...]
    start: str
    end: str


@dataclass(frozen=True)
class Standing:
    """The role and groups a user held from `start` to `end`, as record `record_id` says.

    `groups` and `role` are None when no record says (`record_id` None: no record of the user
    before; else a sign-in record that did not name them). `revoked`: the directory no longer let
    the user in (`identity_revoked`): nothing is readable until the next sign-in. `documents` is
    None when the groups are unknown.
    """

    start: str
    end: str
    role: str | None
    groups: tuple[str, ...] | None
    backend: str | None
    record_id: int | None
    event: str | None
    since: str | None  # when that record was written (before `start` for the carried-in standing)
    revoked: bool = False
    documents: tuple[Readable, ...] | None = ()

    @property
    def known(self) -> bool:
        return self.groups is not None


@dataclass(frozen=True)
class ShownDocument:
    """A document cited in an answer, or opened: `readable` whether the log says the user could
    read it at that moment (None: their groups then are unknown)."""

    doc_id: str
    label: str
    readable: bool | None


@dataclass(frozen=True)
class Shown:
    """A question the user asked (answered, failed or refused), or a file they opened."""

    record_id: int
    ts: str
    event: str
    question: str
    error: str | None
    documents: tuple[ShownDocument, ...]


@dataclass(frozen=True)
class AccessReport:
    user: str
    start: str
    end: str
    standings: tuple[Standing, ...]
    shown: tuple[Shown, ...]
    notes: tuple[str, ...] = ()

    @property
    def unknown(self) -> bool:
        """Some of the range has no record of the user's groups."""
        return any(not s.known for s in self.standings)

    def readable(self) -> list[Readable]:
        """Each document readable at some moment of the range, once, by doc id (its first
        window's label and groups; `start`/`end` span all its windows)."""
        found: dict[str, Readable] = {}
        for standing in self.standings:
            for doc in standing.documents or ():
                seen = found.get(doc.doc_id)
                found[doc.doc_id] = (
                    doc
                    if seen is None
                    else Readable(
                        seen.doc_id,
                        seen.label,
                        seen.groups,
                        min(seen.start, doc.start),
                        max(seen.end, doc.end),
                    )
                )
        return sorted(found.values(), key=lambda d: (d.label, d.doc_id))

    def as_dict(self) -> dict[str, Any]:
        return {
            "user": self.user,
            "start": self.start,
            "end": self.end,
            "unknown": self.unknown,
            "standings": [{**asdict(s), "known": s.known} for s in self.standings],
            "readable": [asdict(d) for d in self.readable()],
            "shown": [asdict(s) for s in self.shown],
            "notes": list(self.notes),
        }


@dataclass
class _Identity:
    role: str | None = None
    groups: tuple[str, ...] | None = None
    backend: str | None = None
    record_id: int | None = None
    event: str | None = None
    since: str | None = None
    revoked: bool = False


@dataclass
class _Index:
    """The documents in the index: each file that holds one, and each document's groups and label."""

    files: dict[tuple[str, str], str] = field(default_factory=dict)  # (source, path) -> doc_id
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)

    def present(self) -> dict[str, tuple[str, ...]]:
        held = set(self.files.values())
        return {d: g for d, g in self.groups.items() if d in held}

    def label(self, doc_id: str) -> str:
        return self.labels.get(doc_id, doc_id)

    def apply(self, record: AuditRecord) -> None:
        data = record.data
        if record.event == "document_removed":
            doc_id = data.get("doc_id")
            if isinstance(doc_id, str):
                self._drop(doc_id)
                if isinstance(data.get("title"), str) and data["title"]:
                    self.labels[doc_id] = data["title"]
            return
        source = str(data.get("source") or "") if record.event != "ingest" else ""
        for row in _rows(data.get("removed")):
            path, doc_id = row.get("path"), row.get("doc_id")
            if isinstance(path, str):
                self.files.pop((source, path), None)
            if isinstance(doc_id, str) and row.get("document_removed") is True:
                self._drop(doc_id)
        for row in _rows(data.get("moved")):
            if isinstance(row.get("from"), str):
                self.files.pop((source, row["from"]), None)
        for key in ("added", "changed", "moved"):
            for row in _rows(data.get(key)):
                path, doc_id = row.get("path"), row.get("doc_id")
                if not isinstance(path, str) or not isinstance(doc_id, str):
                    continue
                self.files[(source, path)] = doc_id
                groups = row.get("groups")
                if isinstance(groups, list):
                    self.groups[doc_id] = tuple(sorted(str(g) for g in groups))
                else:
                    self.groups.setdefault(doc_id, ())
                self.labels.setdefault(doc_id, path)

    def _drop(self, doc_id: str) -> None:
        for key in [k for k, d in self.files.items() if d == doc_id]:
            del self.files[key]


def _rows(value: object) -> Iterator[Mapping[str, Any]]:
    if isinstance(value, list):
        yield from (row for row in value if isinstance(row, Mapping))


def _groups(value: object) -> tuple[str, ...] | None:
    return tuple(sorted({str(g) for g in value})) if isinstance(value, list) else None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _identity_of(record: AuditRecord, current: _Identity) -> _Identity | None:
    """The standing `record` starts, or None when it says nothing about one."""
    data = record.data
    role, backend = _text(data.get("role")), _text(data.get("backend"))
    if record.event == "identity_revoked":
        return _Identity(None, (), backend, record.id, record.event, record.ts, revoked=True)
    if record.event in IDENTITY_EVENTS:
        # A sign-in that does not name the groups (written before sign-ins did) leaves them unknown.
        return _Identity(role, _groups(data.get("groups")), backend, record.id, record.event, record.ts)
    if record.event in ANSWER_EVENTS and not record.error:
        groups = _groups(data.get("groups"))
        # An answer names the groups it was searched with: evidence of the standing at that
        # moment, a new standing only where it differs from (or makes known) the one in force.
        if groups is not None and (groups, role, False) != (current.groups, current.role, current.revoked):
            return _Identity(role, groups, current.backend, record.id, record.event, record.ts)
    return None


def _readable(identity: _Identity, groups: tuple[str, ...]) -> bool | None:
    if identity.groups is None:
        return None
    return not identity.revoked and bool(set(identity.groups) & set(groups))


def _shown(record: AuditRecord, identity: _Identity, index: _Index) -> Shown:
    data = record.data
    docs: dict[str, ShownDocument] = {}
    present = index.present()
    if record.event == "file_opened":
        cited: list[Mapping[str, Any]] = [data]
    else:
        cited = list(_rows(data.get("citations")))
    for row in cited:
        doc_id = row.get("doc_id")
        if not isinstance(doc_id, str) or doc_id in docs:
            continue
        label = row.get("title") or row.get("source") or index.label(doc_id)
        if doc_id in present:
            readable = _readable(identity, present[doc_id])
        else:
            readable = None if identity.groups is None else False
        docs[doc_id] = ShownDocument(doc_id, str(label), readable)
    return Shown(record.id, record.ts, record.event, record.question, record.error, tuple(docs.values()))


class _Standings:
    """Builds the standings and their readable documents while the records are replayed."""

    def __init__(self, start: str) -> None:
        self.done: list[Standing] = []
        self.open_from = start
        self.windows: dict[str, str] = {}  # doc_id -> readable since
        self.pieces: list[Readable] = []  # the windows closed in the standing in force

    def update_windows(self, identity: _Identity, index: _Index, at: str) -> None:
        present = index.present()
        readable = {d for d, g in present.items() if _readable(identity, g)}
        for doc_id in [d for d in self.windows if d not in readable]:
            self._close(doc_id, at, index)
        for doc_id in readable:
            self.windows.setdefault(doc_id, at)

    def _close(self, doc_id: str, at: str, index: _Index) -> None:
        since = self.windows.pop(doc_id)
        if since < at:
            self.pieces.append(Readable(doc_id, index.label(doc_id), index.groups.get(doc_id, ()), since, at))

    def end(self, identity: _Identity, index: _Index, at: str) -> None:
        """The standing in force ends at `at`."""
        for doc_id in list(self.windows):
            self._close(doc_id, at, index)
        if self.open_from < at:
            documents = (
                None
                if identity.groups is None
                else tuple(sorted(self.pieces, key=lambda d: (d.start, d.label)))
            )
            self.done.append(
                Standing(
                    self.open_from,
                    at,
                    identity.role,
                    identity.groups,
                    identity.backend,
                    identity.record_id,
                    identity.event,
                    identity.since,
                    identity.revoked,
                    documents,
                )
            )
        self.pieces.clear()
        self.open_from = at


def access_report(records: Iterable[AuditRecord], user: str, start: str, end: str) -> AccessReport:
    """What `user` could read and was shown from `start` to `end` (stored-form ISO times, `end`
    exclusive). `records`: oldest first; those of other users are used only for the index, and
    records from `end` on are ignored."""
    identity = _Identity()
    index = _Index()
    standings = _Standings(start)
    shown: list[Shown] = []
    purged: AuditRecord | None = None
    started = False
    for record in records:
        if record.ts >= end:
            break
        if record.event == CHECKPOINT_EVENT:
            purged = record
            continue
        if not started and record.ts >= start:
            started = True
            standings.update_windows(identity, index, start)
        at = max(record.ts, start)
        if record.event in INDEX_EVENTS:
            index.apply(record)
            if started:
                standings.update_windows(identity, index, at)
            continue
        if record.user != user:
            continue
        changed = _identity_of(record, identity)
        if changed is not None:
            if started:
                standings.end(identity, index, at)
            identity = changed
            if started:
                standings.update_windows(identity, index, at)
        if started and record.event in SHOWN_EVENTS:
            shown.append(_shown(record, identity, index))
    if not started:
        standings.update_windows(identity, index, start)
    standings.end(identity, index, end)
    notes: list[str] = []
    if any(not s.known for s in standings.done):
        notes.append(
            "no record names the user's groups for part of the range (sign-ins before sign-in records "
            "named them, or no sign-in at all): what they could read then is unknown"
        )
    if purged is not None:
        notes.append(
            f"records up to #{purged.data.get('purged_through')} were removed by a retention purge "
            f"(checkpoint #{purged.id}): documents ingested and groups granted before then are not "
            "in this account, which may leave out some that were readable"
        )
    if any(d.readable is False for s in shown for d in s.documents):
        notes.append("a document shown was not readable with the groups the log records for that moment")
    return AccessReport(user, start, end, tuple(standings.done), tuple(shown), tuple(notes))


class RecordSource(Protocol):
    """What `read_access` needs of a log (`AuditLog`, `PostgresAuditLog`)."""

    def iter_select(
        self, query: RecordFilter, *, limit: int | None = ..., offset: int = ..., oldest_first: bool = ...
    ) -> Iterator[AuditRecord]: ...

    def count(self, query: RecordFilter) -> int: ...


def day_range(day: str, name: str = "day") -> RecordFilter:
    """The range of one UTC day given as YYYY-MM-DD; ValueError naming `name` and the input else."""
    text = day.strip() if isinstance(day, str) else ""
    try:
        parsed = date.fromisoformat(text) if len(text) == 10 else None
    except ValueError:
        parsed = None
    if parsed is None:
        raise ValueError(f"{name}: {day!r} is not a date; use YYYY-MM-DD (UTC), e.g. 2025-01-31")
    return RecordFilter.of(since=parsed, until=parsed)


def read_access(log: RecordSource, user: str, query: RecordFilter) -> AccessReport:
    """`access_report` over `log` for `user` in the range of `query` (`RecordFilter.of(since=...,
    until=...)`, both required). ValueError names a user no record names, or a missing bound."""
    since, before = query.since, query.before
    if since is None or before is None:
        raise ValueError("the range needs a start and an end (a day, or since and until)")
    if log.count(RecordFilter(user=user)) == 0:
        raise ValueError(
            f"user {user!r}: no audit record names this user; check the name (`enclave users list`)"
        )
    records = [
        *log.iter_select(RecordFilter(before=before, events=(*INDEX_EVENTS, CHECKPOINT_EVENT))),
        *log.iter_select(RecordFilter(user=user, before=before, events=IDENTITY_EVENTS)),
        # The newest answer before the range: the groups it was searched with may be all that
        # an old log says of the standing carried in.
        *log.iter_select(RecordFilter(user=user, before=since, events=("answer",), has_error=False), limit=1),
        *log.iter_select(RecordFilter(user=user, since=since, before=before, events=SHOWN_EVENTS)),
    ]
    return access_report(sorted(records, key=lambda r: r.id), user, since, before)


__all__: Sequence[str] = [
    "IDENTITY_EVENTS",
    "INDEX_EVENTS",
    "SHOWN_EVENTS",
    "AccessReport",
    "Readable",
    "Shown",
    "ShownDocument",
    "Standing",
    "access_report",
    "day_range",
    "read_access",
]
