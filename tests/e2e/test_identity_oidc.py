"""OpenID Connect sign-in end to end: headless Chromium, Enclave's web UI (ui.server on uvicorn
with the Gradio app) and a real provider (the certified `oidc-provider` on Node,
tests/support/oidc_provider.py), with a real ingest of two small files.

The user clicks the sign-in page's button, signs in at the provider, lands in the chat; a group
change at the provider reaches them at the next check (auth.revalidate_minutes, set to seconds
here) without signing out; disabling them at the provider signs them out; signing out of Enclave
signs them out at the provider too (RP-initiated logout).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from audit import AuditLog
from audit.log import AuditRecord
from core.settings import GroupMappingSettings, GroupRuleSettings, OidcSettings, Settings, load_settings
from core.users import UserStore
from enclave import wiring
from tests.support.chromium import launched
from tests.support.net import free_port
from tests.support.oidc_provider import OidcProvider, running_provider
from tests.support.served import doc_id_of, events_of, ingest_folders, write_files
from ui import build_app, serve

pytestmark = [pytest.mark.slow, pytest.mark.browser]

CHECK_S = 1.2  # auth.revalidate_minutes, in seconds: a check is due this long after the last


@dataclass
class Served:
    url: str
    settings: Settings
    log: AuditLog
    provider: OidcProvider
    docs: dict[str, str]

    def events(self, event: str, user: str) -> list[AuditRecord]:
        return events_of(self.log, event, user)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, embedder: Any) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("oidc-e2e")
    files = {
        "public/leave.md": "# Leave\n\nStaff get 25 days of annual leave.\n",
        "finance/crane.md": "# Crane budget\n\nThe crane at berth 7 costs 4.2 million euros.\n",
    }
    write_files(root, files)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    accounts = {"alice": ["all-staff", "finance-team"], "bob": ["all-staff"], "carol": ["all-staff"]}
    with running_provider(
        accounts, redirect_url=f"{base}/auth/oidc/callback", post_logout_url=f"{base}/login?m=signed_out"
    ) as provider:
        settings = load_settings(None, data_dir=root / "var")
        settings.ui.port = port
        settings.auth.revalidate_minutes = CHECK_S / 60
        settings.auth.unreachable_grace_minutes = 0
        settings.auth.oidc = OidcSettings(
            issuer=provider.issuer,
            client_id=provider.client_id,
            client_secret_file=provider.secret_file,
            redirect_url=f"{base}/auth/oidc/callback",
            post_logout_redirect_url=f"{base}/login?m=signed_out",
            allow_plain=True,
            scopes=["openid", "profile", "groups", "offline_access"],  # the provider's groups scope
            button_label="Sign in with Harbour SSO",
            mapping=GroupMappingSettings(
                groups=[
                    GroupRuleSettings(match="finance-*", groups=["finance"]),
                    GroupRuleSettings(match="all-staff", groups=["public"]),
                ]
            ),
        )
        ingest_folders(settings, embedder, root, {"public": ["public"], "finance": ["finance"]})
        log = AuditLog(settings.audit_path)
        app = build_app(object(), UserStore(settings.users_path), settings, audit=log)
        url = serve(app, settings, block=False, sources=wiring.build_originals(settings).find)
        try:
            docs = {Path(n).name: doc_id_of(settings, root / n) for n in files}
            yield Served(url.rstrip("/"), settings, log, provider, docs)
        finally:
            app.close()


@pytest.fixture(scope="module")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with launched(tmp_path_factory.mktemp("chromium")) as browser:
        yield browser


def sign_in(served: Served, page: Any, user: str) -> None:
    """From the chat's address through Enclave's sign-in page and the provider's, to the chat."""
    page.goto(served.url + "/")
    page.wait_for_url("**/login**")
    page.get_by_role("link", name="Sign in with Harbour SSO").click()
    page.get_by_label("Username").fill(user)
    page.get_by_label("Password").fill(served.provider.password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(served.url + "/")
    page.get_by_role("button", name="Send", exact=True).wait_for(timeout=60_000)  # the chat, signed in


def path_of(page: Any, path: str) -> str:
    origin = "/".join(page.url.split("/", 3)[:3])
    return origin + path


def test_sign_in_at_the_provider_lands_in_the_chat_with_the_mapped_groups(
    served: Served, chromium: Any
) -> None:
    context = chromium.new_context()
    try:
        page = context.new_page()
        sign_in(served, page, "alice")
        crane = context.request.get(path_of(page, f"/files/{served.docs['crane.md']}"))
        assert crane.status == 200 and "4.2 million" in crane.text()
    finally:
        context.close()
    signed = served.events("sign_in", "alice")
    assert len(signed) == 1
    data = signed[0].data
    assert (data["method"], data["backend"], data["role"]) == ("oidc", "oidc", "staff")
    assert data["groups"] == ["finance", "public"]
    assert sorted(data["directory_groups"]) == ["all-staff", "finance-team"]


def test_a_move_between_groups_applies_without_signing_out_and_disabling_signs_out(
    served: Served, chromium: Any
) -> None:
    context = chromium.new_context()
    try:
        page = context.new_page()
        sign_in(served, page, "carol")
        crane = path_of(page, f"/files/{served.docs['crane.md']}")
        leave = path_of(page, f"/files/{served.docs['leave.md']}")
        assert context.request.get(crane).status == 403
        served.provider.set_groups("carol", ["all-staff", "finance-team"])  # joins Finance
        time.sleep(CHECK_S + 0.5)
        assert context.request.get(crane).status == 200  # the same session, the new groups
        changed = served.events("identity_changed", "carol")
        assert len(changed) == 1 and changed[0].data["groups"] == ["finance", "public"]
        assert changed[0].data["groups_before"] == ["public"]
        served.provider.set_groups("carol", ["all-staff"])  # and leaves it again
        time.sleep(CHECK_S + 0.5)
        assert context.request.get(crane).status == 403
        assert context.request.get(leave).status == 200
        served.provider.disable("carol")
        time.sleep(CHECK_S + 0.5)
        out = context.request.get(path_of(page, "/config"))
        assert out.status == 401 and "signed out" in out.text()
        page.reload()
        page.wait_for_url("**/login**")  # the browser is back at the sign-in page
    finally:
        context.close()
    assert len(served.events("sign_in", "carol")) == 1
    revoked = served.events("identity_revoked", "carol")
    assert len(revoked) == 1 and revoked[0].data["backend"] == "oidc"


def test_signing_out_of_enclave_signs_out_at_the_provider(served: Served, chromium: Any) -> None:
    context = chromium.new_context()
    try:
        page = context.new_page()
        sign_in(served, page, "bob")
        page.goto(path_of(page, "/logout"))
        page.get_by_role("button", name="Yes, sign me out").click()  # the provider's own page
        page.wait_for_url("**/login?m=signed_out**")
        assert "You have signed out." in page.content()
        assert context.request.get(path_of(page, "/config")).status == 401
        # The provider's session is over too: the button leads to its sign-in form again.
        page.get_by_role("link", name="Sign in with Harbour SSO").click()
        page.get_by_label("Password").wait_for()
    finally:
        context.close()
    assert served.events("sign_out", "bob")


def test_a_callback_without_the_browsers_pending_sign_in_is_refused_and_audited(
    served: Served, chromium: Any
) -> None:
    context = chromium.new_context()
    try:
        page = context.new_page()
        page.goto(served.url + "/auth/oidc/callback?code=stolen&state=guess")
        assert "expired or was interrupted" in page.content()
        assert context.request.get(path_of(page, "/config")).status == 401
    finally:
        context.close()
    failed = [r for r in reversed(served.log.last(200)) if r.event == "sign_in_failed"]
    assert failed and failed[-1].data["backend"] == "oidc"
