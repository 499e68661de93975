"""The staff web UI: `build_app` assembles the Gradio app, `serve` runs it on settings.ui.

Three pages: the chat at `/`, the audit log at `/audit` for auditors and the admin page at `/admin`
for admins (the navigation bar is shown to auditors and admins only; every handler of those pages
checks the role itself).

Only loopback traffic: analytics are off on the Blocks itself (not only through the
environment), the theme is a built-in one whose fonts Gradio serves from its own static files,
and share links, run history (which can sync to a Hugging Face bucket), PWA, MCP and the
monitoring page are switched off at launch.
"""

from __future__ import annotations

import logging
from typing import Any

import gradio as gr
import uvicorn
from gradio.http_server import Server
from gradio.routes import App as GradioApp

from audit import AuditLog
from core.errors import ConfigError, EnclaveError
from core.settings import Settings, UISettings
from core.users import UserStore
from ui.accounts import Accounts, accounts_for
from ui.admin import AdminPage, SourceActions, StatusSource, is_admin
from ui.auditor import AuditorPage, is_auditor
from ui.chat import ChatPage
from ui.files import Attachments, Sources
from ui.login import principal_of
from ui.server import create_server
from ui.sessions import QuestionLimit

log = logging.getLogger(__name__)

# The users file and audit log travel with the app they were built for: `serve` takes only the
# app and the settings, and sign-in checks and audits against the app's own.
_SIGN_IN = "_enclave_sign_in"


AUDIT_PATH = "audit"
ADMIN_PATH = "admin"
# Nothing of ours goes through Gradio's cache (exports stream from ui.server); should anything
# land there, it is removed hourly once an hour old.
_CACHE_CLEANUP = (3600, 3600)


def build_app(
    assistant: Any,
    users: UserStore | Accounts,
    settings: Settings,
    audit: AuditLog | None = None,
    admin_status: StatusSource | None = None,
    admin_sources: SourceActions | None = None,
) -> gr.Blocks:
    """The chat UI for `assistant` (anything with the Assistant's `stream` method), the
    auditor page over `audit`, and the admin page showing what `admin_status` gathers
    (enclave.health.AdminOverview) and running the sources through `admin_sources`
    (enclave.admin_sources.AdminSources; None: the page lists none).

    Sign-ins, feedback and answers go to one log: `audit`, else the assistant's own
    (`assistant.audit`); only where audit.backend is sqlite may both be missing (the file at
    settings.audit_path then). On another backend that is a ConfigError, never a second trail."""
    org = settings.ui.org_name
    audit_log = audit if audit is not None else getattr(assistant, "audit", None)
    if audit_log is None:
        if settings.audit.backend != "sqlite":
            raise ConfigError(
                f"audit.backend is {settings.audit.backend}, but the web UI was given no audit log: "
                "pass build_app the log of that backend (enclave.wiring.build_audit(settings)), so "
                "sign-ins and feedback do not go to a separate SQLite file"
            )
        audit_log = AuditLog(settings.audit_path)
    # The users file and, where auth.* sets them, the directory and the OIDC provider.
    accounts = users if isinstance(users, Accounts) else accounts_for(settings, users, audit_log)
    app = gr.Blocks(
        title=f"{org} · Enclave", analytics_enabled=False, fill_height=True, delete_cache=_CACHE_CLEANUP
    )
    with app:
        # "hidden", not False: a Navbar that is not rendered cannot tell the page to drop its
        # default bar (which would show "Home" and "Audit log" to everyone).
        navbar = gr.Navbar(visible="hidden", main_page_name="Chat")
        page = ChatPage(
            assistant, accounts, settings.ui, audit=audit_log, limit=QuestionLimit.from_settings(settings)
        )
        page.build()
        page.register_events(app)
        app.load(
            _navbar_for(accounts), inputs=None, outputs=navbar, api_name="navbar", api_visibility="private"
        )
    with app.route("Audit log", AUDIT_PATH):
        gr.Navbar(visible=True, main_page_name="Chat")
        auditor = AuditorPage(audit_log, accounts, settings.ui)
        auditor.build()
        auditor.register_events(app)
    with app.route("Admin", ADMIN_PATH):
        gr.Navbar(visible=True, main_page_name="Chat")
        admin = AdminPage(admin_status, audit_log, accounts, settings.ui, admin_sources)
        admin.build()
        admin.register_events(app)
    setattr(app, _SIGN_IN, (accounts, audit_log, auditor.export))
    configure_queue(app, settings.ui)
    return app


