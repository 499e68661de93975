"""The web server in front of the Gradio app: sign-in, sign-out, sessions, SSO and source files.

A FastAPI app owns everything about who is asking, and the Gradio Blocks is mounted on it at
`/`, told the user by `auth_dependency`. Gradio's own `auth=` (no expiry, no logout of ours, no
SSO, no rate limit, no audit) is not used.

Routes (registered before the mount, so they win over Gradio's own /login and /logout):
- `GET /login` our page (plain HTML, no external assets), `POST /login` the users file (scrypt).
  A browser gets a redirect; a script (gradio_client) gets `{"success": true}` and the cookie.
- `GET|POST /logout` ends the session on the server side, then drops the cookie.
- `GET /files/{doc_id}` the original bytes of an indexed document (a mail attachment taken out
  of its mail again), after the retrieval group check (see `open_file`).
Every other path needs a session (or a trusted SSO header): a browser asking for a page without
one is sent to /login, anything else gets 401. Gradio's upload route is closed (nothing in the
app takes a file; it would let any user fill the disk), and a request body over
`ui.max_request_kb` is refused with 413 before it is read.

Sessions are stateless tokens, so replicas need share nothing but their configured stores:
`base64url(json) "." base64url(HMAC-SHA256)`, the JSON holding the user, a random session id,
the sign-in time and the last time it was refreshed. The key is a file (settings
`ui.session_secret_path`, default `<data_dir>/session.key`, 32 random bytes, created 0600 on
first use with a link that cannot overwrite, so replicas racing to create it agree). A token is
good while its HMAC holds, it is younger than `ui.session_max_hours` and was refreshed within
`ui.session_idle_minutes`; a request with a token older than a minute gets a fresh cookie with
the same id and sign-in time (sliding idle expiry). Signing out records the session id in the
shared SQLite store (`ui.auth_store_path`, default `<data_dir>/auth.sqlite3`) until the token
would have expired anyway; every request checks it. The same store counts failed sign-ins per
user name and per client address (`ui.login_max_failures` within `ui.login_window_minutes`), and
the questions each user asked (`QuestionLimit`: `ui.question_limit` within
`ui.question_window_minutes`).

SSO: when `ui.sso_header` is set and a request comes straight from an address in
`ui.trusted_proxies`, the header names the user; the user must exist in the users file (role
and groups come from there). A session cookie is issued for them (one `sign_in` event per
session, not one per request). The header from any other peer is ignored and logged.

Audit events (AuditLog.append, never a password): `sign_in`, `sign_in_failed`, `sign_out`,
`access_denied` (a page or file the user may not open), `file_opened`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import ipaddress
import json
import logging
import mimetypes
import os
import re
import secrets
import sqlite3
import tempfile
import time
import unicodedata
import warnings
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from audit import AuditLog
from core.errors import ConfigError
from core.settings import Settings
from core.types import OriginalFile, Principal
from core.users import UserStore
from ui import markup
from ui.login import ACCESS_DENIED_EVENT

log = logging.getLogger(__name__)

COOKIE = "enclave_session"
USER_KEY = "enclave.user"  # the signed-in user's name, in the ASGI scope, for auth_dependency
REFRESH_AFTER_S = 60.0
SECRET_BYTES = 32
_PUBLIC_PATHS = frozenset({"/login", "/login/", "/logout", "/logout/", "/" + markup.LOGO_ROUTE})
MAX_LOGO_BYTES = 1024 * 1024
# Pages of the Gradio app by the roles that may open them (the handlers check again).
PAGE_ROLES: dict[str, frozenset[str]] = {"/audit": frozenset({"auditor"}), "/admin": frozenset({"admin"})}
_DOC_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
# Gradio's upload route: the app has no upload component, so nothing may be uploaded.
_CLOSED_PATHS = frozenset({"/gradio_api/upload", "/gradio_api/upload/"})
MAX_NAME_CHARS = 64  # a longer "user name" is logged cut, so an attacker cannot bloat the log

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
Sources = Callable[[str], OriginalFile | None]
# (file name, bytes) of the mail attachment that is this document, taken out of its mail again;
# None when they cannot be found or are not the document's any more.
Attachments = Callable[[str], tuple[str, bytes] | None]


# -- the key ------------------------------------------------------------------------------------


def load_secret(path: Path) -> bytes:
    """The session key at `path`, created (0600) when missing. Several processes may race here:
    the key is written to a temporary file and linked into place, so exactly one wins and the
    others read its key."""
    try:
        secret = path.read_bytes()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".session-key-")
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, secrets.token_bytes(SECRET_BYTES))
            os.fsync(fd)
            os.close(fd)
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass
        finally:
            os.unlink(tmp)
        secret = path.read_bytes()
    if len(secret) < SECRET_BYTES:
        raise ConfigError(
            f"session key file {path} holds {len(secret)} bytes, fewer than {SECRET_BYTES}: "
            "delete it to have a new one made (everyone is signed out)"
        )
    return secret


# -- tokens -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Session:
    user: str
    sid: str
    issued: float  # sign-in time, seconds since the epoch
    seen: float  # when this token was made (sign-in, or the last refresh)
    method: str  # "password" or "sso"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def issue_token(secret: bytes, session: Session) -> str:
    """The cookie value for `session`, signed with `secret`."""
    body = json.dumps(
        {
            "u": session.user,
            "sid": session.sid,
            "iat": session.issued,
            "seen": session.seen,
            "m": session.method,
        },
        separators=(",", ":"),
    ).encode("utf-8")
    mac = hmac.new(secret, body, hashlib.sha256).digest()
    return f"{_b64(body)}.{_b64(mac)}"


def read_token(secret: bytes, token: str) -> Session | None:
    """The session a token carries if its signature holds (expiry is checked by the caller)."""
    try:
        body_text, mac_text = token.split(".")
        body, mac = _unb64(body_text), _unb64(mac_text)
    except ValueError:
        return None
    if not hmac.compare_digest(mac, hmac.new(secret, body, hashlib.sha256).digest()):
        return None
    try:
        raw = json.loads(body)
        return Session(str(raw["u"]), str(raw["sid"]), float(raw["iat"]), float(raw["seen"]), str(raw["m"]))
    except (ValueError, KeyError, TypeError):
        return None


# -- the shared store -----------------------------------------------------------------------------


class AuthStore:
    """Signed-out sessions and failed sign-ins, in SQLite shared by every replica.

    Each call opens and closes its own connection (as AuditLog does); rows past any use are
    removed as new ones are written.
    """

    def __init__(self, path: Path, *, busy_timeout_s: float = 10.0) -> None:
        self.path = path
        self.busy_timeout_s = busy_timeout_s

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("CREATE TABLE IF NOT EXISTS revoked (sid TEXT PRIMARY KEY, until REAL NOT NULL)")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS failures (kind TEXT NOT NULL, key TEXT NOT NULL, ts REAL NOT NULL)"
            )
            conn.execute("CREATE INDEX IF NOT EXISTS failures_key ON failures (kind, key, ts)")
            conn.execute("CREATE TABLE IF NOT EXISTS asked (user TEXT NOT NULL, ts REAL NOT NULL)")
            conn.execute("CREATE INDEX IF NOT EXISTS asked_user ON asked (user, ts)")
            conn.execute("CREATE INDEX IF NOT EXISTS asked_ts ON asked (ts)")
            yield conn
        finally:
            conn.close()

    def revoke(self, sid: str, until: float, now: float) -> None:
        with self._connect() as conn:
            conn.execute("DELETE FROM revoked WHERE until < ?", (now,))
            conn.execute("INSERT OR REPLACE INTO revoked (sid, until) VALUES (?, ?)", (sid, until))

    def is_revoked(self, sid: str) -> bool:
        with self._connect() as conn:
            return conn.execute("SELECT 1 FROM revoked WHERE sid = ?", (sid,)).fetchone() is not None

    def add_failure(self, keys: dict[str, str], now: float, window_s: float) -> None:
        with self._connect() as conn:
            conn.execute("DELETE FROM failures WHERE ts < ?", (now - window_s,))
            conn.executemany(
                "INSERT INTO failures (kind, key, ts) VALUES (?, ?, ?)",
                [(k, v, now) for k, v in keys.items()],
            )

    def failures(self, kind: str, key: str, since: float) -> list[float]:
        """Times of the failures of this kind and key since `since`, oldest first."""
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT ts FROM failures WHERE kind = ? AND key = ? AND ts >= ? ORDER BY ts",
                (kind, key, since),
            ).fetchall()
        return [float(r[0]) for r in rows]

    def clear_failures(self, kind: str, key: str) -> None:
        with self._connect() as conn:
            conn.execute("DELETE FROM failures WHERE kind = ? AND key = ?", (kind, key))

    def count_question(self, user: str, now: float, window_s: float, limit: int) -> float | None:
        """Count a question by `user` unless `limit` were asked within `window_s`: None when
        counted, else the seconds until the oldest of them leaves the window. One write
        transaction, so replicas counting at once never both take the last place."""
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute("DELETE FROM asked WHERE ts < ?", (now - window_s,))
                times = [
                    float(r[0])
                    for r in conn.execute("SELECT ts FROM asked WHERE user = ? ORDER BY ts", (user,))
                ]
                if len(times) >= limit:
                    conn.execute("COMMIT")
                    return max(0.0, times[-limit] + window_s - now)
                conn.execute("INSERT INTO asked (user, ts) VALUES (?, ?)", (user, now))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return None


class QuestionLimit:
    """At most `limit` questions per user within `window_s`, chat and /ask together, counted in
    the shared AuthStore (so across replicas). A refused question is not counted."""

    def __init__(self, store: AuthStore, limit: int, window_s: float) -> None:
        self.store = store
        self.limit = limit
        self.window_s = window_s
        self._reported: dict[str, float] = {}  # user -> end of the window their refusal was audited in

    @classmethod
    def from_settings(cls, settings: Settings) -> QuestionLimit | None:
        """The limit ui.question_limit sets; None when it is 0 (no limit)."""
        ui = settings.ui
        if ui.question_limit == 0:
            return None
        return cls(AuthStore(settings.auth_store_path), ui.question_limit, ui.question_window_minutes * 60)

    def take(self, user: str, now: float) -> float | None:
        """Count a question by `user`: None when allowed, else the seconds to wait."""
        return self.store.count_question(user, now, self.window_s, self.limit)

    def first_refusal(self, user: str, now: float) -> bool:
        """Whether this refusal is the first of its window for `user` (only that one is audited,
        so a script hammering the app cannot flood the audit log)."""
        if self._reported.get(user, 0.0) > now:
            return False
        self._reported[user] = now + self.window_s
        return True

    def message(self, wait_s: float) -> str:
        return (
            f"You have asked {self.limit} questions in the last {_duration(self.window_s)}, the most "
            f"allowed (ui.question_limit); ask again in {_duration(max(1.0, wait_s))}."
        )


def _duration(seconds: float) -> str:
    if seconds < 90:
        n = int(seconds + 0.999)
        return f"{n} second{'s' if n != 1 else ''}"
    n = int(seconds / 60 + 0.999)
    return f"{n} minute{'s' if n != 1 else ''}"


# -- sign-in --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Identity:
    """Who a request is from, and a new cookie to send with the answer (None: keep the old one)."""

    user: str
    cookie: str | None = None


@dataclass(frozen=True)
class Refusal:
    status: int
    message: str
    signed_out: bool = False  # the cookie is no good any more: drop it


class Gate:
    """Sessions, SSO and sign-in for one server; shared by the middleware and the routes."""

    def __init__(self, settings: Settings, users: UserStore, audit: AuditLog) -> None:
        ui = settings.ui
        self.users = users
        self.audit = audit
        self.secret = load_secret(settings.session_secret_path)
        self.store = AuthStore(settings.auth_store_path)
        self.idle_s = ui.session_idle_minutes * 60
        self.max_s = ui.session_max_hours * 3600
        self.secure = ui.cookie_secure
        self.sso_header = ui.sso_header.lower() if ui.sso_header else None
        self.proxies = [ipaddress.ip_network(p, strict=False) for p in ui.trusted_proxies]
        self.max_failures = ui.login_max_failures
        self.window_s = ui.login_window_minutes * 60
        self.org_name = ui.org_name
        self.max_request_bytes = ui.max_request_kb * 1024

    # -- peers -------------------------------------------------------------------------------

    def trusted(self, address: str | None) -> bool:
        if not address or not self.proxies:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self.proxies)

    def client_address(self, peer: str | None, forwarded_for: str | None) -> str:
        """The client: the peer, or when the peer is a trusted proxy, the last address in its
        X-Forwarded-For that is not itself a trusted proxy (the ones before could be forged)."""
        address = peer or "unknown"
        if forwarded_for and self.trusted(peer):
            for hop in reversed([h.strip() for h in forwarded_for.split(",") if h.strip()]):
                address = hop
                if not self.trusted(hop):
                    break
        return address

    # -- sessions ------------------------------------------------------------------------------

    def new_session(self, user: str, method: str, now: float) -> Session:
        return Session(user, secrets.token_urlsafe(16), now, now, method)

    def cookie_header(self, token: str | None) -> str:
        """A Set-Cookie value: the session, or (None) its removal."""
        parts = [f"{COOKIE}={token or ''}", "Path=/", "HttpOnly", "SameSite=Strict"]
        if token is None:
            parts.append("Max-Age=0")
        if self.secure:
            parts.append("Secure")
        return "; ".join(parts)

    def check(self, token: str, now: float) -> Session | Refusal:
        session = read_token(self.secret, token)
        if session is None:
            return Refusal(
                401,
                "Your sign-in is not valid here (the server's key may have changed). Sign in again.",
                True,
            )
        if now - session.issued > self.max_s:
            return Refusal(401, "Your session has expired. Sign in again.", True)
        if now - session.seen > self.idle_s:
            return Refusal(401, "Your session expired after a time without use. Sign in again.", True)
        if self.store.is_revoked(session.sid):
            return Refusal(401, "You have signed out. Sign in again.", True)
        return session

    def identify(
        self, headers: dict[str, str], peer: str | None, path: str, now: float
    ) -> Identity | Refusal | None:
        """Who sent a request: a trusted SSO header, else the session cookie; None for nobody."""
        token = _cookie(headers.get("cookie", ""), COOKIE)
        current = self.check(token, now) if token else None
        if self.sso_header and self.sso_header in headers:
            named = headers[self.sso_header].strip()
            if self.trusted(peer):
                return self._sso(named, current, peer, path, now)
            log.warning("ignored %s header from %s: not a trusted proxy", self.sso_header, peer)
        if current is None or isinstance(current, Refusal):
            return current
        refreshed = None
        if now - current.seen >= REFRESH_AFTER_S:
            refreshed = issue_token(
                self.secret, Session(current.user, current.sid, current.issued, now, current.method)
            )
        return Identity(current.user, refreshed)

    def _sso(
        self, named: str, current: Session | Refusal | None, peer: str | None, path: str, now: float
    ) -> Identity | Refusal:
        if isinstance(current, Session) and current.user == named:
            return Identity(named)  # the session it already has; refreshed by the proxy's header
        if not named:
            return Refusal(
                403, f"The sign-in proxy sent an empty {self.sso_header} header; ask its administrator."
            )
        try:
            record = self.users.get(named)
        except ConfigError:
            log.exception("SSO sign-in refused for %r: the users file could not be read", named)
            return Refusal(
                503, "Sign-in is unavailable: the users file could not be read. Tell the administrator."
            )
        if record is None:
            self._audit(
                ACCESS_DENIED_EVENT,
                named,
                {"reason": "no such user", "method": "sso", "path": path, "address": peer},
            )
            return Refusal(
                403,
                f"Your single sign-on account {named!r} has no Enclave account. "
                "Ask an administrator to add it (enclave users add).",
            )
        session = self.new_session(named, "sso", now)
        if not self._audit("sign_in", named, {"method": "sso", "session": session.sid, "address": peer}):
            return Refusal(503, "Sign-in could not be recorded in the audit log; try again later.")
        return Identity(named, issue_token(self.secret, session))

    # -- password sign-in ------------------------------------------------------------------------

    def retry_after(self, name: str, address: str, now: float) -> float | None:
        """Seconds until sign-in may be tried again for this name or address; None: now."""
        since = now - self.window_s
        waits = []
        for kind, key in (("user", name.lower()), ("address", address)):
            times = self.store.failures(kind, key, since)
            if len(times) >= self.max_failures:
                waits.append(times[-self.max_failures] + self.window_s - now)
        return max(waits) if waits else None

    def sign_in(self, name: str, password: str, address: str, now: float) -> str | Refusal:
        """A session token for these credentials, or why not (the refusal is audited)."""
        logged_name = name[:MAX_NAME_CHARS]
        wait = self.retry_after(name, address, now)
        if wait is not None:
            self._audit("sign_in_failed", logged_name, {"reason": "rate limited", "address": address})
            at = datetime.fromtimestamp(now + wait, UTC).strftime("%H:%M UTC")
            minutes = max(1, int(wait // 60 + (1 if wait % 60 else 0)))
            return Refusal(
                429,
                f"Too many failed sign-ins for this account or from this address. "
                f"Try again after {at} (in about {minutes} minute{'s' if minutes != 1 else ''}).",
            )
        try:
            principal = self.users.authenticate(name, password)
        except ConfigError:
            log.exception("sign-in refused for %r: the users file could not be read", logged_name)
            return Refusal(
                503, "Sign-in is unavailable: the users file could not be read. Tell the administrator."
            )
        if principal is None:
            self.store.add_failure({"user": name.lower(), "address": address}, now, self.window_s)
            self._audit(
                "sign_in_failed", logged_name, {"reason": "wrong user name or password", "address": address}
            )
            log.info("sign-in refused for %r from %s", logged_name, address)
            return Refusal(401, "Wrong user name or password.")
        self.store.clear_failures("user", name.lower())
        session = self.new_session(principal.name, "password", now)
        if not self._audit(
            "sign_in", principal.name, {"method": "password", "session": session.sid, "address": address}
        ):
            return Refusal(503, "Sign-in could not be recorded in the audit log; try again later.")
        return issue_token(self.secret, session)

    def sign_out(self, token: str | None, address: str, now: float) -> str | None:
        """End the token's session everywhere; the user it belonged to, if it was good."""
        current = self.check(token, now) if token else None
        if not isinstance(current, Session):
            return None
        self.store.revoke(current.sid, current.issued + self.max_s, now)
        self._audit("sign_out", current.user, {"session": current.sid, "address": address})
        return current.user

    def principal(self, name: str) -> Principal | None:
        record = self.users.get(name)
        return record.principal if record is not None else None

    def _audit(self, event: str, user: str, data: dict[str, Any]) -> bool:
        try:
            self.audit.append(event, user, data=data)
        except Exception:
            log.exception("could not write the %s event for %r to the audit log", event, user)
            return False
        return True


