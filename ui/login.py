"""Who is asking, inside Gradio handlers: the name ui.server's sign-in put on the request.

ui.server checks the session (or the trusted SSO header) on every request and hands the user's
name to Gradio, which passes it to each event handler as `gr.Request.username`; `principal_of`
turns that name back into a Principal from the users file on each request, so role and group
changes apply at once.
"""

from __future__ import annotations

import gradio as gr

from core.errors import AccessDenied
from core.types import Principal
from core.users import UserStore


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
