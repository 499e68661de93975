"""ui.accounts.Accounts against a real slapd (tests/support/slapd.py) and a real shared sign-in
store: when checks are due, what an unreachable directory leaves in force and for how long, and
that two replicas checking the same change write one audit record. The clock is the test's, so
"an hour later" needs no waiting; the directory, the store and the audit log are real.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from audit import AuditLog
from core.identity import DirectoryAccount, DirectoryUnavailable
from core.settings import AuthSettings
from core.users import UserStore
from tests.support.net import nothing_left_loopback  # noqa: F401 (autouse)
from tests.support.slapd import SlapdServer, running_slapd
from ui.accounts import Accounts, LdapRevalidator
from ui.directory import LdapDirectory
from ui.sessions import AuthStore

pytestmark = pytest.mark.slow  # a real slapd


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def slapd() -> Iterator[SlapdServer]:
    with running_slapd() as server:
        yield server


def replica(tmp_path: Path, slapd: SlapdServer, clock: Clock, audit: AuditLog, **auth: float) -> Accounts:
    """What one replica of the web UI builds: the users file, the shared store, the directory."""
    settings = AuthSettings.model_validate({"revalidate_minutes": 5, "unreachable_grace_minutes": 15, **auth})
    directory = LdapDirectory(slapd.settings(tmp_path))
    return Accounts(
        UserStore(tmp_path / "users.json"),
        AuthStore(tmp_path / "auth.sqlite3"),
        settings,
        audit,
        {"ldap": LdapRevalidator(directory)},
        ldap=directory,
        clock=clock,
    )


def signed_in(accounts: Accounts, slapd: SlapdServer, name: str) -> None:
    found = accounts.ldap.authenticate(name, slapd.passwords[name])
    assert isinstance(found, DirectoryAccount)
    accounts.signed_in(found)


def test_the_directory_is_asked_only_when_a_check_is_due(tmp_path: Path, slapd: SlapdServer) -> None:
    clock, audit = Clock(), AuditLog(tmp_path / "audit.sqlite3")
    accounts = replica(tmp_path, slapd, clock, audit)
    signed_in(accounts, slapd, "frank")
    slapd.move("frank", "hr", "finance-readers")
    clock.now += 4 * 60  # within auth.revalidate_minutes: what sign-in said stands
    assert accounts.get("frank").groups == ("hr-docs", "staff-docs")  # type: ignore[union-attr]
    clock.now += 2 * 60
    assert accounts.get("frank").groups == ("finance-docs", "staff-docs")  # type: ignore[union-attr]
    assert [r.event for r in audit.last(10)] == ["identity_changed"]


def test_an_unreachable_directory_leaves_the_last_groups_for_the_grace_then_refuses(
    tmp_path: Path, slapd: SlapdServer
) -> None:
    clock, audit = Clock(), AuditLog(tmp_path / "audit.sqlite3")
    accounts = replica(tmp_path, slapd, clock, audit)
    signed_in(accounts, slapd, "alice")
    slapd.stop()
    clock.now += 6 * 60  # a check is due; the directory does not answer; the grace holds
    assert accounts.get("alice").groups == ("finance-docs", "staff-docs")  # type: ignore[union-attr]
    clock.now += 15 * 60  # 21 minutes since the last answer: past 5 + 15
    with pytest.raises(DirectoryUnavailable, match="no directory server answered"):
        accounts.get("alice")
    slapd.start()
    assert accounts.get("alice").groups == ("finance-docs", "staff-docs")  # type: ignore[union-attr]
    assert audit.last(10) == []  # an outage is not a change of anyone's groups


def test_no_grace_refuses_at_the_first_unanswered_check(tmp_path: Path, slapd: SlapdServer) -> None:
    clock = Clock()
    accounts = replica(
        tmp_path, slapd, clock, AuditLog(tmp_path / "audit.sqlite3"), unreachable_grace_minutes=0
    )
    signed_in(accounts, slapd, "alice")
    slapd.stop()
    try:
        clock.now += 5 * 60 + 1
        with pytest.raises(DirectoryUnavailable):
            accounts.get("alice")
    finally:
        slapd.start()


def test_two_replicas_seeing_one_change_write_one_record(tmp_path: Path, slapd: SlapdServer) -> None:
    clock, audit = Clock(), AuditLog(tmp_path / "audit.sqlite3")
    first, second = replica(tmp_path, slapd, clock, audit), replica(tmp_path, slapd, clock, audit)
    signed_in(first, slapd, "bob")
    slapd.disable("bob")
    clock.now += 6 * 60
    assert first.get("bob") is None and second.get("bob") is None
    assert second.gone_reason("bob") == "disabled in the directory"
    assert [r.event for r in audit.last(10)] == ["identity_revoked"]


def test_a_local_name_is_always_the_users_files(tmp_path: Path, slapd: SlapdServer) -> None:
    clock = Clock()
    accounts = replica(tmp_path, slapd, clock, AuditLog(tmp_path / "audit.sqlite3"))
    signed_in(accounts, slapd, "carol")
    accounts.users.add("carol", "break glass now", "staff", ("staff-docs",))
    account = accounts.get("carol")
    assert account is not None and (account.backend, account.role) == ("local", "staff")