def _cookie(header: str, name: str) -> str | None:
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name and value:
            return value
    return None


# -- the middleware --------------------------------------------------------------------------------


class SessionMiddleware:
    """Lets through only requests from a signed-in user (or to the sign-in routes), tells the
    mounted Gradio app who it is, and refreshes the cookie as the session is used."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], gate: Gate) -> None:
        self.app = app
        self.gate = gate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        if scope["type"] == "http":
            refused = self._refused_body(scope, path)
            if refused is not None:
                await refused(scope, receive, send)
                return
            receive = self._bounded(receive)
        if path in _PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        peer = (scope.get("client") or (None,))[0]
        now = time.time()
        found = await anyio.to_thread.run_sync(self.gate.identify, headers, peer, path, now)
        if not isinstance(found, Identity):
            await self._refuse(scope, receive, send, headers, found)
            return
        roles = PAGE_ROLES.get(path.rstrip("/"))
        if roles is not None:
            denied = await anyio.to_thread.run_sync(self._page_denied, found.user, path, roles, peer)
            if denied is not None:
                await _message_page(self.gate.org_name, "Not allowed", denied, 403)(scope, receive, send)
                return
        scope[USER_KEY] = found.user
        if found.cookie is None:
            await self.app(scope, receive, send)
            return
        set_cookie = self.gate.cookie_header(found.cookie).encode("latin-1")

        async def send_with_cookie(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"set-cookie", set_cookie)]
            await send(message)

        await self.app(scope, receive, send_with_cookie)

    def _refused_body(self, scope: Scope, path: str) -> Response | None:
        """A response refusing the request outright: uploads, or a body declared too large."""
        if path in _CLOSED_PATHS:
            return JSONResponse({"detail": "Files cannot be uploaded to this app."}, status_code=403)
        for key, value in scope.get("headers", []):
            if key.lower() == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    return JSONResponse(
                        {"detail": "The Content-Length header is not a number."}, status_code=400
                    )
                if declared > self.gate.max_request_bytes:
                    limit = self.gate.max_request_bytes // 1024
                    message = (
                        f"The request is {declared} bytes, more than the {limit} KiB allowed "
                        "(ui.max_request_kb)."
                    )
                    return JSONResponse({"detail": message}, status_code=413)
        return None

    def _bounded(self, receive: Receive) -> Receive:
        """`receive` that ends a body without a Content-Length (chunked) once it is too large: the
        app sees the client gone rather than reading on."""
        limit = self.gate.max_request_bytes
        seen = 0

        async def bounded() -> MutableMapping[str, Any]:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    log.warning("a request body passed %d bytes without a Content-Length; dropped", limit)
                    return {"type": "http.disconnect"}
            return message

        return bounded

    def _page_denied(self, user: str, path: str, roles: frozenset[str], peer: str | None) -> str | None:
        principal = self.gate.principal(user)
        if principal is not None and principal.role in roles:
            return None
        self.gate._audit(ACCESS_DENIED_EVENT, user, {"path": path, "reason": "role", "address": peer})
        return f"This page is for the {' and '.join(sorted(roles))} role only; you are signed in as {user}."

    async def _refuse(
        self, scope: Scope, receive: Receive, send: Send, headers: dict[str, str], why: Refusal | None
    ) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        drop = why is None or why.signed_out
        message = why.message if why is not None else "You are not signed in. Sign in to continue."
        if why is None or why.status == 401:
            if scope.get("method") == "GET" and "text/html" in headers.get("accept", ""):
                target = scope.get("path", "/")
                if scope.get("query_string"):
                    target += "?" + scope["query_string"].decode("latin-1")
                query = {"next": target}
                if why is not None:
                    query["m"] = "expired"
                location = f"{scope.get('root_path', '')}/login?{urlencode(query)}"
                response: Response = RedirectResponse(location, status_code=303)
            else:
                response = JSONResponse({"detail": message}, status_code=401)
        elif "text/html" in headers.get("accept", ""):
            response = _message_page(self.gate.org_name, "Not allowed", message, why.status)
        else:
            response = JSONResponse({"detail": message}, status_code=why.status)
        if drop:
            response.headers.append("set-cookie", self.gate.cookie_header(None))
        await response(scope, receive, send)


# -- pages ---------------------------------------------------------------------------------------

_PAGE_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;background:#f4f5f7;color:#1f2937;
margin:0;display:flex;min-height:100vh;align-items:center;justify-content:center}
main{background:#fff;border:1px solid #e5e7eb;border-radius:12px;padding:2rem;width:min(22rem,90vw);
box-shadow:0 1px 3px rgba(0,0,0,.08)}
h1{font-size:1.35rem;margin:0 0 .25rem}p{margin:.25rem 0 1rem;color:#4b5563}
label{display:block;font-size:.9rem;margin:.75rem 0 .25rem}
input{width:100%;box-sizing:border-box;padding:.55rem .6rem;border:1px solid #d1d5db;border-radius:8px;font-size:1rem}
button{margin-top:1.25rem;width:100%;padding:.6rem;border:0;border-radius:8px;background:#ea580c;color:#fff;
font-size:1rem;cursor:pointer}.note{padding:.6rem .75rem;border-radius:8px;background:#fef3c7;color:#78350f}
.error{background:#fee2e2;color:#7f1d1d}a{color:#c2410c}
"""
NOTICES = {
    "expired": "Your session has ended. Sign in again.",
    "signed_out": "You have signed out.",
}


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    page = (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        "<meta name=viewport content='width=device-width,initial-scale=1'>"
        f"<title>{title}</title><style>{_STYLE}</style></head><body><main>{body}</main></body></html>"
    )
    return HTMLResponse(page, status_code=status, headers=_page_headers())


