"""A local mirror folder of a source, kept in step by the source's own change markers, which the
ingest pipeline then takes like any folder (docs/sources.md).

`sync_mirror` lists the source, fetches only the entries whose marker changed, takes a renamed or
moved entry (same identity) from the mirror's own copy instead of the network, removes what the
source no longer lists, and records each entry's marker in a state file. Every copy is dated
from its marker, so the pipeline's size-and-mtime check sees exactly the entries that changed.

Deletions and outages are told apart: when the listing fails (SourceUnavailable) or lists fewer
than `min_ratio` of the entries of the last sync (SourceShrank), nothing is removed and neither
the mirror nor its state changes. Writes are atomic: an entry is fetched into a hidden staging
folder inside the mirror (the ingest walk skips hidden names), checked against its listed size,
and renamed into place only once every fetch of the sync has succeeded; the state file is
replaced last. Entries fetched by a sync that then failed stay staged, and the next sync takes
them without fetching again. One entry that cannot be read (IngestError from the connector) is
reported as failed and keeps its previous copy.

A connector that allows it (LocalConnector's `hard_links`, for an upload source) has its files
hard-linked into the mirror instead of copied, each keeping its own mtime.

With a GroupMap (`groups: from-source`), each entry's readers at the source become its Enclave
groups, kept in the state beside its marker: a change of permissions alone changes no marker and
fetches nothing, but is `regrouped`, and `mirror_groups` gives the ingest each file's groups. An
entry no Enclave group may read is left out (skipped, so its copy and document go); readers
that map to no group are listed once in `unmapped`.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import shutil
import stat
import tempfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO, cast

from core.errors import IngestError, SourceShrank
from ingest.pipeline import exclusive
from ingest.sources.base import Connector, Entry, Selection
from ingest.sources.local import LocalConnector
from ingest.sources.permissions import DENIED, GroupMap

log = logging.getLogger(__name__)

STATE_FORMAT = 1
STAGING = ".enclave-staging"  # inside the mirror: same filesystem, so a rename is atomic
_NS = 1_000_000_000


@dataclass
class MirrorResult:
    """What a sync did; paths are relative to the mirror folder (and to the source)."""

    location: str
    listed: int = 0  # entries the selection kept
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    moved: list[tuple[str, str]] = field(default_factory=list)  # (from, to): taken from the mirror
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason): left out
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, reason): previous copy kept
    regrouped: list[str] = field(default_factory=list)  # same bytes, new groups: nothing fetched
    unmapped: list[str] = field(default_factory=list)  # readers at the source mapped to no group
    bytes_fetched: int = 0

    def summary(self) -> str:
        counts = ", ".join(
            f"{len(getattr(self, name))} {name}"
            for name in ("added", "changed", "moved", "removed", "unchanged", "skipped", "failed")
        )
        if self.regrouped:
            counts += f"; {len(self.regrouped)} with new permissions"
        unmapped = (
            f"; readers mapped to no group (add them to the group mapping file): {', '.join(self.unmapped)}"
            if self.unmapped
            else ""
        )
        return (
            f"{self.location}: {self.listed} listed; {counts}; {self.bytes_fetched} bytes fetched{unmapped}"
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Held:
    """A mirrored entry as the state file records it: the source's marker and identity, the
    size and mtime of the copy written (a copy that no longer has them is fetched again), and
    its Enclave groups from the source's permissions (None: not asked)."""

    marker: str
    size: int
    identity: str | None
    mtime_ns: int
    groups: list[str] | None = None


@dataclass
class _State:
    listed: int = 0
    entries: dict[str, _Held] = field(default_factory=dict)


