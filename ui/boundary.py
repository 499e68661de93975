"""The web tier's trust boundary: who is this, and may they call this (docs/security.md).

Every request passes `Boundary` before anything else sees it, our routes and the mounted Gradio
app alike, and only what the allow-lists below name gets through:

- `ROUTES`: each method and path the pages and scripts need, with who may call it (anyone, any
  signed-in user, or named roles). Any other request is answered 404 before Gradio sees it.
- `EVENTS`: each Gradio event (dependency) by its api_name, with the roles that may run it. A
  request that runs an event (`queue/join` by fn_index, `call/{api_name}` by name) must name one
  listed for the caller's role; anything else is refused (403) and audited as `access_denied`.
- Event payloads are checked slot by slot against the kind of each input component: a text slot
  takes a string, a number slot a number, a state slot nothing (its value lives on the server).
  No slot, nor the event data, may hold a file reference: Gradio would copy a server file named
  in one into its cache and serve it. The one exception is a file slot of an event in
  `FILE_EVENTS` (the admin page's upload), which takes only files that the same sign-in uploaded
  through `/gradio_api/upload` (admins only, at most ui.max_upload_mb per request): the paths
  Gradio answers an upload with are bound to the sign-in that sent it, and any other path is
  refused.
- A request that a browser sends from a page of another site (its Origin is not this server,
  or is opaque) is refused: no other site can drive the app with a user's cookie, and no
  response carries CORS headers for one.
- Gradio keys its per-session state by a client-chosen `session_hash`, and its queued events by
  event ids: both are bound here to the signed-in session that first used them, and a request
  that names another session's hash or event is refused.

Who the caller is comes from ui.signin's Gate (the session cookie, or the trusted proxy's SSO
header). A new route or event needs an entry here, or it is refused: tests/integration/
test_surface.py enumerates the app's own routes and events and fails on any without one.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qs, urlencode

import anyio
from fastapi.responses import JSONResponse, RedirectResponse, Response

from ui.login import ACCESS_DENIED_EVENT
from ui.pages import message_page
from ui.signin import Gate, Identity, Refusal

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

USER_KEY = "enclave.user"  # the signed-in user's name, in the ASGI scope, for auth_dependency
SESSION_KEY = "enclave.session"  # the signed-in session's id, in the ASGI scope

# -- who may call what --------------------------------------------------------------------------

ANYONE = "anyone"  # signed in or not: the sign-in page and what it shows
SIGNED_IN = "signed in"  # any role
AUDITORS = frozenset({"auditor"})
ADMINS = frozenset({"admin"})
Access = Literal["anyone", "signed in"] | frozenset[str]

# What a route carries that the boundary checks beyond who is calling.
Check = Literal[
    "", "event", "call", "call_result", "session_path", "session_query", "cancel", "reset", "upload",
    "upload_progress",
]  # fmt: skip


@dataclass(frozen=True)
class Route:
    methods: frozenset[str]
    pattern: re.Pattern[str]
    access: Access
    check: Check = ""

    def matches(self, method: str, path: str) -> re.Match[str] | None:
        return self.pattern.fullmatch(path) if method in self.methods else None


def _route(methods: str, pattern: str, access: Access, check: Check = "") -> Route:
    return Route(frozenset(methods.split()), re.compile(pattern), access, check)


_SESSION = r"[A-Za-z0-9_-]{1,64}"
ROUTES: tuple[Route, ...] = (
    # ours (ui.server)
    _route("GET POST", r"/login/?", ANYONE),
    _route("GET POST", r"/logout/?", ANYONE),
    _route("GET", r"/auth/oidc/(start|callback)", ANYONE),  # 404 unless auth.oidc is set
    _route("GET", r"/branding/logo", ANYONE),
    _route("GET", r"/files/[^/]+", SIGNED_IN),
    _route("GET", r"/audit/export\.(csv|jsonl)", AUDITORS),
    # the pages and what the browser loads for them
    _route("GET", r"/", SIGNED_IN),
    _route("GET", r"/audit/?", AUDITORS),
    _route("GET", r"/admin/?", ADMINS),
    _route("GET", r"/config/?", SIGNED_IN),
    _route("GET", r"/(assets|static|svelte)/[^?#]+", SIGNED_IN),
    _route("GET", r"/favicon\.ico|/theme\.css|/gradio_api/theme\.css", SIGNED_IN),
    _route("GET", r"/gradio_api/info/?", SIGNED_IN),
    _route("GET", r"/gradio_api/startup-events", SIGNED_IN),
    # events: run, follow, cancel (each checked below)
    _route("POST", r"/gradio_api/queue/join", SIGNED_IN, "event"),
    _route("GET", r"/gradio_api/queue/data", SIGNED_IN, "session_query"),
    _route("GET", rf"/gradio_api/heartbeat/(?P<session>{_SESSION})", SIGNED_IN, "session_path"),
    _route("POST", r"/gradio_api/cancel", SIGNED_IN, "cancel"),
    _route("POST", r"/gradio_api/reset/?", SIGNED_IN, "reset"),
    # the admin page's upload: the files, then their progress (each bound to the sign-in)
    _route("POST", r"/gradio_api/upload", ADMINS, "upload"),
    _route("GET", r"/gradio_api/upload_progress", ADMINS, "upload_progress"),
    _route("POST", r"/gradio_api/call/(?P<api>[A-Za-z0-9_]+)/?", SIGNED_IN, "call"),
    _route(
        "GET",
        r"/gradio_api/call/(?P<api>[A-Za-z0-9_]+)/(?P<event>[A-Za-z0-9_-]{1,64})",
        SIGNED_IN,
        "call_result",
    ),
)

# Gradio events by api_name. The chat page's are everyone's; each page's are its roles'.
EVENTS: Mapping[str, Access] = {
    "chat": SIGNED_IN,
    "new_conversation": SIGNED_IN,
    "clear_conversation": SIGNED_IN,
    "open_conversation": SIGNED_IN,
    "rate": SIGNED_IN,
    "comment": SIGNED_IN,
    "ask": SIGNED_IN,
    "feedback": SIGNED_IN,
    "whoami": SIGNED_IN,
    "conversations": SIGNED_IN,
    "navbar": SIGNED_IN,
    "audit_page": AUDITORS,
    "audit_search": AUDITORS,
    "audit_record": AUDITORS,
    "audit_select_row": AUDITORS,
    "audit_verify": AUDITORS,
    "audit_export_csv": AUDITORS,
    "audit_export_jsonl": AUDITORS,
    "audit_access": AUDITORS,
    "admin_page": ADMINS,
    "admin_refresh": ADMINS,
    "admin_sources": ADMINS,
    "admin_source_report": ADMINS,
    "admin_sync": ADMINS,
    "admin_upload": ADMINS,
    "admin_remove_upload": ADMINS,
}
# The events whose file inputs take uploads (each file one the caller's sign-in uploaded); a file
# input of any other event is refused whole. Admins' only: ui/admin.py's upload.
FILE_EVENTS: frozenset[str] = frozenset({"admin_upload"})
MAX_UPLOAD_FILES = 200  # files one upload event may name
MAX_HELD_UPLOADS = 1000  # uploaded files one sign-in holds at once (its oldest go first)
MAX_UPLOAD_ANSWER = 1024 * 1024  # bytes of an upload's answer read for its paths


def allowed(access: Access, role: str | None) -> bool:
    """Whether a caller of `role` (None: signed out) may call what `access` guards."""
    if access == ANYONE:
        return True
    if role is None:
        return False
    return access == SIGNED_IN or (isinstance(access, frozenset) and role in access)


def route_for(method: str, path: str) -> tuple[Route, re.Match[str]] | None:
    for route in ROUTES:
        found = route.matches(method, path)
        if found is not None:
            return route, found
    return None


# -- what an event's inputs may hold ------------------------------------------------------------

SlotKind = Literal["text", "number", "datetime", "integer", "boolean", "state", "files"]
MAX_TEXT_CHARS = 100_000
MAX_DATETIME_CHARS = 64
MAX_PATH_CHARS = 4096


def slot_kind(component: Any, api_name: str = "") -> SlotKind | None:
    """The kind of value an input component of the event `api_name` takes from a client; None:
    not allowed as an input at all (a chat history, an image: anything that could carry a path,
    and a file input of an event not in FILE_EVENTS)."""
    name = type(component).__name__
    if name in ("Textbox", "Radio") or (name == "Dropdown" and not getattr(component, "multiselect", False)):
        return "text"
    if name == "Number":
        return "number"
    if name == "Checkbox":
        return "boolean"
    if name == "DateTime":
        return "datetime"
    if name == "State":
        return "state"
    if name == "File" and api_name in FILE_EVENTS and getattr(component, "type", None) == "filepath":
        return "files"
    if name == "Api":  # a gr.api parameter: its annotation's JSON type
        kind = component.api_info().get("type")
        return {"string": "text", "integer": "integer", "number": "number"}.get(kind)
    return None


def _slot_ok(kind: SlotKind, value: Any, uploaded: Callable[[str], bool]) -> bool:
    if kind == "state":
        return value is None  # the value lives on the server; whatever a client sends is refused
    if value is None:
        return True
    if kind == "text":
        return isinstance(value, str) and len(value) <= MAX_TEXT_CHARS
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "files":
        items = value if isinstance(value, list) else [value]
        return 0 < len(items) <= MAX_UPLOAD_FILES and all(_upload_ok(f, uploaded) for f in items)
    if isinstance(value, str):  # datetime: a date or time as text
        return len(value) <= MAX_DATETIME_CHARS
    return isinstance(value, int | float) and not isinstance(value, bool)  # or as a timestamp


_FILE_KEYS = frozenset({"path", "url", "meta", "orig_name", "is_stream", "mime_type"})
_UPLOAD_KEYS = frozenset({*_FILE_KEYS, "size"})


def _upload_ok(value: Any, uploaded: Callable[[str], bool]) -> bool:
    """Whether `value` is a FileData of a file this sign-in uploaded, and nothing more."""
    if not isinstance(value, dict) or not set(value) <= _UPLOAD_KEYS:
        return False
    path = value.get("path")
    if not isinstance(path, str) or not path or len(path) > MAX_PATH_CHARS or not uploaded(path):
        return False
    if value.get("meta") != {"_type": "gradio.FileData"} or value.get("is_stream"):
        return False
    texts = (value.get(k) for k in ("url", "orig_name", "mime_type"))
    if not all(t is None or (isinstance(t, str) and len(t) <= MAX_PATH_CHARS) for t in texts):
        return False
    size = value.get("size")
    return size is None or (isinstance(size, int) and not isinstance(size, bool))


def holds_file(value: Any, depth: int = 0) -> bool:
    """Whether `value` holds anything shaped like a file reference (or nests too deep to tell)."""
    if depth > 32:
        return True
    if isinstance(value, dict):
        if _FILE_KEYS & value.keys():
            return True
        return any(holds_file(v, depth + 1) for v in value.values())
    if isinstance(value, list):
        return any(holds_file(v, depth + 1) for v in value)
    return False


def _nobody(path: str) -> bool:
    return False


@dataclass(frozen=True)
class Event:
    """One Gradio dependency as the boundary sees it."""

    fn_index: int
    api_name: str
    slots: tuple[SlotKind | None, ...]
    event_data: bool  # whether it takes event data (a thumb's, a selected row's)
    callable: bool  # has a Python function (JS-only events and cancel helpers never run here)

    def check(
        self,
        data: Any,
        event_data: Any,
        *,
        simple: bool = False,
        uploaded: Callable[[str], bool] = _nobody,
    ) -> str | None:
        """Why this payload is refused, or None. `simple`: the call/{api_name} form, which may
        leave out the state slots. `uploaded`: whether the caller's sign-in uploaded a path (a
        file slot takes only those)."""
        if not isinstance(data, list):
            return "the event's data must be a list"
        slots = self.slots
        if simple and len(data) != len(slots):
            slots = tuple(s for s in slots if s != "state")
        if len(data) != len(slots):
            return f"the event {self.api_name!r} takes {len(slots)} values, not {len(data)}"
        for n, (kind, value) in enumerate(zip(slots, data, strict=True)):
            if kind is None or not _slot_ok(kind, value, uploaded):
                if kind == "files":
                    return (
                        f"value {n + 1} of the event {self.api_name!r} must be files you uploaded "
                        f"from this page (1 to {MAX_UPLOAD_FILES}), and nothing else"
                    )
                return (
                    f"value {n + 1} of the event {self.api_name!r} is not a {kind or 'value this app takes'}"
                )
        if event_data is not None and not self.event_data:
            return f"the event {self.api_name!r} takes no event data"
        plain = [value for kind, value in zip(slots, data, strict=True) if kind != "files"]
        if holds_file(plain) or holds_file(event_data):
            return "files cannot be passed to this app"
        return None


class Events:
    """The app's events by fn_index and by api_name, read from the Blocks once at start."""

    def __init__(self, blocks: Any) -> None:
        self.by_index: dict[int, Event] = {}
        for fn in blocks.fns.values():
            event = Event(
                fn_index=fn._id,
                api_name=str(fn.api_name or ""),
                slots=tuple(slot_kind(c, str(fn.api_name or "")) for c in fn.inputs),
                event_data=bool(getattr(fn, "collects_event_data", False)),
                callable=fn.fn is not None,
            )
            self.by_index[event.fn_index] = event
        self.by_name = {e.api_name: e for e in self.by_index.values() if e.api_name}