def _page_headers() -> dict[str, str]:
    return {
        "Content-Security-Policy": _PAGE_CSP,
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-store",
        "Referrer-Policy": "no-referrer",
    }


def login_page(
    org_name: str,
    *,
    logo: bool = False,
    next_path: str = "/",
    notice: str = "",
    error: str = "",
    name: str = "",
    status: int = 200,
) -> HTMLResponse:
    org = html.escape(org_name)
    parts = [
        f"<h1>{markup.logo(org_name, logo)}{org}</h1>",
        f"<p>Sign in with your {org} account to ask questions about the documents you may read.</p>",
    ]
    if notice:
        parts.append(f"<p class=note role=status>{html.escape(notice)}</p>")
    if error:
        parts.append(f"<p class='note error' role=alert>{html.escape(error)}</p>")
    parts.append(
        "<form method=post action=login>"
        f"<input type=hidden name=next value='{html.escape(next_path, quote=True)}'>"
        "<label for=username>User name</label>"
        f"<input id=username name=username autocomplete=username required autofocus value='{html.escape(name, quote=True)}'>"
        "<label for=password>Password</label>"
        "<input id=password name=password type=password autocomplete=current-password required>"
        "<button type=submit>Sign in</button></form>"
    )
    return _page(f"Sign in · {org}", "".join(parts), status)


