"""`sid_groups`: an SMB share's SIDs given Enclave groups by the directory, as sign-in gives its
members theirs. Real servers on both sides: smbd keeping Windows NT ACLs of its own (acl_xattr,
tests/support/samba.py), so a file's DACL names domain SIDs and denies as well as allows; slapd
with Active Directory's objectSid (binary) and Samba's sambaSID (tests/support/slapd.py). A file
readable by a directory group is retrieved by its members after one sync and, once the DACL drops
the group, not after the next, without re-embedding; a deny keeps a file from every group; a
directory that cannot be reached fails the sync and changes no one's access."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import Result

from core.errors import ConfigError, SourceUnavailable
from core.identity import DirectoryAccount, DirectoryUnavailable
from core.settings import load_settings
from core.sources import SourceSettings
from enclave import wiring
from ingest.sources import EVERYONE, GroupMap
from ingest.sources.permissions import ACCESS_ALLOWED, ACCESS_DENIED, sid_readers
from tests.support.cli import data_dir_cli
from tests.support.net import free_port
from tests.support.samba import SambaServer, running_samba
from tests.support.slapd import DOMAIN_SID, SIDS, SUFFIX, SlapdServer, running_slapd
from ui.directory import LdapDirectory, sid_bytes, sid_filter

pytestmark = pytest.mark.slow  # real smbd and slapd

Run = Callable[..., Result]
READ = 0x001200A9  # FILE_GENERIC_READ | FILE_EXECUTE, as Explorer's "Read & execute"
FULL = 0x001F01FF
SYSTEM = "S-1-5-18"
CONTRACTORS = f"{DOMAIN_SID}-2000"  # named by the mapping file only


@pytest.fixture(scope="module")
def slapd() -> Iterator[SlapdServer]:
    with running_slapd(sids=True) as server:
        yield server


def test_sid_bytes_are_ads_objectsid_and_the_filter_escapes_each_byte() -> None:
    raw = sid_bytes(f"{DOMAIN_SID}-1104")
    assert (
        raw is not None
        and raw[:8] == bytes([1, 5, 0, 0, 0, 0, 0, 5])
        and raw[-4:] == (1104).to_bytes(4, "little")
    )
    assert sid_filter("S-1-5-32-544") == (
        r"(|(objectSid=\01\02\00\00\00\00\00\05\20\00\00\00\20\02\00\00)(sambaSID=S-1-5-32-544))"
    )
    for bad in ("S-1", "S-1-5-x", "S-2-5-21", "S-1-5-1_0", "finance", f"S-1-{1 << 48}-1"):
        assert sid_bytes(bad) is None and sid_filter(bad) is None


def test_the_directory_gives_a_sid_the_groups_sign_in_gives(slapd: SlapdServer, tmp_path: Path) -> None:
    directory = LdapDirectory(slapd.settings(tmp_path))
    assert directory.groups_of_sid(SIDS["finance-readers"]) == ("finance-docs",)  # objectSid (AD)
    assert directory.groups_of_sid(SIDS["all-staff"]) == ("staff-docs",)
    assert directory.groups_of_sid(SIDS["hr"]) == ("hr-docs",)  # sambaSID (Samba, NT4-style)
    # A user's SID, one no entry has, and no SID: the directory knows no group by them.
    assert directory.groups_of_sid(SIDS["alice"]) is None
    # Found where groups are searched among people too, a user's entry is still no group.
    assert LdapDirectory(slapd.settings(tmp_path, group_base=SUFFIX)).groups_of_sid(SIDS["alice"]) is None
    assert LdapDirectory(slapd.settings(tmp_path, group_base=SUFFIX)).groups_of_sid(SIDS["hr"]) == (
        "hr-docs",
    )
    assert directory.groups_of_sid(f"{DOMAIN_SID}-4242") is None
    assert directory.groups_of_sid("*)(objectClass=*") is None
    # The same groups sign-in gives alice, whose finance-readers is nested in all-staff.
    alice = directory.lookup("alice")
    assert isinstance(alice, DirectoryAccount) and set(alice.groups) == {"finance-docs", "staff-docs"}

    down = LdapDirectory(slapd.settings(tmp_path, urls=[f"ldap://127.0.0.1:{free_port()}"]))
    with pytest.raises(DirectoryUnavailable, match="no directory server answered"):
        down.groups_of_sid(SIDS["hr"])


def test_a_deny_beside_other_readers_keeps_the_file_from_every_group() -> None:
    """Enclave's groups only grant: a DACL that denies Finance and allows all staff would, as
    groups, give the file to Finance's members too (they are staff). No group gets it."""
    finance, staff = SIDS["finance-readers"], SIDS["all-staff"]
    readers = sid_readers([(ACCESS_DENIED, 0, READ, finance), (ACCESS_ALLOWED, 0, READ, staff)])
    assert readers == (f"deny:sid:{finance}", f"sid:{staff}")
    group_map = GroupMap({staff: ("staff-docs",)}, ("everyone-docs",))
    assert group_map.groups(readers) == ((), [])
    assert group_map.groups(sid_readers([(ACCESS_DENIED, 0, READ, finance), (0, 0, READ, "S-1-1-0")])) == (
        (),
        [],
    )
    # A deny that takes back the only allow, or one to Everyone: no reader at all.
    assert sid_readers([(ACCESS_DENIED, 0, READ, finance), (ACCESS_ALLOWED, 0, READ, finance)]) == ()
    assert sid_readers([(ACCESS_DENIED, 0, READ, "S-1-1-0"), (ACCESS_ALLOWED, 0, READ, staff)]) == ()
    assert sid_readers([(ACCESS_ALLOWED, 0, READ, "S-1-5-11")]) == (EVERYONE,)


