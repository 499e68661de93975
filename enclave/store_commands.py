"""The commands that write the store: `enclave ingest`, `docs remove`, `docs reindex`, and
`sources sync|remove`.

The CLI runs them in its own process; while `enclave serve` holds the embedded store, the server
runs them for the CLI over the admin channel (enclave/admin_channel.py). Either way the same code
below runs, with the arguments as the CLI parsed them, writing what it has to say to a `Console`:
the terminal, or the channel's events that the caller's terminal replays.

A new command that writes the store is a function here and one entry in COMMANDS; its
arguments' dataclass is the channel's allow-list of what it takes. Each command that changes what
is indexed writes an audit record (`ingest`, `document_removed`, `source_sync`, `source_removed`:
docs/audit-format.md) naming who started it.
"""

from __future__ import annotations

import json
import os
import pwd
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from core.errors import IngestError
from core.settings import Settings
from enclave import wiring

if TYPE_CHECKING:
    from audit.log import AuditLog
    from audit.records import AuditRecord
    from core.users import UserRecord
    from ingest.manifest import DocEntry, FileEntry, Manifest
    from ingest.pipeline import FileOutcome, IngestPipeline, IngestReport
    from vectorstore.embedding import Embedder
    from vectorstore.index import SearchIndex


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:  # a uid without a passwd entry (containers, throwaway uids)
        return f"uid-{uid}"


@dataclass(frozen=True)
class Caller:
    """Who started a command: the CLI's own user, or the admin channel's peer as the kernel
    names it (SO_PEERCRED), never as the peer says."""

    user: str
    uid: int
    pid: int
    via: str  # "command line" or "admin channel"

    @classmethod
    def local(cls) -> Caller:
        return cls(user_name(os.getuid()), os.getuid(), os.getpid(), "command line")

    @classmethod
    def schedule(cls) -> Caller:
        """The web UI's scheduler, running a source's sync on its schedule."""
        return cls("schedule", os.getuid(), os.getpid(), "schedule")

    @classmethod
    def admin_page(cls, user: str) -> Caller:
        """An admin signed in to the web UI, on its admin page (`user`: the app's user name; uid
        and pid: the web UI's, which carries it out)."""
        return cls(user, os.getuid(), os.getpid(), "admin page")

    def describe(self) -> str:
        if self.via == "admin page":
            return f"{self.user} on the admin page"
        return f"{self.user} (uid {self.uid}, pid {self.pid})"


class Console(Protocol):
    """Where a command's output goes. `files`: each file's outcome with the number of files
    walked, for the caller to draw; None: the run draws its own display on stderr."""

    @property
    def files(self) -> Callable[[int, FileOutcome], None] | None: ...

    def echo(self, text: str, err: bool = False) -> None: ...


@dataclass
class Result:
    code: int  # the exit code
    report: dict[str, Any] | None = None  # an ingest's report, which the CLI writes to --report FILE


@dataclass
class Stores:
    """How a command gets at the store: built for it (the CLI), or the server's own, which its
    chat reads at the same time (embedded Chroma is safe for one process only)."""

    settings: Settings
    embedder: Embedder | None = None
    index: SearchIndex | None = None
    audit: AuditLog | None = None

    def pipeline(self, lock: bool = True) -> IngestPipeline:
        return wiring.build_pipeline(self.settings, self.embedder, self.index, lock=lock)

    def audit_log(self) -> AuditLog:
        """The audit log the commands record their changes in (the web UI's own, in the web UI)."""
        if self.audit is None:
            self.audit = wiring.build_audit(self.settings)
        return self.audit

    def search_index(self) -> SearchIndex:
        return self.index or wiring.build_store(self.settings)


def store_session(settings: Settings, role: str, write: bool) -> Any:
    """Hold an embedded Chroma store for the command (vectorstore/chroma.py: one process at a
    time may write it; readers side by side): a command that reads beside one that writes, or
    beside the web UI, is refused naming it. Inside the web UI, which holds the store for its
    lifetime, it adds nothing. A Chroma server is shared by any number of processes."""
    if settings.store.mode != "embedded":
        return nullcontext()
    from vectorstore.chroma import store_session as hold

    return hold(settings.chroma_path, role, write)


def json_text(data: Any) -> str:
    """How every command prints JSON (--json)."""
    return json.dumps(data, indent=2, ensure_ascii=False, default=str)


def resolve_doc(manifest: Manifest, ref: str, cwd: Path) -> DocEntry:
    """The document `ref` names: its id, or a path (relative to `cwd`) of a file holding it."""
    doc = manifest.doc(ref)
    if doc is None:
        entry = manifest.file(str((cwd / ref).resolve()))
        doc = manifest.doc(entry.doc_id) if entry and entry.doc_id else None
    if doc is None:
        raise IngestError(f"no document with id or path '{ref}': see `enclave docs list`")
    return doc


# -- the commands: their arguments as the CLI parsed them, and what they do ------------------------


@dataclass(frozen=True)
class IngestArgs:
    paths: list[str]
    groups: str | None = None
    acl: str | None = None
    prune: bool = False
    dry_run: bool = False
    force: bool = False
    as_json: bool = False


