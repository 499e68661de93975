"""Sign-in under attack, over real HTTP (ui.server on uvicorn, the Gradio app mounted, a real users
file, real SQLite stores): failed sign-ins throttled per (name, address) and counted atomically,
repeated audit events counted per window instead of written one by one, feedback capped per user,
unknown names costing one scrypt like known ones, the SSO header believed only with the proxy's
secret, the `__Host-` cookie under TLS, a password change ending older sessions, and sign-ins on
the configured audit backend.

Every address in 127.0.0.0/8 is loopback on Linux: a client binds 127.0.0.x as its source to be
another peer (127.0.0.2 is the trusted SSO proxy; each test uses addresses of its own).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import gradio as gr
import httpx
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError
from typer.testing import CliRunner

from audit import AuditLog
from audit.log import AuditRecord
from core.errors import ConfigError
from core.settings import Settings, load_settings
from core.users import UserStore
from tests.support.net import (
    free_port,
    nothing_left_loopback,  # noqa: F401 (an autouse fixture)
)
from ui import build_app, serve
from ui.sessions import COOKIE, SECURE_COOKIE
from ui.signin import UNKNOWN_USER, Gate

pytestmark = pytest.mark.slow  # real servers

PASSWORD = "correct horse battery"
PROXY = "127.0.0.2"
PROXY_SECRET = "s3cret-the-proxy-and-the-app-share"
REPEAT_WINDOW_S = 3.0  # ui.audit_repeat_window_minutes here: short, so a test can see one close


@dataclass
class Served:
    url: str
    settings: Settings
    log: AuditLog
    app: gr.Blocks

    def http(self, source: str = "127.0.0.1", **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, transport=httpx.HTTPTransport(local_address=source), **kwargs)

    def sign_in(self, name: str, password: str, source: str) -> httpx.Response:
        with self.http(source) as http:
            return http.post("/login", data={"username": name, "password": password})

    def records(self, event: str, user: str | None = None) -> list[AuditRecord]:
        newest_first = self.log.last(5000)
        return [r for r in reversed(newest_first) if r.event == event and (user is None or r.user == user)]


def start(root: Path, log: AuditLog | None = None, **ui: Any) -> Served:
    settings = load_settings(None, data_dir=root / "var")
    settings.ui.port = free_port()
    for key, value in ui.items():
        setattr(settings.ui, key, value)
    users = UserStore(settings.users_path)
    for name, role in (("alice", "staff"), ("dave", "staff"), ("erin", "staff"), ("frank", "auditor")):
        users.add(name, PASSWORD, role, ("public",))
    if log is None:
        log = AuditLog(settings.audit_path)
        app = build_app(object(), users, settings, audit=log)
    else:  # as `enclave serve` builds it: the assistant's log, of whichever backend
        app = build_app(SimpleNamespace(audit=log), users, settings)
    url = serve(app, settings, block=False)
    return Served(url, settings, log, app)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("limits")
    (root / "proxy.secret").write_text(PROXY_SECRET + "\n", encoding="utf-8")
    running = start(
        root,
        login_max_failures=3,
        login_delay_seconds=30,
        audit_repeat_window_minutes=REPEAT_WINDOW_S / 60,
        feedback_limit=3,
        sso_header="X-Remote-User",
        trusted_proxies=[PROXY],
        sso_secret_file=root / "proxy.secret",
    )
    try:
        yield running
    finally:
        running.app.close()


def true_count(records: list[AuditRecord]) -> int:
    """How many events these records stand for: a first record is one; a window's summary
    (`count`) holds every event of its window, its first record included."""
    return sum(r.data["count"] - 1 if "count" in r.data else 1 for r in records)


def close_windows(served: Served) -> None:
    """Let the repeat windows open now close, then have one more grouped event written, which
    writes their summaries."""
    time.sleep(REPEAT_WINDOW_S + 0.5)
    assert served.sign_in("nobody-at-all", "wrong wrong", "127.0.0.99").status_code in (401, 429)


# -- item 5: the throttle --------------------------------------------------------------------------


def test_parallel_guesses_beyond_the_limit_are_refused(served: Served) -> None:
    start_line = threading.Barrier(12)
    statuses: list[int] = []

    def guess() -> None:
        with served.http("127.0.0.20") as http:
            start_line.wait()
            statuses.append(
                http.post("/login", data={"username": "dave", "password": "wrong guess"}).status_code
            )

    threads = [threading.Thread(target=guess) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Counted before the password is checked, in one transaction: exactly the free three ran.
    assert sorted(statuses) == [401] * 3 + [429] * 9


def test_someone_elses_failures_do_not_lock_the_real_user_out(served: Served) -> None:
    for _ in range(5):  # an attacker at .21 guesses frank's (an auditor's) password
        assert served.sign_in("frank", "guess guess", "127.0.0.21").status_code in (401, 429)
    refused = served.sign_in("frank", PASSWORD, "127.0.0.21")  # even right, from there it waits
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 0
    assert "Try again after" in refused.json()["detail"] and COOKIE not in refused.cookies
    # Frank, from his own address, signs in: the attacker slowed only themselves.
    assert served.sign_in("frank", PASSWORD, "127.0.0.22").status_code == 200
    assert served.records("sign_in_failed", "frank")[-1].data["address"] == "127.0.0.21"


def test_unknown_and_known_names_cost_one_scrypt_each(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = hashlib.scrypt
    calls: list[int] = []

    def counted(*args: Any, **kwargs: Any) -> bytes:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(hashlib, "scrypt", counted)  # the server runs in this process
    costs = {}
    for name, source in (("alice", "127.0.0.23"), ("no-such-user", "127.0.0.24")):
        before = len(calls)
        assert served.sign_in(name, "wrong password", source).status_code == 401
        costs[name] = len(calls) - before
    assert costs == {"alice": 1, "no-such-user": 1}


def test_a_typed_name_is_kept_only_when_it_names_a_user(served: Served) -> None:
    typed = "Tr0ub4dor&3-typed-in-the-name-field"
    assert served.sign_in(typed, "whatever else", "127.0.0.25").status_code == 401
    failed = [r for r in served.records("sign_in_failed") if r.data.get("address") == "127.0.0.25"]
    assert [(r.user, r.data["reason"]) for r in failed] == [(UNKNOWN_USER, "wrong user name or password")]
    assert typed not in str([(r.user, r.data) for r in served.log.last(5000)])


# -- item 5: the audit log cannot be flooded ----------------------------------------------------------


def test_200_failed_sign_ins_write_a_bounded_number_of_records_with_the_true_count(served: Served) -> None:
    statuses = [served.sign_in("erin", f"guess {i}", "127.0.0.26").status_code for i in range(200)]
    assert statuses[:3] == [401] * 3 and set(statuses[3:]) == {429}
    close_windows(served)
    records = [r for r in served.records("sign_in_failed", "erin") if r.data["address"] == "127.0.0.26"]
    assert len(records) <= 12, [r.data for r in records]  # two reasons, a window or a few each
    assert true_count(records) == 200
    summaries = [r for r in records if "count" in r.data]
    assert summaries and all(
        r.data["reason"] in ("rate limited", "wrong user name or password") for r in summaries
    )


def test_repeated_access_denied_is_counted_not_written_each_time(served: Served) -> None:
    with served.http("127.0.0.27", headers={"accept": "text/html"}) as http:
        assert http.post("/login", data={"username": "alice", "password": PASSWORD}).status_code == 303
        for _ in range(30):
            assert http.get("/audit").status_code == 403
    close_windows(served)
    denied = [r for r in served.records("access_denied", "alice") if r.data.get("path") == "/audit"]
    assert len(denied) <= 6 and true_count(denied) == 30


def test_feedback_from_one_user_is_capped(served: Served) -> None:
    answer = served.log.append("answer", "alice", "How much leave?", data={"answer": "25 days."})
    alice = Client(served.url, auth=("alice", PASSWORD), verbose=False, analytics_enabled=False)
    for _ in range(3):
        assert alice.predict(answer.id, "up", "", api_name="/feedback")["record_id"] == answer.id
    with pytest.raises(AppError, match=r"ui\.feedback_limit"):
        alice.predict(answer.id, "down", "one more", api_name="/feedback")
    assert len(served.log.feedback_for(answer.id)) == 3


def test_file_opened_repeats_are_counted_and_distinct_details_are_bounded(tmp_path: Path) -> None:
    settings = load_settings(None, data_dir=tmp_path)
    settings.ui.audit_repeat_window_minutes = 1
    log = AuditLog(settings.audit_path)
    gate = Gate(settings, UserStore(settings.users_path), log)
    t0 = 1_000_000.0
    for i in range(10):
        assert gate.audit_event("file_opened", "alice", {"doc_id": "d1", "title": "Leave"}, now=t0 + i)
    for i in range(50):  # fifty documents: the first twenty get a window each, the rest share one
        gate.audit_event("file_opened", "bob", {"doc_id": f"doc{i}"}, now=t0 + i)
    gate.audit_event("file_opened", "carol", {"doc_id": "d1"}, now=t0 + 120)  # the windows close
    alice = [r for r in log.last(1000) if r.user == "alice"]
    assert len(alice) == 2 and true_count(alice) == 10
    assert [r.data["count"] for r in alice if "count" in r.data] == [10]
    bob = [r for r in log.last(1000) if r.user == "bob"]
    assert len(bob) == 22 and true_count(bob) == 50  # 20 + the shared one, and its summary


# -- item 6: the SSO header only from the proxy ----------------------------------------------------------


def test_the_sso_header_is_believed_only_with_the_proxys_secret(served: Served) -> None:
    proven = {"X-Remote-User": "alice", "X-Enclave-Proxy-Secret": PROXY_SECRET}
    with served.http(PROXY, headers=proven) as proxy:
        config = proxy.get("/config")
    assert config.status_code == 200 and config.json()["username"] == "alice"
    cases = {
        "no secret": (PROXY, {"X-Remote-User": "alice"}, "without the proxy's secret"),
        "wrong secret": (
            PROXY,
            {"X-Remote-User": "alice", "X-Enclave-Proxy-Secret": "guessed-guessed-guessed"},
            "without the proxy's secret",
        ),
        # A local process on another address, with the secret even: not the proxy.
        "not the proxy": ("127.0.0.1", proven, "not in ui.trusted_proxies"),
    }
    for case, (source, headers, reason) in cases.items():
        with served.http(source, headers=headers) as http:
            refused = http.get("/config")
        assert refused.status_code == 403, case
        assert "accepted only from the sign-in proxy" in refused.json()["detail"], case
        assert COOKIE not in refused.cookies, case
        denied = served.records("access_denied", "alice")[-1]
        assert denied.data["method"] == "sso" and reason in denied.data["reason"], case


def test_sso_without_a_usable_proxy_secret_does_not_start(tmp_path: Path) -> None:
    settings = load_settings(None, data_dir=tmp_path)
    settings.ui.sso_header = "X-Remote-User"
    users, log = UserStore(settings.users_path), AuditLog(settings.audit_path)
    with pytest.raises(ConfigError, match=r"ui\.sso_secret_file is not"):
        Gate(settings, users, log)
    settings.ui.sso_secret_file = tmp_path / "short.secret"
    settings.ui.sso_secret_file.write_text("short\n")
    with pytest.raises(ConfigError, match=r"ui\.sso_secret_file .*short\.secret holds 5 characters"):
        Gate(settings, users, log)
    settings.ui.sso_secret_file = tmp_path / "missing.secret"
    with pytest.raises(ConfigError, match=r"ui\.sso_secret_file .*missing\.secret cannot be read"):
        Gate(settings, users, log)


# -- item 7: the cookie, a password change, the audit backend ------------------------------------------


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[Callable[..., Served]]:
    started: list[Served] = []

    def run(log: AuditLog | None = None, **ui: Any) -> Served:
        started.append(start(tmp_path, log, **ui))
        return started[-1]

    yield run
    for running in started:
        running.app.close()


def test_under_tls_the_cookie_is_a_host_cookie(fresh: Callable[..., Served]) -> None:
    served = fresh(cookie_secure=True)
    signed_in = served.sign_in("alice", PASSWORD, "127.0.0.1")
    assert signed_in.status_code == 200
    cookie = signed_in.headers["set-cookie"]
    assert cookie.startswith(f"{SECURE_COOKIE}=") and "Secure" in cookie and "Path=/" in cookie
    assert "domain" not in cookie.lower()
    token = cookie.split(";", 1)[0].split("=", 1)[1]
    with served.http(headers={"cookie": f"{SECURE_COOKIE}={token}"}) as http:
        assert http.get("/config").json()["username"] == "alice"
    with served.http(headers={"cookie": f"{COOKIE}={token}"}) as http:  # one name per setting
        assert http.get("/config").status_code == 401


def test_a_password_change_ends_the_users_sessions(fresh: Callable[..., Served]) -> None:
    from enclave.cli import app as cli

    served = fresh()
    signed_in = served.sign_in("alice", PASSWORD, "127.0.0.1")
    token = signed_in.cookies[COOKIE]
    other = served.sign_in("dave", PASSWORD, "127.0.0.1").cookies[COOKIE]
    with served.http(cookies={COOKIE: token}) as http:
        assert http.get("/config").status_code == 200
    changed = CliRunner().invoke(
        cli,
        ["--data-dir", str(served.settings.data_dir), "users", "add", "alice", "--password-stdin"],
        input="a brand new password\n",
    )
    assert changed.exit_code == 0, changed.output
    with served.http(cookies={COOKIE: token}) as http:
        refused = http.get("/config")
    assert refused.status_code == 401 and "password was changed" in refused.json()["detail"]
    with served.http(cookies={COOKIE: other}) as http:  # dave's password did not change
        assert http.get("/config").status_code == 200
    assert served.sign_in("alice", "a brand new password", "127.0.0.1").status_code == 200


def test_without_a_log_on_postgres_the_app_refuses_to_build(tmp_path: Path) -> None:
    settings = load_settings(None, data_dir=tmp_path)
    settings.audit.backend = "postgres"
    with pytest.raises(
        ConfigError, match=r"audit\.backend is postgres, but the web UI was given no audit log"
    ):
        build_app(object(), UserStore(settings.users_path), settings)
    assert not settings.audit_path.exists()


def test_sign_ins_land_in_postgresql_when_it_is_the_backend(
    fresh: Callable[..., Served], postgres_server: Any, tmp_path: Path
) -> None:
    from enclave import wiring

    settings = load_settings(None, data_dir=tmp_path / "var")
    settings.audit.backend = "postgres"
    settings.audit.dsn = postgres_server.fresh_dsn()
    log = wiring.build_audit(settings)
    served = fresh(log)
    assert served.sign_in("alice", PASSWORD, "127.0.0.1").status_code == 200
    assert served.sign_in("alice", "wrong password", "127.0.0.30").status_code == 401
    events = [(r.event, r.user) for r in log.last(10)]
    assert ("sign_in", "alice") in events and ("sign_in_failed", "alice") in events
    assert not settings.audit_path.exists()  # no second trail in SQLite