def test_the_mapping_file_first_then_the_directory() -> None:
    asked: list[str] = []

    def directory(sid: str) -> tuple[str, ...] | None:
        asked.append(sid)
        return {"S-1-5-21-9-1": ("finance-docs",), "S-1-5-21-9-2": ()}.get(sid)

    group_map = GroupMap({"S-1-5-21-9-1": ("legal",)}, (), directory)
    readers = ["sid:S-1-5-21-9-1", "sid:S-1-5-21-9-2", "sid:S-1-5-21-9-3", "group:finance"]
    assert group_map.groups(readers) == (("finance", "legal"), ["sid:S-1-5-21-9-2", "sid:S-1-5-21-9-3"])
    assert asked == ["S-1-5-21-9-2", "S-1-5-21-9-3"]


def test_sid_groups_is_an_smb_from_source_setting_and_needs_the_directory(tmp_path: Path) -> None:
    smb = {"kind": "smb", "location": "smb://fs/docs", "credentials_file": "/etc/enclave/smb.cred"}
    cfg = SourceSettings.model_validate({**smb, "groups": "from-source", "sid_groups": "directory"})
    assert cfg.sids_from_directory
    for bad, said in (
        ({**smb, "groups": "staff", "sid_groups": "both"}, "not of fixed groups"),
        (
            {**smb, "groups": "from-source", "sid_groups": "directory", "group_map": "/m.yaml"},
            "use sid_groups both",
        ),
        (
            {"kind": "folder", "location": "/srv", "groups": "from-source", "sid_groups": "both"},
            "of smb sources",
        ),
        ({**smb, "groups": "from-source", "sid_groups": "ldap"}, "map-file"),
    ):
        with pytest.raises(ValueError, match=said):
            SourceSettings.model_validate(bad)
    with pytest.raises(ConfigError, match=r"auth\.ldap is not set"):
        wiring.build_sid_resolver(load_settings(None, data_dir=tmp_path), cfg)


