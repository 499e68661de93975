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

import json
import logging
import secrets
import time
import warnings
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit, urlunsplit

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response, StreamingResponse

from audit import AuditLog
from core.errors import AccessDenied, EnclaveError
from core.identity import DirectoryUnavailable
from core.settings import Settings
from core.types import Principal
from ui import markup
from ui.accounts import Accounts
from ui.boundary import USER_KEY, Boundary, Events
from ui.files import Attachments, SourceFiles, Sources, stream_blocks
from ui.pages import NOTICES, load_logo, moved_on_page, safe_next, wants_html
from ui.pages import login_page as _login_page
from ui.sessions import Session, read_token, seal, unseal
from ui.signin import UNKNOWN_USER, Gate, Refusal

log = logging.getLogger(__name__)

OIDC_COOKIE = "enclave_oidc"  # the sign-in under way at the provider: state, nonce, PKCE verifier
OIDC_COOKIE_PATH = "/auth/oidc"
_OIDC_PURPOSE = "oidc-pending"


class OidcRoutes:
    """The OpenID Connect sign-in (ui.oidc.OidcClient) as routes: `start` sends the browser to
    the provider with a fresh state, nonce and PKCE challenge, kept in a short-lived signed
    cookie; `callback` checks them and the ID token and makes the session; `logout` gives the
    provider's end-session URL for a session signed in there.

    The session cookie is SameSite=Strict, which a browser leaves out of a navigation that began
    at another site (the provider's redirect): so the callback answers with a page of ours that
    moves on to the chat, a navigation of this site, with the new cookie."""

    def __init__(self, gate: Gate, org: str, logo: bool) -> None:
        self.gate = gate
        self.client = gate.users.oidc
        self.org = org
        self.logo = logo
        self.label = self.client.settings.button_label

    def _cookie(self, value: str | None) -> str:
        parts = [f"{OIDC_COOKIE}={value or ''}", f"Path={OIDC_COOKIE_PATH}", "HttpOnly", "SameSite=Lax"]
        parts.append("Max-Age=600" if value else "Max-Age=0")
        if self.gate.secure:
            parts.append("Secure")
        return "; ".join(parts)

    def start(self, next_path: str) -> Response:
        try:
            url, pending = self.client.begin()
        except DirectoryUnavailable as exc:
            log.error("OIDC sign-in could not start: %s", exc)
            return _login_page(
                self.org,
                logo=self.logo,
                sso=self.label,
                next_path=next_path,
                error="Sign-in through your organisation is unavailable: its sign-in service cannot "
                "be reached. Try again in a few minutes.",
                status=503,
            )
        sealed = seal(
            self.gate.secret, _OIDC_PURPOSE, json.dumps({"p": pending.to_json(), "next": next_path})
        )
        response = RedirectResponse(url, status_code=303)
        response.headers.append("set-cookie", self._cookie(sealed))
        return response

    def callback(self, sealed: str | None, params: dict[str, str], address: str) -> Response:
        from ui.oidc import OidcError, PendingLogin

        opened = unseal(self.gate.secret, _OIDC_PURPOSE, sealed) if sealed else None
        next_path = "/"
        try:
            if opened is None:
                raise OidcError(
                    "Your sign-in expired or was interrupted. Please sign in again.",
                    "callback without this browser's pending sign-in",
                )
            kept = json.loads(opened)
            next_path = safe_next(str(kept.get("next", "/")))
            login = self.client.finish(PendingLogin.from_json(str(kept["p"])), params)
        except OidcError as exc:
            self.gate.audit_event(
                "sign_in_failed", UNKNOWN_USER, {"reason": exc.reason, "address": address, "backend": "oidc"}
            )
            return self._refused(str(exc), 401, next_path)
        except DirectoryUnavailable as exc:
            log.error("OIDC sign-in could not finish: %s", exc)
            return self._refused(
                "Sign-in through your organisation is unavailable: its sign-in service cannot be "
                "reached. Try again in a few minutes.",
                503,
                next_path,
            )
        now = time.time()
        token = self.gate.sign_in_directory(login.account, login.refresh_token, "oidc", address, now)
        if isinstance(token, Refusal):
            return self._refused(token.message, token.status, next_path)
        session = read_token(self.gate.secret, token)
        if session is not None:
            self.gate.store.keep_hint(session.sid, login.id_token, now + self.gate.max_s, now)
        response = moved_on_page(self.org, next_path)
        response.headers.append("set-cookie", self.gate.cookie_header(token))
        response.headers.append("set-cookie", self._cookie(None))
        return response

    def _refused(self, message: str, status: int, next_path: str) -> Response:
        page = _login_page(
            self.org, logo=self.logo, sso=self.label, next_path=next_path, error=message, status=status
        )
        page.headers.append("set-cookie", self._cookie(None))
        return page

    def logout(self, ended: Session) -> str | None:
        """The provider's end-session URL for a session signed in through it; None otherwise."""
        if ended.method != "oidc":
            return None
        hint = self.gate.store.take_hint(ended.sid)
        # Its refresh token goes too: the provider's session ends with this sign-out, and a token
        # kept would let the checks go on for a user who signed out (their other sessions then
        # end at their next check).
        self.gate.store.forget_state(ended.user)
        settings = self.client.settings
        back = settings.post_logout_redirect_url or _beside(settings.redirect_url, "/login?m=signed_out")
        try:
            return self.client.logout_url(hint, back, secrets.token_urlsafe(16))
        except DirectoryUnavailable as exc:
            log.error("could not sign %s out at the OIDC provider: %s", ended.user, exc)
            return None


