"""The SSO proxy as the directory: groups (and through them the role) in a header of the proxy's
(ui.sso_groups_header), mapped by auth.proxy_mapping, over real HTTP (ui.server on uvicorn, a
real audit log, a real ingest of two small files).

127.0.0.2 is the trusted proxy (every 127.0.0.0/8 address is loopback on Linux).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import httpx
import pytest

from audit import AuditLog
from audit.log import AuditRecord
from core.settings import GroupMappingSettings, GroupRuleSettings, Settings, load_settings
from core.users import UserStore
from enclave import wiring
from tests.support.net import (
    free_port,
    nothing_left_loopback,  # noqa: F401 (an autouse fixture)
)
from tests.support.served import doc_id_of, events_of, ingest_folders, write_files
from ui import build_app, serve
from ui.sessions import COOKIE

pytestmark = pytest.mark.slow  # real servers

PROXY = "127.0.0.2"
PROXY_SECRET = "the-proxy-and-the-app-share-this"
PASSWORD = "correct horse battery"
FINANCE_DN = "CN=Finance-Readers,OU=Groups,DC=corp,DC=example"


@dataclass
class Served:
    url: str
    settings: Settings
    log: AuditLog
    docs: dict[str, str]
    app: gr.Blocks

    def proxy(self, user: str, groups: str | None, **headers: str) -> httpx.Client:
        sent = {"X-Remote-User": user, "X-Enclave-Proxy-Secret": PROXY_SECRET, **headers}
        if groups is not None:
            sent["X-Remote-Groups"] = groups
        return httpx.Client(
            base_url=self.url, transport=httpx.HTTPTransport(local_address=PROXY), headers=sent
        )

    def events(self, event: str, user: str) -> list[AuditRecord]:
        return events_of(self.log, event, user)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, embedder: Any) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("proxy-groups")
    files = {
        "public/leave.md": "# Leave\n\nStaff get 25 days of annual leave.\n",
        "finance/crane.md": "# Crane budget\n\nThe crane at berth 7 costs 4.2 million euros.\n",
    }
    write_files(root, files)
    settings = load_settings(None, data_dir=root / "var")
    settings.ui.port = free_port()
    settings.ui.sso_header = "X-Remote-User"
    settings.ui.sso_groups_header = "X-Remote-Groups"
    settings.ui.sso_groups_separator = ";"  # the proxy sends DNs, which hold commas
    settings.ui.trusted_proxies = [PROXY]
    (root / "proxy.secret").write_text(PROXY_SECRET)
    settings.ui.sso_secret_file = root / "proxy.secret"
    settings.auth.proxy_mapping = GroupMappingSettings(
        groups=[
            GroupRuleSettings(match="CN=Finance-*", groups=["finance"]),
            GroupRuleSettings(match="all-staff", groups=["public"]),
        ],
        auditor=["enclave-auditors"],
    )
    ingest_folders(settings, embedder, root, {"public": ["public"], "finance": ["finance"]})
    users = UserStore(settings.users_path)
    users.add("breakglass", PASSWORD, "admin", ("public",))
    log = AuditLog(settings.audit_path)
    app = build_app(object(), users, settings, audit=log)
    url = serve(app, settings, block=False, sources=wiring.build_originals(settings).find)
    try:
        yield Served(url, settings, log, {Path(n).name: doc_id_of(settings, root / n) for n in files}, app)
    finally:
        app.close()


def test_a_proxy_user_needs_no_users_file_entry_and_gets_the_mapped_groups(served: Served) -> None:
    with served.proxy("ines", f"all-staff; {FINANCE_DN}") as proxy:
        config = proxy.get("/config")
        assert config.status_code == 200 and config.json()["username"] == "ines"
        assert "4.2 million" in proxy.get(f"/files/{served.docs['crane.md']}").text
        assert proxy.get(f"/files/{served.docs['leave.md']}").status_code == 200
    signed = served.events("sign_in", "ines")
    assert len(signed) == 1
    data = signed[0].data
    assert data["method"] == "sso" and data["backend"] == "proxy" and data["role"] == "staff"
    assert data["groups"] == ["finance", "public"]
    assert FINANCE_DN in data["directory_groups"]


def test_a_group_change_at_the_proxy_applies_at_the_next_request_and_is_audited(served: Served) -> None:
    crane = served.docs["crane.md"]
    with served.proxy("jonas", f"all-staff;{FINANCE_DN}") as proxy:
        assert proxy.get(f"/files/{crane}").status_code == 200
        token = proxy.cookies[COOKIE]
    # Moved out of Finance: the same session (its cookie) with the header the proxy sends now.
    with served.proxy("jonas", "all-staff", cookie=f"{COOKIE}={token}") as proxy:
        refused = proxy.get(f"/files/{crane}")
        assert refused.status_code == 403 and "4.2 million" not in refused.text
        assert proxy.get(f"/files/{served.docs['leave.md']}").status_code == 200
    assert len(served.events("sign_in", "jonas")) == 1  # no new sign-in: the session went on
    changed = served.events("identity_changed", "jonas")
    assert len(changed) == 1
    assert changed[0].data["groups_before"] == ["finance", "public"] and changed[0].data["groups"] == [
        "public"
    ]
    # Unchanged groups on the next request: nothing more written.
    with served.proxy("jonas", "all-staff", cookie=f"{COOKIE}={token}") as proxy:
        assert proxy.get("/config").status_code == 200
    assert len(served.events("identity_changed", "jonas")) == 1


def test_the_role_comes_from_the_mapped_groups(served: Served) -> None:
    with served.proxy("kira", "enclave-auditors", accept="text/html") as proxy:
        assert proxy.get("/audit").status_code == 200
    with served.proxy("lena", "all-staff", accept="text/html") as proxy:
        page = proxy.get("/audit")
        assert page.status_code == 403
    assert served.events("sign_in", "kira")[0].data["role"] == "auditor"


def test_no_groups_header_means_no_groups(served: Served) -> None:
    with served.proxy("mona", None) as proxy:
        assert proxy.get("/config").status_code == 200
        assert proxy.get(f"/files/{served.docs['leave.md']}").status_code == 403
    assert served.events("sign_in", "mona")[0].data["groups"] == []


def test_a_local_accounts_name_is_not_taken_through_the_proxy(served: Served) -> None:
    with served.proxy("breakglass", "enclave-auditors") as proxy:
        refused = proxy.get("/config")
    assert refused.status_code == 403 and "local Enclave account" in refused.json()["detail"]
    assert served.events("access_denied", "breakglass")[-1].data["reason"] == "proxy user is a local account"


def test_the_groups_header_is_not_believed_without_the_proxys_proof(served: Served) -> None:
    with httpx.Client(
        base_url=served.url, headers={"X-Remote-User": "nils", "X-Remote-Groups": FINANCE_DN}
    ) as direct:
        assert direct.get("/config").status_code == 403
    assert served.events("sign_in", "nils") == []


def test_a_signed_in_users_own_groups_header_is_ignored_off_the_proxy(served: Served) -> None:
    """A staff member signed in through the proxy sends their cookie straight to the app with a
    groups header of their choosing (and no user header): the groups stay the proxy's."""
    crane = served.docs["crane.md"]
    with served.proxy("omar", "all-staff") as proxy:
        assert proxy.get(f"/files/{crane}").status_code == 403
        token = proxy.cookies[COOKIE]
    with httpx.Client(
        base_url=served.url, cookies={COOKIE: token}, headers={"X-Remote-Groups": FINANCE_DN}
    ) as direct:
        assert direct.get("/config").status_code == 200  # the session itself is good
        refused = direct.get(f"/files/{crane}")
    assert refused.status_code == 403 and "4.2 million" not in refused.text
    assert served.events("identity_changed", "omar") == []
