"""The auditor page: find audit records, open one in full, verify the chain, export what was found.

Auditors only, enforced on the server: every handler checks the signed-in user's role first
(the page hides itself from others too, but that is a courtesy, not the guard). A refused call
returns no data, says "not allowed", and is itself written to the audit log (`access_denied`).
Exports are audited as well (`audit_export`, with the filters used and the number of records).

No `from __future__ import annotations`: Gradio reads `gr.Request` and `gr.SelectData` from the
handlers' annotations at run time.
"""

import html
import io
import json
import logging
import tempfile
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlencode

import gradio as gr

from audit import AuditLog, AuditRecord, Feedback, RecordFilter
from audit.access import AccessReport, day_range, read_access
from audit.anchors import Anchor, last_anchor, read_anchors
from core.errors import AccessDenied, EnclaveError
from core.settings import UISettings
from core.types import Principal
from ui import markup
from ui.accounts import Accounts
from ui.login import require_role
from ui.markup import literal

log = logging.getLogger(__name__)

AUDIT_ROLES = frozenset({"auditor"})
NOT_ALLOWED = "Not allowed: the audit log is open to auditors only."
EXPORT_EVENT = "audit_export"
PAGE_ROWS = 200
ACCESS_ROWS = 200  # documents listed per interval on "Access on a day"
TABLE_HEADERS = ["id", "time (UTC)", "user", "event", "question", "error", "feedback"]
ANY = "all"
FEEDBACK_CHOICES = [
    ("all", ANY),
    ("thumbs up", "up"),
    ("thumbs down", "down"),
    ("any feedback", "any"),
    ("no feedback", "none"),
]
OUTCOME_CHOICES = [("all", ANY), ("errors only", "error"), ("no errors", "ok")]
EXPORT_ROUTE = "/audit/export"  # .csv or .jsonl; ui.server serves it (auditors only)
# The filters an export link carries, in the order the page's filter inputs come.
EXPORT_FILTERS = ("user", "since", "until", "text", "event", "feedback", "outcome")
INTERNAL_ERROR = "The audit log could not be read; the details are in the server log."


def is_auditor(principal: Principal) -> bool:
    return principal.role in AUDIT_ROLES


# -- rendering (pure functions of records; everything escaped) -----------------------------------


def esc(value: object) -> str:
    """Text made inert in gr.HTML, whose template is both a JS template string and Handlebars."""
    text = html.escape(str(value), quote=True)
    return text.replace("{", "&#123;").replace("}", "&#125;").replace("$", "&#36;").replace("`", "&#96;")


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)


def _pre(text: object) -> str:
    return f"<pre class='enclave-audit-pre'>{esc(text)}</pre>"


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return esc(f"{value:.4f}")
    if isinstance(value, str):
        if len(value) == 64 and all(c in "0123456789abcdef" for c in value):
            return f"<code>{esc(value)}</code>"  # a hash: kept whole, in a code font
        return esc(value)
    if isinstance(value, list | dict):
        return f"<code>{esc(json.dumps(value, ensure_ascii=False, sort_keys=True))}</code>"
    return esc(value)


def dict_table(rows: Sequence[Mapping[str, Any]], first: Sequence[str] = (), extra: str = "") -> str:
    """Rows of dicts as a table: `first` columns in that order, then any others by name."""
    columns = [c for c in first if any(c in r for r in rows)]
    columns += sorted({k for r in rows for k in r} - set(columns))
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{_cell(r.get(c))}</td>" for c in columns) + "</tr>" for r in rows)
    return f"<table class='enclave-audit-table {extra}'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _is_table(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _section(title: str, body: str, *, folded: bool = False) -> str:
    if folded:
        return f"<details><summary><b>{esc(title)}</b></summary>{body}</details>"
    return f"<h4>{esc(title)}</h4>{body}"


def _value_html(value: Any, first: Sequence[str] = ()) -> str:
    if isinstance(value, str):
        return _pre(value)
    if _is_table(value):
        return dict_table(value, first)
    return _pre(_json(value))


def _prompt_html(prompt: Any) -> str:
    if not (isinstance(prompt, list) and all(isinstance(m, dict) and "content" in m for m in prompt)):
        return _value_html(prompt)
    return "".join(f"<p><b>{esc(m.get('role', '?'))}</b></p>{_pre(m['content'])}" for m in prompt)


