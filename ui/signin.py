"""Sign-in: passwords against the users file, the trusted proxy's SSO header, sign-out, and
the limits on failed sign-ins. `Gate` is shared by the boundary middleware and the routes.

SSO: when `ui.sso_header` is set and a request comes straight from an address in
`ui.trusted_proxies`, the header names the user; the user must exist in the users file (role
and groups come from there). A session cookie is issued for them (one `sign_in` event per
session, not one per request). The header from any other peer is ignored and logged.

Audit events (AuditLog.append, never a password): `sign_in`, `sign_in_failed`, `sign_out`,
`access_denied`.
"""

from __future__ import annotations

import ipaddress
import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from audit import AuditLog
from core.errors import ConfigError
from core.settings import Settings
from core.types import Principal
from core.users import UserStore
from ui.login import ACCESS_DENIED_EVENT
from ui.sessions import COOKIE, REFRESH_AFTER_S, AuthStore, Session, issue_token, load_secret, read_token

log = logging.getLogger(__name__)

MAX_NAME_CHARS = 64  # a longer "user name" is logged cut, so an attacker cannot bloat the log


@dataclass(frozen=True)
class Identity:
    """Who a request is from, and a new cookie to send with the answer (None: keep the old one)."""

    user: str
    sid: str  # the session's id: what Gradio's session hashes and event ids are bound to
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
        token = cookie_value(headers.get("cookie", ""), COOKIE)
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
        return Identity(current.user, current.sid, refreshed)

    def _sso(
        self, named: str, current: Session | Refusal | None, peer: str | None, path: str, now: float
    ) -> Identity | Refusal:
        if isinstance(current, Session) and current.user == named:
            return Identity(named, current.sid)  # the session it already has; refreshed by the proxy's header
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
            self.audit_event(
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
        if not self.audit_event("sign_in", named, {"method": "sso", "session": session.sid, "address": peer}):
            return Refusal(503, "Sign-in could not be recorded in the audit log; try again later.")
        return Identity(named, session.sid, issue_token(self.secret, session))

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
            self.audit_event("sign_in_failed", logged_name, {"reason": "rate limited", "address": address})
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
            self.audit_event(
                "sign_in_failed", logged_name, {"reason": "wrong user name or password", "address": address}
            )
            log.info("sign-in refused for %r from %s", logged_name, address)
            return Refusal(401, "Wrong user name or password.")
        self.store.clear_failures("user", name.lower())
        session = self.new_session(principal.name, "password", now)
        if not self.audit_event(
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
        self.audit_event("sign_out", current.user, {"session": current.sid, "address": address})
        return current.user

    def principal(self, name: str) -> Principal | None:
        record = self.users.get(name)
        return record.principal if record is not None else None

    def audit_event(self, event: str, user: str, data: dict[str, Any]) -> bool:
        try:
            self.audit.append(event, user, data=data)
        except Exception:
            log.exception("could not write the %s event for %r to the audit log", event, user)
            return False
        return True


def cookie_value(header: str, name: str) -> str | None:
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name and value:
            return value
    return None