def _message_page(org_name: str, title: str, message: str, status: int) -> HTMLResponse:
    org = html.escape(org_name)
    body = f"<h1>{org}</h1><p class='note error' role=alert>{html.escape(message)}</p><p><a href='/'>Back to the chat</a> · <a href='/logout'>Sign out</a></p>"
    return _page(f"{html.escape(title)} · {org}", body, status)


def safe_next(value: str | None) -> str:
    """Where to go after sign-in: a path on this server only (no scheme, host or `//`)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    if any(ord(c) < 32 for c in value) or value.startswith(("/login", "/logout")):
        return "/"
    return value


def _wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


# -- source files ---------------------------------------------------------------------------------

# Types a browser could run code in: served with a CSP that forbids scripts and sandboxes them.
_ACTIVE_TYPES = frozenset(
    {"text/html", "application/xhtml+xml", "image/svg+xml", "text/xml", "application/xml"}
)
_FILE_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; sandbox"


def safe_filename(name: str) -> str:
    """A file name fit for Content-Disposition: no directories, controls, quotes or backslashes."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    clean = "".join(c for c in base if unicodedata.category(c)[0] != "C" and c not in "\"';")
    return clean.strip(" .") or "document"


def disposition(name: str) -> str:
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii") or "document"
    return f"inline; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"


