"""The web server in front of the Gradio app: our routes, and the Gradio Blocks mounted at `/`
behind the trust boundary (ui.boundary), which every request passes first.

Routes of our own (registered before the mount, so they win over Gradio's /login and /logout):
- `GET /login` our page (plain HTML, no external assets), `POST /login` the users file (scrypt).
  A browser gets a redirect; a script (gradio_client) gets `{"success": true}` and the cookie.
- `GET|POST /logout` ends the session on the server side, then drops the cookie.
- `GET /files/{doc_id}` the original bytes of an indexed document (ui.files).
- `GET /branding/logo` the organisation's logo.
Gradio's own `auth=` (no expiry, no logout of ours, no SSO, no rate limit, no audit) is not
used: ui.boundary tells it the user through `auth_dependency`. Gradio's own file-path checks are
switched on as if the app were launched, with the data folder and secrets on its block list,
though no event input takes a file (ui.boundary refuses any payload that holds one).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response, StreamingResponse

from audit import AuditLog
from core.errors import AccessDenied, EnclaveError
from core.settings import Settings
from core.types import Principal
from ui import markup
from ui.accounts import Accounts
from ui.boundary import USER_KEY, Boundary, Events
from ui.files import Attachments, SourceFiles, Sources, stream_blocks
from ui.pages import NOTICES, load_logo, login_page, safe_next, wants_html
from ui.sessions import Session
from ui.signin import Gate, Refusal


def blocked_paths(settings: Settings) -> list[str]:
    """What Gradio must never copy into its cache nor serve: the data folder, the secrets, the
    configuration."""
    paths = [settings.data_dir, settings.session_secret_path, settings.users_path, Path("/run/secrets")]
    if settings.audit.dsn_file is not None:
        paths.append(settings.audit.dsn_file)
    return sorted(str(Path(p).resolve()) for p in paths)


# (principal, "csv" or "jsonl", the filters) -> (the export at its start, its file name):
# ui.auditor.AuditorPage.export. AccessDenied for a non-auditor, ValueError for a bad filter.
Exports = Callable[[Principal, str, Mapping[str, str]], tuple[IO[bytes], str]]
_EXPORT_TYPES = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson"}


def create_server(
    blocks: Any,
    settings: Settings,
    users: Accounts,
    audit: AuditLog,
    sources: Sources | None,
    attachments: Attachments | None = None,
    exports: Exports | None = None,
    **mount: Any,
) -> FastAPI:
    """The FastAPI app: our sign-in routes and /files, and `blocks` mounted at `/` behind them,
    all behind ui.boundary. `attachments` serves mail attachments (None: they answer 404).
    `mount` is passed to `gr.mount_gradio_app`."""
    import gradio as gr

    gate = Gate(settings, users, audit)
    org = settings.ui.org_name
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    logo = load_logo(settings.ui.logo_path)
    files = SourceFiles(org, sources, attachments, gate.audit_event)

    @app.get("/" + markup.LOGO_ROUTE)
    def logo_file() -> Response:
        """The organisation's logo, for the login page too (so no sign-in needed)."""
        if logo is None:
            return JSONResponse({"detail": "No logo is configured (ui.logo_path)."}, status_code=404)
        content_type, data = logo
        headers = {"X-Content-Type-Options": "nosniff", "Cache-Control": "max-age=3600"}
        if content_type == "image/svg+xml":  # opened on its own, an SVG could run script: not here
            headers["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'; sandbox"
        return Response(data, media_type=content_type, headers=headers)

    def address(request: Request) -> str:
        peer = request.client.host if request.client else None
        return gate.client_address(peer, request.headers.get("x-forwarded-for"))

    @app.get("/login")
    def login_form(request: Request, next: str = "/", m: str = "") -> Response:
        token = request.cookies.get(gate.cookie)
        if token and isinstance(gate.check(token, time.time()), Session):
            return RedirectResponse(safe_next(next), status_code=303)
        return login_page(org, logo=logo is not None, next_path=safe_next(next), notice=NOTICES.get(m, ""))

    @app.post("/login")
    async def login(request: Request) -> Response:
        form = await request.form()  # from this site: ui.boundary refuses another Origin
        name = str(form.get("username") or "").strip()
        password = str(form.get("password") or "")
        next_path = safe_next(str(form.get("next") or "/"))
        if not name or not password:
            result: str | Refusal = Refusal(400, "Enter your user name and password.")
        else:
            # The users file, scrypt and the sign-in store: all blocking, so off the event loop.
            result = await anyio.to_thread.run_sync(
                gate.sign_in, name, password, address(request), time.time()
            )
        if isinstance(result, Refusal):
            headers = {}
            if result.retry_after is not None:
                headers["Retry-After"] = str(int(result.retry_after) + 1)
            if wants_html(request):
                page = login_page(
                    org,
                    logo=logo is not None,
                    next_path=next_path,
                    error=result.message,
                    name=name,
                    status=result.status,
                )
                page.headers.update(headers)
                return page
            return JSONResponse({"detail": result.message}, status_code=result.status, headers=headers)
        response: Response
        if wants_html(request):
            response = RedirectResponse(next_path, status_code=303)
        else:
            response = JSONResponse({"success": True})
        response.headers.append("set-cookie", gate.cookie_header(result))
        return response

    @app.api_route("/logout", methods=["GET", "POST"])
    def logout(request: Request) -> Response:
        gate.sign_out(request.cookies.get(gate.cookie), address(request), time.time())
        if wants_html(request):
            response: Response = RedirectResponse("/login?m=signed_out", status_code=303)
        else:
            response = JSONResponse({"success": True, "detail": "Signed out."})
        response.headers.append("set-cookie", gate.cookie_header(None))
        return response

    @app.get("/files/{doc_id}")
    async def open_file(request: Request, doc_id: str) -> Response:
        """The original of document `doc_id` (never a path), if the user shares one of its groups."""
        user = request.scope.get(USER_KEY)
        principal = await anyio.to_thread.run_sync(gate.principal, user) if user else None
        return await files.open(request, doc_id, principal)

    @app.get("/audit/export.{fmt}")
    async def export_audit(request: Request, fmt: str) -> Response:
        """The audit records the query's filters find, as CSV or JSONL (auditors only)."""
        user = request.scope.get(USER_KEY)
        principal = await anyio.to_thread.run_sync(gate.principal, user) if user else None
        if principal is None or exports is None or fmt not in _EXPORT_TYPES:
            return JSONResponse({"detail": "Not found."}, status_code=404)
        try:
            body, name = await anyio.to_thread.run_sync(exports, principal, fmt, dict(request.query_params))
        except AccessDenied as exc:
            return JSONResponse({"detail": str(exc)}, status_code=403)
        except ValueError as exc:
            return JSONResponse({"detail": f"The export's filters are not valid: {exc}"}, status_code=400)
        except EnclaveError as exc:
            return JSONResponse({"detail": str(exc)}, status_code=503)
        headers = {
            "Content-Disposition": f'attachment; filename="{name}"',
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "private, no-store",
        }
        return StreamingResponse(stream_blocks(body), media_type=_EXPORT_TYPES[fmt], headers=headers)

    def auth_dependency(request: Request) -> str | None:
        user = request.scope.get(USER_KEY)
        return str(user) if user else None

    with warnings.catch_warnings():
        # Said of every multi-page app, even with ssr_mode=False as here.
        warnings.filterwarnings("ignore", message="SSR mode is not supported", category=UserWarning)
        gr.mount_gradio_app(
            app,
            blocks,
            path="/",
            auth_dependency=auth_dependency,
            allowed_paths=[],
            blocked_paths=blocked_paths(settings),
            **mount,
        )
    # Gradio checks file paths in event data only once it believes it was launched; a mounted app
    # never is. The boundary already refuses any payload holding a file; this is the second lock.
    blocks.has_launched = True
    app.add_middleware(Boundary, gate=gate, events=Events(blocks))
    return app
