"""Who a cookie says a request is from: the session key, signed session tokens, and the shared
SQLite store of signed-out sessions, failed sign-ins and questions asked.

Sessions are stateless tokens, so replicas need share nothing but their configured stores:
`base64url(json) "." base64url(HMAC-SHA256)`, the JSON holding the user, a random session id,
the sign-in time, the last time it was refreshed and a keyed fingerprint of the user's password
hash (`password_mark`: a new password ends every session signed in before it). The key is a file (settings
`ui.session_secret_path`, default `<data_dir>/session.key`, 32 random bytes, created 0600 on
first use with a link that cannot overwrite, so replicas racing to create it agree). A token is
good while its HMAC holds, it is younger than `ui.session_max_hours` and was refreshed within
`ui.session_idle_minutes` (ui.signin checks that). Signing out records the session id in the
shared store (`ui.auth_store_path`, default `<data_dir>/auth.sqlite3`) until the token would
have expired anyway; every request checks it. The same store throttles failed sign-ins, counts
questions and feedback per user, and counts repeated audit events per window (`AuthStore`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import ConfigError
from core.settings import Settings

COOKIE = "enclave_session"
# Where TLS is on (ui.cookie_secure): the browser then keeps it only if Secure, Path=/ and set
# without a Domain, so no sibling host or plain-HTTP page can plant or shadow it.
SECURE_COOKIE = "__Host-enclave_session"
USER_KEY = "enclave.user"  # the signed-in user's name, in the ASGI scope, for auth_dependency
REFRESH_AFTER_S = 60.0
SECRET_BYTES = 32

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
    mark: str  # password_mark of the user's password hash at sign-in: a new password ends it


def cookie_name(secure: bool) -> str:
    """The session cookie's name: with the `__Host-` prefix where it is sent over TLS only."""
    return SECURE_COOKIE if secure else COOKIE


def password_mark(secret: bytes, password_hash: str) -> str:
    """A short keyed fingerprint of a password hash, carried in the token: when the password
    changes (enclave users add), every session signed in before no longer matches."""
    return _b64(hmac.new(secret, b"password\0" + password_hash.encode("utf-8"), hashlib.sha256).digest()[:12])


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
            "pw": session.mark,
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
        return Session(
            str(raw["u"]),
            str(raw["sid"]),
            float(raw["iat"]),
            float(raw["seen"]),
            str(raw["m"]),
            str(raw["pw"]),
        )
    except (ValueError, KeyError, TypeError):
        return None


def seal(secret: bytes, purpose: str, text: str) -> str:
    """`text` signed with the session key for one `purpose` (a cookie of ours other than the
    session's: the OIDC sign-in under way); `unseal` gives it back only unaltered."""
    body = text.encode("utf-8")
    mac = hmac.new(secret, purpose.encode("utf-8") + b"\0" + body, hashlib.sha256).digest()
    return f"{_b64(body)}.{_b64(mac)}"


def unseal(secret: bytes, purpose: str, sealed: str) -> str | None:
    try:
        body_text, mac_text = sealed.split(".")
        body, mac = _unb64(body_text), _unb64(mac_text)
    except ValueError:
        return None
    expected = hmac.new(secret, purpose.encode("utf-8") + b"\0" + body, hashlib.sha256).digest()
    if not hmac.compare_digest(mac, expected):
        return None
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return None


# -- the shared store -----------------------------------------------------------------------------

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS revoked (sid TEXT PRIMARY KEY, until REAL NOT NULL)",
    # One row per key an attempt counted against; `attempt` ties them so a success takes its own back.
    "CREATE TABLE IF NOT EXISTS sign_in_failures "
    "(kind TEXT NOT NULL, key TEXT NOT NULL, ts REAL NOT NULL, attempt TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS sign_in_failures_key ON sign_in_failures (kind, key, ts)",
    "CREATE INDEX IF NOT EXISTS sign_in_failures_attempt ON sign_in_failures (attempt)",
    # Things counted per user and window: questions asked, feedback given.
    "CREATE TABLE IF NOT EXISTS counted (kind TEXT NOT NULL, user TEXT NOT NULL, ts REAL NOT NULL)",
    "CREATE INDEX IF NOT EXISTS counted_user ON counted (kind, user, ts)",
    "CREATE INDEX IF NOT EXISTS counted_ts ON counted (ts)",
    # Repeated audit events: the open window of each (event, user, detail) and how many it saw.
    "CREATE TABLE IF NOT EXISTS audit_windows (event TEXT NOT NULL, user TEXT NOT NULL, "
    "detail TEXT NOT NULL, opened REAL NOT NULL, count INTEGER NOT NULL, first TEXT NOT NULL, "
    "PRIMARY KEY (event, user, detail))",
    "CREATE INDEX IF NOT EXISTS audit_windows_opened ON audit_windows (opened)",
    # What a directory (LDAP, OIDC, the SSO proxy's groups header) said of each user it let in,
    # and when: ui.accounts reads it on each request and asks again when a check is due.
    # `state`: what the next check needs (an OIDC refresh token); `gone`: why the directory no
    # longer lets the user in; `version`: bumped on each write, so two checks at once write once.
    # The OIDC provider's ID token of each session signed in through it: the hint its sign-out
    # sends back to the provider (RP-initiated logout). Kept until the session would expire.
    "CREATE TABLE IF NOT EXISTS session_hints (sid TEXT PRIMARY KEY, id_token TEXT NOT NULL, until REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS identities (user TEXT PRIMARY KEY, backend TEXT NOT NULL, "
    "subject TEXT NOT NULL, role TEXT NOT NULL, groups TEXT NOT NULL, directory_groups TEXT NOT NULL, "
    "display_name TEXT NOT NULL, checked REAL NOT NULL, state TEXT, gone TEXT, "
    "version INTEGER NOT NULL DEFAULT 0)",
)
_IDENTITY_COLUMNS = (
    "user", "backend", "subject", "role", "groups", "directory_groups", "display_name", "checked", "state",
)  # fmt: skip
OTHER_DETAIL = "*"  # the window that takes a user's repeats beyond AuthStore.max_details


