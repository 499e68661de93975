"""Who is asking, inside Gradio handlers: the name ui.server's sign-in put on the request.

ui.server checks the session (or the trusted SSO header) on every request and hands the user's
name to Gradio, which passes it to each event handler as `gr.Request.username`; `principal_of`
turns that name back into a Principal from the users file on each request, so role and group
changes apply at once.
"""

from __future__ import annotations

import logging
from collections.abc import Collection

import gradio as gr

from audit import AuditLog
from core.errors import AccessDenied, EnclaveError
from core.types import Principal
from ui.accounts import Accounts

log = logging.getLogger(__name__)


def principal_of(request: gr.Request | None, users: Accounts) -> Principal:
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


ACCESS_DENIED_EVENT = "access_denied"


def require_role(
    request: gr.Request | None,
    users: Accounts,
    audit: AuditLog,
    roles: Collection[str],
    *,
    page: str,
    action: str,
    refusal: str,
) -> Principal:
    """The signed-in user if their role is one of `roles`; otherwise the refusal is logged and
    written to the audit log as `access_denied` (page, action, role), and AccessDenied(refusal)
    raised. Every handler of a role-only page calls this, not only the page load."""
    principal = principal_of(request, users)
    if principal.role in roles:
        return principal
    log.warning("%s (role %s) was refused the %s page: %s", principal.name, principal.role, page, action)
    try:
        audit.append(
            ACCESS_DENIED_EVENT, principal.name, data={"page": page, "action": action, "role": principal.role}
        )
    except EnclaveError:
        log.exception("the refusal of %s could not be written to the audit log", principal.name)
    raise AccessDenied(refusal)