def _support_html(support: Any, answer: Any) -> str:
    if not _is_table(support):
        return _value_html(support)
    rows = []
    for s in support:
        row = dict(s)
        start, end = s.get("start"), s.get("end")
        if isinstance(answer, str) and isinstance(start, int) and isinstance(end, int):
            row["sentence"] = answer[start:end]
        rows.append(row)
    return dict_table(rows, ("sentence", "level", "cited", "lexical", "semantic"))


def _feedback_html(items: Sequence[Feedback]) -> str:
    if not items:
        return "<p>None.</p>"
    rows = [
        {"record": f.id, "time": f.ts, "user": f.user, "rating": f.rating, "comment": f.comment}
        for f in items
    ]
    note = "<p>The newest (last) feedback is the one in force.</p>" if len(items) > 1 else ""
    return dict_table(rows, ("record", "time", "user", "rating", "comment")) + note


# Keys of an answer record's data with a section of their own; anything else (new keys included)
# is shown as JSON under "Other data", so nothing recorded is ever hidden.
_OVERVIEW_KEYS = (
    "mode", "model", "role", "groups", "finish_reason", "latency_ms",
    # an ingest's or a source's sync (docs/audit-format.md)
    "source", "kind", "location", "result", "acl", "paths", "prune", "force", "started_at", "finished_at",
    "host", "started_by", "mirror", "counts", "doc_id", "sha256", "title",
    # an upload from the admin page
    "replace",
)  # fmt: skip
_SECTIONS: tuple[tuple[str, str, tuple[str, ...], bool], ...] = (
    # key, title, preferred columns, folded
    ("query", "Search query (rewritten question)", (), False),
    (
        "retrieved",
        "Retrieved passages",
        ("location", "source", "page", "score", "sha256", "used", "chunk_id", "doc_id"),
        False,
    ),
    ("context", "Context given to the model", (), True),
    ("citations", "Citations", ("n", "location", "source", "page", "chunk_id"), False),
    ("citations_removed", "Citations removed (to sources not supplied)", (), False),
    ("weakly_supported", "Weakly supported sentences", (), False),
    ("settings", "Settings in force", (), True),
    # what an upload kept, then what an ingest or a sync changed in the index, file by file
    ("files", "Files uploaded", ("name", "size", "sha256", "stored", "previous_sha256"), False),
    ("added", "Files added", ("path", "location", "doc_id", "sha256", "groups"), False),
    (
        "changed",
        "Files changed",
        ("path", "location", "doc_id", "sha256", "previous_doc_id", "previous_sha256"),
        False,
    ),
    ("moved", "Files moved or renamed", ("from", "path", "location", "doc_id", "sha256"), False),
    ("removed", "Files removed", ("path", "location", "doc_id", "sha256", "document_removed"), False),
    ("failed", "Files that failed", ("path", "reason"), False),
    ("skipped", "Files skipped", ("path", "reason"), True),
)