def mirror_mtime_ns(entry: Entry) -> int:
    """The mtime a copy gets: the source's time to the second, and nanoseconds drawn from the
    marker, so that a new marker always gives the copy a new mtime (ETags and UIDs change within
    a second, a size may stay the same) and the same marker always the same one."""
    seconds = (entry.modified_ns // _NS) * _NS if entry.modified_ns is not None else 0
    return seconds + int.from_bytes(hashlib.sha256(entry.marker.encode()).digest()[:8], "big") % _NS


def _load_state(path: Path) -> _State:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return _State()
    except (OSError, ValueError) as exc:
        raise IngestError(
            f"source state file {path} cannot be read ({exc}); move it away to mirror the source afresh"
        ) from exc
    if data.get("format") != STATE_FORMAT:
        raise IngestError(f"source state file {path}: format {data.get('format')!r}, expected {STATE_FORMAT}")
    entries = {path: _Held(**held) for path, held in data["entries"].items()}
    return _State(int(data["listed"]), entries)


def mirror_groups(state_path: Path) -> dict[str, tuple[str, ...]]:
    """Each mirrored path's Enclave groups from the source's permissions, as the last sync kept
    them (paths relative to the mirror); paths mirrored without permissions are not in it."""
    return {
        path: tuple(held.groups)
        for path, held in _load_state(Path(state_path)).entries.items()
        if held.groups is not None
    }


def mirror_location(state_path: Path) -> str | None:
    """The location of the source the last sync mirrored (its connector's, with no secret in it),
    or None before the first sync. A mirrored path is the entry's own path at that location, so
    the two say where each document lives at the source (base.shown_location)."""
    try:
        data = json.loads(Path(state_path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise IngestError(f"source state file {state_path} cannot be read ({exc})") from exc
    location = data.get("location") if isinstance(data, dict) else None
    return location if isinstance(location, str) else None


def write_atomically(path: Path, data: bytes, mode: int = 0o600) -> None:
    """`path` holds `data`, or what it held before: written aside, synced, renamed over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _save_state(path: Path, location: str, state: _State) -> None:
    data = {
        "format": STATE_FORMAT,
        "location": location,
        "listed": state.listed,
        "entries": {p: asdict(h) for p, h in sorted(state.entries.items())},
    }
    write_atomically(path, json.dumps(data, indent=0).encode())


class _LocalWriteError(Exception):
    """Writing the mirror failed (a full disk): kept apart from the source's own OSErrors, which
    a connector turns into SourceUnavailable, by not being an OSError."""


class _Sink(io.RawIOBase):
    """The file a connector writes an entry into: counts the bytes, and reports a failure to
    write it as the mirror's, not the source's."""

    def __init__(self, fh: BinaryIO) -> None:
        self._fh = fh
        self.written = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        try:
            n = self._fh.write(data)
        except OSError as exc:
            raise _LocalWriteError(str(exc)) from exc
        self.written += n
        return n


def _intact(copy: Path, held: _Held) -> bool:
    """The mirror's copy is still the one this sync's predecessor wrote."""
    try:
        st = copy.stat()
    except OSError:
        return False
    return st.st_size == held.size and st.st_mtime_ns == held.mtime_ns


def _prune_empty_parents(path: Path, top: Path) -> None:
    for parent in path.parents:
        if parent == top or top not in parent.parents:
            return
        try:
            parent.rmdir()
        except OSError:
            return


@dataclass
class _Staged:
    entry: Entry
    file: Path
    held: _Held
    moved_from: str | None = None


def sync_mirror(
    connector: Connector,
    folder: Path,
    state_path: Path,
    *,
    min_ratio: float,
    selection: Selection = Selection(),
    group_map: GroupMap | None = None,
) -> MirrorResult:
    """Bring `folder` in step with the source; `state_path` (beside the folder, not in it) keeps
    what the last sync mirrored; `group_map` gives each entry its groups from its readers (the
    connector must list them). Raises SourceUnavailable or SourceShrank having changed nothing;
    IngestError when the mirror itself cannot be written or another sync of it runs."""
    if not 0.0 <= min_ratio <= 1.0:
        raise ValueError(f"min_ratio must be between 0 and 1, not {min_ratio}")
    folder = Path(folder)
    state_path = Path(state_path)
    folder.mkdir(parents=True, exist_ok=True)
    lock = state_path.with_name(state_path.name + ".lock")
    with exclusive(lock, busy=f"another sync of {connector.location} is running"):
        state = _load_state(state_path)
        entries, skipped = selection.apply(connector.list())
        entries, twice = _unique(entries)
        unmapped: list[str] = []
        unreadable: list[tuple[str, str]] = []
        if group_map is not None:
            entries, unreadable, unmapped = _grouped(connector, entries, group_map)
            skipped += unreadable
        # Files the source lists but no group may read are no sign of an outage: a revocation of
        # many files at once must reach the index, not be refused as a shrunk listing.
        counted = len(entries) + len(unreadable)
        result = MirrorResult(
            connector.location, listed=len(entries), skipped=skipped + twice, unmapped=unmapped
        )
        if unmapped:
            log.warning(
                "%s: readers mapped to no Enclave group (add them to the group mapping file): %s",
                connector.location,
                ", ".join(unmapped),
            )
        if state.listed and counted < min_ratio * state.listed:
            raise SourceShrank(
                f"{connector.location} lists {counted} files where it listed {state.listed} at the "
                f"last sync, under {min_ratio:.0%} of them: taken for an outage, so nothing was removed "
                "and the mirror is as it was. If the files were really deleted, sync once with the "
                "ratio check off (min_ratio 0)",
                before=state.listed,
                now=counted,
            )
        staged, kept = _stage(connector, folder, state, entries, result)
        _commit(folder, state, entries, staged, kept, result)
        _save_state(state_path, connector.location, _State(counted, kept))
        shutil.rmtree(folder / STAGING, ignore_errors=True)
    log.info("%s", result.summary())
    return result


def _grouped(
    connector: Connector, entries: list[Entry], group_map: GroupMap
) -> tuple[list[Entry], list[tuple[str, str]], list[str]]:
    """The entries with their Enclave groups; those no group may read, as skipped with why; and
    every reader that maps to no group, once."""
    kept: list[Entry] = []
    skipped: list[tuple[str, str]] = []
    unmapped: set[str] = set()
    for entry in entries:
        if entry.readers is None:
            raise IngestError(
                f"{connector.location}: the {connector.kind} connector did not list permissions for "
                f"{entry.path}; groups: from-source cannot be used with it"
            )
        groups, missing = group_map.groups(entry.readers)
        unmapped.update(missing)
        if groups:
            kept.append(replace(entry, groups=groups))
        elif denied := [r.removeprefix(DENIED) for r in entry.readers if r.startswith(DENIED)]:
            skipped.append(
                (
                    entry.path,
                    f"its permissions deny reading to {', '.join(denied)} while letting others read: "
                    "Enclave's groups cannot keep it from those of them who hold another group, so no "
                    "group gets it (drop the deny, or the allow that covers them)",
                )
            )
        else:
            readers = ", ".join(entry.readers) or "none"
            skipped.append(
                (entry.path, f"no Enclave group may read it at the source (its readers: {readers})")
            )
    return kept, skipped, sorted(unmapped)


def _unique(entries: list[Entry]) -> tuple[list[Entry], list[tuple[str, str]]]:
    seen: set[str] = set()
    unique: list[Entry] = []
    twice: list[tuple[str, str]] = []
    for entry in entries:
        if entry.path in seen:
            twice.append((entry.path, "listed twice by the source; the first kept"))
        else:
            seen.add(entry.path)
            unique.append(entry)
    return unique, twice


def _stage(
    connector: Connector, folder: Path, state: _State, entries: list[Entry], result: MirrorResult
) -> tuple[list[_Staged], dict[str, _Held]]:
    """Fetch or copy into the staging folder every entry that is not already mirrored as listed.
    Returns what to place, and the state records of entries left as they are."""
    staging = folder / STAGING
    staging.mkdir(exist_ok=True)
    listed = {e.path for e in entries}
    by_identity: dict[str, list[str]] = {}
    for path, held in state.entries.items():
        if held.identity is not None:
            by_identity.setdefault(held.identity, []).append(path)
    moved_away: set[str] = set()  # vanished paths already taken by a move
    kept: dict[str, _Held] = {}
    staged: list[_Staged] = []
    for entry in entries:
        previous = state.entries.get(entry.path)
        groups = list(entry.groups) if entry.groups is not None else None
        regrouped = previous is not None and previous.groups != groups
        if previous is not None and regrouped:
            # Permissions are the source's now, whatever becomes of the bytes: a copy kept after
            # a failed fetch must not stay readable by a group the source no longer lets in.
            previous = replace(previous, groups=groups)
        if (
            previous is not None
            and previous.marker == entry.marker
            and _intact(folder / entry.path, previous)
        ):
            result.unchanged.append(entry.path)
            if regrouped:
                result.regrouped.append(entry.path)
            kept[entry.path] = previous
            continue
        mtime_ns = mirror_mtime_ns(entry)
        file = staging / hashlib.sha256(f"{entry.path}\0{entry.marker}".encode()).hexdigest()
        held = _Held(entry.marker, entry.size, entry.identity, mtime_ns, groups)
        linked_mtime_ns = _link(connector, entry, file)
        if linked_mtime_ns is not None:
            # A link keeps the source's own mtime: dating it as a copy would date the source too.
            staged.append(_Staged(entry, file, replace(held, mtime_ns=linked_mtime_ns)))
            continue
        if file.exists() and file.stat().st_size == entry.size:  # fetched by a sync that then failed
            staged.append(_Staged(entry, file, held))
            continue
        origin = _same_bytes(folder, state, by_identity, entry, moved_away, listed)
        if origin is not None:
            moved = origin not in listed and origin not in moved_away
            _copy_local(folder / origin, file, link=moved)
            if moved:
                moved_away.add(origin)
            staged.append(_Staged(entry, file, held, moved_from=origin if moved else None))
            continue
        problem = _fetch(connector, entry, file, result)
        if problem is None:
            staged.append(_Staged(entry, file, held))
            continue
        result.failed.append((entry.path, problem))
        if previous is not None and _intact(folder / entry.path, previous):
            kept[entry.path] = previous  # a broken new version never wipes the last good copy
    return staged, kept


def _same_bytes(
    folder: Path,
    state: _State,
    by_identity: dict[str, list[str]],
    entry: Entry,
    moved_away: set[str],
    listed: set[str],
) -> str | None:
    """A mirrored path holding this entry's bytes (same identity, copy intact), preferring one the
    source no longer lists (a rename or move) that no other entry took yet. The entry's own path
    counts: a mail whose folder got a new UIDVALIDITY has a new marker but the same bytes."""
    if entry.identity is None:
        return None
    candidates = [
        path for path in by_identity.get(entry.identity, []) if _intact(folder / path, state.entries[path])
    ]
    candidates.sort(key=lambda path: (path in listed or path in moved_away, path))
    return candidates[0] if candidates else None


def _copy_local(origin: Path, file: Path, link: bool) -> None:
    """A move is a hard link (its origin is removed at commit); a copy of a path that stays is a
    copy, since the two get their own mtimes."""
    with contextlib.suppress(FileNotFoundError):
        file.unlink()
    try:
        if link:
            try:
                os.link(origin, file)
                return
            except OSError:
                pass  # a filesystem without hard links: copy
        shutil.copyfile(origin, file)
    except OSError as exc:
        raise IngestError(f"cannot write the mirror {origin.parent}: {exc}") from exc


def _link(connector: Connector, entry: Entry, file: Path) -> int | None:
    """Hard-link the entry's file into `file` where the connector allows it (LocalConnector's
    hard_links: an upload source), so the mirror holds no second copy; returns the file's mtime,
    or None to fetch a copy instead (no links allowed, another filesystem, or the file changed or
    went since the listing)."""
    origin = connector.linkable(entry) if isinstance(connector, LocalConnector) else None
    if origin is None:
        return None
    with contextlib.suppress(FileNotFoundError):
        file.unlink()
    try:
        os.link(origin, file, follow_symlinks=False)
        st = file.lstat()
    except OSError:
        file.unlink(missing_ok=True)
        return None
    if not stat.S_ISREG(st.st_mode) or st.st_size != entry.size or st.st_mtime_ns != entry.modified_ns:
        file.unlink()
        return None
    return st.st_mtime_ns


def _fetch(connector: Connector, entry: Entry, file: Path, result: MirrorResult) -> str | None:
    """Fetch one entry into `file` (through a .part beside it); None when done, else why not."""
    part = file.with_name(file.name + ".part")
    try:
        with part.open("wb") as fh:
            sink = _Sink(cast(BinaryIO, fh))
            try:
                connector.fetch(entry, cast(BinaryIO, sink))
            finally:
                result.bytes_fetched += sink.written
            fh.flush()
            os.fsync(fh.fileno())
        if sink.written != entry.size:
            part.unlink()
            return (
                f"{connector.location}: {entry.path}: listed with {entry.size} bytes but {sink.written} "
                "were read (it changed while it was read); fetched again at the next sync"
            )
        os.replace(part, file)
    except IngestError as exc:
        part.unlink(missing_ok=True)
        return str(exc)
    except _LocalWriteError as exc:
        part.unlink(missing_ok=True)
        raise IngestError(f"cannot write the mirror {file.parent.parent}: {exc}") from exc.__cause__
    except OSError as exc:
        part.unlink(missing_ok=True)
        raise IngestError(f"cannot write the mirror {file.parent.parent}: {exc}") from exc
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return None


def _commit(
    folder: Path,
    state: _State,
    entries: list[Entry],
    staged: list[_Staged],
    kept: dict[str, _Held],
    result: MirrorResult,
) -> None:
    """Remove what the source no longer lists, then rename the staged copies into place; `kept`
    gains the record of each copy placed."""
    listed = {e.path for e in entries}
    moves = {s.moved_from: s.entry.path for s in staged if s.moved_from is not None}
    for path in sorted(set(state.entries) - listed):
        _remove(folder, path)
        if path in moves:
            result.moved.append((path, moves[path]))
        else:
            result.removed.append(path)
    for item in staged:
        target = folder / item.entry.path
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(item.file, target)
            # Dated only now: a staged move is a hard link to a copy the mirror held until this
            # commit removed it, and a failed sync must leave the mirror's mtimes as they were.
            os.utime(target, ns=(item.held.mtime_ns, item.held.mtime_ns))
        except OSError as exc:
            result.failed.append((item.entry.path, f"cannot be placed in the mirror: {exc}"))
            previous = state.entries.get(item.entry.path)
            if previous is not None and _intact(target, previous):
                kept[item.entry.path] = replace(previous, groups=item.held.groups)
            continue
        kept[item.entry.path] = item.held
        if item.moved_from is not None:
            continue
        if item.entry.path in state.entries:
            result.changed.append(item.entry.path)
        else:
            result.added.append(item.entry.path)
    with contextlib.suppress(OSError):
        _fsync_dir(folder)
    for name in ("added", "changed", "removed", "unchanged", "regrouped"):
        getattr(result, name).sort()
    result.moved.sort()
    result.failed.sort()
    result.skipped.sort()


def _remove(folder: Path, path: str) -> None:
    target = folder / path
    try:
        target.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise IngestError(f"cannot remove {target} from the mirror: {exc}") from exc
    _prune_empty_parents(target, folder)
