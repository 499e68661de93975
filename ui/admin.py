"""The admin page: what is indexed (documents and chunks per group), what the last ingest did
(counts, and every failed or skipped file with its reason), and the health of the stores and
models (embedding model, Chroma, lexical index, audit log, LLM and its model name, disk, telemetry).

Admins only, enforced on the server: every handler checks the signed-in user's role first (the
page hides itself from others too, but that is a courtesy, not the guard). A refused call returns
no data, says "not allowed", and is written to the audit log (`access_denied`).

The figures come from a status source the composition root passes in (enclave/health.py's
`AdminOverview`): the ui package does not read the ingest manifest itself.

No `from __future__ import annotations`: Gradio reads `gr.Request` from the handlers' annotations
at run time.
"""

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import gradio as gr

from audit import AuditLog
from core.errors import EnclaveError
from core.health import AdminStatus, CheckResult, GroupCount
from core.settings import UISettings
from core.types import Principal
from core.users import UserStore
from ui import markup
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

StatusSource = Callable[[], AdminStatus]


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


# -- the page ------------------------------------------------------------------------------------


class AdminPage:
    """The admin page, kotaemon-style: `build()` lays it out, `register_events()` wires it."""

    def __init__(
        self, status: StatusSource | None, audit: AuditLog, users: UserStore, settings: UISettings
    ) -> None:
        self.status_source = status
        self.audit = audit
        self.users = users
        self.settings = settings

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

    # -- helpers -------------------------------------------------------------------------------

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
