"""The plain HTML pages of our own (sign-in, refusals) and the organisation's logo: no external
assets, a strict CSP, nothing cached."""

from __future__ import annotations

import html
from pathlib import Path
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse

from core.errors import ConfigError
from ui import markup

MAX_LOGO_BYTES = 1024 * 1024

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
.or{text-align:center;margin:1rem 0 .5rem}.sso{display:block;text-align:center;padding:.6rem;border:1px solid #ea580c;
border-radius:8px;text-decoration:none}
"""
NOTICES = {
    "expired": "Your session has ended. Sign in again.",
    "signed_out": "You have signed out.",
}


def _page(title: str, body: str, status: int = 200, head: str = "") -> HTMLResponse:
    page = (
        f"<!doctype html><html lang=en><head><meta charset=utf-8>{head}"
        "<meta name=viewport content='width=device-width,initial-scale=1'>"
        f"<title>{title}</title><style>{_STYLE}</style></head><body><main>{body}</main></body></html>"
    )
    return HTMLResponse(page, status_code=status, headers=_page_headers())


def _page_headers() -> dict[str, str]:
    return {
        "Content-Security-Policy": _PAGE_CSP,
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-store",
        # same-origin, not no-referrer: a form posted from our page then names its real Origin,
        # which ui.boundary checks (under no-referrer browsers send "Origin: null").
        "Referrer-Policy": "same-origin",
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
    sso: str | None = None,
) -> HTMLResponse:
    """The sign-in page; `sso`: the label of the button to the organisation's OIDC provider."""
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
    if sso:
        start = "auth/oidc/start?" + urlencode({"next": next_path})
        parts.append(
            f"<p class=or>or</p><a class=sso id=sso href='{html.escape(start, quote=True)}'>{html.escape(sso)}</a>"
        )
    return _page(f"Sign in · {org}", "".join(parts), status)


def moved_on_page(org_name: str, next_path: str) -> HTMLResponse:
    """A page of ours that moves on to `next_path` at once: a navigation of this site, so the
    browser sends the SameSite=Strict session cookie just set (ui.server.OidcRoutes)."""
    org = html.escape(org_name)
    target = html.escape(next_path, quote=True)
    page = _page(
        f"Signed in · {org}",
        f"<h1>{org}</h1><p>You are signed in. <a id=continue href='{target}'>Continue</a></p>",
    )
    page.body = page.body.replace(
        b"<meta charset=utf-8>",
        f"<meta charset=utf-8><meta http-equiv=refresh content='0;url={target}'>".encode(),
    )
    page.headers["content-length"] = str(len(page.body))
    return page


def message_page(org_name: str, title: str, message: str, status: int) -> HTMLResponse:
    org = html.escape(org_name)
    body = f"<h1>{org}</h1><p class='note error' role=alert>{html.escape(message)}</p><p><a href='/'>Back to the chat</a> · <a href='/logout'>Sign out</a></p>"
    return _page(f"{html.escape(title)} · {org}", body, status)


def safe_next(value: str | None) -> str:
    """Where to go after sign-in: a path on this server only (no scheme, host or `//`)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    if any(ord(c) < 32 for c in value) or value.startswith(("/login", "/logout", "/auth/")):
        return "/"
    return value


def wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


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
