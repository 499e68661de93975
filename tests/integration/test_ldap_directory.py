"""The LDAP identity backend (ui.directory.LdapDirectory) against a real OpenLDAP slapd
(tests/support/slapd.py): sign-in by bind over StartTLS and LDAPS, refusals that must not bind,
nested groups mapped to Enclave groups and roles, TLS and server failures, and lookups that see
the directory change under them (a move, a disable, a delete)."""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.errors import ConfigError
from core.identity import DirectoryAccount, DirectoryUnavailable, Gone
from tests.support.dovecot import self_signed
from tests.support.net import free_port, nothing_left_loopback  # noqa: F401 (autouse)
from tests.support.slapd import SlapdServer, group_dn, running_slapd, user_dn
from ui import directory as directory_module
from ui.directory import LdapDirectory

pytestmark = pytest.mark.slow  # a real slapd


@pytest.fixture(scope="module")
def slapd() -> Iterator[SlapdServer]:
    """One directory for the tests that only read it."""
    with running_slapd() as server:
        yield server


@pytest.fixture
def fresh_slapd() -> Iterator[SlapdServer]:
    """A directory of the test's own, to change."""
    with running_slapd() as server:
        yield server


def signed_in(found: DirectoryAccount | Gone | None) -> DirectoryAccount:
    assert isinstance(found, DirectoryAccount), found
    return found


def test_sign_in_by_bind_over_starttls_maps_nested_groups(slapd: SlapdServer, tmp_path: Path) -> None:
    directory = LdapDirectory(slapd.settings(tmp_path))
    alice = signed_in(directory.authenticate("alice", slapd.passwords["alice"]))
    assert alice.name == "alice"
    assert alice.backend == "ldap"
    assert alice.subject == user_dn("alice")
    assert alice.display_name == "Alice Archer"
    # finance-readers -> finance -> all-staff, each level found
    assert set(alice.directory_groups) == {
        group_dn("finance-readers"),
        group_dn("finance"),
        group_dn("all-staff"),
    }
    assert alice.groups == ("finance-docs", "staff-docs")
    assert alice.role == "staff"


def test_sign_in_over_ldaps_with_the_ca_file(slapd: SlapdServer, tmp_path: Path) -> None:
    directory = LdapDirectory(slapd.settings(tmp_path, urls=[slapd.ldaps_url], start_tls=False))
    bob = signed_in(directory.authenticate("bob", slapd.passwords["bob"]))
    assert bob.groups == ("hr-docs", "staff-docs")
    assert directory.authenticate("bob", slapd.passwords["alice"]) is None


def test_roles_from_direct_and_nested_groups(slapd: SlapdServer, tmp_path: Path) -> None:
    directory = LdapDirectory(slapd.settings(tmp_path))
    assert signed_in(directory.authenticate("carol", slapd.passwords["carol"])).role == "admin"
    erin = signed_in(directory.authenticate("erin", slapd.passwords["erin"]))
    assert erin.role == "auditor"  # compliance -> auditors
    # erin is also in loop-a <-> loop-b: the walk ends, each group once
    assert sorted(erin.directory_groups) == sorted(
        group_dn(g) for g in ("compliance", "auditors", "loop-a", "loop-b")
    )


@pytest.mark.parametrize(
    "name, password",
    [
        ("alice", "not-her-password"),
        ("nobody", "whatever"),
        ("alice", ""),  # an unauthenticated bind "succeeds": never asked
        ("*", "x"),
        ("alice)(uid=*", "x"),
        ("al*", "x"),
        ("alice\x00", "x"),
        ("alice\n", "x"),
        ("", "x"),
    ],
)
def test_sign_in_refused(slapd: SlapdServer, tmp_path: Path, name: str, password: str) -> None:
    directory = LdapDirectory(slapd.settings(tmp_path))
    assert directory.authenticate(name, password) is None


def test_an_injected_name_does_not_match_with_the_right_password(slapd: SlapdServer, tmp_path: Path) -> None:
    directory = LdapDirectory(slapd.settings(tmp_path))
    assert directory.authenticate("alice)(uid=*", slapd.passwords["alice"]) is None
    assert directory.authenticate("*", slapd.passwords["alice"]) is None


def test_a_disabled_user_is_gone(slapd: SlapdServer, tmp_path: Path) -> None:
    directory = LdapDirectory(slapd.settings(tmp_path))
    assert directory.authenticate("dave", slapd.passwords["dave"]) == Gone(
        "dave", "disabled in the directory"
    )
    assert directory.authenticate("dave", "wrong") is None  # says nothing to a guesser
    assert directory.lookup("dave") == Gone("dave", "disabled in the directory")