@dataclass(frozen=True)
class Throttle:
    """Delays for failed sign-ins: `free` failures within `window_s` cost nothing, each one after
    waits twice as long as the one before, from `delay_s` up to `max_delay_s`."""

    free: int
    window_s: float
    delay_s: float
    max_delay_s: float

    def wait(self, failures: list[float], now: float) -> float:
        """Seconds left to wait after these failure times (oldest first); 0: none."""
        over = len(failures) - self.free
        if over < 0:
            return 0.0
        delay = min(self.max_delay_s, self.delay_s * 2 ** min(over, 32))
        return max(0.0, failures[-1] + delay - now)


@dataclass(frozen=True)
class ClosedWindow:
    """Repeats of one audit event counted in a window now closed: written as one record."""

    event: str
    user: str
    data: dict[str, object]  # the first record's grouping fields
    opened: float
    count: int  # every event in the window, the one written first included


class AuthStore:
    """Signed-out sessions, failed sign-ins, per-user counts and repeated audit events, in SQLite
    shared by every replica.

    The schema is made once, here; each call then opens and closes its own connection (as
    AuditLog does). Every check-and-count is one write transaction, so replicas and threads
    counting at once never both take the last place. Rows past any use are removed as new ones
    are written.
    """

    def __init__(self, path: Path, *, busy_timeout_s: float = 10.0, max_details: int = 20) -> None:
        self.path = path
        self.busy_timeout_s = busy_timeout_s
        self.max_details = max_details
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            with _transaction(conn):
                for statement in _SCHEMA:
                    conn.execute(statement)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None)
        try:
            yield conn
        finally:
            conn.close()

    @contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        with self._connect() as conn, _transaction(conn):
            yield conn

    def revoke(self, sid: str, until: float, now: float) -> None:
        with self._writing() as conn:
            conn.execute("DELETE FROM revoked WHERE until < ?", (now,))
            conn.execute("INSERT OR REPLACE INTO revoked (sid, until) VALUES (?, ?)", (sid, until))

    def is_revoked(self, sid: str) -> bool:
        with self._connect() as conn:
            return conn.execute("SELECT 1 FROM revoked WHERE sid = ?", (sid,)).fetchone() is not None

    # -- sign-in attempts ----------------------------------------------------------------------

    def begin_attempt(self, keys: dict[str, str], now: float, throttle: Throttle) -> str | float:
        """Count a sign-in attempt as failed against each of `keys` (kind -> key), unless one of
        them must still wait: the attempt's id, or the seconds to wait (nothing counted then).

        Counted before the password is checked, in one write transaction, so parallel guesses
        cannot all pass the check before any is counted; a success takes its rows back
        (`succeeded`)."""
        with self._writing() as conn:
            conn.execute("DELETE FROM sign_in_failures WHERE ts < ?", (now - throttle.window_s,))
            wait = 0.0
            for kind, key in keys.items():
                times = [
                    float(r[0])
                    for r in conn.execute(
                        "SELECT ts FROM sign_in_failures WHERE kind = ? AND key = ? ORDER BY ts", (kind, key)
                    )
                ]
                wait = max(wait, throttle.wait(times, now))
            if wait > 0:
                return wait
            attempt = secrets.token_hex(8)
            conn.executemany(
                "INSERT INTO sign_in_failures (kind, key, ts, attempt) VALUES (?, ?, ?, ?)",
                [(kind, key, now, attempt) for kind, key in keys.items()],
            )
        return attempt

    def succeeded(self, attempt: str, forgiven: dict[str, str]) -> None:
        """The attempt was right: take its rows back, and forget the failures of `forgiven`
        (kind -> key; the user proved themselves there)."""
        with self._writing() as conn:
            conn.execute("DELETE FROM sign_in_failures WHERE attempt = ?", (attempt,))
            for kind, key in forgiven.items():
                conn.execute("DELETE FROM sign_in_failures WHERE kind = ? AND key = ?", (kind, key))

    # -- per-user counts ---------------------------------------------------------------------

    def take(self, kind: str, user: str, now: float, window_s: float, limit: int) -> float | None:
        """Count one `kind` (a question, a feedback) by `user` unless `limit` were counted within
        `window_s`: None when counted, else the seconds until the oldest of them leaves the window."""
        with self._writing() as conn:
            conn.execute("DELETE FROM counted WHERE kind = ? AND ts < ?", (kind, now - window_s))
            times = [
                float(r[0])
                for r in conn.execute(
                    "SELECT ts FROM counted WHERE kind = ? AND user = ? ORDER BY ts", (kind, user)
                )
            ]
            if len(times) >= limit:
                return max(0.0, times[-limit] + window_s - now)
            conn.execute("INSERT INTO counted (kind, user, ts) VALUES (?, ?, ?)", (kind, user, now))
        return None

    # -- directory identities ------------------------------------------------------------------

    def identity(self, user: str) -> dict[str, Any] | None:
        """What a directory last said of `user` (a row of `identities`), or None."""
        with self._connect() as conn:
            conn.row_factory = sqlite3.Row
            row = conn.execute("SELECT * FROM identities WHERE user = ?", (user,)).fetchone()
        return dict(row) if row is not None else None

    def identities(self) -> list[dict[str, Any]]:
        """Every user a directory let in, as last checked (rows of `identities`), by name."""
        with self._connect() as conn:
            conn.row_factory = sqlite3.Row
            return [dict(r) for r in conn.execute("SELECT * FROM identities ORDER BY user")]

    def put_identity(self, row: dict[str, Any]) -> None:
        """Keep what a directory says of a user now (at a sign-in, or a proxy request)."""
        values = [row[c] for c in _IDENTITY_COLUMNS]
        with self._writing() as conn:
            conn.execute(
                f"INSERT INTO identities ({', '.join(_IDENTITY_COLUMNS)}, gone, version) "
                f"VALUES ({', '.join('?' * len(_IDENTITY_COLUMNS))}, NULL, 1) "
                "ON CONFLICT (user) DO UPDATE SET "
                + ", ".join(f"{c} = excluded.{c}" for c in _IDENTITY_COLUMNS[1:])
                + ", gone = NULL, version = identities.version + 1",
                values,
            )

    def replace_identity(self, user: str, version: int, row: dict[str, Any]) -> bool:
        """Keep a check's answer if nothing was written since `version` was read: False when
        another request or replica got there first (its answer stands)."""
        with self._writing() as conn:
            changed = conn.execute(
                "UPDATE identities SET "
                + ", ".join(f"{c} = ?" for c in _IDENTITY_COLUMNS[1:])
                + ", version = version + 1 WHERE user = ? AND version = ? AND gone IS NULL",
                [*(row[c] for c in _IDENTITY_COLUMNS[1:]), user, version],
            ).rowcount
        return bool(changed)

    def keep_hint(self, sid: str, id_token: str, until: float, now: float) -> None:
        with self._writing() as conn:
            conn.execute("DELETE FROM session_hints WHERE until < ?", (now,))
            conn.execute(
                "INSERT OR REPLACE INTO session_hints (sid, id_token, until) VALUES (?, ?, ?)",
                (sid, id_token, until),
            )

    def take_hint(self, sid: str) -> str | None:
        """The ID token kept for session `sid` (removed: a sign-out uses it once)."""
        with self._writing() as conn:
            row = conn.execute("SELECT id_token FROM session_hints WHERE sid = ?", (sid,)).fetchone()
            conn.execute("DELETE FROM session_hints WHERE sid = ?", (sid,))
        return str(row[0]) if row is not None else None

    def forget_state(self, user: str) -> None:
        """Drop what the next check of `user` would use (the OIDC refresh token)."""
        with self._writing() as conn:
            conn.execute("UPDATE identities SET state = NULL, version = version + 1 WHERE user = ?", (user,))

    def mark_gone(self, user: str, reason: str, now: float) -> bool:
        """The directory no longer lets `user` in: False when that was already known."""
        with self._writing() as conn:
            changed = conn.execute(
                "UPDATE identities SET gone = ?, checked = ?, state = NULL, version = version + 1 "
                "WHERE user = ? AND gone IS NULL",
                (reason, now, user),
            ).rowcount
        return bool(changed)

    # -- repeated audit events ---------------------------------------------------------------

    def tally(
        self, event: str, user: str, detail: dict[str, object], now: float, window_s: float
    ) -> tuple[bool, list[ClosedWindow]]:
        """Count an audit event in the window of (event, user, detail): whether it is the first
        there (write it), and every window of any event that has closed since (write one
        summary of each that saw repeats). A user with `max_details` open windows for the event
        shares one more window (`OTHER_DETAIL`), so repeats cannot grow the log without bound."""
        key = json.dumps(detail, sort_keys=True, default=str)
        with self._writing() as conn:
            closed = [
                ClosedWindow(r[0], r[1], json.loads(r[2]), float(r[3]), int(r[4]))
                for r in conn.execute(
                    "SELECT event, user, first, opened, count FROM audit_windows WHERE opened <= ?",
                    (now - window_s,),
                )
            ]
            conn.execute("DELETE FROM audit_windows WHERE opened <= ?", (now - window_s,))
            seen = conn.execute(
                "SELECT 1 FROM audit_windows WHERE event = ? AND user = ? AND detail = ?", (event, user, key)
            ).fetchone()
            if seen is None:
                (open_windows,) = conn.execute(
                    "SELECT count(*) FROM audit_windows WHERE event = ? AND user = ?", (event, user)
                ).fetchone()
                if open_windows >= self.max_details:
                    key, detail = OTHER_DETAIL, {"detail": "other"}
            updated = conn.execute(
                "UPDATE audit_windows SET count = count + 1 WHERE event = ? AND user = ? AND detail = ?",
                (event, user, key),
            ).rowcount
            if not updated:
                conn.execute(
                    "INSERT INTO audit_windows (event, user, detail, opened, count, first) "
                    "VALUES (?, ?, ?, ?, 1, ?)",
                    (event, user, key, now, json.dumps(detail, default=str)),
                )
        return not updated, [c for c in closed if c.count > 1]


@contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """One write transaction, taken at once (BEGIN IMMEDIATE), on a connection in autocommit mode."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


class QuestionLimit:
    """At most `limit` questions per user within `window_s`, chat and /ask together, and at most
    `feedback_limit` feedback records per user within `feedback_window_s`, counted in the shared
    AuthStore (so across replicas). A refused question or feedback is not counted; 0: no limit."""

    def __init__(
        self,
        store: AuthStore,
        limit: int,
        window_s: float,
        feedback_limit: int = 0,
        feedback_window_s: float = 3600.0,
    ) -> None:
        self.store = store
        self.limit = limit
        self.window_s = window_s
        self.feedback_limit = feedback_limit
        self.feedback_window_s = feedback_window_s
        self._reported: dict[str, float] = {}  # user -> end of the window their refusal was audited in

    @classmethod
    def from_settings(cls, settings: Settings) -> QuestionLimit | None:
        """The limits ui.question_limit and ui.feedback_limit set; None when both are 0."""
        ui = settings.ui
        if ui.question_limit == 0 and ui.feedback_limit == 0:
            return None
        return cls(
            AuthStore(settings.auth_store_path),
            ui.question_limit,
            ui.question_window_minutes * 60,
            ui.feedback_limit,
            ui.feedback_window_minutes * 60,
        )

    def take(self, user: str, now: float) -> float | None:
        """Count a question by `user`: None when allowed, else the seconds to wait."""
        if self.limit == 0:
            return None
        return self.store.take("question", user, now, self.window_s, self.limit)

    def take_feedback(self, user: str, now: float) -> None:
        """Count a feedback record by `user`; ValueError (naming the limit) when over it."""
        if self.feedback_limit == 0:
            return
        wait = self.store.take("feedback", user, now, self.feedback_window_s, self.feedback_limit)
        if wait is not None:
            raise ValueError(
                f"You have given feedback {self.feedback_limit} times in the last "
                f"{duration_text(self.feedback_window_s)}, the most allowed (ui.feedback_limit); "
                f"try again in {duration_text(max(1.0, wait))}."
            )

    def first_refusal(self, user: str, now: float) -> bool:
        """Whether this refusal is the first of its window for `user` (only that one is audited,
        so a script hammering the app cannot flood the audit log)."""
        if self._reported.get(user, 0.0) > now:
            return False
        self._reported[user] = now + self.window_s
        return True

    def message(self, wait_s: float) -> str:
        return (
            f"You have asked {self.limit} questions in the last {duration_text(self.window_s)}, the most "
            f"allowed (ui.question_limit); ask again in {duration_text(max(1.0, wait_s))}."
        )


def duration_text(seconds: float) -> str:
    """`seconds` in words: "45 seconds", "3 minutes"."""
    if seconds < 90:
        n = int(seconds + 0.999)
        return f"{n} second{'s' if n != 1 else ''}"
    n = int(seconds / 60 + 0.999)
    return f"{n} minute{'s' if n != 1 else ''}"