@dataclass(frozen=True)
class RemoveArgs:
    ref: str


@dataclass(frozen=True)
class ReindexArgs:
    refs: list[str] = field(default_factory=list)
    lexical: bool = False
    as_json: bool = False


@dataclass(frozen=True)
class SyncArgs:
    name: str
    as_json: bool = False
    allow_shrink: bool = False


@dataclass(frozen=True)
class SourceRemoveArgs:
    name: str


@dataclass(frozen=True)
class Call:
    """A command to run: its name (as typed after `enclave`), its arguments, the folder relative
    paths are taken from, and who asked."""

    command: str
    args: Any  # the command's argument dataclass (COMMANDS)
    cwd: Path
    caller: Caller

    @property
    def what(self) -> str:
        """The command as a person would name it."""
        if self.command == "sources upload":
            return f"an upload to source '{self.args.name}'"
        if self.command == "sources upload remove":
            return f"the removal of a file from source '{self.args.name}'"
        return f"`enclave {self.command}`"


def audit_ingest(
    audit: AuditLog,
    caller: Caller,
    report: IngestReport,
    before: Mapping[str, FileEntry],
    manifest: Manifest,
    paths: Sequence[Path],
    *,
    groups: Sequence[str],
    acl: str | None = None,
    prune: bool = False,
    force: bool = False,
) -> AuditRecord:
    """The `ingest` audit record of a run over `paths`: who started it, how, and each file added,
    changed, moved and removed with its document id and hash (`before`: ingest.reports.files_under
    taken before the run)."""
    from enclave.sources import INGEST_EVENT, audit_user
    from ingest.reports import document_changes

    data = {
        "paths": [str(Path(p).resolve()) for p in paths],
        "groups": list(groups),
        "acl": acl,
        "prune": prune,
        "force": force,
        "started_by": asdict(caller),
        "counts": report.as_dict()["counts"],
        **document_changes(report, before, manifest),
    }
    return audit.append(INGEST_EVENT, audit_user(caller), data=data)


def audit_user_changed(
    audit: AuditLog, caller: Caller, before: UserRecord | None, after: UserRecord
) -> AuditRecord:
    """The `user_changed` record of a local user created or replaced (`before`: as it was, None
    when new): its role and groups then and now, never a password or its hash. `user` is the
    account changed, so that a search by its name finds what it was given and when."""
    data = {
        "backend": "local",
        "role": after.role,
        "groups": list(after.groups),
        "created": before is None,
        "role_before": before.role if before else None,
        "groups_before": list(before.groups) if before else None,
        "started_by": asdict(caller),
    }
    return audit.append("user_changed", after.name, data=data)


def ingest(stores: Stores, call: Call, console: Console) -> Result:
    from core.users import parse_groups
    from ingest.acl import GroupPolicy
    from ingest.reports import files_under, save_last_report

    args: IngestArgs = call.args
    settings = stores.settings
    paths = [call.cwd / p for p in args.paths]
    acl = call.cwd / args.acl if args.acl else None
    default = parse_groups(args.groups) or (() if acl else tuple(settings.ingest.default_groups))
    policy = GroupPolicy.from_file(acl, default) if acl else GroupPolicy(default)
    audit = None if args.dry_run else stores.audit_log()
    if audit is not None:
        from ingest.pipeline import disk_full_explained

        with disk_full_explained(settings.data_dir, started=False):  # a full disk said as such
            audit.check_writable()  # an ingest that could not be audited is never begun
    # The run brings the lexical index in step with Chroma itself, under the ingest lock.
    with store_session(settings, "enclave ingest", write=not args.dry_run):
        pipeline = stores.pipeline()
        before = files_under(pipeline.manifest, paths) if audit is not None else {}
        report = pipeline.run(
            paths, policy, prune=args.prune, dry_run=args.dry_run, force=args.force, report_to=console.files
        )
    data = {**report.as_dict(), "started_by": asdict(call.caller)}
    if audit is not None:
        settings_used = {"groups": list(default), "acl": str(acl.resolve()) if acl else None}
        record = audit_ingest(
            audit, call.caller, report, before, pipeline.manifest, paths,
            **settings_used, prune=args.prune, force=args.force,
        )  # fmt: skip
        data["audit_id"] = record.id
    if not args.dry_run:  # kept for the admin page; a dry run changed nothing, so it is not the last ingest
        save_last_report(settings.data_dir, data, paths)
    if args.as_json:
        console.echo(json_text(data))
    else:
        for f in report.files:
            if f.status in ("failed", "skipped") or (args.dry_run and f.status != "unchanged"):
                console.echo(f"{f.status}: {f.error or f.path}", err=not args.dry_run)
        console.echo(report.summary())
    return Result(1 if report.failed else 0, data)


