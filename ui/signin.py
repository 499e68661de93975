"""Sign-in: passwords against the users file or LDAP / Active Directory, users an OIDC provider
vouched for (ui.server.OidcRoutes), the trusted proxy's SSO header, sign-out, and the limits on
failed sign-ins. `Gate` is shared by the boundary middleware and the routes. Who a user is and
which groups they hold comes from ui.accounts (the users file first, then the directory's
account as last checked, checked again every auth.revalidate_minutes).

SSO: when `ui.sso_header` is set and a request comes straight from an address in
`ui.trusted_proxies` carrying the proxy's secret (`ui.sso_secret_header`, the contents of
`ui.sso_secret_file`), the header names the user. Without `ui.sso_groups_header` the user must
exist in the users file (role and groups come from there); with it, the proxy is the directory:
groups come from that header at each request, mapped by auth.proxy_mapping, and a local user's
name is refused. A session cookie is issued for them (one `sign_in` event per session, not one
per request). The header without that proof is refused and audited.

Failed sign-ins are throttled per (name, address) and per address with doubling delays, never
locked out by name, so no one can shut a user out from elsewhere (AuthStore.begin_attempt).

Audit events (AuditLog.append, never a password): `sign_in`, `sign_in_failed`, `sign_out`,
`access_denied`, `file_opened`. Repeats of the last three are counted per window, not written one
by one (`Gate.audit_event`).
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import secrets
import sqlite3
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from audit import AuditLog
from core.errors import ConfigError
from core.identity import LOCAL, PROXY, DirectoryAccount, DirectoryUnavailable, Gone
from core.settings import Settings
from core.types import Principal
from core.users import UserStore, valid_user_name
from ui.accounts import Account, Accounts, accounts_for
from ui.login import ACCESS_DENIED_EVENT
from ui.sessions import (
    REFRESH_AFTER_S,
    AuthStore,
    Session,
    Throttle,
    cookie_name,
    duration_text,
    issue_token,
    load_secret,
    password_mark,
    read_token,
)

log = logging.getLogger(__name__)

UNKNOWN_USER = "<unknown user>"  # a failed sign-in's name when it names no user: maybe a password
MIN_PROXY_SECRET_CHARS = 16
# Which fields of an audit event tell its repeats apart; repeats within ui.audit_repeat_window_minutes
# are counted, not written one by one. Other events are always written.
REPEATS_GROUPED_BY: dict[str, tuple[str, ...]] = {
    "sign_in_failed": ("reason", "address"),
    ACCESS_DENIED_EVENT: ("reason", "path", "doc_id", "method"),
    "file_opened": ("doc_id",),
}


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
    retry_after: float | None = None  # seconds, for a 429


class Gate:
    """Sessions, sign-in (password, LDAP, OIDC, the SSO proxy) and sign-out for one server;
    shared by the middleware and the routes."""

    def __init__(self, settings: Settings, users: UserStore | Accounts, audit: AuditLog) -> None:
        ui = settings.ui
        self.audit = audit
        self.secret = load_secret(settings.session_secret_path)
        self.store = AuthStore(settings.auth_store_path)  # its schema is made here, once
        # Local users and, where auth.* configures them, the directory's (ui.accounts).
        self.users = users if isinstance(users, Accounts) else accounts_for(settings, users, audit)
        self.proxy_groups_header = ui.sso_groups_header.lower() if ui.sso_groups_header else None
        self.proxy_groups_separator = ui.sso_groups_separator
        self.proxy_mapping = settings.auth.proxy_mapping.to_mapping()
        self.idle_s = ui.session_idle_minutes * 60
        self.max_s = ui.session_max_hours * 3600
        self.secure = ui.cookie_secure
        self.cookie = cookie_name(ui.cookie_secure)
        self.sso_header = ui.sso_header.lower() if ui.sso_header else None
        self.proxy_secret_header = ui.sso_secret_header.lower()
        self.proxy_secret = load_proxy_secret(ui.sso_secret_file) if self.sso_header else None
        self.proxies = [ipaddress.ip_network(p, strict=False) for p in ui.trusted_proxies]
        self.throttle = Throttle(
            free=ui.login_max_failures,
            window_s=ui.login_window_minutes * 60,
            delay_s=ui.login_delay_seconds,
            max_delay_s=ui.login_max_delay_minutes * 60,
        )
        self.repeat_window_s = ui.audit_repeat_window_minutes * 60
        self.org_name = ui.org_name
        self.max_request_bytes = ui.max_request_kb * 1024
        self.max_upload_bytes = int(ui.max_upload_mb * 1024 * 1024)

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

    def new_session(self, user: str, password_hash: str, method: str, now: float) -> Session:
        return Session(
            user, secrets.token_urlsafe(16), now, now, method, password_mark(self.secret, password_hash)
        )

    def cookie_header(self, token: str | None) -> str:
        """A Set-Cookie value: the session, or (None) its removal."""
        parts = [f"{self.cookie}={token or ''}", "Path=/", "HttpOnly", "SameSite=Strict"]
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
        try:
            record = self.users.get(session.user)
        except DirectoryUnavailable as exc:
            log.error("cannot confirm %r's groups: %s", session.user, exc)
            return Refusal(
                503,
                "Your groups cannot be confirmed: the organisation's directory cannot be reached. "
                "Try again in a few minutes; tell the service desk if this lasts.",
            )
        if record is None:
            gone = self.users.gone_reason(session.user)
            if gone is not None:
                return Refusal(
                    401,
                    f"You were signed out: the organisation's directory no longer lets you in ({gone}).",
                    True,
                )
            return Refusal(401, "Your account no longer exists. Sign in again.", True)
        if not hmac.compare_digest(session.mark, password_mark(self.secret, record.password_hash)):
            return Refusal(401, "Your password was changed since you signed in. Sign in again.", True)
        return session

    def identify(
        self, headers: dict[str, str], peer: str | None, path: str, now: float
    ) -> Identity | Refusal | None:
        """Who sent a request: a trusted SSO header, else the session cookie; None for nobody."""
        token = cookie_value(headers.get("cookie", ""), self.cookie)
        current = self.check(token, now) if token else None
        if self.sso_header and self.sso_header in headers:
            named = headers[self.sso_header].strip()
            why = self._unproven_proxy(headers, peer)
            if why is None:
                return self._sso(named, current, headers, peer, path, now)
            log.warning("refused the %s header from %s: %s", self.sso_header, peer, why)
            self.audit_event(
                ACCESS_DENIED_EVENT,
                self._logged_name(named),
                {"reason": why, "method": "sso", "path": path, "address": peer},
            )
            return Refusal(
                403,
                f"The {self.sso_header} header is accepted only from the sign-in proxy; sign in "
                "through it, or with your password without that header.",
            )
        if current is None or isinstance(current, Refusal):
            return current
        refreshed = None
        if now - current.seen >= REFRESH_AFTER_S:
            refreshed = issue_token(
                self.secret,
                Session(current.user, current.sid, current.issued, now, current.method, current.mark),
            )
        return Identity(current.user, current.sid, refreshed)

    def _unproven_proxy(self, headers: dict[str, str], peer: str | None) -> str | None:
        """Why a request's SSO header is not believed; None: it comes from the proxy."""
        if not self.trusted(peer):
            return "SSO header from an address not in ui.trusted_proxies"
        sent = headers.get(self.proxy_secret_header, "").encode("utf-8")
        if self.proxy_secret is None or not hmac.compare_digest(sent, self.proxy_secret):
            return "SSO header without the proxy's secret"
        return None

    def _sso(
        self,
        named: str,
        current: Session | Refusal | None,
        headers: dict[str, str],
        peer: str | None,
        path: str,
        now: float,
    ) -> Identity | Refusal:
        if isinstance(current, Session) and current.user == named:
            if self.proxy_groups_header:
                try:
                    self._proxy_account(named, headers)  # the groups the header carries now
                except _LocalName:
                    pass  # a session made before the name became local: check() holds it to the file
            return Identity(named, current.sid)  # the session it already has; refreshed by the proxy's header
        if not named:
            return Refusal(
                403, f"The sign-in proxy sent an empty {self.sso_header} header; ask its administrator."
            )
        if not valid_user_name(named):
            return Refusal(
                403,
                f"The sign-in proxy sent a user name Enclave cannot use ({named[:64]!r}: letters, digits "
                "and . _ @ - only); ask its administrator.",
            )
        try:
            record: Account | None = (
                self._proxy_account(named, headers)
                if self.proxy_groups_header
                else self.users.local_account(named)
            )
        except ConfigError:
            log.exception("SSO sign-in refused for %r: the users file could not be read", named)
            return Refusal(
                503, "Sign-in is unavailable: the users file could not be read. Tell the administrator."
            )
        except _LocalName:
            self.audit_event(
                ACCESS_DENIED_EVENT,
                named,
                {"reason": "proxy user is a local account", "method": "sso", "path": path, "address": peer},
            )
            return Refusal(
                403,
                f"{named!r} is a local Enclave account: sign in with its password, not through the "
                "sign-in proxy.",
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
        session = self.new_session(named, record.password_hash, "sso", now)
        granted = _granted(record)
        if not self.audit_event(
            "sign_in", named, {"method": "sso", **granted, "session": session.sid, "address": peer}
        ):
            return Refusal(503, "Sign-in could not be recorded in the audit log; try again later.")
        return Identity(named, session.sid, issue_token(self.secret, session))

    def _proxy_account(self, named: str, headers: dict[str, str]) -> Account:
        """The account the proxy's groups header makes of `named` now (kept, and a change from
        the last request audited by ui.accounts). _LocalName for a name of the users file."""
        if self.users.local(named) is not None:
            raise _LocalName(named)
        assert self.proxy_groups_header is not None
        sent = headers.get(self.proxy_groups_header, "").split(self.proxy_groups_separator)
        groups = tuple(sorted({g.strip() for g in sent if g.strip()}))
        return self.users.seen(self.proxy_mapping.account(named, PROXY, named, groups))

    # -- password sign-in ------------------------------------------------------------------------

    def sign_in(self, name: str, password: str, address: str, now: float) -> str | Refusal:
        """A session token for these credentials, or why not (the refusal is audited).

        A name in the users file is checked against it (the break-glass admin signs in so when
        the directory is down); any other name against LDAP / Active Directory where auth.ldap
        is set. The attempt is counted as failed before the password is checked, in one
        transaction, and taken back when it was right, so parallel guesses cannot slip past the
        throttle."""
        try:
            logged_name = self._logged_name(name)
            local = self.users.local(name)
        except ConfigError:
            log.exception("sign-in refused: the users file could not be read")
            return Refusal(
                503, "Sign-in is unavailable: the users file could not be read. Tell the administrator."
            )
        pair = {"name_address": f"{name.lower()}\0{address}"}
        attempt = self.store.begin_attempt({**pair, "address": address}, now, self.throttle)
        if isinstance(attempt, float):
            self.audit_event("sign_in_failed", logged_name, {"reason": "rate limited", "address": address})
            at = datetime.fromtimestamp(now + attempt, UTC).strftime("%H:%M:%S UTC")
            return Refusal(
                429,
                f"Too many failed sign-ins for this account from this address (ui.login_max_failures). "
                f"Try again after {at} (in {duration_text(max(1.0, attempt))}).",
                retry_after=attempt,
            )
        directory = self.users.ldap
        if local is None and directory is not None:
            return self._directory_sign_in(
                directory, name, password, logged_name, attempt, pair, address, now
            )
        try:
            principal = self.users.authenticate_local(name, password)
        except ConfigError:
            self.store.succeeded(attempt, {})  # not the user's failure
            log.exception("sign-in refused for %r: the users file could not be read", logged_name)
            return Refusal(
                503, "Sign-in is unavailable: the users file could not be read. Tell the administrator."
            )
        if principal is None:
            return self._wrong_password(logged_name, address)
        self.store.succeeded(attempt, pair)
        record = self.users.local_account(principal.name)
        if record is None:  # removed in the instant since
            return Refusal(401, "Wrong user name or password.")
        return self._signed_in(record, "password", address, now)

    def _directory_sign_in(
        self,
        directory: Any,
        name: str,
        password: str,
        logged_name: str,
        attempt: str,
        pair: dict[str, str],
        address: str,
        now: float,
    ) -> str | Refusal:
        """Sign-in by bind against LDAP / Active Directory (ui.directory.LdapDirectory)."""
        try:
            found: DirectoryAccount | Gone | None = directory.authenticate(name, password)
        except DirectoryUnavailable as exc:
            self.store.succeeded(attempt, {})  # not the user's failure
            log.error("sign-in refused for %r: %s", logged_name, exc)
            return Refusal(
                503,
                "Sign-in is unavailable: the organisation's directory cannot be reached. Try again "
                "in a few minutes; tell the service desk if this lasts.",
            )
        if found is None:
            return self._wrong_password(logged_name, address)
        if isinstance(found, Gone):
            # Said only to whoever knew the password: the bind succeeded, the account is disabled.
            self.audit_event(
                "sign_in_failed", name, {"reason": found.reason, "address": address, "backend": "ldap"}
            )
            return Refusal(403, f"Your account is {found.reason}: ask the service desk to enable it.")
        self.store.succeeded(attempt, pair)
        taken = self._local_name_taken(found, address)
        if taken is not None:
            return taken
        return self._signed_in(self.users.signed_in(found), "password", address, now)

    def _wrong_password(self, logged_name: str, address: str) -> Refusal:
        self.audit_event(
            "sign_in_failed", logged_name, {"reason": "wrong user name or password", "address": address}
        )
        log.info("sign-in refused for %r from %s", logged_name, address)
        return Refusal(401, "Wrong user name or password.")

    def _signed_in(self, account: Account, method: str, address: str, now: float) -> str | Refusal:
        """A session for `account`, its sign_in record naming the backend, role and groups granted."""
        session = self.new_session(account.name, account.password_hash, method, now)
        data = {"method": method, **_granted(account), "session": session.sid, "address": address}
        if not self.audit_event("sign_in", account.name, data):
            return Refusal(503, "Sign-in could not be recorded in the audit log; try again later.")
        return issue_token(self.secret, session)

    def sign_in_directory(
        self, found: DirectoryAccount, state: str | None, method: str, address: str, now: float
    ) -> str | Refusal:
        """A session for a user an identity provider vouched for (OIDC): kept with `state` (its
        refresh token, for the checks to come), the sign_in record naming their groups."""
        taken = self._local_name_taken(found, address)
        if taken is not None:
            return taken
        return self._signed_in(self.users.signed_in(found, state), method, address, now)

    def _local_name_taken(self, found: DirectoryAccount, address: str) -> Refusal | None:
        """A refusal (audited) when the directory's or provider's name for this user is a local
        account's: never let one become the other. None when the name is free."""
        if self.users.local(found.name) is None:
            return None
        self.audit_event(
            "sign_in_failed",
            found.name,
            {
                "reason": f"{found.backend} user has a local account's name",
                "address": address,
                "backend": found.backend,
            },
        )
        return Refusal(
            403,
            f"The organisation's account {found.name!r} has the name of a local Enclave account; "
            "ask an administrator to rename one of them.",
        )

    def _logged_name(self, name: str) -> str:
        """A typed user name as the audit log keeps it: only when it names a user, local or
        one a directory let in before (otherwise it may be a password typed into the wrong field)."""
        if self.users.local(name) is not None or self.users.store.identity(name) is not None:
            return name
        return UNKNOWN_USER

    def sign_out(self, token: str | None, address: str, now: float) -> Session | None:
        """End the token's session everywhere; the session it was, if it was good."""
        current = read_token(self.secret, token) if token else None
        if (
            current is None
            or now - current.issued > self.max_s
            or now - current.seen > self.idle_s
            or self.store.is_revoked(current.sid)
        ):
            return None  # (a session ended by the directory still signs out: its hint is needed)
        self.store.revoke(current.sid, current.issued + self.max_s, now)
        self.audit_event("sign_out", current.user, {"session": current.sid, "address": address})
        return current

    def principal(self, name: str) -> Principal | None:
        try:
            record = self.users.get(name)
        except DirectoryUnavailable as exc:  # check() just passed: the grace ran out in between
            log.error("cannot confirm %r's groups: %s", name, exc)
            return None
        return record.principal if record is not None else None

    def audit_event(self, event: str, user: str, data: dict[str, Any], now: float | None = None) -> bool:
        """Write an audit event; False (logged) when it could not be written. Repeats of the
        events of REPEATS_GROUPED_BY within ui.audit_repeat_window_minutes are counted instead:
        the first is written, then, once the window has closed (at the next such event of
        anyone), one record with the window's `count`, so a loop cannot grow the log without
        bound."""
        fields = REPEATS_GROUPED_BY.get(event)
        if fields is None:
            return self._append(event, user, data)
        now = time.time() if now is None else now
        detail = {f: data[f] for f in fields if data.get(f) is not None}
        try:
            first, closed = self.store.tally(event, user, detail, now, self.repeat_window_s)
        except sqlite3.Error:
            log.exception("could not count the %s event for %r; writing it", event, user)
            first, closed = True, []
        written = True
        for window in closed:
            summary = {
                **window.data,
                "count": window.count,
                "since": _iso(window.opened),
                "until": _iso(window.opened + self.repeat_window_s),
            }
            written = self._append(window.event, window.user, summary) and written
        if first:
            written = self._append(event, user, data) and written
        return written

    def _append(self, event: str, user: str, data: dict[str, Any]) -> bool:
        try:
            self.audit.append(event, user, data=data)
        except Exception:
            log.exception("could not write the %s event for %r to the audit log", event, user)
            return False
        return True


def load_proxy_secret(path: Path | None) -> bytes:
    """The SSO proxy's secret from ui.sso_secret_file; ConfigError naming the setting if unusable."""
    if path is None:
        raise ConfigError(
            "ui.sso_header is set but ui.sso_secret_file is not: give the file holding the secret the "
            "sign-in proxy sends in ui.sso_secret_header (docs/deploy.md, TLS and the SSO proxy)"
        )
    try:
        secret = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"ui.sso_secret_file {path} cannot be read: {exc}") from exc
    if len(secret) < MIN_PROXY_SECRET_CHARS:
        raise ConfigError(
            f"ui.sso_secret_file {path} holds {len(secret)} characters, fewer than "
            f"{MIN_PROXY_SECRET_CHARS}: put a long random secret there (e.g. openssl rand -hex 32)"
        )
    return secret.encode("utf-8")


class _LocalName(Exception):
    """A name the SSO proxy sent is a local account's."""


def _granted(account: Account) -> dict[str, Any]:
    """What a sign_in record says was granted: backend, role, groups (and the directory's own)."""
    data: dict[str, Any] = {"backend": account.backend, "role": account.role, "groups": list(account.groups)}
    if account.backend != LOCAL:
        data["directory_groups"] = list(account.directory_groups)
    return data


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def cookie_value(header: str, name: str) -> str | None:
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name and value:
            return value
    return None
