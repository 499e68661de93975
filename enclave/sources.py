"""Sources as configuration: which sources there are, what each sync did, and the sync itself.

- The catalogue: the `sources:` of the settings (enclave.yaml, ENCLAVE_SOURCES) and those that
  `enclave sources add` keeps in <data_dir>/sources.yaml; a name in both is an error naming both.
- Each source's folder, <data_dir>/sources/<name>/: `mirror/` (the source's files), the mirror's
  own state, `status.json` (the running sync, the last one's result, counts and failures) and
  `last-report.json` (the last sync's full report). `source_states()` reads them for a page.
- `run_sync`: the source mirrored (ingest.sources.sync_mirror), then the ingest over the mirror
  with prune limited to it, the groups the source gives, and an audit record (`source_sync`) of
  the documents added, changed, moved and removed. A source that cannot be reached, or lists far
  fewer files than last time, is marked failed with the reason and removes nothing.

One sync of a source at a time, and one ingest into the data folder at a time, also across
replicas sharing the data folder: both are flocks on it (<name>/sync.lock, ingest.lock), and a
scheduled sync checks under them that it is still due, from the state the last sync wrote, so a
due sync runs once whichever replica gets there first. docs/sources.md says it for admins.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import socket
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import ValidationError

from core.errors import ConfigError, EnclaveError, IngestError, SourceError
from core.settings import Settings
from core.sources import SourceSettings, check_source_name

if TYPE_CHECKING:
    from enclave.store_commands import Caller, Console, Stores
    from ingest.acl import GroupPolicy

log = logging.getLogger(__name__)

STATUS_FORMAT = 1
AUDIT_EVENT = "source_sync"
REMOVED_EVENT = "source_removed"
INGEST_EVENT = "ingest"
_FILE_HEADER = (
    "# Sources added by `enclave sources add` (docs/sources.md). Change them with that command\n"
    "# (--replace) or `enclave sources remove`; those of enclave.yaml's `sources:` are not here.\n"
)


# -- the catalogue -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """A configured source: its name, settings and where it is defined."""

    name: str
    settings: SourceSettings
    origin: str  # "settings" (enclave.yaml or ENCLAVE_SOURCES) or the sources file's path

    @property
    def added_by_command(self) -> bool:
        return self.origin != "settings"


def _validated(name: str, data: Any, where: str) -> SourceSettings:
    try:
        check_source_name(name)
        return SourceSettings.model_validate(data)
    except ValueError as exc:
        if isinstance(exc, ValidationError):
            parts = []
            for err in exc.errors():
                key = ".".join(str(p) for p in err["loc"])
                msg = str(err["msg"]).removeprefix("Value error, ")
                parts.append(f"unknown setting '{key}'" if err["type"] == "extra_forbidden" else
                             (f"setting '{key}': {msg}" if key else msg))  # fmt: skip
            reason = "; ".join(parts)
        else:
            reason = str(exc)
        raise ConfigError(f"{where}: source '{name}': {reason}") from exc


def _read_file(path: Path) -> dict[str, SourceSettings]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"sources file {path} cannot be read: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"sources file {path} must map source names to their settings")
    return {str(name): _validated(str(name), value, f"sources file {path}") for name, value in data.items()}


def load_sources(settings: Settings) -> dict[str, Source]:
    """Every configured source by name, those of the settings and of the sources file; a name
    defined in both is a ConfigError naming both places."""
    found = {name: Source(name, cfg, "settings") for name, cfg in settings.sources.items()}
    path = settings.sources_file
    for name, cfg in _read_file(path).items():
        if name in found:
            raise ConfigError(
                f"source '{name}' is defined twice: in the settings (enclave.yaml `sources:` or "
                f"ENCLAVE_SOURCES) and in {path} (by `enclave sources add`): keep one, e.g. "
                f"`enclave sources remove {name}` drops the second and leaves the first as it is"
            )
        found[name] = Source(name, cfg, str(path))
    return dict(sorted(found.items()))


def get_source(settings: Settings, name: str) -> Source:
    sources = load_sources(settings)
    if name not in sources:
        known = ", ".join(sources) or "none yet"
        raise ConfigError(f"no source named '{name}' (configured: {known}); see `enclave sources list`")
    return sources[name]


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Changes of the sources file one at a time (waiting), so that none is lost."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.with_name(path.name + ".lock").open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _write_atomically(path: Path, text: str) -> None:
    """Written whole or not at all; readable by all (no secret is kept here), so that a file the
    command line wrote as root still reads in the web UI."""
    from ingest.sources import write_atomically

    write_atomically(path, text.encode("utf-8"), mode=0o644)


def _save_file(path: Path, sources: dict[str, SourceSettings]) -> None:
    data = {name: cfg.model_dump(mode="json", exclude_defaults=True) for name, cfg in sorted(sources.items())}
    for name, cfg in sources.items():  # kind and location always written, even where default
        data[name] = {"kind": cfg.kind, "location": cfg.location, **data[name]}
    body = yaml.safe_dump(data, sort_keys=False, allow_unicode=True) if data else ""
    _write_atomically(path, _FILE_HEADER + body)


def add_source(settings: Settings, name: str, cfg: SourceSettings, *, replace: bool = False) -> Source:
    """Keep `cfg` as source `name` in the sources file; `replace` changes one kept there."""
    check_source_name(name)
    path = settings.sources_file
    with _file_lock(path):
        if name in settings.sources:
            raise ConfigError(
                f"source '{name}' is defined in the settings (enclave.yaml `sources:` or ENCLAVE_SOURCES): "
                "change it there, or choose another name"
            )
        kept = _read_file(path)
        if name in kept and not replace:
            raise ConfigError(
                f"source '{name}' exists already ({path}): add --replace to change it, or choose another name"
            )
        kept[name] = cfg
        _save_file(path, kept)
    return Source(name, cfg, str(path))


def drop_source_entry(settings: Settings, name: str) -> bool:
    """Remove `name` from the sources file; False when it was not there."""
    path = settings.sources_file
    with _file_lock(path):
        kept = _read_file(path)
        if name not in kept:
            return False
        del kept[name]
        _save_file(path, kept)
    return True


# -- each source's folder and state --------------------------------------------------------------


@dataclass(frozen=True)
class SourcePaths:
    root: Path

    @classmethod
    def of(cls, settings: Settings, name: str) -> SourcePaths:
        return cls(settings.sources_dir.resolve() / check_source_name(name))

    @property
    def mirror(self) -> Path:
        return self.root / "mirror"

    @property
    def mirror_state(self) -> Path:
        return self.root / "mirror-state.json"

    @property
    def status(self) -> Path:
        return self.root / "status.json"

    @property
    def report(self) -> Path:
        return self.root / "last-report.json"

    @property
    def lock(self) -> Path:
        return self.root / "sync.lock"


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat(timespec="seconds") if moment else None


def _parse_time(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def read_status(paths: SourcePaths) -> dict[str, Any]:
    """The source's status file, or an empty status when it has never synced. One that cannot be
    read counts as never synced, with a warning (it is replaced at the next sync)."""
    try:
        data = json.loads(paths.status.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("source status %s cannot be read (%s); the next sync replaces it", paths.status, exc)
        return {}
    return data if isinstance(data, dict) and data.get("format") == STATUS_FORMAT else {}


def _write_status(paths: SourcePaths, data: dict[str, Any]) -> None:
    _write_atomically(paths.status, json.dumps({"format": STATUS_FORMAT, **data}, indent=1, default=str))


def _sync_running(paths: SourcePaths) -> bool:
    """Whether a process (here or on a replica sharing the data folder) holds the source's lock."""
    try:
        fd = os.open(paths.lock, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def last_start(status: dict[str, Any]) -> datetime | None:
    """When the newest sync started, finished or not (a sync cut short counts: it ran)."""
    for key in ("running", "last"):
        entry = status.get(key)
        if isinstance(entry, dict) and (started := _parse_time(entry.get("started_at"))) is not None:
            return started
    return None


def next_run(cfg: SourceSettings, status: dict[str, Any], anchor: datetime | None = None) -> datetime | None:
    """When the schedule runs the source next: after its last sync's start; never synced, at once
    for an interval and at the first cron time after `anchor` (the scheduler's start) for a cron
    expression. None when it has no schedule."""
    schedule = cfg.parsed_schedule
    if schedule is None:
        return None
    started = last_start(status)
    if started is None:
        if schedule.interval is not None:
            return anchor or _now()
        return schedule.next_after(anchor or _now())
    return schedule.next_after(started)


def source_state(
    settings: Settings, source: Source | None, name: str, anchor: datetime | None = None
) -> dict[str, Any]:
    """A source's settings and state as a page shows it (JSON-ready); `source` None for one that
    is no longer configured but whose folder and documents are still there."""
    paths = SourcePaths.of(settings, name)
    status = read_status(paths)
    last = status.get("last") if isinstance(status.get("last"), dict) else None
    running = status.get("running") if isinstance(status.get("running"), dict) else None
    state: dict[str, Any] = {"name": name}
    if source is None:
        state.update(configured=False, origin=None)
    else:
        cfg = source.settings
        state.update(
            configured=True,
            origin=source.origin,
            kind=cfg.kind,
            location=cfg.location,
            groups=cfg.groups,
            acl=str(cfg.acl) if cfg.acl else None,
            schedule=cfg.schedule,
        )
    if running is not None and _sync_running(paths):
        state["state"] = "running"
        state["running"] = running
    elif running is not None:
        state["state"] = "interrupted"
        state["reason"] = (
            f"the sync started {running.get('started_at')} on {running.get('host')} (pid {running.get('pid')}) "
            "did not finish: its process stopped. Nothing it left half-done is kept; the next sync redoes it"
        )
    elif last is not None:
        state["state"] = last.get("result", "failed")
        state["reason"] = last.get("reason")
    else:
        state["state"] = "never synced"
    state["last"] = last
    state["last_ok_at"] = status.get("last_ok_at")
    state["documents"] = last.get("documents") if last else None
    upcoming = next_run(source.settings, status, anchor) if source is not None else None
    state["next_run"] = _iso(upcoming)
    state["folder"] = str(paths.root)
    return state


def source_states(settings: Settings, anchor: datetime | None = None) -> list[dict[str, Any]]:
    """Every source's state (configured ones, then folders of sources no longer configured): for
    `enclave sources list` and the admin page."""
    sources = load_sources(settings)
    states = [source_state(settings, source, name, anchor) for name, source in sources.items()]
    if settings.sources_dir.is_dir():
        for folder in sorted(settings.sources_dir.iterdir()):
            if folder.is_dir() and folder.name not in sources:
                with contextlib.suppress(ValueError):
                    states.append(source_state(settings, None, check_source_name(folder.name)))
    return states


def last_report(settings: Settings, name: str) -> dict[str, Any] | None:
    """The last sync's full report (as `enclave sources sync --json` printed it), or None."""
    path = SourcePaths.of(settings, name).report
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise IngestError(f"the last report of source '{name}' ({path}) cannot be read: {exc}") from exc
    return data if isinstance(data, dict) else None


class SourceLocations:
    """Where a synced document lives for its users (`\\\\fileserver\\finance\\Budgets\\2026.xlsx`,
    its WebDAV URL, `imap://mail/INBOX;UID=42`), from the path Enclave ingested it from in a
    source's mirror: citations and the audit log show it, while the manifest, the index and
    /files keep the mirror path. Taken from the location each source's last sync recorded
    (ingest.sources.mirror_location), so documents ingested before this existed get one too, and
    a sync from a new location changes what is shown without embedding anything again."""

    def __init__(self, sources_dir: Path) -> None:
        self.top = Path(sources_dir).resolve()
        self._held: dict[str, tuple[tuple[int, int], str | None]] = {}

    def __call__(self, source: str) -> str | None:
        file, sep, part = source.partition("#")
        try:
            parts = Path(file).relative_to(self.top).parts
        except ValueError:
            return None  # not a source's document: an ingested folder or an upload
        if len(parts) < 3 or parts[1] != "mirror":
            return None
        location = self._location(parts[0])
        if location is None:
            return None
        from ingest.sources import shown_location

        return shown_location(location, "/".join(parts[2:]) + sep + part)

    def _location(self, name: str) -> str | None:
        """The source's recorded location, read again only when its state file changed."""
        state = SourcePaths(self.top / name).mirror_state
        try:
            st = state.stat()
        except OSError:
            return None
        key = (st.st_mtime_ns, st.st_size)
        held = self._held.get(name)
        if held is not None and held[0] == key:
            return held[1]
        from ingest.sources import mirror_location

        try:
            location = mirror_location(state)
        except IngestError as exc:
            log.warning("source %s: where its documents live cannot be shown: %s", name, exc)
            location = None
        self._held[name] = (key, location)
        return location


# -- the sync ------------------------------------------------------------------------------------


def audit_user(caller: Caller) -> str:
    """How the audit log names who started a command: `schedule`, the admin's user name (the
    admin page), or `cli:<user>`."""
    if caller.via == "schedule":
        return "schedule"
    return caller.user if caller.via == "admin page" else f"cli:{caller.user}"


def group_policy(cfg: SourceSettings, mirror: Path, mirror_state: Path | None = None) -> GroupPolicy:
    """The groups of the source's files: fixed, by its acl file, or (from-source) each file's own
    as the mirror's state keeps them after a sync (`mirror_state`)."""
    from ingest.acl import GroupPolicy

    if cfg.groups_from_source:
        from ingest.sources import mirror_groups

        top = mirror.resolve()
        held = mirror_groups(mirror_state) if mirror_state is not None else {}
        return GroupPolicy((), files={top / path: groups for path, groups in held.items()})
    default = tuple(cfg.groups)
    if cfg.acl is not None:
        return GroupPolicy.from_file(cfg.acl, default, base=mirror)
    return GroupPolicy(default)


def _busy_message(name: str, paths: SourcePaths) -> str:
    running = read_status(paths).get("running") or {}
    who = ""
    if isinstance(running, dict) and running.get("started_at"):
        by = running.get("started_by") or {}
        who = (
            f" (started {running['started_at']} by {by.get('user', '?')} on {running.get('host')}, "
            f"pid {running.get('pid')})"
        )
    return f"a sync of source '{name}' is running{who}"


@dataclass
class SyncOutcome:
    code: int  # exit code: 0 synced with no file failing, 1 otherwise
    report: dict[str, Any]


def run_sync(
    stores: Stores,
    source: Source,
    caller: Caller,
    console: Console,
    *,
    scheduled: bool = False,
    anchor: datetime | None = None,
    allow_shrink: bool = False,
) -> SyncOutcome | None:
    """Sync `source` now: mirror it, ingest the mirror, audit and record the result. With
    `scheduled`, only if it is still due once its locks are held (None otherwise, and when
    another sync or ingest holds them); else a busy lock is an IngestError saying who holds it.
    `allow_shrink`: this once, a listing far shorter than the last is taken as deletions."""
    from ingest.pipeline import exclusive

    settings = stores.settings
    paths = SourcePaths.of(settings, source.name)
    paths.root.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(exclusive(paths.lock, busy=_busy_message(source.name, paths)))
            held.enter_context(exclusive(settings.ingest_lock_path))
        except IngestError:
            if scheduled:
                return None
            raise
        status = read_status(paths)
        if scheduled:
            due = next_run(source.settings, status, anchor)
            if due is None or due > _now():
                return None  # another replica ran it meanwhile, or its schedule changed
        return _sync_held(stores, source, paths, status, caller, console, allow_shrink)


def _sync_held(
    stores: Stores,
    source: Source,
    paths: SourcePaths,
    status: dict[str, Any],
    caller: Caller,
    console: Console,
    allow_shrink: bool = False,
) -> SyncOutcome:
    from core.errors import SourceShrank
    from core.offline import allow_hosts
    from enclave import wiring
    from enclave.store_commands import store_session
    from enclave.uploads import is_upload_source
    from ingest.manifest import Manifest
    from ingest.reports import document_changes, files_under
    from ingest.sources import GroupMap, Selection, sync_mirror

    settings = stores.settings
    cfg = source.settings
    started = _now()
    here = {
        "started_at": _iso(started),
        "started_by": asdict(caller),
        "host": socket.gethostname(),
        "pid": os.getpid(),
    }
    _write_status(paths, {**status, "running": here})
    report: dict[str, Any] = {
        "source": source.name,
        "kind": cfg.kind,
        "location": cfg.location,
        "groups": cfg.groups,
        "acl": str(cfg.acl) if cfg.acl else None,
        **here,
        "allow_shrink": allow_shrink,
        "result": "failed",
        "reason": None,
        "mirror": None,
        "ingest": None,
        "documents": None,
    }
    audit = stores.audit_log()
    mirror = None
    try:
        audit.check_writable()  # a sync that could not be audited is never begun
        policy = group_policy(cfg, paths.mirror)  # an acl file that cannot be read stops it here
        group_map = (
            GroupMap.load(cfg.group_map, cfg.everyone_group, wiring.build_sid_resolver(settings, cfg))
            if cfg.groups_from_source
            else None
        )
        console.echo(f"source {source.name}: syncing {cfg.location}", err=True)
        max_mb = cfg.max_file_mb or settings.ingest.max_file_mb
        selection = Selection(tuple(cfg.include), tuple(cfg.exclude), int(max_mb * 1024 * 1024))
        with store_session(settings, "enclave sources sync", write=True):
            # An upload source's files are replaced only by a rename (enclave/uploads.py): its
            # mirror links them rather than keeping a second copy.
            connector = wiring.build_connector(cfg, hard_links=is_upload_source(settings, source))
            allow_hosts([cfg.endpoint.host] if cfg.endpoint.host else [])
            try:
                mirror = sync_mirror(
                    connector,
                    paths.mirror,
                    paths.mirror_state,
                    min_ratio=0.0 if allow_shrink else cfg.min_ratio,
                    selection=selection,
                    group_map=group_map,
                )
            finally:
                connector.close()
            if group_map is not None:
                policy = group_policy(cfg, paths.mirror, paths.mirror_state)
            report["mirror"] = mirror.as_dict()
            console.echo(mirror.summary(), err=True)
            pipeline = stores.pipeline(lock=False)  # this sync holds the ingest lock
            before = files_under(pipeline.manifest, [paths.mirror])
            ingested = pipeline.run([paths.mirror], policy, prune=True, report_to=console.files)
        report["ingest"] = ingested.as_dict()
        changes = document_changes(ingested, before, pipeline.manifest, paths.mirror)
        for path, reason in mirror.failed:
            changes["failed"].insert(0, {"path": path, "reason": reason})
        for path, reason in mirror.skipped:
            changes["skipped"].insert(0, {"path": path, "reason": reason})
        _add_locations(changes, mirror.location)
        report["documents"] = changes
        manifest = Manifest(settings.manifest_path)
        try:
            held_now = files_under(manifest, [paths.mirror])
        finally:
            manifest.close()
        documents = len({f.doc_id for f in held_now.values() if f.status == "ingested" and f.doc_id})
        report["result"] = "ok"
    except Exception as exc:
        if isinstance(exc, SourceShrank):
            reason = (
                f"{exc} (nothing was removed; if the files were deleted, `enclave sources sync {source.name} "
                "--allow-shrink` takes them as deletions once)"
            )
        elif isinstance(exc, EnclaveError):
            reason = str(exc) + (" (nothing was removed)" if isinstance(exc, SourceError) else "")
        elif isinstance(exc, OSError):
            reason = f"{type(exc).__name__}: {exc}"
        else:
            log.exception("source %s: the sync failed", source.name)
            reason = f"{type(exc).__name__}: {exc} (the traceback is in the log)"
        report["reason"] = reason
        documents = (status.get("last") or {}).get("documents")
    except BaseException as exc:  # stopped (Ctrl-C, shutdown): recorded, then on its way
        report["reason"] = f"stopped ({type(exc).__name__}) before it finished"
        _finish(paths, status, report, None, source, audit_id=None)
        raise
    report["finished_at"] = _iso(_now())
    audit_id = None
    try:
        record = audit.append(
            AUDIT_EVENT,
            audit_user(caller),
            error=report["reason"] if report["result"] == "failed" else None,
            data=_audit_data(report),
        )
        audit_id = record.id
    except (EnclaveError, TypeError, ValueError) as exc:
        log.error("source %s: the audit record of the sync could not be written: %s", source.name, exc)
        report["result"] = "failed"
        report["reason"] = f"the sync ran, but its audit record could not be written: {exc}" + (
            f" (and: {report['reason']})" if report["reason"] else ""
        )
    report["audit_id"] = audit_id
    _finish(paths, status, report, documents, source, audit_id)
    failed_files = bool(report["documents"] and report["documents"]["failed"])
    code = 1 if report["result"] == "failed" or failed_files else 0
    if report["result"] == "failed":
        log.warning("source %s: sync failed: %s", source.name, report["reason"])
    else:
        log.info("source %s: synced (%s documents, audit record %s)", source.name, documents, audit_id)
    return SyncOutcome(code, report)


def _add_locations(changes: dict[str, list[dict[str, Any]]], location: str | None) -> None:
    """Each file of a sync's or a removal's changes with where it lives at the source at
    `location`, as citations show it (none for a folder source's)."""
    from ingest.sources import shown_location

    if location is None:
        return
    for rows in changes.values():
        for row in rows:
            path = row["path"]
            if not path.startswith("/") and (where := shown_location(location, path)):
                row["location"] = where


def _audit_data(report: dict[str, Any]) -> dict[str, Any]:
    """The audit record of a sync: who, which source, and each document added, changed, moved and
    removed with its id and hash (docs/audit-format.md)."""
    data = {
        key: report[key]
        for key in (
            "source",
            "kind",
            "location",
            "groups",
            "acl",
            "started_by",
            "host",
            "result",
            "started_at",
            "allow_shrink",
        )
    }
    data["finished_at"] = report.get("finished_at")
    if report["mirror"] is not None:
        data["mirror"] = _mirror_summary(report["mirror"])
    if report["ingest"] is not None:
        data["counts"] = report["ingest"]["counts"]
    if report["documents"] is not None:
        data.update(report["documents"])
    return data


def _finish(
    paths: SourcePaths,
    status: dict[str, Any],
    report: dict[str, Any],
    documents: int | None,
    source: Source,
    audit_id: int | None,
) -> None:
    """Write the sync's result to the source's status (and its full report beside it)."""
    finished = report.get("finished_at") or _iso(_now())
    changes = report["documents"] or {}
    last = {
        "started_at": report["started_at"],
        "finished_at": finished,
        "started_by": report["started_by"],
        "host": report["host"],
        "pid": report["pid"],
        "result": report["result"],
        "reason": report["reason"],
        "mirror": _mirror_summary(report["mirror"]),
        "counts": report["ingest"]["counts"] if report["ingest"] else None,
        "changes": {k: len(v) for k, v in changes.items()},
        "failures": list(changes.get("failed", [])),
        "documents": documents,
        "audit_id": audit_id,
        "unmapped": (report["mirror"] or {}).get("unmapped", []),
    }
    new = {"running": None, "last": last, "last_ok_at": status.get("last_ok_at")}
    if report["result"] == "ok":
        new["last_ok_at"] = finished
    upcoming = next_run(source.settings, {"last": last})
    new["next_run"] = _iso(upcoming)
    try:
        _write_status(paths, new)
        _write_atomically(paths.report, json.dumps(report, indent=1, ensure_ascii=False, default=str))
    except OSError as exc:
        log.error("source %s: its status could not be written to %s: %s", source.name, paths.root, exc)


def _mirror_summary(mirror: dict[str, Any] | None) -> dict[str, Any] | None:
    """A mirror's result (MirrorResult.as_dict()) as counts: each list by its length."""
    if mirror is None:
        return None
    return {k: (len(v) if isinstance(v, list) else v) for k, v in mirror.items() if k != "location"}


def remove_source(stores: Stores, name: str, caller: Caller, console: Console) -> dict[str, Any]:
    """Remove a source: its entry in the sources file, its documents from the index (audited),
    its mirror and state. One defined in the settings is refused (remove it there first, then
    this removes what it left); one defined in both loses only its sources-file entry."""
    from ingest.pipeline import exclusive
    from ingest.reports import document_changes, files_under

    settings = stores.settings
    check_source_name(name)
    in_settings = name in settings.sources
    in_file = name in _read_file(settings.sources_file)
    paths = SourcePaths.of(settings, name)
    if in_settings and in_file:
        drop_source_entry(settings, name)
        console.echo(
            f"source '{name}': removed from {settings.sources_file}; the one of the settings stays, with its "
            "documents"
        )
        return {"source": name, "removed_entry": True, "documents": None}
    if in_settings:
        raise ConfigError(
            f"source '{name}' is defined in the settings (enclave.yaml `sources:` or ENCLAVE_SOURCES): delete "
            f"it there, then `enclave sources remove {name}` removes its documents and mirror"
        )
    if not in_file and not paths.root.exists():
        raise ConfigError(f"no source named '{name}': see `enclave sources list`")
    audit = stores.audit_log()
    with (
        exclusive(paths.lock, busy=_busy_message(name, paths)),
        exclusive(settings.ingest_lock_path),
    ):
        audit.check_writable()
        from enclave.store_commands import store_session
        from ingest.acl import GroupPolicy
        from ingest.sources import mirror_location

        try:
            location = mirror_location(paths.mirror_state)  # before the state goes with the mirror
        except IngestError:
            location = None
        with store_session(settings, "enclave sources remove", write=True):
            if in_file:
                drop_source_entry(settings, name)  # first: no schedule starts it again
            shutil.rmtree(paths.mirror, ignore_errors=True)
            paths.mirror.mkdir(parents=True, exist_ok=True)
            pipeline = stores.pipeline(lock=False)
            before = files_under(pipeline.manifest, [paths.mirror])
            # An empty mirror, pruned: each of its files leaves the index, as deleted at the source.
            ingested = pipeline.run(
                [paths.mirror], GroupPolicy(("removed",)), prune=True, report_to=console.files
            )
        changes = document_changes(ingested, before, pipeline.manifest, paths.mirror)
        _add_locations(changes, location)
        data = {"source": name, "started_by": asdict(caller), "removed": changes["removed"]}
        record = audit.append(REMOVED_EVENT, audit_user(caller), data=data)
        shutil.rmtree(paths.mirror, ignore_errors=True)
        for leftover in (paths.mirror_state, paths.status, paths.report):
            leftover.unlink(missing_ok=True)
    shutil.rmtree(paths.root, ignore_errors=True)
    console.echo(
        f"source '{name}' removed: {len(changes['removed'])} files left the index (audit record {record.id})"
    )
    return {**data, "audit_id": record.id}
