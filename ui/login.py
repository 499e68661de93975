"""Sign-in for the web UI: Gradio's own login form backed by the users file.

Gradio keeps a session cookie after `auth` accepts a name and password, and hands the name to
every event handler as `gr.Request.username`; `principal_of` turns that name back into a
Principal from the users file on each request, so role and group changes apply at once.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Callable

import gradio as gr

from core.errors import AccessDenied, ConfigError
from core.types import Principal
from core.users import UserStore

log = logging.getLogger(__name__)


def password_check(users: UserStore) -> Callable[[str, str], bool]:
    """The `auth=` callable for `Blocks.launch`: true when the users file accepts the pair."""

    def check(name: str, password: str) -> bool:
        try:
            accepted = users.authenticate(name, password) is not None
        except ConfigError:
            # A damaged users file must not crash the login route (Gradio would answer 500);
            # nobody gets in, and the operator finds the cause here.
            log.exception("sign-in refused for %r: the users file could not be read", name)
            return False
        if not accepted:
            log.info("sign-in refused for %r", name)
        return accepted

    return check


def login_message(org_name: str) -> str:
    """HTML above Gradio's login form (Gradio renders `auth_message` as HTML, hence escaping)."""
    org = html.escape(org_name)
    return (
        f"<h2 style='margin:0 0 .5rem'>{org}</h2>"
        f"<p>Sign in with your {org} account to ask questions about the documents "
        "you are allowed to read.</p>"
    )


def principal_of(request: gr.Request | None, users: UserStore) -> Principal:
    """The signed-in user's Principal, or AccessDenied: there is no anonymous use."""
    name = getattr(request, "username", None) if request is not None else None
    if not name:
        raise AccessDenied("You are not signed in. Reload the page and sign in to ask questions.")
    record = users.get(name)
    if record is None:
        raise AccessDenied(
            f"The account {name!r} no longer exists. Sign out and sign in with a current account."
        )
    return record.principal