def record_html(record: AuditRecord, feedback: Sequence[Feedback] = ()) -> str:
    """One record in full: header, question, retrieval, prompt, reasoning, answer, citations,
    support, feedback, and every other data key as JSON. All text is escaped."""
    data: Mapping[str, Any] = record.data if isinstance(record.data, Mapping) else {}
    overview = {"time (UTC)": record.ts, "user": record.user, "event": record.event}
    overview.update({k: data[k] for k in _OVERVIEW_KEYS if k in data})
    if record.error:
        overview["error"] = record.error
    overview.update({"hash": record.hash, "previous hash": record.prev_hash})
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{_cell(v)}</td></tr>" for k, v in overview.items())
    parts = [
        f"<h3>Audit record {esc(record.id)} · {esc(record.event)}</h3>",
        f"<table class='enclave-audit-table enclave-audit-overview'>{rows}</table>",
    ]
    if record.question:
        parts.append(_section("Question", _pre(record.question)))
    shown = set(_OVERVIEW_KEYS)
    for key, title, first, folded in _SECTIONS[:2]:  # query, retrieved
        if data.get(key) not in (None, [], {}, ""):
            parts.append(_section(title, _value_html(data[key], first), folded=folded))
        shown.add(key)
    if data.get("prompt"):
        count = len(data["prompt"]) if isinstance(data["prompt"], list) else 1
        parts.append(_section(f"Prompt ({count} messages)", _prompt_html(data["prompt"]), folded=True))
    if data.get("reasoning"):
        parts.append(_section("Reasoning", _pre(data["reasoning"]), folded=True))
    if "answer" in data:
        parts.append(_section("Answer", _value_html(data["answer"])))
    if data.get("support"):
        parts.append(_section("Support of each sentence", _support_html(data["support"], data.get("answer"))))
    shown.update({"prompt", "reasoning", "answer", "support"})
    for key, title, first, folded in _SECTIONS[2:]:
        if data.get(key) not in (None, [], {}, ""):
            parts.append(_section(title, _value_html(data[key], first), folded=folded))
        shown.add(key)
    if record.event in ("answer", "answer_error") or feedback:
        parts.append(_section("Feedback", _feedback_html(feedback)))
    other = {k: v for k, v in data.items() if k not in shown}
    if other:
        parts.append(_section("Other data", _pre(_json(other))))
    return "<div class='enclave-audit-record'>" + "".join(parts) + "</div>"


RECORD_CSS = """
.enclave-audit-table { border-collapse: collapse; margin: .25rem 0 .75rem; font-size: .9em; }
.enclave-audit-table th, .enclave-audit-table td { border: 1px solid var(--border-color-primary);
  padding: .2rem .4rem; text-align: left; vertical-align: top; overflow-wrap: anywhere; }
.enclave-audit-pre { white-space: pre-wrap; overflow-wrap: anywhere; max-height: 24rem; overflow: auto;
  padding: .5rem; border: 1px solid var(--border-color-primary); border-radius: 4px; }
details { margin: .5rem 0; }
"""


def table_rows(records: Sequence[AuditRecord], latest: Mapping[int, Feedback]) -> list[list[Any]]:
    rows = []
    for r in records:
        question = " ".join(r.question.split())
        fb = latest.get(r.id)
        rows.append(
            [
                r.id,
                r.ts[:19].replace("T", " "),
                r.user,
                r.event,
                question if len(question) <= 140 else question[:139] + "…",
                (r.error or "")[:120],
                "" if fb is None else fb.rating + (" (comment)" if fb.comment else ""),
            ]
        )
    return rows


def _table(rows: list[list[Any]]) -> dict[str, Any]:
    return {"headers": TABLE_HEADERS, "data": rows}


def verify_markdown(
    ok: bool, checked: int, purged: int, first_bad: int | None, reason: str, head: tuple[int, str]
) -> str:
    if ok:
        purge = (
            f" Records 1–{purged} were removed by retention purges; the chain is verified from there."
            if purged
            else ""
        )
        noun = "record" if checked == 1 else "records"
        return (
            f"**Chain intact**: {checked} {noun} verified.{purge}  \n"
            f"Head: record {head[0]}, hash `{head[1]}` — keep it elsewhere to detect a rewound log."
        )
    return f"**Chain BROKEN** at record {first_bad}: {literal(reason)}"


def anchor_markdown(anchor: Anchor | None, where: Path | None) -> str:
    """The last chain head written down outside the log, in words."""
    if where is None:
        return "Last anchor: none kept in a file (set audit.anchor_file); the server log has them."
    if anchor is None:
        return f"Last anchor: none yet in {literal(str(where))}."
    return (
        f"Last anchor: written {literal(anchor.at or 'at an unknown time')}, record {anchor.seq}, "
        f"hash `{anchor.hash}` ({literal(str(where))})."
    )


# -- the page ------------------------------------------------------------------------------------


def _span(start: str, end: str) -> str:
    return f"{esc(start[:19].replace('T', ' '))} to {esc(end[:19].replace('T', ' '))}"


