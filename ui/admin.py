"""The admin page: what is indexed (documents and chunks per group), what the last ingest did
(counts, and every failed or skipped file with its reason), the health of the stores and
models (embedding model, Chroma, lexical index, audit log, LLM and its model name, disk, telemetry),
and the sources: each with its state, "Sync now" with a progress bar and the last report, and the
upload of files into an upload source for chosen groups (docs/sources.md).

Admins only, enforced on the server: every handler checks the signed-in user's role first (the
page hides itself from others too, but that is a courtesy, not the guard). A refused call returns
no data, says "not allowed", and is written to the audit log (`access_denied`).

The figures come from a status source the composition root passes in (enclave/health.py's
`AdminOverview`), the sources from its `SourceActions` (enclave/admin_sources.py): the ui package
does not read the ingest manifest, nor run an ingest, itself. An upload's files reach the handler
only as files this sign-in uploaded (ui/boundary.py, FILE_EVENTS).

No `from __future__ import annotations`: Gradio reads `gr.Request` from the handlers' annotations
at run time.
"""

import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import gradio as gr

from audit import AuditLog
from core.errors import EnclaveError
from core.health import AdminStatus, CheckResult, GroupCount
from core.settings import UISettings
from core.types import Principal
from ui import markup
from ui.accounts import Accounts
from ui.auditor import esc
from ui.login import require_role
from ui.markup import literal

log = logging.getLogger(__name__)

ADMIN_ROLES = frozenset({"admin"})
NOT_ALLOWED = "Not allowed: the admin page is open to administrators only."
NO_SOURCE = "No status source was given to this app, so there is nothing to show."
INTERNAL_ERROR = "The status could not be gathered; the details are in the server log."
HEALTH_HEADERS = ["check", "status", "detail"]
GROUP_HEADERS = ["group", "documents", "chunks"]
PROBLEM_HEADERS = ["file", "status", "reason"]

NO_SOURCES = "This app was given no way to run sources, so none can be shown or synced here."
SOURCE_HEADERS = [
    "source", "kind", "location", "groups", "schedule", "state", "last sync", "reason", "next run",
    "documents", "failures",
]  # fmt: skip
REPORT_HEADERS = ["file", "outcome", "reason"]
UPLOADED_HEADERS = ["file", "bytes", "sha256", "stored", "index"]
DEFAULT_UPLOAD_SOURCE = "uploads"

StatusSource = Callable[[], AdminStatus]
Progress = Callable[[float | None, str], None]  # (share done or None, what is happening)


class SourceActions(Protocol):
    """What the page may do with the sources (enclave.admin_sources.AdminSources). Errors are
    EnclaveErrors whose words the page shows."""

    @property
    def accepted_types(self) -> list[str]: ...

    def states(self) -> list[dict[str, Any]]: ...

    def last_report(self, name: str) -> dict[str, Any] | None: ...

    def sync(self, name: str, user: str, progress: Progress) -> dict[str, Any]: ...

    def upload(
        self,
        name: str,
        files: Sequence[tuple[str, str]],
        groups: str,
        replace: bool,
        user: str,
        progress: Progress,
    ) -> dict[str, Any]: ...

    def remove_upload(self, name: str, file_name: str, user: str, progress: Progress) -> dict[str, Any]: ...


def is_admin(principal: Principal) -> bool:
    return principal.role in ADMIN_ROLES


# -- rendering (pure functions of core types) ----------------------------------------------------


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> dict[str, Any]:
    return {"headers": list(headers), "data": [list(r) for r in rows]}


def health_rows(checks: Sequence[CheckResult]) -> list[list[str]]:
    return [[c.name, c.label, c.detail] for c in checks]


def health_summary(checks: Sequence[CheckResult]) -> str:
    failed = [c.name for c in checks if not c.ok]
    if not failed:
        return f"**All {len(checks)} checks pass.**"
    noun = "check fails" if len(failed) == 1 else "checks fail"
    return f"**{len(failed)} {noun}:** {literal(', '.join(failed))}."