def remove(stores: Stores, call: Call, console: Console) -> Result:
    from enclave.sources import audit_user
    from ingest.manifest import Manifest

    args: RemoveArgs = call.args
    settings = stores.settings
    manifest = Manifest(settings.manifest_path)
    doc = resolve_doc(manifest, args.ref, call.cwd)
    hashes = sorted({f.sha256 for f in manifest.files(doc.doc_id) if f.sha256})
    audit = stores.audit_log()
    audit.check_writable()
    with store_session(settings, "enclave docs remove", write=True):
        paths = stores.pipeline().remove(doc.doc_id)
    record = audit.append(
        "document_removed",
        audit_user(call.caller),
        data={
            "doc_id": doc.doc_id,
            "sha256": hashes[0] if hashes else None,
            "title": doc.title,
            "groups": list(doc.groups),
            "paths": paths,
            "started_by": asdict(call.caller),
        },
    )
    console.echo(
        f"removed {doc.doc_id} ({doc.chunks} chunks) held by {len(paths)} file(s) (audit record {record.id})"
    )
    return Result(0)


def reindex(stores: Stores, call: Call, console: Console) -> Result:
    from ingest.acl import GroupPolicy
    from ingest.manifest import Manifest
    from ingest.pipeline import exclusive

    args: ReindexArgs = call.args
    settings = stores.settings
    if args.lexical:
        with (
            store_session(settings, "enclave docs reindex", write=True),
            exclusive(settings.ingest_lock_path),  # never beside a running ingest
        ):
            changed = stores.search_index().sync_lexical()
        if args.as_json:
            console.echo(json_text({"lexical_chunks_changed": changed}))
        else:
            console.echo(f"lexical index in step with Chroma: {changed} chunks copied or removed")
        return Result(0)
    manifest = Manifest(settings.manifest_path)
    docs = [resolve_doc(manifest, r, call.cwd) for r in args.refs] if args.refs else manifest.docs()
    failed = False
    reports: list[dict[str, Any]] = []
    with store_session(settings, "enclave docs reindex", write=True):
        pipeline = stores.pipeline()
        # One run per set of groups, not one per document: each run starts its parser workers once.
        batches: dict[tuple[str, ...], list[Path]] = {}
        for doc in docs:
            files = manifest.files(doc.doc_id)
            if files:
                batches.setdefault(tuple(files[0].groups), []).append(Path(files[0].path))
        for groups, paths in batches.items():
            report = pipeline.run(paths, GroupPolicy(groups), force=True, report_to=console.files)
            failed |= report.failed
            if args.as_json:
                reports.append(
                    {"groups": list(groups), **report.as_dict(), "started_by": asdict(call.caller)}
                )
            else:
                for outcome in report.files:
                    console.echo(
                        f"{outcome.path}: {outcome.status}" + (f" ({outcome.error})" if outcome.error else "")
                    )
                console.echo(f"groups {', '.join(groups)}: {report.summary()}")
    if args.as_json:
        console.echo(json_text(reports))
    return Result(1 if failed else 0)


def sync(stores: Stores, call: Call, console: Console) -> Result:
    """`enclave sources sync NAME`: mirror the source and ingest it now (enclave/sources.py)."""
    from enclave.sources import get_source, run_sync

    args: SyncArgs = call.args
    source = get_source(stores.settings, args.name)
    outcome = run_sync(stores, source, call.caller, console, allow_shrink=args.allow_shrink)
    assert outcome is not None  # only a scheduled sync is ever passed over
    report = outcome.report
    if args.as_json:
        console.echo(json_text(report))
    else:
        for problem in (report["documents"] or {}).get("failed", []):
            console.echo(f"failed: {problem['path']}: {problem['reason']}", err=True)
        if report["ingest"] is not None:
            console.echo(f"files: {_counts(report['ingest']['counts'])}")
    if report["result"] == "failed":
        console.echo(f"error: source {args.name} failed: {report['reason']}", err=True)
    elif not args.as_json:
        console.echo(f"source {args.name}: ok; audit record {report['audit_id']}")
    return Result(outcome.code, report)


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {status}" for status, n in counts.items())


def source_remove(stores: Stores, call: Call, console: Console) -> Result:
    """`enclave sources remove NAME`: the source's entry, documents, mirror and state."""
    from enclave.sources import remove_source

    args: SourceRemoveArgs = call.args
    return Result(0, remove_source(stores, args.name, call.caller, console))


# The commands that write the store, by name: the admin channel runs these and no others, with
# exactly the arguments (and argument types) of each one's dataclass.
COMMANDS: dict[str, tuple[type, Callable[[Stores, Call, Console], Result]]] = {
    "ingest": (IngestArgs, ingest),
    "docs remove": (RemoveArgs, remove),
    "docs reindex": (ReindexArgs, reindex),
    "sources sync": (SyncArgs, sync),
    "sources remove": (SourceRemoveArgs, source_remove),
}


def run(stores: Stores, call: Call, console: Console) -> Result:
    return COMMANDS[call.command][1](stores, call, console)


__all__ = [
    "COMMANDS",
    "Call",
    "Caller",
    "Console",
    "IngestArgs",
    "ReindexArgs",
    "RemoveArgs",
    "Result",
    "SourceRemoveArgs",
    "Stores",
    "SyncArgs",
    "audit_ingest",
    "audit_user_changed",
    "json_text",
    "resolve_doc",
    "run",
    "store_session",
    "user_name",
]
