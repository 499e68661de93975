"""core.identity's mapping from directory groups to Enclave groups and a role, and the filters
and checks ui.directory builds before it asks a directory anything (the directory itself:
tests/integration/test_ldap_directory.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from core.errors import ConfigError
from core.identity import GroupMapping, GroupRule, first_rdn_value, matches
from core.settings import GroupMappingSettings, LdapSettings
from ui.directory import LdapDirectory, acceptable_name, domain_of, fill, in_chain_filter, name_filter

FINANCE = "CN=Finance-Readers,OU=Groups,DC=corp,DC=example"


@pytest.mark.parametrize(
    "name, value",
    [
        (FINANCE, "Finance-Readers"),
        ("cn=hr,ou=groups,dc=corp,dc=example", "hr"),
        ("CN = Spaced , DC=x", "Spaced"),
        ("finance", "finance"),  # not a DN: as it is
        ("a=b=c,DC=x", "a=b=c,DC=x"),  # not a clean RDN
        ("=x,DC=y", "=x,DC=y"),
    ],
)
def test_first_rdn_value(name: str, value: str) -> None:
    assert first_rdn_value(name) == value


@pytest.mark.parametrize(
    "pattern, hit",
    [
        ("finance-readers", True),
        ("FINANCE*", True),
        ("CN=Finance*", True),
        ("cn=finance-readers,ou=groups,dc=corp,dc=example", True),
        ("*,OU=Groups,*", True),
        ("finance", False),
        ("readers", False),
        ("CN=HR*", False),
    ],
)
def test_matches_the_whole_name_or_its_cn_without_case(pattern: str, hit: bool) -> None:
    assert matches(pattern, FINANCE) is hit


def test_mapping_gives_groups_and_the_first_role_that_matches() -> None:
    mapping = GroupMapping(
        rules=(GroupRule("finance*", ("finance-docs",)), GroupRule("CN=All-Staff,*", ("staff", "intranet"))),
        admin=("admins",),
        auditor=("auditors", "compliance*"),
    )
    staff = ["CN=Finance-Readers,OU=G,DC=x", "CN=All-Staff,OU=G,DC=x"]
    assert mapping.groups(staff) == ("finance-docs", "intranet", "staff")
    assert mapping.role(staff) == "staff"
    assert mapping.role(["CN=Compliance-EU,DC=x"]) == "auditor"
    assert mapping.role(["CN=Compliance-EU,DC=x", "cn=admins,dc=x"]) == "admin"  # admin first
    assert mapping.groups(["CN=Other,DC=x"]) == ()


def test_pass_through_keeps_each_groups_short_name() -> None:
    mapping = GroupMapping(pass_through=True)
    assert mapping.groups(["CN=Legal,OU=G,DC=x", "Research"]) == ("legal", "research")


def test_account_from_settings_sorts_and_maps() -> None:
    mapping = GroupMappingSettings.model_validate(
        {"groups": [{"match": "hr", "groups": ["hr-docs", "hr-docs"]}], "auditor": ["audit*"]}
    ).to_mapping()
    account = mapping.account(
        name="bob",
        backend="ldap",
        subject="uid=bob,dc=x",
        directory_groups=["cn=hr,dc=x", "cn=audit-team,dc=x", "cn=hr,dc=x"],
        display_name="Bob",
    )
    assert account.directory_groups == ("cn=audit-team,dc=x", "cn=hr,dc=x")
    assert account.groups == ("hr-docs",)
    assert account.role == "auditor"
    assert account.principal.name == "bob"
    assert account.principal.groups == ("hr-docs",)


def test_in_chain_filter_uses_ads_matching_rule_and_escapes_the_dn() -> None:
    assert in_chain_filter("CN=Ann,OU=Staff,DC=corp,DC=example") == (
        "(member:1.2.840.113556.1.4.1941:=CN=Ann,OU=Staff,DC=corp,DC=example)"
    )
    # A DN may hold filter specials ("CN=Smith\\, J (Ops)"): they stay values, not syntax.
    assert in_chain_filter("CN=Smith\\, J (Ops)*,DC=x") == (
        "(member:1.2.840.113556.1.4.1941:=CN=Smith\\5c, J \\28Ops\\29\\2a,DC=x)"
    )


@pytest.mark.parametrize(
    "name, escaped",
    [("alice", "alice"), ("*", "\\2a"), ("alice)(uid=*", "alice\\29\\28uid=\\2a"), ("a\\b", "a\\5cb")],
)
def test_fill_escapes_what_is_typed(name: str, escaped: str) -> None:
    assert fill("(&(objectClass=user)(sAMAccountName={name}))", "name", name) == (
        f"(&(objectClass=user)(sAMAccountName={escaped}))"
    )


def settings(**fields: object) -> LdapSettings:
    values: dict[str, object] = {"urls": ["ldaps://dc1.corp.example"], "user_base": "DC=corp,DC=example"}
    values.update(fields)
    return LdapSettings.model_validate(values)


@pytest.mark.parametrize(
    "user_filter, attribute, expected",
    [
        ("(&(objectClass=inetOrgPerson)(uid={name}))", "uid", "(&(&(objectClass=inetOrgPerson)(uid=*))(uid=a\\2a))"),
        ("(&(objectClass=user)(mail={name}))", "sAMAccountName",
         "(&(&(objectClass=user)(mail=*))(sAMAccountName=a\\2a))"),
    ],
)  # fmt: skip
def test_a_lookup_asks_for_any_user_with_the_accounts_name(
    user_filter: str, attribute: str, expected: str
) -> None:
    ldap = settings(user_filter=user_filter, name_attribute=attribute)
    assert name_filter(ldap, "a*") == expected


@pytest.mark.parametrize(
    "base, domain",
    [
        ("OU=Staff,DC=corp,DC=example", "DC=corp,DC=example"),
        ("ou=people,dc=corp,dc=example", "dc=corp,dc=example"),
        ("o=Corp", "o=Corp"),
    ],
)
def test_the_group_base_defaults_to_the_user_bases_domain(base: str, domain: str) -> None:
    assert domain_of(base) == domain


@pytest.mark.parametrize(
    "name, ok",
    [("alice", True), ("alice.smith@corp.example", True), ("", False), (" alice", False),
     ("alice\n", False), ("al\x00ice", False), ("a" * 257, False)],
)  # fmt: skip
def test_acceptable_names(name: str, ok: bool) -> None:
    assert acceptable_name(name) is ok


def test_plain_ldap_without_starttls_is_refused_at_construction() -> None:
    with pytest.raises(ConfigError, match=re.escape("ldap://dc2.corp.example would send passwords in clear")):
        LdapDirectory(settings(urls=["ldaps://dc1.corp.example", "ldap://dc2.corp.example"]))
    LdapDirectory(settings(urls=["ldap://dc2.corp.example"], start_tls=True))
    LdapDirectory(settings(urls=["ldap://127.0.0.1"], allow_plain=True))


def test_unreadable_files_are_named_at_construction(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="bind_password_file"):
        LdapDirectory(settings(bind_dn="CN=svc,DC=x"))
    with pytest.raises(ConfigError, match=re.escape(str(tmp_path / "nope"))):
        LdapDirectory(settings(bind_dn="CN=svc,DC=x", bind_password_file=tmp_path / "nope"))
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ConfigError, match="is empty"):
        LdapDirectory(settings(bind_dn="CN=svc,DC=x", bind_password_file=tmp_path / "empty"))
    with pytest.raises(ConfigError, match=re.escape(str(tmp_path / "ca.pem"))):
        LdapDirectory(settings(ca_file=tmp_path / "ca.pem"))