def _beside(url: str, path: str) -> str:
    """`path` on the server of `url` (where Enclave is reached from outside)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "", "", "")) + path


def blocked_paths(settings: Settings) -> list[str]:
    """What Gradio must never copy into its cache nor serve: the data folder, the secrets, the
    configuration."""
    paths = [
        settings.data_dir,
        settings.session_secret_path,
        settings.users_path,
        settings.auth_store_path,
        Path("/run/secrets"),
    ]
    secrets = [settings.audit.dsn_file, settings.ui.sso_secret_file]
    if settings.auth.ldap is not None:
        secrets.append(settings.auth.ldap.bind_password_file)
    if settings.auth.oidc is not None:
        secrets.append(settings.auth.oidc.client_secret_file)
    paths.extend(p for p in secrets if p is not None)
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
    if gate.users.oidc is not None:
        login_page = partial(_login_page, sso=settings.auth.oidc.button_label if settings.auth.oidc else None)
    else:
        login_page = _login_page
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
        ended = gate.sign_out(request.cookies.get(gate.cookie), address(request), time.time())
        # Signed in through the OIDC provider: signed out there too (RP-initiated logout).
        provider = oidc.logout(ended) if oidc is not None and ended is not None else None
        if wants_html(request):
            response: Response = RedirectResponse(provider or "/login?m=signed_out", status_code=303)
        else:
            detail: dict[str, Any] = {"success": True, "detail": "Signed out."}
            if provider:
                detail["provider_logout"] = provider
            response = JSONResponse(detail)
        response.headers.append("set-cookie", gate.cookie_header(None))
        return response

    oidc = OidcRoutes(gate, org, logo is not None) if gate.users.oidc is not None else None

    @app.get("/auth/oidc/start")
    async def oidc_start(request: Request, next: str = "/") -> Response:
        """To the organisation's OpenID Connect provider, to sign in there."""
        if oidc is None:
            return JSONResponse({"detail": "Not found."}, status_code=404)
        return await anyio.to_thread.run_sync(oidc.start, safe_next(next))

    @app.get("/auth/oidc/callback")
    async def oidc_callback(request: Request) -> Response:
        """Back from the provider: the code exchanged, the ID token checked, a session made."""
        if oidc is None:
            return JSONResponse({"detail": "Not found."}, status_code=404)
        sealed = request.cookies.get(OIDC_COOKIE)
        params = dict(request.query_params)
        return await anyio.to_thread.run_sync(oidc.callback, sealed, params, address(request))

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