def access_html(report: AccessReport, limit: int = ACCESS_ROWS) -> str:
    """What a user could read, and was shown, over a range (audit.access), for the page."""
    parts = [f"<h4>{esc(report.user)}: {_span(report.start, report.end)} UTC</h4>"]
    for s in report.standings:
        said = f"{esc(s.event)} #{s.record_id}" if s.record_id else "no record before"
        if s.revoked:
            parts.append(
                f"<p><b>{_span(s.start, s.end)}</b>: signed out by the directory ({said}); nothing readable</p>"
            )
            continue
        if s.groups is None:
            parts.append(
                f"<p><b>{_span(s.start, s.end)}</b>: groups <b>unknown</b> ({said}): no record names them, "
                "so what could be read then is unknown</p>"
            )
            continue
        docs = s.documents or ()
        parts.append(
            f"<p><b>{_span(s.start, s.end)}</b>: role {esc(s.role or 'unknown')}, groups "
            f"{esc(', '.join(s.groups) or '(none)')} ({esc(s.backend) + ', ' if s.backend else ''}{said}): "
            f"{len(docs)} documents readable</p>"
        )
        if docs:
            rows = [
                {"doc_id": d.doc_id, "document": d.label, "groups": ", ".join(d.groups),
                 "from": d.start[:19].replace("T", " "), "until": d.end[:19].replace("T", " ")}
                for d in docs[:limit]
            ]  # fmt: skip
            more = f"<p>… and {len(docs) - limit} more (`enclave audit access --json` lists all)</p>"
            parts.append(
                dict_table(rows, ["doc_id", "document", "groups", "from", "until"])
                + (more if len(docs) > limit else "")
            )
    shown = [
        {"id": s.record_id, "time": s.ts[:19].replace("T", " "), "event": s.event, "question": s.question,
         "error": s.error, "documents": "; ".join(
             f"{d.label} ({'readable' if d.readable else 'NOT readable' if d.readable is False else 'unknown'})"
             for d in s.documents)}
        for s in report.shown
    ]  # fmt: skip
    parts.append(
        _section(f"Asked and shown ({len(shown)})", dict_table(shown, ["id", "time", "event", "question"]))
    )
    parts.extend(f"<p><i>{esc(note)}</i></p>" for note in report.notes)
    return "".join(parts)


