"""LDAP sign-in through the web UI and the CLI, against a real OpenLDAP slapd
(tests/support/slapd.py): ui.server on uvicorn with the Gradio app, a real audit log, a real
ingest of three small files, `enclave users show` and `enclave doctor --lookup`.

The directory (see tests/support/slapd.py): alice is in finance-readers, inside finance, inside
all-staff; bob is in hr; carol in admins; dave is disabled. The mapping gives finance-readers
-> finance-docs, all-staff -> staff-docs, hr -> hr-docs, admins -> admin. Checks are due every
CHECK_S seconds (auth.revalidate_minutes), so the tests see a change without waiting minutes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from audit import AuditLog
from audit.log import AuditRecord
from core.settings import Settings, load_settings
from core.users import UserStore
from enclave import wiring
from tests.support.cli import data_dir_cli
from tests.support.net import (
    free_port,
    nothing_left_loopback,  # noqa: F401 (an autouse fixture)
)
from tests.support.served import doc_id_of, events_of, ingest_folders, write_files
from tests.support.slapd import SlapdServer, running_slapd, user_dn
from ui import build_app, serve
from ui.sessions import COOKIE

pytestmark = pytest.mark.slow  # real servers

CHECK_S = 1.0
BREAK_GLASS = "correct horse battery"


@dataclass
class Served:
    url: str
    settings: Settings
    log: AuditLog
    slapd: SlapdServer
    docs: dict[str, str]

    def sign_in(self, name: str, password: str | None = None) -> httpx.Response:
        with httpx.Client(base_url=self.url) as http:
            return http.post(
                "/login", data={"username": name, "password": password or self.slapd.passwords[name]}
            )

    def session(self, name: str, password: str | None = None) -> httpx.Client:
        answer = self.sign_in(name, password)
        assert answer.status_code == 200, answer.text
        return httpx.Client(base_url=self.url, cookies={COOKIE: answer.cookies[COOKIE]})

    def events(self, event: str, user: str) -> list[AuditRecord]:
        return events_of(self.log, event, user)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, embedder: Any) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("ldap-http")
    files = {
        "staff/leave.md": "# Leave\n\nStaff get 25 days of annual leave.\n",
        "finance/crane.md": "# Crane budget\n\nThe crane at berth 7 costs 4.2 million euros.\n",
        "hr/salaries.md": "# Salary bands\n\nBand C starts at 52 thousand euros.\n",
    }
    write_files(root, files)
    with running_slapd() as slapd:
        settings = load_settings(None, data_dir=root / "var")
        settings.ui.port = free_port()
        settings.auth.revalidate_minutes = CHECK_S / 60
        settings.auth.unreachable_grace_minutes = 0
        settings.auth.ldap = slapd.settings(root)
        folders = {"staff": ["staff-docs"], "finance": ["finance-docs"], "hr": ["hr-docs"]}
        ingest_folders(settings, embedder, root, folders)
        users = UserStore(settings.users_path)
        users.add("breakglass", BREAK_GLASS, "admin", ("staff-docs",))
        log = AuditLog(settings.audit_path)
        app = build_app(object(), users, settings, audit=log)
        url = serve(app, settings, block=False, sources=wiring.build_originals(settings).find)
        try:
            docs = {Path(n).name: doc_id_of(settings, root / n) for n in files}
            yield Served(url, settings, log, slapd, docs)
        finally:
            app.close()


def test_sign_in_by_bind_grants_the_mapped_nested_groups_and_records_them(served: Served) -> None:
    with served.session("alice") as http:
        assert http.get("/config").json()["username"] == "alice"
        assert "4.2 million" in http.get(f"/files/{served.docs['crane.md']}").text
        assert http.get(f"/files/{served.docs['leave.md']}").status_code == 200  # all-staff, two levels up
        assert http.get(f"/files/{served.docs['salaries.md']}").status_code == 403
    data = served.events("sign_in", "alice")[-1].data
    assert (data["method"], data["backend"], data["role"]) == ("password", "ldap", "staff")
    assert data["groups"] == ["finance-docs", "staff-docs"]
    assert {g.split(",")[0] for g in data["directory_groups"]} >= {
        "cn=finance-readers",
        "cn=finance",
        "cn=all-staff",
    }
    assert served.slapd.passwords["alice"] not in str(data)


def test_wrong_password_and_disabled_account_are_refused_and_audited(served: Served) -> None:
    wrong = served.sign_in("bob", "not-his-password")
    assert wrong.status_code == 401 and wrong.json()["detail"] == "Wrong user name or password."
    disabled = served.sign_in("dave")
    assert disabled.status_code == 403 and "disabled" in disabled.json()["detail"]
    assert served.events("sign_in_failed", "dave")[-1].data["reason"] == "disabled in the directory"
    assert served.events("sign_in", "dave") == []


def test_the_role_comes_from_the_directory(served: Served) -> None:
    with served.session("carol") as http:
        assert http.get("/admin", headers={"accept": "text/html"}).status_code == 200
    with served.session("bob") as http:
        assert http.get("/admin", headers={"accept": "text/html"}).status_code == 403


def test_a_move_applies_at_the_next_check_and_a_disable_signs_out(served: Served) -> None:
    with served.session("frank") as http:  # frank: hr
        salaries, crane = served.docs["salaries.md"], served.docs["crane.md"]
        assert http.get(f"/files/{salaries}").status_code == 200
        assert http.get(f"/files/{crane}").status_code == 403
        served.slapd.move("frank", "hr", "finance-readers")
        time.sleep(CHECK_S + 0.3)
        assert http.get(f"/files/{crane}").status_code == 200  # the same session: Finance now
        assert http.get(f"/files/{salaries}").status_code == 403  # and no longer HR
        changed = served.events("identity_changed", "frank")
        assert len(changed) == 1 and changed[0].data["groups_before"] == ["hr-docs", "staff-docs"]
        assert changed[0].data["groups"] == ["finance-docs", "staff-docs"]
        served.slapd.disable("frank")
        time.sleep(CHECK_S + 0.3)
        out = http.get("/config")
        assert out.status_code == 401 and "disabled in the directory" in out.json()["detail"]
    assert served.events("identity_revoked", "frank")[-1].data == {
        "backend": "ldap",
        "reason": "disabled in the directory",
    }
    assert served.sign_in("frank").status_code == 403  # nor can they sign in again


def test_a_deleted_user_is_signed_out_at_the_next_check(served: Served) -> None:
    with served.session("erin") as http:
        assert http.get("/config").status_code == 200
        served.slapd.delete("erin")
        time.sleep(CHECK_S + 0.3)
        out = http.get("/config")
    assert out.status_code == 401 and "signed out" in out.json()["detail"]
    assert "not found" in served.events("identity_revoked", "erin")[-1].data["reason"]


def test_the_break_glass_admin_signs_in_while_the_directory_is_down(served: Served) -> None:
    with served.session("bob") as bob:
        served.slapd.stop()
        try:
            time.sleep(CHECK_S + 0.3)
            refused = bob.get("/config")  # the check is due, the directory silent, no grace left
            assert refused.status_code == 503 and "directory cannot be reached" in refused.json()["detail"]
            down = served.sign_in("alice")
            assert down.status_code == 503 and "directory cannot be reached" in down.json()["detail"]
            with served.session("breakglass", BREAK_GLASS) as admin:
                assert admin.get("/admin", headers={"accept": "text/html"}).status_code == 200
        finally:
            served.slapd.start()
        assert bob.get("/config").status_code == 200  # back: the same session goes on
    assert served.events("sign_in", "breakglass")[-1].data["backend"] == "local"


def test_users_show_and_doctor_ask_the_directory(
    served: Served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, embedder: Any
) -> None:
    ldap = served.settings.auth.ldap
    assert ldap is not None
    config = {"auth": {"ldap": ldap.model_dump(mode="json")}}
    (tmp_path / "enclave.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.setenv("ENCLAVE_CONFIG", str(tmp_path / "enclave.yaml"))
    cli = data_dir_cli(tmp_path, monkeypatch, embedder)
    shown = cli("users", "show", "alice")
    assert shown.exit_code == 0, shown.output
    assert user_dn("alice") in shown.output and "finance-docs, staff-docs" in shown.output
    assert served.slapd.passwords["alice"] not in shown.output and served.slapd.password not in shown.output
    gone = cli("users", "show", "dave", "--json")
    assert gone.exit_code == 0 and '"gone": "disabled in the directory"' in gone.output
    unknown = cli("users", "show", "nobody")
    assert unknown.exit_code == 1 and "unknown user 'nobody'" in unknown.output
    from typer.testing import CliRunner

    from enclave.cli import app

    assert served.sign_in("alice").status_code == 200  # so the sign-in store knows her
    listed = CliRunner().invoke(app, ["--data-dir", str(served.settings.data_dir), "users", "list", "--json"])
    rows = {r["name"]: r for r in json.loads(listed.output)}
    assert rows["breakglass"]["backend"] == "local" and rows["alice"]["backend"] == "ldap"
    assert rows["alice"]["groups"] == ["finance-docs", "staff-docs"]
    asked = cli("ask", "What does the crane cost?", "--user", "alice", "--json")
    assert asked.exit_code == 0, asked.output  # the directory's alice, with her groups now
    refused = cli("ask", "What does the crane cost?", "--user", "dave")
    assert refused.exit_code == 1 and "disabled in the directory" in refused.output
    doctor = cli("doctor", "--lookup", "alice", "--json")
    checks = {c["name"]: c for c in yaml.safe_load(doctor.output)["checks"]}
    ldap_checks = {k: v for k, v in checks.items() if k.startswith("ldap: ")}
    assert ldap_checks and all(c["ok"] for c in ldap_checks.values()), ldap_checks
    assert any("TLS valid" in c["detail"] for c in ldap_checks.values())
    assert "finance-docs" in checks["ldap: lookup alice"]["detail"]
    assert served.slapd.password not in doctor.output
    served.slapd.stop()
    try:
        down = cli("users", "show", "alice")
        assert down.exit_code == 1 and "cannot be asked" in down.output
        failing = cli("doctor", "--json")
        checks_down = yaml.safe_load(failing.output)["checks"]
        reachable = [c for c in checks_down if c["name"].endswith("reachable")]
        assert reachable and not any(c["ok"] for c in reachable)
    finally:
        served.slapd.start()