# -- bindings of Gradio's session hashes and event ids --------------------------------------------


class Bindings:
    """Which signed-in session (sid) first used each key (a Gradio session_hash or event id).

    In memory, per process: Gradio keeps the state they key in memory too, so a session's
    requests must reach one replica anyway. Entries unused for `ttl_s` are dropped; each sid
    keeps at most `per_session` (its oldest go first), so no caller can grow the table for
    others, and the table as a whole at most `total` (then new keys are refused until some expire).
    """

    def __init__(self, ttl_s: float, per_session: int = 256, total: int = 200_000) -> None:
        self.ttl_s = ttl_s
        self.per_session = per_session
        self.total = total
        self._owner: OrderedDict[str, tuple[str, float]] = OrderedDict()  # key -> (sid, last use)
        self._keys: dict[str, OrderedDict[str, None]] = {}  # sid -> its keys, oldest first

    def claim(self, key: str, sid: str, now: float) -> bool:
        """Bind `key` to `sid` if it is free; whether `sid` holds it now."""
        self._expire(now)
        found = self._owner.get(key)
        if found is not None:
            if found[0] != sid:
                return False
            self._owner[key] = (sid, now)
            self._owner.move_to_end(key)
            self._keys[sid].move_to_end(key)
            return True
        if len(self._owner) >= self.total:
            return False
        keys = self._keys.setdefault(sid, OrderedDict())
        while len(keys) >= self.per_session:
            oldest, _ = keys.popitem(last=False)
            self._owner.pop(oldest, None)
        keys[key] = None
        self._owner[key] = (sid, now)
        return True

    def holds(self, key: str, sid: str, now: float) -> bool:
        """Whether `sid` holds `key` (an unknown key is nobody's)."""
        self._expire(now)
        found = self._owner.get(key)
        return found is not None and found[0] == sid

    def _expire(self, now: float) -> None:
        while self._owner:
            key, (sid, seen) = next(iter(self._owner.items()))
            if now - seen <= self.ttl_s:
                return
            del self._owner[key]
            keys = self._keys.get(sid)
            if keys is not None:
                keys.pop(key, None)
                if not keys:
                    del self._keys[sid]