def model_line(checks: Sequence[CheckResult]) -> str:
    """The models in one line: the embedding model, and the LLM with its reachability."""
    by_name = {c.name: c for c in checks}
    parts = []
    embedding = by_name.get("embedding model")
    if embedding is not None:
        model_id = str(embedding.figures.get("model_id", "unknown"))
        parts.append(f"Embedding model: **{literal(model_id)}**" + ("" if embedding.ok else " (FAIL)"))
    llm = by_name.get("llm")
    if llm is not None:
        if not llm.figures.get("configured"):
            parts.append("LLM: not configured (extractive answers)")
        else:
            model = literal(str(llm.figures.get("model") or "?"))
            if llm.ok:
                state = "reachable, serving it"
            elif llm.figures.get("reachable"):
                state = "reachable, NOT serving it"
            else:
                state = "UNREACHABLE"
            parts.append(f"LLM: **{model}** ({state})")
    return " · ".join(parts)


def groups_summary(groups: Sequence[GroupCount], documents: int, chunks: int) -> str:
    if not documents:
        return "No document is indexed yet."
    docs = "1 document" if documents == 1 else f"{documents} documents"
    return f"{docs} ({chunks} chunks) in all. A document readable by several groups counts under each."


def _code(text: str) -> str:
    """A path shown literally: in a code span only a backtick could end it early."""
    return "`" + " ".join(text.split()).replace("`", "'") + "`"


def ingest_summary(report: Mapping[str, Any] | None, error: str | None = None) -> str:
    if error:
        return f"**{literal(error)}**"
    if report is None:
        return "No ingest has run on this data folder yet (`enclave ingest`)."
    found = report.get("counts")
    counts: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
    listed = ", ".join(f"{n} {literal(str(s))}" for s, n in counts.items())
    when = literal(str(report.get("finished_at", "at an unknown time")).replace("T", " "))
    paths = report.get("paths") or []
    over = " over " + ", ".join(_code(str(p)) for p in paths) if paths else ""
    seconds = report.get("seconds")
    took = f" in {seconds:.1f} s" if isinstance(seconds, int | float) else ""
    failed = counts.get("failed", 0)
    head = "**Last ingest FAILED for some files**" if failed else "**Last ingest**"
    return (
        f"{head}: finished {when}{took}{over}.  \n"
        f"Files: {listed or 'none'}; chunks added: {report.get('chunks_added', 0)}."
    )


def problem_rows(report: Mapping[str, Any] | None) -> list[list[str]]:
    """The files of the report that failed or were skipped, failures first, with their reasons."""
    if report is None:
        return []
    files = [f for f in report.get("files") or [] if isinstance(f, Mapping)]
    rows = [f for f in files if f.get("status") in ("failed", "skipped")]
    rows.sort(key=lambda f: (f.get("status") != "failed", str(f.get("path"))))
    return [[str(f.get("path", "")), str(f.get("status")), str(f.get("error") or "")] for f in rows]


# -- the sources (rendering, pure functions of the states and reports) -----------------------------


def shown_location(location: str) -> str:
    """A source's location as the page shows it: a URL without its query or fragment, where a
    token could sit (a user name or password in the location is refused by its settings)."""
    if "://" not in location:
        return location
    parts = urlsplit(location)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return f"{parts.scheme}://{netloc}{parts.path}" + ("?…" if parts.query or parts.fragment else "")