def test_nested_none_and_max_depth_bound_the_walk(slapd: SlapdServer, tmp_path: Path) -> None:
    def groups(**fields: object) -> set[str]:
        found = LdapDirectory(slapd.settings(tmp_path, **fields)).lookup("alice")
        assert isinstance(found, DirectoryAccount)
        return {g.split(",")[0] for g in found.directory_groups}

    assert groups(nested="none") == {"cn=finance-readers"}
    assert groups(max_depth=1) == {"cn=finance-readers", "cn=finance"}
    assert groups(max_depth=2) == {"cn=finance-readers", "cn=finance", "cn=all-staff"}


def test_the_group_base_defaults_to_the_domain(slapd: SlapdServer, tmp_path: Path) -> None:
    found = LdapDirectory(slapd.settings(tmp_path, group_base=None)).lookup("bob")
    assert isinstance(found, DirectoryAccount)
    assert group_dn("hr") in found.directory_groups


def test_plain_ldap_is_refused_unless_allowed(slapd: SlapdServer, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="in clear"):
        LdapDirectory(slapd.settings(tmp_path, start_tls=False))
    plain = LdapDirectory(slapd.settings(tmp_path, start_tls=False, allow_plain=True))
    assert signed_in(plain.authenticate("alice", slapd.passwords["alice"])).name == "alice"


@pytest.mark.parametrize("ldaps", [False, True], ids=["starttls", "ldaps"])
def test_a_certificate_from_another_ca_is_refused(slapd: SlapdServer, tmp_path: Path, ldaps: bool) -> None:
    (tmp_path / "other").mkdir()
    other_ca, _ = self_signed(tmp_path / "other")
    fields: dict[str, object] = {"ca_file": other_ca}
    if ldaps:
        fields.update(urls=[slapd.ldaps_url], start_tls=False)
    directory = LdapDirectory(slapd.settings(tmp_path, **fields))
    with pytest.raises(DirectoryUnavailable, match=r"TLS failed.*certificate verify failed") as caught:
        directory.authenticate("alice", slapd.passwords["alice"])
    assert "127.0.0.1" in str(caught.value)
    assert slapd.passwords["alice"] not in str(caught.value)


@pytest.mark.parametrize("ldaps", [False, True], ids=["starttls", "ldaps"])
def test_a_certificate_for_another_name_is_refused(slapd: SlapdServer, tmp_path: Path, ldaps: bool) -> None:
    url = f"ldaps://localhost:{slapd.tls_port}" if ldaps else f"ldap://localhost:{slapd.port}"
    directory = LdapDirectory(slapd.settings(tmp_path, urls=[url], start_tls=not ldaps))
    with pytest.raises(DirectoryUnavailable) as caught:
        directory.lookup("alice")
    assert f"{url}: TLS failed: the certificate is not for localhost (it names 127.0.0.1)" in str(
        caught.value
    )


def test_a_server_down_is_unavailable_and_the_next_url_is_used(slapd: SlapdServer, tmp_path: Path) -> None:
    down = f"ldap://127.0.0.1:{free_port()}"
    alone = LdapDirectory(slapd.settings(tmp_path, urls=[down]))
    with pytest.raises(DirectoryUnavailable, match=f"{down}: cannot connect"):
        alone.lookup("alice")
    with pytest.raises(DirectoryUnavailable):
        alone.authenticate("alice", slapd.passwords["alice"])
    pair = LdapDirectory(slapd.settings(tmp_path, urls=[down, slapd.url]))
    assert signed_in(pair.authenticate("alice", slapd.passwords["alice"])).name == "alice"


def test_a_server_that_stops_answering_is_passed_over(
    slapd: SlapdServer, fresh_slapd: SlapdServer, tmp_path: Path
) -> None:
    assert fresh_slapd.process is not None
    os.kill(fresh_slapd.process.pid, signal.SIGSTOP)  # the kernel still accepts connections
    try:
        hung = LdapDirectory(fresh_slapd.settings(tmp_path, timeout_seconds=1))
        with pytest.raises(DirectoryUnavailable, match="no answer within"):
            hung.lookup("alice")
        pair = LdapDirectory(slapd.settings(tmp_path, urls=[fresh_slapd.url, slapd.url], timeout_seconds=1))
        assert signed_in(pair.authenticate("alice", slapd.passwords["alice"])).name == "alice"
    finally:
        os.kill(fresh_slapd.process.pid, signal.SIGCONT)