def test_directory_failures_fail_the_resolver_with_the_sources_error(
    slapd: SlapdServer, tmp_path: Path
) -> None:
    """Each SID is asked once per resolver (one per sync); an unreachable directory is the
    source's SourceUnavailable, which fails the sync with nothing removed."""
    cfg = SourceSettings.model_validate(
        {
            "kind": "smb",
            "location": "smb://fs/docs",
            "credentials_file": "/c",
            "groups": "from-source",
            "sid_groups": "both",
        }
    )
    settings = load_settings(None, data_dir=tmp_path)
    settings.auth.ldap = slapd.settings(tmp_path)
    resolve = wiring.build_sid_resolver(settings, cfg)
    assert resolve is not None and resolve(SIDS["hr"]) == ("hr-docs",)
    settings.auth.ldap = slapd.settings(tmp_path, urls=[f"ldap://127.0.0.1:{free_port()}"])
    unreachable = wiring.build_sid_resolver(settings, cfg)
    assert unreachable is not None
    with pytest.raises(SourceUnavailable, match="smb://fs/docs: the directory cannot say whose SID"):
        unreachable(SIDS["hr"])


# -- end to end: a real share, a real directory, the CLI -------------------------------------------


@pytest.fixture
def samba() -> Iterator[SambaServer]:
    with running_samba(nt_acls=True) as server:
        yield server


@pytest.fixture
def own_slapd() -> Iterator[SlapdServer]:
    """A directory of the test's own: it is stopped part-way."""
    with running_slapd(sids=True) as server:
        yield server


def sync(run: Run, name: str) -> tuple[int, dict[str, Any]]:
    result = run("sources", "sync", name, "--json")
    return result.exit_code, json.loads(result.stdout)


def retrieves(tmp_path: Path, query: str, groups: tuple[str, ...]) -> set[str]:
    """The file names a user holding `groups` retrieves for `query`."""
    store = wiring.build_store(load_settings(None, data_dir=tmp_path / "var"))
    try:
        return {hit.chunk.source.rsplit("/", 1)[-1] for hit in store.search_lexical(query, 10, list(groups))}
    finally:
        store.lexical.close()