def _when(text: Any) -> str:
    """An ISO time as the page shows it."""
    if not isinstance(text, str) or not text:
        return ""
    return text.replace("T", " ").replace("+00:00", " UTC")


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def source_rows(states: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    """One row per source: what it is (never a secret), and how its syncs went."""
    rows = []
    for st in states:
        last = _mapping(st.get("last"))
        if st.get("upload"):
            groups = "chosen per file at upload"
        else:
            groups = ", ".join(str(g) for g in st.get("groups") or [])
            if st.get("acl"):
                groups = (groups + "; " if groups else "") + f"ACL file {st['acl']}"
        configured = bool(st.get("configured"))
        documents = st.get("documents")
        rows.append(
            [
                str(st.get("name", "")),
                ("upload" if st.get("upload") else str(st.get("kind") or ""))
                if configured
                else "no longer configured",
                shown_location(str(st.get("location") or "")),
                groups,
                str(st.get("schedule") or "manual") if configured else "",
                str(st.get("state", "")),
                _when(last.get("finished_at") or last.get("started_at")),
                str(st.get("reason") or ""),
                _when(st.get("next_run")),
                "" if documents is None else str(documents),
                str(len(last.get("failures") or [])) if last else "",
            ]
        )
    return rows


def sources_summary(states: Sequence[Mapping[str, Any]]) -> str:
    if not states:
        return (
            "No source is configured yet: add one with `enclave sources add` (docs/sources.md), or "
            "upload files below."
        )
    by_state: dict[str, int] = {}
    for st in states:
        by_state[str(st.get("state"))] = by_state.get(str(st.get("state")), 0) + 1
    noun = "1 source" if len(states) == 1 else f"{len(states)} sources"
    listed = ", ".join(f"{n} {literal(state)}" for state, n in sorted(by_state.items()))
    return f"{noun}: {listed}. Choose one to see its last report, or to sync it now."


_CHANGES = ("added", "changed", "moved", "removed", "failed", "skipped")


def report_summary(report: Mapping[str, Any] | None, name: str) -> str:
    """A sync's report in a few lines: its result (the reason when it failed), what changed."""
    if report is None:
        return f"Source {_code(name)} has not been synced yet."
    when = _when(report.get("finished_at") or report.get("started_at")) or "at an unknown time"
    by = _mapping(report.get("started_by"))
    who = f"{literal(str(by.get('user', '?')))} ({literal(str(by.get('via', '?')))})"
    audit = f" Audit record {report['audit_id']}." if report.get("audit_id") is not None else ""
    changes = _mapping(report.get("documents"))
    counts = ", ".join(f"{len(changes.get(k) or [])} {k}" for k in _CHANGES)
    if report.get("result") != "ok":
        reason = literal(str(report.get("reason") or "no reason was recorded"))
        done = f"  \nFiles: {counts}." if changes else ""
        return f"**Sync of {_code(name)} FAILED** {when}, started by {who}: {reason}{done}{audit}"
    failed = len(changes.get("failed") or [])
    head = (
        f"**Source {_code(name)} synced, {failed} files FAILED**"
        if failed
        else f"**Source {_code(name)} synced**"
    )
    return f"{head} {when}, started by {who}.  \nFiles: {counts}.{audit}"


def report_rows(report: Mapping[str, Any] | None) -> list[list[str]]:
    """Each file of a sync's report: failures (with their reasons) first, then what changed."""
    changes = _mapping(_mapping(report).get("documents"))
    rows = []
    for outcome in _CHANGES[4:] + _CHANGES[:4]:  # failed, skipped, then added ... removed
        for entry in changes.get(outcome) or []:
            item = _mapping(entry)
            reason = str(item.get("reason") or "")
            if outcome == "moved" and item.get("from"):
                reason = f"from {item['from']}"
            rows.append([str(item.get("path", "")), outcome, reason])
    return rows


def upload_summary(result: Mapping[str, Any]) -> str:
    upload = _mapping(result.get("upload"))
    files = [_mapping(f) for f in upload.get("files") or []]
    source = str(upload.get("source", ""))
    stored = {k: sum(1 for f in files if f.get("stored") == k) for k in ("new", "replaced", "unchanged")}
    groups = ", ".join(literal(str(g)) for g in upload.get("groups") or [])
    noun = "1 file" if len(files) == 1 else f"{len(files)} files"
    head = (
        f"**{noun} uploaded to {_code(source)}** for {groups} (audit record {upload.get('audit_id')}): "
        + ", ".join(f"{n} {k}" for k, n in stored.items())
        + "."
    )
    if result.get("sync") is None:
        why = literal(str(result.get("sync_error") or "the sync did not run"))
        return f"{head}  \n**Not in the index yet**: {why}. The source's next sync takes them."
    return head + "  \n" + report_summary(_mapping(result.get("sync")), source)


def removal_summary(result: Mapping[str, Any]) -> str:
    """What removing an uploaded file did: the file, its document, the audit record, the sync."""
    removed = _mapping(result.get("removed"))
    source = str(removed.get("source", ""))
    head = (
        f"**{_code(str(removed.get('file', '')))} removed from {_code(source)}** "
        f"(audit record {removed.get('audit_id')})"
    )
    if result.get("sync") is None:
        why = literal(str(result.get("sync_error") or "the sync did not run"))
        return f"{head}.  \n**Still in the index**: {why}. The source's next sync takes it out."
    if removed.get("document_removed"):
        head += ": its document left the index."
    elif removed.get("doc_id"):
        head += ": its document stays, as another file holds the same bytes."
    else:
        head += "."
    return head + "  \n" + report_summary(_mapping(result.get("sync")), source)


def uploaded_rows(result: Mapping[str, Any]) -> list[list[str]]:
    """Each uploaded file: its size, SHA-256, how it was stored and what the sync made of it."""
    changes = _mapping(_mapping(result.get("sync")).get("documents"))
    outcome: dict[str, str] = {}
    for kind in _CHANGES:
        for entry in changes.get(kind) or []:
            item = _mapping(entry)
            reason = f": {item['reason']}" if item.get("reason") else ""
            outcome[str(item.get("path", ""))] = kind + reason
    rows = []
    for f in _mapping(result.get("upload")).get("files") or []:
        item = _mapping(f)
        name = str(item.get("name", ""))
        index = outcome.get(name, "unchanged" if result.get("sync") is not None else "not synced yet")
        rows.append(
            [name, str(item.get("size", "")), str(item.get("sha256", "")), str(item.get("stored", "")), index]
        )
    return rows


# -- the page ------------------------------------------------------------------------------------


class AdminPage:
    """The admin page, kotaemon-style: `build()` lays it out, `register_events()` wires it."""

    def __init__(
        self,
        status: StatusSource | None,
        audit: AuditLog,
        users: Accounts,
        settings: UISettings,
        sources: SourceActions | None = None,
    ) -> None:
        self.status_source = status
        self.audit = audit
        self.users = users
        self.settings = settings
        self.actions = sources

    # -- layout --------------------------------------------------------------------------------

    def build(self) -> None:
        org = esc(self.settings.org_name)
        with gr.Row(equal_height=True):
            gr.HTML(
                f"<h2 style='margin:0'>{markup.logo(self.settings.org_name, self.settings.logo_path is not None)}{org} administration</h2>",
                js_on_load=None,
                elem_id="enclave-admin-title",
            )
            self.whoami = gr.Markdown(elem_id="enclave-admin-whoami")
            self.refresh = gr.Button(
                "Refresh", size="sm", scale=0, min_width=100, elem_id="enclave-admin-refresh"
            )
            gr.Button("Sign out", link="/logout", size="sm", scale=0, min_width=100)
        self.status = gr.Markdown(elem_id="enclave-admin-status")
        with gr.Column(visible=False, elem_id="enclave-admin-panel") as self.panel:
            gr.Markdown("### Health")
            self.models = gr.Markdown(elem_id="enclave-admin-models")
            self.health_summary = gr.Markdown(elem_id="enclave-admin-health-summary")
            self.health = gr.Dataframe(
                value=_table(HEALTH_HEADERS, []),
                headers=HEALTH_HEADERS,
                datatype="str",
                type="array",
                interactive=False,
                wrap=True,
                elem_id="enclave-admin-health",
            )
            with gr.Accordion("Figures behind each check (JSON)", open=False):
                self.figures = gr.JSON(elem_id="enclave-admin-figures")
            gr.Markdown("### Documents per group")
            self.groups_summary = gr.Markdown(elem_id="enclave-admin-groups-summary")
            self.groups = gr.Dataframe(
                value=_table(GROUP_HEADERS, []),
                headers=GROUP_HEADERS,
                datatype=["str", "number", "number"],
                type="array",
                interactive=False,
                elem_id="enclave-admin-groups",
            )
            self._build_sources()
            gr.Markdown("### Last ingest")
            self.ingest_summary = gr.Markdown(elem_id="enclave-admin-ingest-summary")
            self.problems = gr.Dataframe(
                value=_table(PROBLEM_HEADERS, []),
                headers=PROBLEM_HEADERS,
                datatype="str",
                type="array",
                interactive=False,
                wrap=True,
                max_height=420,
                label="Files that failed or were skipped",
                elem_id="enclave-admin-problems",
            )

    def _build_sources(self) -> None:
        gr.Markdown("### Sources")
        self.sources_summary = gr.Markdown(elem_id="enclave-admin-sources-summary")
        self.sources = gr.Dataframe(
            value=_table(SOURCE_HEADERS, []),
            headers=SOURCE_HEADERS,
            datatype="str",
            type="array",
            interactive=False,
            wrap=True,
            elem_id="enclave-admin-sources",
        )
        with gr.Row(equal_height=True):
            self.source = gr.Dropdown(
                choices=[],
                value=None,
                allow_custom_value=True,  # the handler names a source that is not (or no longer) there
                label="Source",
                info="Its last report shows below; Sync now syncs it at once.",
                scale=3,
                elem_id="enclave-admin-source",
            )
            self.sync = gr.Button("Sync now", variant="primary", scale=1, elem_id="enclave-admin-sync")
        self.report_summary = gr.Markdown(elem_id="enclave-admin-report-summary")
        self.report = gr.Dataframe(
            value=_table(REPORT_HEADERS, []),
            headers=REPORT_HEADERS,
            datatype="str",
            type="array",
            interactive=False,
            wrap=True,
            max_height=420,
            label="The sync's files: each failure with its reason, then what changed",
            elem_id="enclave-admin-report",
        )
        gr.Markdown("### Upload documents")
        types = self.actions.accepted_types if self.actions is not None else []
        gr.Markdown(
            "Files are kept under the data folder in the upload source you name (a new name adds one), "
            "hashed, ingested for the groups you give, and audited. Types the ingest reads: "
            + (", ".join(types) if types else "none here")
            + ".",
            elem_id="enclave-admin-upload-note",
        )
        self.upload_files = gr.File(
            file_count="multiple",
            type="filepath",
            # No file_types: Gradio's own refusal does not name the file; the handler's does.
            label="Files",
            elem_id="enclave-admin-upload-files",
        )
        with gr.Row(equal_height=True):
            self.upload_source = gr.Dropdown(
                choices=[DEFAULT_UPLOAD_SOURCE],
                value=DEFAULT_UPLOAD_SOURCE,
                allow_custom_value=True,
                label="Upload source",
                info="An upload source's name; type a new one to add it.",
                elem_id="enclave-admin-upload-source",
            )
            self.upload_groups = gr.Textbox(
                label="Groups that may read them",
                placeholder="hr, staff",
                info="Comma-separated; only members of these groups retrieve the files.",
                elem_id="enclave-admin-upload-groups",
            )
            self.upload_replace = gr.Checkbox(
                value=False, label="Replace files of the same name", elem_id="enclave-admin-upload-replace"
            )
        self.upload = gr.Button("Upload and ingest", variant="primary", elem_id="enclave-admin-upload")
        with gr.Row(equal_height=True):
            self.remove_name = gr.Textbox(
                label="Uploaded file to remove",
                placeholder="rota.md",
                info="A file of the upload source above, by name: it leaves the source and the index.",
                scale=3,
                elem_id="enclave-admin-remove-name",
            )
            self.remove = gr.Button("Remove file", variant="stop", scale=1, elem_id="enclave-admin-remove")
        self.upload_result = gr.Markdown(elem_id="enclave-admin-upload-result")
        self.uploaded = gr.Dataframe(
            value=_table(UPLOADED_HEADERS, []),
            headers=UPLOADED_HEADERS,
            datatype="str",
            type="array",
            interactive=False,
            wrap=True,
            label="Uploaded files",
            elem_id="enclave-admin-uploaded",
        )

    def _sources_outputs(self) -> list[Any]:
        return [self.sources_summary, self.sources, self.source, self.upload_source]

    def _view_outputs(self) -> list[Any]:
        return [
            self.models,
            self.health_summary,
            self.health,
            self.figures,
            self.groups_summary,
            self.groups,
            self.ingest_summary,
            self.problems,
        ]

    def register_events(self, app: gr.Blocks) -> None:
        # Callable by name (the tests, monitoring scripts) but kept off the API page.
        api: dict[str, Any] = {"api_visibility": "undocumented"}
        app.load(
            self.on_load,
            inputs=None,
            outputs=[self.whoami, self.status, self.panel, *self._view_outputs()],
            api_name="admin_page",
            **api,
        )
        self.refresh.click(
            self.refresh_view, inputs=None, outputs=self._view_outputs(), api_name="admin_refresh", **api
        )
        gr.on(
            [app.load, self.refresh.click],
            self.sources_view,
            inputs=None,
            outputs=self._sources_outputs(),
            api_name="admin_sources",
            **api,
        )
        self.source.input(
            self.source_report,
            inputs=[self.source],
            outputs=[self.report_summary, self.report],
            api_name="admin_source_report",
            **api,
        )
        self.sync.click(
            self.sync_now,
            inputs=[self.source],
            outputs=[self.report_summary, self.report, self.sources_summary, self.sources],
            api_name="admin_sync",
            concurrency_limit=None,  # one sync at a time is the web UI's rule (Jobs), not the queue's
            show_progress_on=[self.report_summary],
            **api,
        )
        self.upload.click(
            self.upload_now,
            inputs=[self.upload_files, self.upload_source, self.upload_groups, self.upload_replace],
            outputs=[self.upload_result, self.uploaded, self.upload_files, *self._sources_outputs()],
            api_name="admin_upload",
            concurrency_limit=None,
            show_progress_on=[self.upload_result],
            **api,
        )

        self.remove.click(
            self.remove_now,
            inputs=[self.upload_source, self.remove_name],
            outputs=[self.upload_result, self.remove_name, *self._sources_outputs()],
            api_name="admin_remove_upload",
            concurrency_limit=None,
            show_progress_on=[self.upload_result],
            **api,
        )

    # -- the guard -----------------------------------------------------------------------------

    def _admin(self, request: gr.Request | None, action: str) -> Principal:
        """The signed-in admin, or AccessDenied (written to the audit log) for anyone else."""
        return require_role(
            request, self.users, self.audit, ADMIN_ROLES, page="admin", action=action, refusal=NOT_ALLOWED
        )

    # -- handlers ------------------------------------------------------------------------------

    def on_load(self, request: gr.Request) -> tuple[Any, ...]:
        """Whoami, the "not allowed" note or the page with its figures."""
        empty = (
            "", "", _table(HEALTH_HEADERS, []), None, "", _table(GROUP_HEADERS, []), "",
            _table(PROBLEM_HEADERS, []),
        )  # fmt: skip
        try:
            principal = self._admin(request, "open the page")
        except EnclaveError as exc:
            return ("", f"**{literal(str(exc))}**", gr.update(visible=False), *empty)
        who = f"Signed in as **{literal(principal.name)}** · {literal(principal.role)}"
        try:
            view = self._view()
        except EnclaveError as exc:
            return (who, f"**{literal(str(exc))}**", gr.update(visible=False), *empty)
        return (who, "", gr.update(visible=True), *view)

    def refresh_view(self, request: gr.Request) -> tuple[Any, ...]:
        """The figures gathered again."""
        try:
            self._admin(request, "refresh")
            return self._view()
        except EnclaveError as exc:
            raise gr.Error(str(exc), print_exception=False) from exc

    def sources_view(self, request: gr.Request) -> tuple[Any, ...]:
        """The sources with their states, and the choices of the two pickers."""
        try:
            self._admin(request, "see the sources")
        except EnclaveError as exc:
            raise gr.Error(str(exc), print_exception=False) from exc
        return self._sources_view()

    def source_report(self, name: str | None, request: gr.Request) -> tuple[Any, ...]:
        """The chosen source's last report."""
        try:
            self._admin(request, "read a source's report")
            actions = self._actions()
            if not name:
                return "", _table(REPORT_HEADERS, [])
            report = self._call(lambda: actions.last_report(name))
        except EnclaveError as exc:
            raise gr.Error(str(exc), print_exception=False) from exc
        return report_summary(report, name), _table(REPORT_HEADERS, report_rows(report))

    def sync_now(
        self, name: str | None, request: gr.Request, progress: gr.Progress = gr.Progress()
    ) -> tuple[Any, ...]:
        """Sync the chosen source now, the progress bar following its files; then its report."""
        try:
            principal = self._admin(request, "sync a source")
            actions = self._actions()
            if not name:
                raise EnclaveError("Choose the source to sync first.")
            report = self._call(lambda: actions.sync(name, principal.name, _progress(progress)))
        except EnclaveError as exc:
            raise gr.Error(str(exc), print_exception=False) from exc
        summary, table, *_ = self._sources_view()
        return report_summary(report, name), _table(REPORT_HEADERS, report_rows(report)), summary, table

    def upload_now(
        self,
        files: list[str] | None,
        name: str | None,
        groups: str | None,
        replace: bool | None,
        request: gr.Request,
        progress: gr.Progress = gr.Progress(),
    ) -> tuple[Any, ...]:
        """Keep the uploaded files in the upload source for the groups given, then sync it."""
        try:
            principal = self._admin(request, "upload files")  # before a byte of them is looked at
            actions = self._actions()
            given = [(Path(f).name, str(f)) for f in files or []]
            result = self._call(
                lambda: actions.upload(
                    name or "", given, groups or "", bool(replace), principal.name, _progress(progress)
                )
            )
        except EnclaveError as exc:
            raise gr.Error(str(exc), print_exception=False) from exc
        for _, path in given:  # kept under the data folder now: Gradio's copies go
            with contextlib.suppress(OSError):
                Path(path).unlink()
        return (
            upload_summary(result),
            _table(UPLOADED_HEADERS, uploaded_rows(result)),
            None,
            *self._sources_view(),
        )

    def remove_now(
        self,
        name: str | None,
        file_name: str | None,
        request: gr.Request,
        progress: gr.Progress = gr.Progress(),
    ) -> tuple[Any, ...]:
        """Remove one uploaded file from its upload source, then sync it out of the index."""
        try:
            principal = self._admin(request, "remove an uploaded file")
            actions = self._actions()
            if not (name or "").strip() or not (file_name or "").strip():
                raise EnclaveError("Name the upload source and the file to remove first.")
            result = self._call(
                lambda: actions.remove_upload(
                    name or "", file_name or "", principal.name, _progress(progress)
                )
            )
        except EnclaveError as exc:
            raise gr.Error(str(exc), print_exception=False) from exc
        return (removal_summary(result), "", *self._sources_view())

    # -- helpers -------------------------------------------------------------------------------

    def _actions(self) -> SourceActions:
        if self.actions is None:
            raise EnclaveError(NO_SOURCES)
        return self.actions

    @staticmethod
    def _call(action: Callable[[], Any]) -> Any:
        """`action`'s result; an unexpected error logged and told in general words."""
        try:
            return action()
        except EnclaveError:
            raise
        except Exception as exc:
            log.exception("an admin page action on the sources failed")
            raise EnclaveError("That failed unexpectedly; the details are in the server log.") from exc

    def _sources_view(self) -> tuple[Any, ...]:
        upload_choices = [DEFAULT_UPLOAD_SOURCE]
        if self.actions is None:
            states: list[dict[str, Any]] = []
            summary = f"**{NO_SOURCES}**"
        else:
            try:
                states = self._call(self.actions.states)
                summary = sources_summary(states)
            except EnclaveError as exc:
                states, summary = [], f"**{literal(str(exc))}**"
        names = [str(st["name"]) for st in states]
        upload_choices += [
            str(st["name"]) for st in states if st.get("upload") and st["name"] != DEFAULT_UPLOAD_SOURCE
        ]
        return (
            summary,
            _table(SOURCE_HEADERS, source_rows(states)),
            gr.update(choices=names),
            gr.update(choices=upload_choices),
        )

    def _view(self) -> tuple[Any, ...]:
        if self.status_source is None:
            raise EnclaveError(NO_SOURCE)
        try:
            status = self.status_source()
        except EnclaveError:
            raise
        except Exception as exc:
            log.exception("the admin status could not be gathered")
            raise EnclaveError(INTERNAL_ERROR) from exc
        checks = list(status.checks)
        return (
            model_line(checks),
            health_summary(checks),
            _table(HEALTH_HEADERS, health_rows(checks)),
            {c.name: {"ok": c.ok, **dict(c.figures)} for c in checks},
            groups_summary(status.groups, status.documents, status.chunks),
            _table(GROUP_HEADERS, [[g.group, g.documents, g.chunks] for g in status.groups]),
            ingest_summary(status.last_ingest, status.last_ingest_error),
            _table(PROBLEM_HEADERS, problem_rows(status.last_ingest)),
        )


def _progress(progress: gr.Progress) -> Progress:
    """The sources' progress reports, shown on Gradio's progress bar (which keeps its share when a
    report has none)."""
    share = 0.0

    def tell(done: float | None, text: str) -> None:
        nonlocal share
        if done is not None:
            share = done
        progress(share, desc=text)

    return tell
