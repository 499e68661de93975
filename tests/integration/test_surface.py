"""The web tier's whole surface, enumerated from the app itself, against its allow-lists
(ui.boundary), over real HTTP: every route of the ASGI app and every Gradio event, for each role
and for a signed-out client, with hostile payloads in every input slot.

Nothing here names the routes or events we thought of: they are read from the running app's own
routes and config. A route or event added later without an allow-list entry fails
`test_every_route_and_event_has_a_decision`; a payload that smuggles a server path in fails the
secret scans below whether it arrives in a response or behind a file URL in one.
"""

from __future__ import annotations

import json
import os
import secrets
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import gradio as gr
import httpx
import pytest

from core.settings import Settings
from core.types import Answer, Citation, Principal, StreamEvent
from core.users import UserStore
from tests.support.net import (
    free_port,
    nothing_left_loopback,  # noqa: F401 (an autouse fixture)
)
from tests.support.surface import asgi_routes, concrete
from ui import build_app, serve
from ui.boundary import ANYONE, EVENTS, FILE_EVENTS, ROUTES, allowed, route_for, slot_kind

pytestmark = pytest.mark.slow  # a real server

PASSWORD = "correct horse battery"
ROLES = {"alice": "staff", "olga": "auditor", "adam": "admin"}
CANARY = "enclave-canary-" + secrets.token_hex(8)  # in this process's environment: /proc/self/environ

# Gradio routes the pages do not use, refused for everyone. A new route in neither this set nor
# ui.boundary.ROUTES fails the test: someone must decide whether it is open, and to whom.
REFUSED = {
    "/openapi.json", "/login/", "/svelte/{path:path}", "/gradio_api/deep_link", "/robots.txt",
    "/pwa_icon/{size}", "/pwa_icon", "/manifest.json", "/monitoring", "/monitoring/summary",
    "/monitoring/{key}", "/gradio_api/user/", "/gradio_api/user", "/gradio_api/login_check/",
    "/gradio_api/login_check", "/gradio_api/token/", "/gradio_api/token", "/gradio_api/app_id/",
    "/gradio_api/app_id", "/gradio_api/dev/reload", "/gradio_api/runs/", "/gradio_api/runs",
    "/gradio_api/run-history/connect", "/gradio_api/run-history/buckets",
    "/gradio_api/run-history/records",
    "/gradio_api/run-history/records/{endpoint}/{record_id}/assets/{asset_id}",
    "/gradio_api/openapi.json", "/gradio_api/custom_component/{id}/{environment}/{type}/{file_name}",
    "/gradio_api/proxy={url_path:path}", "/gradio_api/file={path_or_url:path}",
    "/gradio_api/stream/{event_id}", "/gradio_api/stream/{event_id}/close",
    "/gradio_api/stream/{session_hash}/{run}/{component_id}/playlist.m3u8",
    "/gradio_api/stream/{session_hash}/{run}/{component_id}/{segment_id}.{ext}",
    "/gradio_api/stream/{session_hash}/{run}/{component_id}/playlist-file",
    "/gradio_api/file/{path:path}", "/gradio_api/api/{api_name}/", "/gradio_api/api/{api_name}",
    "/gradio_api/run/{api_name}/", "/gradio_api/run/{api_name}", "/gradio_api/call/v2/{api_name}/",
    "/gradio_api/call/v2/{api_name}", "/gradio_api/call/v2/{api_name}/{event_id}",
    "/gradio_api/component_server/", "/gradio_api/component_server", "/gradio_api/queue/status",
    "/gradio_api/process_recording",
    "/gradio_api/vibe-edit", "/gradio_api/vibe-edit/", "/gradio_api/undo-vibe-edit",
    "/gradio_api/undo-vibe-edit/", "/gradio_api/vibe-code", "/gradio_api/vibe-code/",
    "/gradio_api/vibe-starter-queries", "/gradio_api/vibe-starter-queries/",
}  # fmt: skip