def load_logo(path: Path | None) -> tuple[str, bytes] | None:
    """(content type, bytes) of the configured logo, read once at start; a missing, unreadable or
    oversized file is a ConfigError naming ui.logo_path."""
    if path is None:
        return None
    from core.settings import LOGO_TYPES

    content_type = LOGO_TYPES.get(path.suffix.lower())
    if content_type is None:
        raise ConfigError(f"ui.logo_path {path}: use a {', '.join(sorted(LOGO_TYPES))} file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"ui.logo_path {path} cannot be read: {exc.strerror or exc}") from exc
    if not data or len(data) > MAX_LOGO_BYTES:
        raise ConfigError(
            f"ui.logo_path {path} is {len(data)} bytes; a logo must be 1 to {MAX_LOGO_BYTES} bytes"
        )
    return content_type, data


def _read_matching(paths: tuple[str, ...], sha256: str | None) -> tuple[str, bytes] | None:
    """The first file still on disk whose bytes are the document's (those ingest hashed), so a
    file changed since ingest is never served under the old document's groups."""
    if not sha256:
        return None
    for path in paths:
        try:
            data = Path(path).read_bytes()
        except OSError:
            continue
        if hashlib.sha256(data).hexdigest() == sha256:
            return path, data
    return None


# -- the app ----------------------------------------------------------------------------------------


def create_server(
    blocks: Any,
    settings: Settings,
    users: UserStore,
    audit: AuditLog,
    sources: Sources | None,
    attachments: Attachments | None = None,
    **mount: Any,
) -> FastAPI:
    """The FastAPI app: our sign-in routes and /files, and `blocks` mounted at `/` behind them.
    `attachments` serves mail attachments (None: they answer 404). `mount` is passed to
    `gr.mount_gradio_app`."""
    import gradio as gr

    gate = Gate(settings, users, audit)
    org = settings.ui.org_name
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    logo = load_logo(settings.ui.logo_path)

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
        token = request.cookies.get(COOKIE)
        if token and isinstance(gate.check(token, time.time()), Session):
            return RedirectResponse(safe_next(next), status_code=303)
        return login_page(org, logo=logo is not None, next_path=safe_next(next), notice=NOTICES.get(m, ""))

    @app.post("/login")
    async def login(request: Request) -> Response:
        origin = request.headers.get("origin")
        if origin and origin != "null" and origin.split("://", 1)[-1] != request.headers.get("host", ""):
            return JSONResponse(
                {"detail": f"Sign-in from another site ({origin}) is refused."}, status_code=403
            )
        form = await request.form()
        name = str(form.get("username") or "").strip()
        password = str(form.get("password") or "")
        next_path = safe_next(str(form.get("next") or "/"))
        if not name or not password:
            result: str | Refusal = Refusal(400, "Enter your user name and password.")
        else:
            result = await anyio.to_thread.run_sync(
                gate.sign_in, name, password, address(request), time.time()
            )
        if isinstance(result, Refusal):
            headers = {}
            if result.status == 429:
                wait = gate.retry_after(name, address(request), time.time()) or gate.window_s
                headers["Retry-After"] = str(int(wait) + 1)
            if _wants_html(request):
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
        if _wants_html(request):
            response = RedirectResponse(next_path, status_code=303)
        else:
            response = JSONResponse({"success": True})
        response.headers.append("set-cookie", gate.cookie_header(result))
        return response

    @app.api_route("/logout", methods=["GET", "POST"])
    def logout(request: Request) -> Response:
        gate.sign_out(request.cookies.get(COOKIE), address(request), time.time())
        if _wants_html(request):
            response: Response = RedirectResponse("/login?m=signed_out", status_code=303)
        else:
            response = JSONResponse({"success": True, "detail": "Signed out."})
        response.headers.append("set-cookie", gate.cookie_header(None))
        return response

    @app.get("/files/{doc_id}")
    def open_file(request: Request, doc_id: str) -> Response:
        """The original of document `doc_id` (never a path), if the user shares one of its groups."""
        user = request.scope.get(USER_KEY)
        principal = gate.principal(user) if user else None
        if principal is None:
            return _refuse_file(request, 401, "You are not signed in, or your account no longer exists.")
        found = sources(doc_id) if sources is not None and _DOC_ID.match(doc_id) else None
        if found is None:
            return _refuse_file(
                request,
                404,
                f"No document with id {doc_id!r} is indexed. It may have been removed since the answer was given.",
            )
        if not set(found.groups) & set(principal.groups):
            gate._audit(
                ACCESS_DENIED_EVENT,
                principal.name,
                {"doc_id": doc_id, "reason": "groups", "path": request.url.path},
            )
            return _refuse_file(
                request, 403, "You may not open this document: it belongs to none of your groups."
            )
        hit = _read_matching(found.paths, found.sha256)
        if hit is None and found.attached_as and attachments is not None:
            hit = attachments(doc_id)  # only bytes that are still the document's
        if hit is None:
            if found.attached_as and not found.paths:
                message = (
                    "This mail attachment can no longer be taken out of its mail: the mail has been "
                    "moved, removed or changed since it was indexed. Ask an administrator to re-run the ingest."
                )
            else:
                message = "The original file is no longer where it was indexed, or has changed since. Ask an administrator to re-run the ingest."
            return _refuse_file(request, 404, message)
        path, data = hit
        name = safe_filename(Path(path).name)
        media_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
        headers = {
            "Content-Disposition": disposition(name),
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "private, no-store",
            "Referrer-Policy": "no-referrer",
            "Cross-Origin-Resource-Policy": "same-origin",
        }
        if media_type in _ACTIVE_TYPES:
            headers["Content-Security-Policy"] = _FILE_CSP
        gate._audit("file_opened", principal.name, {"doc_id": doc_id, "title": found.title})
        return Response(data, media_type=media_type, headers=headers)

    def _refuse_file(request: Request, status: int, message: str) -> Response:
        if _wants_html(request):
            return _message_page(org, "Cannot open the file", message, status)
        return JSONResponse(
            {"detail": message}, status_code=status, headers={"X-Content-Type-Options": "nosniff"}
        )

    def auth_dependency(request: Request) -> str | None:
        user = request.scope.get(USER_KEY)
        return str(user) if user else None

    with warnings.catch_warnings():
        # Said of every multi-page app, even with ssr_mode=False as here.
        warnings.filterwarnings("ignore", message="SSR mode is not supported", category=UserWarning)
        gr.mount_gradio_app(app, blocks, path="/", auth_dependency=auth_dependency, **mount)
    app.add_middleware(SessionMiddleware, gate=gate)
    return app