def test_files_go_to_the_enclave_groups_of_the_directory_groups_their_dacl_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, embedder: Any, samba: SambaServer, own_slapd: SlapdServer
) -> None:
    slapd = own_slapd
    ldap = slapd.settings(tmp_path)
    (tmp_path / "enclave.yaml").write_text(yaml.safe_dump({"auth": {"ldap": ldap.model_dump(mode="json")}}))
    monkeypatch.setenv("ENCLAVE_CONFIG", str(tmp_path / "enclave.yaml"))
    run = data_dir_cli(tmp_path, monkeypatch, embedder)
    directory = LdapDirectory(ldap)
    alice, bob = directory.lookup("alice"), directory.lookup("bob")  # as sign-in maps them
    assert isinstance(alice, DirectoryAccount) and isinstance(bob, DirectoryAccount)
    alice_groups, bob_groups = alice.groups, bob.groups
    assert "finance-docs" in alice_groups and "finance-docs" not in bob_groups and "hr-docs" in bob_groups

    texts = {
        "budget.md": "# Budget\n\nThe medlar budget for next year is 40,000 euros.\n",
        "rota.md": "# Rota\n\nThe medlar rota of the HR team.\n",
        "contract.md": "# Contract\n\nThe medlar contractors sign here.\n",
        "bonus.md": "# Bonus\n\nThe medlar bonus list, kept from finance.\n",
        "note.md": "# Note\n\nA medlar note for alice alone.\n",
    }
    for name, text in texts.items():
        (samba.share_dir / name).write_text(text, encoding="utf-8")
    dacls = {
        "budget.md": [(ACCESS_ALLOWED, FULL, SYSTEM), (ACCESS_ALLOWED, READ, SIDS["finance-readers"])],
        "rota.md": [(ACCESS_ALLOWED, READ, SIDS["hr"])],  # a sambaSID group
        "contract.md": [(ACCESS_ALLOWED, READ, CONTRACTORS)],  # the mapping file's
        # All staff but finance: denied to finance, so to no group (finance are staff too).
        "bonus.md": [
            (ACCESS_DENIED, READ, SIDS["finance-readers"]),
            (ACCESS_ALLOWED, READ, SIDS["all-staff"]),
        ],
        "note.md": [(ACCESS_ALLOWED, READ, SIDS["alice"])],  # a user's SID: no group
    }
    for name, aces in dacls.items():
        samba.set_dacl(name, aces)
    mapping = tmp_path / "sids.yaml"
    mapping.write_text(f"{CONTRACTORS}: [contractors]\n", encoding="utf-8")
    credentials = samba.credentials(tmp_path / "smb.cred")
    add = ("sources", "add", "files", "--location", f"smb://127.0.0.1:{samba.port}/{samba.SHARE}",
           "--credentials-file", str(credentials), "--groups", "from-source", "--group-map", str(mapping))  # fmt: skip
    added = run(*add, "--sid-groups", "both")
    assert added.exit_code == 0, added.output

    code, first = sync(run, "files")
    assert code == 0 and first["result"] == "ok", first
    rows = {row["path"]: row for row in first["documents"]["added"]}
    assert {path: row["groups"] for path, row in rows.items()} == {
        "budget.md": ["finance-docs"],
        "rota.md": ["hr-docs"],
        "contract.md": ["contractors"],
    }
    skipped = {row["path"]: row["reason"] for row in first["documents"]["skipped"]}
    assert f"deny reading to sid:{SIDS['finance-readers']} while letting others read" in skipped["bonus.md"]
    assert "no Enclave group may read it" in skipped["note.md"]
    assert first["mirror"]["unmapped"] == [f"sid:{SIDS['alice']}"]
    assert retrieves(tmp_path, "medlar budget", alice_groups) == {"budget.md"}
    assert retrieves(tmp_path, "medlar budget", bob_groups) == {"rota.md"}
    everyone_here = alice_groups + bob_groups + ("staff-docs", "finance-docs")
    assert not {"bonus.md", "note.md"} & retrieves(tmp_path, "medlar bonus note", everyone_here)

    # Finance loses the budget and HR gains it at the source: moved at the next sync, with no
    # byte fetched or chunk embedded again.
    samba.set_dacl("budget.md", [(ACCESS_ALLOWED, FULL, SYSTEM), (ACCESS_ALLOWED, READ, SIDS["hr"])])
    code, second = sync(run, "files")
    assert code == 0 and second["result"] == "ok", second
    assert second["mirror"]["regrouped"] == ["budget.md"] and second["mirror"]["bytes_fetched"] == 0
    assert second["ingest"]["chunks_embedded"] == 0 and second["ingest"]["chunks_added"] == 0
    (changed,) = second["documents"]["changed"]
    assert changed["path"] == "budget.md" and changed["groups"] == ["hr-docs"]
    assert changed["doc_id"] == rows["budget.md"]["doc_id"]
    assert "budget.md" not in retrieves(tmp_path, "medlar budget", alice_groups)
    assert retrieves(tmp_path, "medlar budget", bob_groups) == {"budget.md", "rota.md"}

    # The directory down: the sync fails, names why, and no one's access changes, not even that
    # of the file whose DACL changed meanwhile.
    samba.set_dacl("budget.md", [(ACCESS_ALLOWED, READ, SIDS["finance-readers"])])
    slapd.stop()
    try:
        code, failed = sync(run, "files")
    finally:
        slapd.start()
    assert code == 1 and failed["result"] == "failed"
    assert (
        "the directory cannot say whose SID" in failed["reason"] and "nothing was removed" in failed["reason"]
    )
    assert retrieves(tmp_path, "medlar budget", bob_groups) == {"budget.md", "rota.md"}
    assert retrieves(tmp_path, "medlar budget", alice_groups) == set()
    code, back = sync(run, "files")
    assert code == 0 and [row["path"] for row in back["documents"]["changed"]] == ["budget.md"]
    assert retrieves(tmp_path, "medlar budget", alice_groups) == {"budget.md"}


def test_sources_add_refuses_the_directory_without_auth_ldap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, embedder: Any
) -> None:
    run = data_dir_cli(tmp_path, monkeypatch, embedder)
    credentials = tmp_path / "smb.cred"
    credentials.write_text("username=u\npassword=p\n")
    credentials.chmod(0o600)
    added = run(
        "sources", "add", "files", "--location", "smb://fs/docs", "--credentials-file", str(credentials),
        "--groups", "from-source", "--sid-groups", "directory",
    )  # fmt: skip
    assert added.exit_code == 1 and "auth.ldap is not set" in added.output
    assert "files" not in run("sources", "list").output