class ScriptedAssistant:
    """Stand-in for assistant.Assistant (the UI needs only `stream`): one fixed answer."""

    def stream(
        self,
        principal: Principal,
        question: str,
        history: Sequence[tuple[str, str]] = (),
        conversation_id: str | None = None,
    ) -> Iterator[StreamEvent]:
        citation = Citation(1, "doc:0001", "doc", "policy.md", "Policy", "", None, "Staff get 25 days.")
        yield StreamEvent("sources", citations=(citation,))
        yield StreamEvent("token", text="Staff get 25 days [1].")
        yield StreamEvent("done", answer=Answer(question, "Staff get 25 days [1].", "llm", [citation]))


@dataclass
class Served:
    url: str
    app: gr.Blocks
    settings: Settings
    server_app: Any
    ran: list[tuple[str, str]] = field(default_factory=list)  # (api_name, user) of each handler run
    secrets: dict[str, bytes] = field(default_factory=dict)

    @contextmanager
    def client(self, name: str | None) -> Iterator[httpx.Client]:
        """A client signed in as `name` (None: signed out)."""
        with httpx.Client(base_url=self.url, timeout=30) as http:
            if name is not None:
                assert http.post("/login", data={"username": name, "password": PASSWORD}).is_success
            yield http


def _recording(fn: Any, api_name: str, ran: list[tuple[str, str]]) -> Any:
    """`fn` that notes (api_name, user) before it runs; same signature, generators stay generators."""
    import functools
    import inspect

    def user_of(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        for value in (*args, *kwargs.values()):
            if isinstance(value, gr.Request):
                return str(getattr(value, "username", None))
        return "?"

    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def generator(*args: Any, **kwargs: Any) -> Any:
            ran.append((api_name, user_of(args, kwargs)))
            yield from fn(*args, **kwargs)

        return generator

    @functools.wraps(fn)
    def plain(*args: Any, **kwargs: Any) -> Any:
        ran.append((api_name, user_of(args, kwargs)))
        return fn(*args, **kwargs)

    return plain


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    os.environ["ENCLAVE_SURFACE_CANARY"] = CANARY
    folder = tmp_path_factory.mktemp("surface")
    settings = Settings(data_dir=folder / "var")
    settings.ui.host, settings.ui.port = "127.0.0.1", free_port()
    users = UserStore(settings.users_path)
    for name, role in ROLES.items():
        users.add(name, PASSWORD, role, ("public",))
    app = build_app(ScriptedAssistant(), users, settings)
    ran: list[tuple[str, str]] = []
    for fn in app.fns.values():
        if fn.fn is not None:
            fn.fn = _recording(fn.fn, str(fn.api_name), ran)
    url = serve(app, settings, block=False)
    server_app = app.server.config.app  # type: ignore[union-attr]
    link = folder / "innocent.txt"
    link.symlink_to(settings.session_secret_path)
    served = Served(url, app, settings, server_app, ran)
    served.secrets = {
        "session key": settings.session_secret_path.read_bytes(),
        "users file": settings.users_path.read_bytes()[:64],
        "passwd": b"root:x:0:0:",
        "environment": CANARY.encode(),
        "sqlite": b"SQLite format 3",
    }
    served.paths = [  # type: ignore[attr-defined]
        str(settings.session_secret_path),
        str(settings.users_path),
        str(settings.audit_path),
        str(link),
        os.path.relpath(settings.session_secret_path),
        "../" * 12 + "etc/passwd",
        "/etc/passwd",
        "/proc/self/environ",
        "/dev/zero",
    ]
    try:
        yield served
    finally:
        app.close()
        os.environ.pop("ENCLAVE_SURFACE_CANARY", None)


def assert_reveals_nothing(served: Served, http: httpx.Client, response: httpx.Response, what: str) -> None:
    """No secret in the response, nor behind any Gradio file URL it holds."""
    for name, secret in served.secrets.items():
        assert secret not in response.content, (what, name)
    for part in response.text.split("/gradio_api/file=")[1:]:
        target = "/gradio_api/file=" + part.split('"')[0].split("'")[0].split("\\")[0]
        behind = http.get(target)
        assert behind.status_code == 404, (what, target)
        for name, secret in served.secrets.items():
            assert secret not in behind.content, (what, target, name)


# -- the decision for each route and event ------------------------------------------------------------


def test_every_route_and_event_has_a_decision(served: Served) -> None:
    routes = asgi_routes(served.server_app)
    undecided = [
        (method, path)
        for method, path in routes
        if route_for("GET" if method == "HEAD" else method, concrete(path, hostile=False)) is None
        and path not in REFUSED
    ]
    assert undecided == [], "routes with no entry in ui.boundary.ROUTES nor this test's REFUSED"
    # No allow-list entry for a route that does not exist (a stale entry is a door for a later one).
    for rule in ROUTES:
        assert any(rule.matches(m, concrete(p, hostile=False)) for m, p in routes), rule.pattern.pattern
    # Every event with a Python function has an entry, and every entry an event.
    callable_events = {str(fn.api_name) for fn in served.app.fns.values() if fn.fn is not None}
    assert callable_events == set(EVENTS)
    # Each page's events are for that page's roles only.
    pages = {"audit": frozenset({"auditor"}), "admin": frozenset({"admin"})}
    for fn in served.app.fns.values():
        if fn.fn is not None and fn.page in pages:
            assert EVENTS[str(fn.api_name)] == pages[fn.page], fn.api_name
    # No event input takes a chat history or anything else but plain values; a file only on the
    # events that take uploads, which are the admins' alone.
    for fn in served.app.fns.values():
        if fn.fn is not None:
            kinds = [slot_kind(c, str(fn.api_name)) for c in fn.inputs]
            assert all(k is not None for k in kinds), (fn.api_name, fn.inputs)
            if "files" in kinds:
                assert fn.api_name in FILE_EVENTS and EVENTS[str(fn.api_name)] == frozenset({"admin"})
            assert all(slot_kind(c) != "files" for c in fn.inputs), fn.api_name
    # Gradio's own path checks run as if launched, with the data folder blocked.
    assert served.app.has_launched
    assert str(served.settings.data_dir.resolve()) in served.app.blocked_paths


@pytest.mark.parametrize("name", [None, *ROLES])
def test_every_route_refuses_whom_it_must(served: Served, name: str | None) -> None:
    role = ROLES.get(name) if name else None
    with served.client(name) as http:
        for method, template in asgi_routes(served.server_app):
            if method == "WEBSOCKET":
                continue
            path = concrete(template)
            found = route_for("GET" if method == "HEAD" else method, unquote(path))  # as ASGI decodes it
            response = http.request(method, path, headers={"accept": "application/json"})
            what = f"{name}: {method} {path}"
            if found is None:
                assert response.status_code == 404, what
                assert method == "HEAD" or response.json() == {"detail": "Not found."}, what
            elif not allowed(found[0].access, role):
                assert response.status_code in (401, 403), what
            assert_reveals_nothing(served, http, response, what)


# -- hostile payloads in every slot of every event --------------------------------------------------


def hostile_values(served: Served) -> list[Any]:
    files = [{"path": p, "meta": {"_type": "gradio.FileData"}} for p in served.paths]  # type: ignore[attr-defined]
    files += [{"path": p, "url": f"/gradio_api/file={p}", "orig_name": "x.txt"} for p in served.paths[:2]]  # type: ignore[attr-defined]
    chat_history = [{"role": "user", "content": [{"type": "file", "file": f}]} for f in files[:3]]
    return [
        *files,
        chat_history,
        [files[0]],
        {"value": files[0]},
        12345,
        3.5,
        True,
        [],
        {},
        [[[[[[[[[["deep"]]]]]]]]]],
        "x" * 200_000,  # longer than any text slot takes
    ]


def plain_value_of(kind: str | None, value: Any) -> bool:
    """Whether `value` is an ordinary value for a slot of `kind` (numbers for number slots)."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    return (
        (kind in ("number", "datetime") and number)
        or (kind == "integer" and type(value) is int)
        or (kind == "boolean" and type(value) is bool)
    )


def benign(kind: str | None) -> Any:
    return {"text": "", "number": None, "integer": 1, "datetime": None, "state": None}.get(kind or "", None)


@pytest.mark.parametrize("name", [None, *ROLES])
def test_hostile_payloads_in_every_slot_are_refused(served: Served, name: str | None) -> None:
    hostile = hostile_values(served)
    session = uuid.uuid4().hex
    ran_before = len(served.ran)
    with served.client(name) as http:
        # The app's own config (a signed-out client may not read it, so it is taken from the app).
        config = served.app.get_config_file()
        for dep in config["dependencies"]:
            fn = served.app.fns[dep["id"]]
            kinds = [slot_kind(c, str(fn.api_name)) for c in fn.inputs]
            base = [benign(k) for k in kinds]
            attempts: list[tuple[list[Any], Any]] = []
            for slot in range(len(base)):
                for value in hostile:
                    if plain_value_of(kinds[slot], value):
                        continue  # a number in a number slot is no attack
                    data = list(base)
                    data[slot] = value
                    attempts.append((data, None))
            attempts += [(base, value) for value in hostile[:8]]  # in the event data
            attempts += [(value, None) for value in (None, "data", {"a": 1})]  # no list at all
            attempts.append(([*base, "one too many"], None))
            for data, event_data in attempts:
                body = {
                    "data": data,
                    "fn_index": dep["id"],
                    "session_hash": session,
                    "event_data": event_data,
                }
                response = http.post("/gradio_api/queue/join", json=body)
                what = f"{name}: {dep['api_name']} {json.dumps(body)[:200]}"
                assert response.status_code in ((401,) if name is None else (400, 403, 413)), what
                assert_reveals_nothing(served, http, response, what)
                if dep.get("api_name") and event_data is None:  # call/{api_name} takes no event data
                    response = http.post(f"/gradio_api/call/{dep['api_name']}", json={"data": data})
                    assert response.status_code in ((401,) if name is None else (400, 403, 404, 413)), what
                    assert_reveals_nothing(served, http, response, what)
    # Nothing hostile reached a handler, and no handler of a higher role ran at all.
    assert served.ran[ran_before:] == []


@pytest.mark.parametrize("name", ROLES)
def test_a_caller_runs_only_the_events_of_its_role(served: Served, name: str) -> None:
    role = ROLES[name]
    session = uuid.uuid4().hex
    with served.client(name) as http:
        config = http.get("/config").json()
        for dep in config["dependencies"]:
            fn = served.app.fns[dep["id"]]
            data = [benign(slot_kind(c, str(fn.api_name))) for c in fn.inputs]
            body = {"data": data, "fn_index": dep["id"], "session_hash": session, "event_data": None}
            response = http.post("/gradio_api/queue/join", json=body)
            access = EVENTS.get(str(dep.get("api_name")))
            if fn.fn is None or access is None or not allowed(access, role):
                assert response.status_code == 403, (name, dep["api_name"])
            else:
                assert response.status_code == 200, (name, dep["api_name"], response.text)
        events = http.stream("GET", "/gradio_api/queue/data", params={"session_hash": session})
        with events as stream:  # let the admitted events finish
            for line in stream.iter_lines():
                if '"msg": "close_stream"' in line or '"msg":"close_stream"' in line:
                    break
    ran = {api for api, user in served.ran if user == name}
    for api in ran:
        assert allowed(EVENTS[api], role), (name, api)
    assert all(allowed(a, None) is False for a in EVENTS.values() if a != ANYONE)


# -- Gradio's session hashes and event ids belong to one sign-in ---------------------------------------


def test_another_sign_ins_session_and_events_are_refused(served: Served) -> None:
    session = uuid.uuid4().hex
    fn_index = next(fn._id for fn in served.app.fns.values() if fn.api_name == "chat")
    with served.client("alice") as alice, served.client("olga") as olga, served.client("alice") as again:
        body = {
            "data": ["How much leave?", None],
            "fn_index": fn_index,
            "session_hash": session,
            "event_data": None,
        }
        joined = alice.post("/gradio_api/queue/join", json=body)
        assert joined.status_code == 200, joined.text
        event_id = joined.json()["event_id"]
        # Another user, and the same user's other sign-in, may not use that session or event.
        for other in (olga, again):
            assert other.post("/gradio_api/queue/join", json=body).status_code == 403
            assert other.get("/gradio_api/queue/data", params={"session_hash": session}).status_code == 403
            assert other.get(f"/gradio_api/heartbeat/{session}").status_code == 403
            cancel = {"session_hash": session, "fn_index": fn_index, "event_id": event_id}
            assert other.post("/gradio_api/cancel", json=cancel).status_code == 403
            assert other.post("/gradio_api/reset", json={"event_id": event_id}).status_code == 403
        # A script's call: its result stream is its caller's only.
        call = alice.post("/gradio_api/call/ask", json={"data": ["How much leave?"]})
        assert call.status_code == 200, call.text
        call_id = call.json()["event_id"]
        assert olga.get(f"/gradio_api/call/ask/{call_id}").status_code == 403
        assert again.get(f"/gradio_api/call/ask/{call_id}").status_code == 403
        result = alice.get(f"/gradio_api/call/ask/{call_id}")
        assert result.status_code == 200 and "25 days" in result.text
        with alice.stream("GET", "/gradio_api/queue/data", params={"session_hash": session}) as stream:
            assert stream.status_code == 200
            for line in stream.iter_lines():
                if "process_completed" in line:
                    assert "25 days" in line
                    break


def test_requests_from_another_site_are_refused(served: Served) -> None:
    """No CORS for anyone, and no request a page of another site makes with a user's cookie."""
    fn_index = next(fn._id for fn in served.app.fns.values() if fn.api_name == "chat")
    body = {"data": ["hi", None], "fn_index": fn_index, "session_hash": uuid.uuid4().hex, "event_data": None}
    with served.client("alice") as http:
        for origin in ("http://evil.example", "null", served.url.replace("127.0.0.1", "localhost")):
            sent = {"origin": origin}
            joined = http.post("/gradio_api/queue/join", json=body, headers=sent)
            assert joined.status_code == 403 and "another site" in joined.json()["detail"]
            assert http.get("/config", headers=sent).status_code == 403
            login = http.post("/login", data={"username": "alice", "password": PASSWORD}, headers=sent)
            assert login.status_code == 403 and "set-cookie" not in login.headers
            preflight = http.options(
                "/gradio_api/queue/join", headers={**sent, "access-control-request-method": "POST"}
            )
            assert preflight.status_code in (403, 404)
            assert not any(k.lower().startswith("access-control-") for k in preflight.headers)
        # The app's own pages send their own origin, and are served.
        own = {"origin": served.url.rstrip("/")}
        assert http.post("/gradio_api/queue/join", json=body, headers=own).status_code == 200
    assert [r for r in served.ran if r == ("chat", "alice")]


def test_a_body_naming_two_events_runs_none_the_caller_may_not(served: Served) -> None:
    """A parser differential: JSON with the key twice. The boundary and Gradio must read the same
    event, so a staff user cannot slip an auditor's event past the check behind an allowed one."""
    index = {str(fn.api_name): fn._id for fn in served.app.fns.values()}
    session = uuid.uuid4().hex
    ran_before = len(served.ran)
    with served.client("alice") as http:
        for first, last in (("audit_page", "whoami"), ("whoami", "audit_page")):
            body = (
                f'{{"data": [], "fn_index": {index[first]}, "fn_index": {index[last]}, '
                f'"session_hash": "{session}", "event_data": null}}'
            )
            response = http.post(
                "/gradio_api/queue/join", content=body, headers={"content-type": "application/json"}
            )
            assert response.status_code in (200, 403), response.text
        with http.stream("GET", "/gradio_api/queue/data", params={"session_hash": session}) as stream:
            for line in stream.iter_lines():
                if "close_stream" in line or "process_completed" in line:
                    break
    assert all(api != "audit_page" for api, _ in served.ran[ran_before:])