def test_groups_are_read_page_by_page(
    slapd: SlapdServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(directory_module, "PAGE_SIZE", 1)
    erin = signed_in(LdapDirectory(slapd.settings(tmp_path)).lookup("erin"))
    assert len(erin.directory_groups) == 4  # compliance, auditors, loop-a, loop-b


def test_the_name_is_the_directorys_not_the_typed_one(slapd: SlapdServer, tmp_path: Path) -> None:
    directory = LdapDirectory(slapd.settings(tmp_path))
    assert signed_in(directory.authenticate("ALICE", slapd.passwords["alice"])).name == "alice"
    by_mail = LdapDirectory(
        slapd.settings(tmp_path, user_filter="(&(objectClass=inetOrgPerson)(mail={name}))")
    )
    carol = signed_in(by_mail.authenticate("carol@corp.example", slapd.passwords["carol"]))
    assert carol.name == "carol"
    # revalidation asks by the name the account has, not the one typed at sign-in
    assert signed_in(by_mail.lookup("carol")).subject == carol.subject
    assert by_mail.lookup("carol@corp.example") == Gone("carol@corp.example", "not found in the directory")
    assert by_mail.lookup("*") == Gone("*", "not found in the directory")


def test_a_refused_service_account_is_unavailable_not_a_wrong_password(
    slapd: SlapdServer, tmp_path: Path
) -> None:
    wrong = tmp_path / "wrong-password"
    wrong.write_text("not-the-service-password\n")
    directory = LdapDirectory(slapd.settings(tmp_path, bind_password_file=wrong))
    with pytest.raises(DirectoryUnavailable, match=r"service account .* was refused: invalidCredentials"):
        directory.authenticate("alice", slapd.passwords["alice"])


def test_an_unreadable_password_file_is_named(slapd: SlapdServer, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-file"
    with pytest.raises(ConfigError, match=re.escape(str(missing))):
        LdapDirectory(slapd.settings(tmp_path, bind_password_file=missing))


def test_probe_reports_each_server_and_a_lookup(slapd: SlapdServer, tmp_path: Path) -> None:
    down = f"ldaps://127.0.0.1:{free_port()}"
    directory = LdapDirectory(slapd.settings(tmp_path, urls=[down, slapd.url]))
    checks = directory.probe("erin")
    assert [(name, ok) for name, ok, _ in checks] == [
        (f"{down} reachable", False),
        (f"{slapd.url} reachable", True),
        (f"{slapd.url} service bind", True),
        ("lookup erin", True),
    ]
    assert "TLS valid (TLSv1." in checks[1][2]
    assert "4 directory groups, role auditor" in checks[3][2]
    assert all(slapd.password not in detail for _, _, detail in checks)
    assert directory.probe("nobody")[-1] == ("lookup nobody", False, "not found in the directory")


def test_probe_warns_that_in_chain_finds_nothing_outside_active_directory(
    slapd: SlapdServer, tmp_path: Path
) -> None:
    # slapd does not know AD's matching rule and answers with no entries, not an error: the
    # lookup works, with no groups, which is why doctor says so.
    directory = LdapDirectory(slapd.settings(tmp_path, nested="in_chain"))
    assert signed_in(directory.lookup("alice")).directory_groups == ()
    check, ok, detail = directory.probe("alice")[-1]
    assert (check, ok) == ("lookup alice", False)
    assert "in_chain works on Active Directory only" in detail


def test_lookup_sees_a_move_a_disable_and_a_delete(fresh_slapd: SlapdServer, tmp_path: Path) -> None:
    directory = LdapDirectory(fresh_slapd.settings(tmp_path))
    bob = signed_in(directory.lookup("bob"))
    assert bob.groups == ("hr-docs", "staff-docs")

    fresh_slapd.move("bob", "hr", "finance-readers")
    moved = signed_in(directory.lookup("bob"))
    assert moved.groups == ("finance-docs", "staff-docs")  # all-staff now through finance
    assert group_dn("hr") not in moved.directory_groups

    fresh_slapd.disable("bob")
    assert directory.lookup("bob") == Gone("bob", "disabled in the directory")

    fresh_slapd.delete("alice")
    assert directory.lookup("alice") == Gone("alice", "not found in the directory")
    assert directory.authenticate("alice", fresh_slapd.passwords["alice"]) is None