# -- the middleware ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Caller:
    user: str
    sid: str
    role: str


class Boundary:
    """The ASGI middleware in front of everything: routes, roles, events, payloads, bindings."""

    def __init__(self, app: ASGIApp, gate: Gate, events: Events) -> None:
        self.app = app
        self.gate = gate
        self.events = events
        self.bindings = Bindings(ttl_s=gate.idle_s)
        # The files each sign-in uploaded (keyed by sid and path: the same bytes uploaded by two
        # sign-ins land on one path, which each then holds).
        self.uploads = Bindings(ttl_s=gate.idle_s, per_session=MAX_HELD_UPLOADS)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":
            await self._close_websocket(scope, receive, send)
            return
        method, path = scope.get("method", "GET"), scope.get("path", "")
        found = route_for("GET" if method == "HEAD" else method, path)
        if found is None:
            await _json(404, "Not found.")(scope, receive, send)
            return
        route, match = found
        origin = _header(scope, b"origin")
        if origin is not None and origin.split("://", 1)[-1] != _header(scope, b"host"):
            # A browser page of another site (or an opaque one: "null"): no CORS, no CSRF.
            await _json(403, f"Requests from another site ({origin[:100]}) are refused.")(
                scope, receive, send
            )
            return
        limit = self.gate.max_upload_bytes if route.check == "upload" else self.gate.max_request_bytes
        refused = self._refused_size(scope, limit, route.check == "upload")
        if refused is not None:
            await refused(scope, receive, send)
            return
        receive = self._bounded(receive, limit)
        if route.access == ANYONE:
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        peer = (scope.get("client") or (None,))[0]
        now = time.time()
        identity = await anyio.to_thread.run_sync(self.gate.identify, headers, peer, path, now)
        if not isinstance(identity, Identity):
            await self._refuse_sign_in(scope, receive, send, headers, identity)
            return
        principal = await anyio.to_thread.run_sync(self.gate.principal, identity.user)
        if principal is None:
            await self._refuse_sign_in(
                scope,
                receive,
                send,
                headers,
                Refusal(401, "Your account no longer exists. Sign in again.", True),
            )
            return
        caller = Caller(identity.user, identity.sid, principal.role)
        if not allowed(route.access, caller.role):
            await self._deny(scope, receive, send, headers, caller, path, _roles_text(route.access))
            return
        if route.check:
            receive, why = await self._check(route.check, match, scope, receive, caller, now)
            if why is not None:
                status, message = why
                if status == 403:
                    await self._audit_denied(caller, path, message)
                await _json(status, message)(scope, receive, send)
                return
        scope[USER_KEY] = caller.user
        scope[SESSION_KEY] = caller.sid
        if route.check in ("event", "call"):
            send = self._binding_event_ids(send, caller.sid)
        elif route.check == "upload":
            send = self._binding_uploads(send, caller.sid)
        if identity.cookie is not None:
            send = _with_cookie(send, self.gate.cookie_header(identity.cookie))
        await self.app(scope, receive, send)

    # -- checks beyond the role ------------------------------------------------------------

    async def _check(
        self, check: Check, match: re.Match[str], scope: Scope, receive: Receive, caller: Caller, now: float
    ) -> tuple[Receive, tuple[int, str] | None]:
        """(receive to pass on, the refusal or None) for a route that carries events or sessions."""
        if check == "session_path":
            return receive, self._session(match["session"], caller, now)
        if check == "session_query":
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            hashes = query.get("session_hash", [])
            if len(hashes) != 1:
                return receive, (400, "Name one session_hash.")
            return receive, self._session(hashes[0], caller, now)
        if check in ("upload", "upload_progress"):
            # The upload's progress is followed by its id, which is bound to whoever used it first.
            ids = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("upload_id", [])
            if check == "upload" and not ids:
                return receive, None
            if len(ids) != 1 or not re.fullmatch(_SESSION, ids[0]):
                return receive, (400, "Name one upload_id of 1-64 letters, digits, '-' or '_'.")
            if not self.bindings.claim("upload_id:" + ids[0], caller.sid, now):
                return receive, (403, "That upload belongs to another sign-in.")
            return receive, None
        if check == "call_result":
            event = self.events.by_name.get(match["api"])
            if event is None or not allowed(EVENTS.get(event.api_name, frozenset()), caller.role):
                return receive, (403, f"You may not call {match['api']!r}.")
            if not self.bindings.holds("event:" + match["event"], caller.sid, now):
                return receive, (403, "That event is not one of yours.")
            return receive, None
        body, receive = await _read_body(receive, self.gate.max_request_bytes)
        if body is None:
            return receive, (413, "The request body is too large or incomplete.")
        try:
            payload = json.loads(body or b"null")
        except ValueError:
            return receive, (400, "The request body is not JSON.")
        if not isinstance(payload, dict):
            return receive, (400, "The request body must be a JSON object.")
        if check == "event":
            return receive, self._event(payload, caller, now)
        if check == "call":
            return receive, self._call(match["api"], payload, caller, now)
        if check == "cancel":
            why = self._session(payload.get("session_hash"), caller, now)
            return receive, why or self._own_event(payload.get("event_id"), caller, now)
        return receive, self._own_event(payload.get("event_id"), caller, now)  # reset

    def _event(self, payload: dict[str, Any], caller: Caller, now: float) -> tuple[int, str] | None:
        index = payload.get("fn_index")
        if not isinstance(index, int) or isinstance(index, bool):
            return 400, "Name the event by its fn_index."
        event = self.events.by_index.get(index)
        why = self._may_run(event, str(index), caller)
        if why is not None:
            return why
        assert event is not None
        refused = event.check(
            payload.get("data"), payload.get("event_data"), uploaded=self._uploaded(caller, now)
        )
        if refused is not None:
            return 400, f"Refused: {refused}."
        return self._session(payload.get("session_hash"), caller, now)

    def _call(self, api: str, payload: dict[str, Any], caller: Caller, now: float) -> tuple[int, str] | None:
        event = self.events.by_name.get(api)
        why = self._may_run(event, api, caller)
        if why is not None:
            return why
        assert event is not None
        refused = event.check(payload.get("data"), None, simple=True, uploaded=self._uploaded(caller, now))
        if refused is not None:
            return 400, f"Refused: {refused}."
        if payload.get("session_hash") is not None:
            return self._session(payload["session_hash"], caller, now)
        return None

    def _may_run(self, event: Event | None, named: str, caller: Caller) -> tuple[int, str] | None:
        access = EVENTS.get(event.api_name) if event is not None else None
        if event is None or access is None or not event.callable:
            return 403, f"There is no event {named!r} you may call."
        if not allowed(access, caller.role):
            return 403, f"The event {event.api_name!r} is for the {_roles_text(access)} only."
        return None

    def _session(self, value: object, caller: Caller, now: float) -> tuple[int, str] | None:
        if not isinstance(value, str) or not re.fullmatch(_SESSION, value):
            return 400, "A session_hash of 1-64 letters, digits, '-' or '_' is needed."
        if not self.bindings.claim("session:" + value, caller.sid, now):
            return 403, "That session belongs to another sign-in. Reload the page."
        return None

    def _uploaded(self, caller: Caller, now: float) -> Callable[[str], bool]:
        """Whether the caller's sign-in uploaded `path` (within the session's idle time)."""
        return lambda path: self.uploads.holds(caller.sid + "\n" + path, caller.sid, now)

    def _own_event(self, value: object, caller: Caller, now: float) -> tuple[int, str] | None:
        if value is None:
            return None
        if not isinstance(value, str) or not self.bindings.holds("event:" + value, caller.sid, now):
            return 403, "That event is not one of yours."
        return None

    def _binding_event_ids(self, send: Send, sid: str) -> Send:
        """`send` that binds the event id of a successful queue/join or call to `sid`."""
        status = 0

        async def binding(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and status == 200:
                try:
                    event_id = json.loads(message.get("body", b"")).get("event_id")
                except (ValueError, AttributeError):
                    event_id = None
                if isinstance(event_id, str):
                    self.bindings.claim("event:" + event_id, sid, time.time())
            await send(message)

        return binding

    def _binding_uploads(self, send: Send, sid: str) -> Send:
        """`send` that binds the paths a successful upload is answered with to `sid`: only that
        sign-in may then hand them to an event (FILE_EVENTS)."""
        status = 0
        body = bytearray()

        async def binding(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and status == 200:
                if len(body) <= MAX_UPLOAD_ANSWER:
                    body.extend(message.get("body", b""))
                if not message.get("more_body", False):
                    try:
                        paths = json.loads(bytes(body))
                    except ValueError:
                        paths = None
                    if isinstance(paths, list):
                        now = time.time()
                        for path in paths:
                            if isinstance(path, str):
                                self.uploads.claim(sid + "\n" + path, sid, now)
            await send(message)

        return binding

    # -- refusals -----------------------------------------------------------------------------

    def _refused_size(self, scope: Scope, limit: int, upload: bool = False) -> Response | None:
        """A response refusing a body declared over `limit` bytes (or a Content-Length that is no
        number)."""
        for key, value in scope.get("headers", []):
            if key.lower() == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    return _json(400, "The Content-Length header is not a number.")
                if declared > limit:
                    allowed = (
                        f"{limit / 1024 / 1024:g} MiB allowed for one upload (ui.max_upload_mb)"
                        if upload
                        else f"{limit // 1024} KiB allowed (ui.max_request_kb)"
                    )
                    return _json(413, f"The request is {declared} bytes, more than the {allowed}.")
        return None

    def _bounded(self, receive: Receive, limit: int) -> Receive:
        """`receive` that ends a body without a Content-Length (chunked) once it is over `limit`:
        the app sees the client gone rather than reading on."""
        seen = 0

        async def bounded() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    log.warning("a request body passed %d bytes without a Content-Length; dropped", limit)
                    return {"type": "http.disconnect"}
            return message

        return bounded

    async def _audit_denied(self, caller: Caller, path: str, reason: str) -> None:
        data = {"path": path, "reason": reason, "role": caller.role}
        await anyio.to_thread.run_sync(self.gate.audit_event, ACCESS_DENIED_EVENT, caller.user, data)

    async def _deny(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        headers: dict[str, str],
        caller: Caller,
        path: str,
        roles: str,
    ) -> None:
        await self._audit_denied(caller, path, "role")
        if "text/html" in headers.get("accept", ""):
            message = f"This page is for the {roles} only; you are signed in as {caller.user}."
            await message_page(self.gate.org_name, "Not allowed", message, 403)(scope, receive, send)
        else:
            await _json(403, f"This is for the {roles} only; you are signed in as {caller.user}.")(
                scope, receive, send
            )

    async def _refuse_sign_in(
        self, scope: Scope, receive: Receive, send: Send, headers: dict[str, str], why: Refusal | None
    ) -> None:
        drop = why is None or why.signed_out
        message = why.message if why is not None else "You are not signed in. Sign in to continue."
        response: Response
        if why is None or why.status == 401:
            if scope.get("method") == "GET" and "text/html" in headers.get("accept", ""):
                target = scope.get("path", "/")
                if scope.get("query_string"):
                    target += "?" + scope["query_string"].decode("latin-1")
                query = {"next": target}
                if why is not None:
                    query["m"] = "expired"
                response = RedirectResponse(
                    f"{scope.get('root_path', '')}/login?{urlencode(query)}", status_code=303
                )
            else:
                response = _json(401, message)
        elif "text/html" in headers.get("accept", ""):
            response = message_page(self.gate.org_name, "Not allowed", message, why.status)
        else:
            response = _json(why.status, message)
        if drop:
            response.headers.append("set-cookie", self.gate.cookie_header(None))
        await response(scope, receive, send)

    async def _close_websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """No websocket route is served (Gradio streams over HTTP): refuse the handshake."""
        if scope["type"] == "websocket":
            await receive()
            await send({"type": "websocket.close", "code": 1008})


def _roles_text(access: Access) -> str:
    if isinstance(access, frozenset):
        return " and ".join(sorted(access)) + " role" + ("s" if len(access) > 1 else "")
    return "signed-in users"


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None


def _json(status: int, message: str) -> JSONResponse:
    return JSONResponse(
        {"detail": message}, status_code=status, headers={"X-Content-Type-Options": "nosniff"}
    )


def _with_cookie(send: Send, set_cookie: str) -> Send:
    raw = set_cookie.encode("latin-1")

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", []), (b"set-cookie", raw)]
        await send(message)

    return sending


async def _read_body(receive: Receive, limit: int) -> tuple[bytes | None, Receive]:
    """The whole request body (None: over `limit` or the client left), and a `receive` that hands
    it to the app again."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None, receive
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None, receive
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return body, replay
