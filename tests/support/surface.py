"""The web tier's surface as the app itself declares it: every route of the ASGI app (ours, and
Gradio's mounted app with the routers it includes), and concrete paths to call each one with."""

from __future__ import annotations

import re
from typing import Any

from starlette.routing import Mount

# What each path parameter is filled with when a route is called: hostile where it can be.
PARAM_VALUES = {
    "path": "..%2F..%2F..%2Fetc%2Fpasswd",
    "path_or_url": "/etc/passwd",
    "url_path": "http://127.0.0.1:1/",
    "api_name": "chat",
    "api": "chat",
    "event_id": "0" * 32,
    "session_hash": "someoneelse",
    "doc_id": "..%2F..%2Fetc%2Fpasswd",
    "fmt": "csv",
    "size": "192",
    "key": "x",
    "page": "audit",
}
_PARAM = re.compile(r"\{([A-Za-z_]+)(?::[a-z]+)?\}")


def asgi_routes(app: Any, prefix: str = "") -> list[tuple[str, str]]:
    """(method, path template) of every HTTP route under `app`, mounts and included routers too."""
    found: list[tuple[str, str]] = []
    for route in getattr(app, "routes", []):
        if isinstance(route, Mount):
            found += asgi_routes(route.app, prefix + route.path)
        elif hasattr(route, "include_context") and hasattr(route, "original_router"):
            found += asgi_routes(route.original_router, prefix + route.include_context.prefix)
        elif hasattr(route, "methods") and route.methods:
            found += [(m, prefix + route.path) for m in sorted(route.methods)]
        elif hasattr(route, "path"):  # a websocket route
            found.append(("WEBSOCKET", prefix + route.path))
    return found


def concrete(template: str, *, hostile: bool = True) -> str:
    """A path to call for `template`, its parameters filled from PARAM_VALUES (`hostile`), or with
    plain values that a route's own pattern takes."""
    values = PARAM_VALUES if hostile else {**PARAM_VALUES, "path": "x.js", "path_or_url": "x", "doc_id": "x"}
    path = _PARAM.sub(lambda m: values.get(m[1], "x"), template)
    return path or "/"