def configure_queue(app: gr.Blocks, ui: UISettings) -> None:
    """Gradio's queue as ui.* says, not Gradio's defaults (one of each event at a time, an
    unbounded queue, 40 threads shared by every event); docs/deploy.md says why.

    Each running event holds a worker thread of the app's own pool. Answers may take
    concurrent_answers of them; concurrent_events more are kept for everything else, so a page
    still loads and a thumb is still recorded while every answer slot is busy.
    """
    app.max_threads = ui.concurrent_answers + ui.concurrent_events
    app.queue(max_size=ui.queue_max_size, default_concurrency_limit=ui.concurrent_events)
    app.create_limiter()  # Blocks.launch() would; serve() mounts the app instead


def _navbar_for(users: Accounts) -> Any:
    def navbar(request: gr.Request) -> Any:
        """Page links for auditors and admins only; staff have one page, and no bar."""
        try:
            principal = principal_of(request, users)
            shown = is_auditor(principal) or is_admin(principal)
        except EnclaveError:
            shown = False
        return gr.update(visible=True if shown else "hidden")

    return navbar


def serve(
    app: gr.Blocks,
    settings: Settings,
    *,
    block: bool = True,
    sources: Sources | None = None,
    attachments: Attachments | None = None,
) -> str:
    """Run `app` on settings.ui.host:port behind our sign-in (ui.server); return its local URL.

    `sources` finds a document's original file for the /files links (None: every link answers
    404); `attachments` takes a mail attachment out of its mail (None: those answer 404). With
    block=False, return once the server answers (tests, embedding); close it with
    `app.close()`.
    """
    wiring = getattr(app, _SIGN_IN, None)
    if wiring is None:
        raise ValueError("serve() runs apps made by ui.build_app(); this one has no users file")
    users, audit_log, exports = wiring
    server_app = create_server(
        app,
        settings,
        users,
        audit_log,
        sources,
        attachments,
        exports,
        theme=gr.themes.Default(),
        ssr_mode=False,  # SSR needs a Node 24+ proxy process; the client-rendered page is enough
        pwa=False,
        mcp_server=False,
        run_history=False,  # would keep questions and answers in the browser's storage
        enable_monitoring=False,
        footer_links=["api"],
        show_error=False,  # our handlers produce the messages users see; tracebacks stay in the log
        # Only admins upload (ui.boundary), on the admin page: each file up to what the ingest takes.
        max_file_size=int(settings.ingest.max_file_mb * 1024 * 1024),
        server_name=settings.ui.host,
        server_port=settings.ui.port,
    )
    config = uvicorn.Config(
        server_app,
        host=settings.ui.host,
        port=settings.ui.port,
        log_level="warning",
        access_log=False,
        ws="none",  # Gradio's queue streams over HTTP (SSE); no websocket route is served
        lifespan="on",
    )
    server = Server(config)
    server.run_in_thread()
    # Blocks.close() stops the queue and this server, as it does for Blocks.launch().
    app.server = server
    app.app = next(r.app for r in server_app.routes if isinstance(getattr(r, "app", None), GradioApp))
    host = "127.0.0.1" if settings.ui.host in ("0.0.0.0", "::") else settings.ui.host
    url = f"http://{host}:{settings.ui.port}/"
    log.info("web UI for %s listening on %s", settings.ui.org_name, url)
    if block:
        print(f"Enclave web UI for {settings.ui.org_name} on {url} (Ctrl+C stops it)", flush=True)
        app.block_thread()
    return url
