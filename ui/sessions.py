"""Who a cookie says a request is from: the session key, signed session tokens, and the shared
SQLite store of signed-out sessions, failed sign-ins and questions asked.

Sessions are stateless tokens, so replicas need share nothing but their configured stores:
`base64url(json) "." base64url(HMAC-SHA256)`, the JSON holding the user, a random session id,
the sign-in time and the last time it was refreshed. The key is a file (settings
`ui.session_secret_path`, default `<data_dir>/session.key`, 32 random bytes, created 0600 on
first use with a link that cannot overwrite, so replicas racing to create it agree). A token is
good while its HMAC holds, it is younger than `ui.session_max_hours` and was refreshed within
`ui.session_idle_minutes` (ui.signin checks that). Signing out records the session id in the
shared store (`ui.auth_store_path`, default `<data_dir>/auth.sqlite3`) until the token would
have expired anyway; every request checks it.
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

from core.errors import ConfigError
from core.settings import Settings

COOKIE = "enclave_session"
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