class AuditorPage:
    """The auditor page, kotaemon-style: `build()` lays it out, `register_events()` wires it."""

    def __init__(self, audit: AuditLog, users: Accounts, settings: UISettings) -> None:
        self.audit = audit
        self.users = users
        self.settings = settings

    # -- layout --------------------------------------------------------------------------------

    def build(self) -> None:
        org = esc(self.settings.org_name)
        with gr.Row(equal_height=True):
            gr.HTML(
                f"<h2 style='margin:0'>{markup.logo(self.settings.org_name, self.settings.logo_path is not None)}{org} audit log</h2>",
                js_on_load=None,
                elem_id="enclave-audit-title",
            )
            self.whoami = gr.Markdown(elem_id="enclave-audit-whoami")
            gr.Button("Sign out", link="/logout", size="sm", scale=0, min_width=100)
        self.status = gr.Markdown(elem_id="enclave-audit-status")
        with gr.Column(visible=False, elem_id="enclave-audit-panel") as self.panel:
            with gr.Row():
                self.user = gr.Textbox(label="User", placeholder="any user", elem_id="enclave-audit-user")
                self.since = gr.DateTime(label="From (UTC)", include_time=False, type="string")
                self.until = gr.DateTime(label="To (UTC, inclusive)", include_time=False, type="string")
                self.text = gr.Textbox(label="Text in question or answer", elem_id="enclave-audit-text")
            with gr.Row(equal_height=True):
                self.event = gr.Dropdown(label="Event", choices=[ANY], value=ANY, allow_custom_value=True)
                self.feedback = gr.Dropdown(label="Feedback", choices=FEEDBACK_CHOICES, value=ANY)
                self.outcome = gr.Dropdown(label="Outcome", choices=OUTCOME_CHOICES, value=ANY)
                self.search = gr.Button("Search", variant="primary", elem_id="enclave-audit-search")
            self.summary = gr.Markdown(elem_id="enclave-audit-summary")
            self.table = gr.Dataframe(
                value=_table([]),
                headers=TABLE_HEADERS,
                datatype="str",
                type="array",
                interactive=False,
                wrap=True,
                max_height=420,
                elem_id="enclave-audit-table",
            )
            with gr.Row(equal_height=True):
                self.record_id = gr.Number(
                    value=None,  # empty until chosen: 0 would show as an invalid id
                    label="Record id",
                    precision=0,
                    minimum=1,
                    elem_id="enclave-audit-id",
                )
                self.open = gr.Button("Open record", elem_id="enclave-audit-open")
                self.verify = gr.Button("Verify chain", elem_id="enclave-audit-verify")
                self.export_csv = gr.Button("Export CSV", elem_id="enclave-audit-export-csv")
                self.export_jsonl = gr.Button("Export JSONL", elem_id="enclave-audit-export-jsonl")
            self.verified = gr.Markdown(elem_id="enclave-audit-verified")
            self.download = gr.HTML(elem_id="enclave-audit-download")
            self.detail = gr.HTML(js_on_load=None, css_template=RECORD_CSS, elem_id="enclave-audit-record")
            with gr.Accordion("Raw record (JSON, as stored)", open=False):
                self.raw = gr.JSON(elem_id="enclave-audit-raw")
            with gr.Accordion("Access on a day: what a user could read, and was shown", open=False):
                with gr.Row(equal_height=True):
                    self.access_user = gr.Textbox(label="User", elem_id="enclave-audit-access-user")
                    self.access_day = gr.DateTime(label="Day (UTC)", include_time=False, type="string")
                    self.access_show = gr.Button("Show access", elem_id="enclave-audit-access-show")
                self.access = gr.HTML(
                    js_on_load=None, css_template=RECORD_CSS, elem_id="enclave-audit-access"
                )

    def register_events(self, app: gr.Blocks) -> None:
        filters = [self.user, self.since, self.until, self.text, self.event, self.feedback, self.outcome]
        # Callable by name (the tests, scripts) but kept off the API page, which lists /ask only.
        api: dict[str, Any] = {"api_visibility": "undocumented"}
        app.load(
            self.on_load,
            inputs=None,
            outputs=[self.whoami, self.status, self.panel, self.event, self.table, self.summary],
            api_name="audit_page",
            **api,
        )
        gr.on(
            triggers=[self.search.click, self.text.submit, self.user.submit],
            fn=self.search_records,
            inputs=filters,
            outputs=[self.table, self.summary],
            api_name="audit_search",
            **api,
        )
        gr.on(
            triggers=[self.open.click, self.record_id.submit],
            fn=self.open_record,
            inputs=[self.record_id],
            outputs=[self.detail, self.raw],
            api_name="audit_record",
            **api,
        )
        self.table.select(
            self.select_row,
            inputs=None,
            outputs=[self.record_id, self.detail, self.raw],
            api_name="audit_select_row",
            api_visibility="private",
        )
        self.verify.click(
            self.verify_chain, inputs=None, outputs=self.verified, api_name="audit_verify", **api
        )
        self.export_csv.click(
            self.export_as_csv, inputs=filters, outputs=self.download, api_name="audit_export_csv", **api
        )
        self.export_jsonl.click(
            self.export_as_jsonl, inputs=filters, outputs=self.download, api_name="audit_export_jsonl", **api
        )
        gr.on(
            triggers=[self.access_show.click, self.access_user.submit],
            fn=self.access_on_day,
            inputs=[self.access_user, self.access_day],
            outputs=self.access,
            api_name="audit_access",
            **api,
        )

    # -- the guard -----------------------------------------------------------------------------

    def _auditor(self, request: gr.Request | None, action: str) -> Principal:
        """The signed-in auditor, or AccessDenied (written to the audit log) for anyone else."""
        return require_role(
            request, self.users, self.audit, AUDIT_ROLES, page="audit", action=action, refusal=NOT_ALLOWED
        )

    def _guarded(self, request: gr.Request | None, action: str) -> Principal:
        try:
            return self._auditor(request, action)
        except EnclaveError as exc:
            raise gr.Error(str(exc), print_exception=False) from exc

    # -- handlers ------------------------------------------------------------------------------

    def on_load(self, request: gr.Request) -> tuple[Any, ...]:
        """Whoami, the "not allowed" note or the filters and the newest records."""
        try:
            principal = self._auditor(request, "open the page")
        except EnclaveError as exc:
            hidden = gr.update(visible=False)
            return "", f"**{literal(str(exc))}**", hidden, gr.update(choices=[ANY], value=ANY), _table([]), ""
        who = f"Signed in as **{literal(principal.name)}** · {literal(principal.role)}"
        try:
            events = self.audit.events()
            table, summary = self._search(RecordFilter.of())
        except EnclaveError as exc:
            log.exception("the audit log could not be read for %s", principal.name)
            return who, f"**{literal(str(exc))}**", gr.update(visible=True), gr.skip(), _table([]), ""
        choices = [ANY, *events]
        anchor = self._last_anchor()
        return who, anchor, gr.update(visible=True), gr.update(choices=choices, value=ANY), table, summary

    def search_records(
        self,
        user: str | None,
        since: str | None,
        until: str | None,
        text: str | None,
        event: str | None,
        feedback: str | None,
        outcome: str | None,
        request: gr.Request,
    ) -> tuple[dict[str, Any], str]:
        """The newest matching records (up to PAGE_ROWS) and a line saying how many match."""
        self._guarded(request, "search")
        query = self._filter(user, since, until, text, event, feedback, outcome)
        return self._search(query)

    def open_record(self, record_id: float | None, request: gr.Request) -> tuple[str, dict[str, Any]]:
        """One record rendered in full, and the record as stored."""
        self._guarded(request, "open a record")
        if record_id is None or record_id != int(record_id) or record_id < 1:
            raise gr.Error(f"Record id {record_id!r} is not a record number: enter a whole number from 1.")
        rid = int(record_id)
        try:
            record = self.audit.get(rid)
            feedback = self.audit.feedback_for(rid) if record is not None else []
        except EnclaveError as exc:
            raise gr.Error(str(exc), print_exception=False) from exc
        if record is None:
            raise gr.Error(
                f"There is no audit record {rid} (never written, or removed by a retention purge)."
            )
        return record_html(record, feedback), _raw(record)

    def select_row(self, evt: gr.SelectData, request: gr.Request) -> tuple[Any, str, dict[str, Any]]:
        self._guarded(request, "open a record")
        row = evt.row_value or []
        try:
            rid = int(row[0])
        except (IndexError, TypeError, ValueError):
            return gr.skip(), gr.skip(), gr.skip()
        detail, raw = self.open_record(rid, request)
        return rid, detail, raw

    def access_on_day(self, user: str | None, day: str | None, request: gr.Request) -> str:
        """What `user` could read, and was shown, on `day` (audit.access), as HTML."""
        self._guarded(request, "see what a user could read")
        name = (user or "").strip()
        if not name:
            raise gr.Error("Enter the user's name, as the audit log names them.")
        try:
            report = read_access(self.audit, name, day_range(day or "", "Day"))
        except (ValueError, EnclaveError) as exc:
            raise gr.Error(str(exc), print_exception=False) from exc
        return access_html(report)

    def verify_chain(self, request: gr.Request) -> str:
        """The result of re-computing the whole hash chain, in words."""
        self._guarded(request, "verify the chain")
        result = self.audit.verify()
        head = self.audit.head()
        verified = verify_markdown(
            result.ok, result.checked, result.purged_through, result.first_bad_id, result.reason, head
        )
        return f"{verified}  \n{self._last_anchor()}"

    def _last_anchor(self) -> str:
        """The last anchor, and whether the log still holds the heads in the anchor file."""
        where = self.audit.anchor_file
        try:
            anchor = None if where is None else last_anchor(where)
            note = anchor_markdown(anchor, where)
            if where is not None and anchor is not None:
                checked = self.audit.check_anchors(read_anchors(where), str(where))
                mark = "" if checked.ok else "**The log does NOT match its anchors**: "
                note += f"  \n{mark}{literal(checked.reason)}"
            return note
        except (ValueError, EnclaveError) as exc:
            log.warning("the audit anchors could not be checked: %s", exc)
            return f"**{literal(str(exc))}**"

    def export_as_csv(
        self,
        user: str | None,
        since: str | None,
        until: str | None,
        text: str | None,
        event: str | None,
        feedback: str | None,
        outcome: str | None,
        request: gr.Request,
    ) -> str:
        """Every matching record, oldest first, as a CSV file to download."""
        return self._export("csv", request, user, since, until, text, event, feedback, outcome)

    def export_as_jsonl(
        self,
        user: str | None,
        since: str | None,
        until: str | None,
        text: str | None,
        event: str | None,
        feedback: str | None,
        outcome: str | None,
        request: gr.Request,
    ) -> str:
        """Every matching record, oldest first, as a JSONL file (re-verifiable when unfiltered)."""
        return self._export("jsonl", request, user, since, until, text, event, feedback, outcome)

    # -- helpers -------------------------------------------------------------------------------

    @staticmethod
    def _filter(
        user: str | None,
        since: str | None,
        until: str | None,
        text: str | None,
        event: str | None,
        feedback: str | None,
        outcome: str | None,
    ) -> RecordFilter:
        has_error = {"error": True, "ok": False}.get(outcome or ANY)
        try:
            return RecordFilter.of(
                user=user,
                since=since or None,
                until=until or None,
                text=text,
                event=None if event in (None, "", ANY) else event,
                has_error=has_error,
                feedback=None if feedback in (None, "", ANY) else feedback,
            )
        except ValueError as exc:
            raise gr.Error(str(exc), print_exception=False) from exc

    def _search(self, query: RecordFilter) -> tuple[dict[str, Any], str]:
        try:
            records = self.audit.select(query, limit=PAGE_ROWS)
            total = self.audit.count(query) if len(records) == PAGE_ROWS else len(records)
            latest = self.audit.latest_feedback(r.id for r in records)
        except EnclaveError as exc:
            raise gr.Error(str(exc), print_exception=False) from exc
        if not records:
            summary = "No record matches these filters."
        elif total > len(records):
            summary = (
                f"{total} records match; the newest {len(records)} are shown. Narrow the filters, "
                "or export them all."
            )
        else:
            matches = "1 record matches" if total == 1 else f"{total} records match"
            summary = f"{matches}, newest first. Select a row to open it."
        return _table(table_rows(records, latest)), summary

    def _export(self, fmt: str, request: gr.Request, *filters: str | None) -> str:
        """A link to the export of what the filters find (the route streams it; see `export`)."""
        self._guarded(request, f"export {fmt}")
        query = self._filter(*filters)
        try:
            count = self.audit.count(query)
        except EnclaveError as exc:
            raise gr.Error(str(exc), print_exception=False) from exc
        params = {k: v for k, v in zip(EXPORT_FILTERS, filters, strict=True) if v not in (None, "", ANY)}
        href = f"{EXPORT_ROUTE}.{fmt}?{urlencode(params)}"
        what = "1 record" if count == 1 else f"{count} records"
        return (
            f"<a class='enclave-export' href='{html.escape(href, quote=True)}' download='enclave-audit.{fmt}'>"
            f"Download {what} as {fmt.upper()}</a>"
        )

    def export(self, principal: Principal, fmt: str, params: Mapping[str, str]) -> tuple[IO[bytes], str]:
        """The export in `fmt` of the records `params` (EXPORT_FILTERS) find, for `principal`, as
        (an anonymous temporary file at its start, the file name to offer): nothing is left in a
        shared folder, and the export is on the record with who asked for what."""
        if not is_auditor(principal) or fmt not in ("csv", "jsonl"):
            raise AccessDenied("Not allowed: the audit log is open to auditors only.")
        try:
            query = self._filter(*(params.get(name) for name in EXPORT_FILTERS))
        except gr.Error as exc:
            raise ValueError(exc.message) from exc
        body = tempfile.TemporaryFile()  # unlinked at once: gone when closed, or if the process dies
        try:
            text = io.TextIOWrapper(body, encoding="utf-8", newline="", write_through=True)
            count = self.audit.export(self.audit.iter_select(query, oldest_first=True), fmt, text)
            text.detach()
            self.audit.append(
                EXPORT_EVENT,
                principal.name,
                data={"format": fmt, "filters": query.as_dict(), "records": count},
            )
        except BaseException:
            body.close()
            raise
        body.seek(0)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        return body, f"enclave-audit-{stamp}.{fmt}"


def _raw(record: AuditRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "ts": record.ts,
        "event": record.event,
        "user": record.user,
        "question": record.question,
        "error": record.error,
        "data": record.data,
        "prev_hash": record.prev_hash,
        "hash": record.hash,
    }
