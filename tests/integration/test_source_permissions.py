"""`groups: from-source`: each file of a folder source is ingested with the groups its own POSIX
permissions give (owner group, ACL groups, "other"), set with the real setfacl/chgrp on real
files (tests run as root: groups are made with groupadd and removed after); each file of an SMB
share with the SIDs its security descriptor lets read, as the real smbd (tests/support/samba.py)
gives them for the POSIX ACL underneath (a Unix group is S-1-22-2-<gid>), mapped through a group
mapping file. A permission change at the source moves the document between access classes at
the next sync: nothing fetched again, nothing re-embedded, and the group that lost it no longer
retrieves it."""

from __future__ import annotations

import grp
import json
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result

from core.settings import load_settings
from enclave import wiring
from ingest.sources import EVERYONE, GroupMap, LocalConnector, mirror_groups, sync_mirror
from ingest.sources.permissions import ACCESS_ALLOWED, ACCESS_DENIED, sid_readers
from tests.support.cli import data_dir_cli
from tests.support.samba import SambaServer, running_samba
from tests.support.sources import Interrupted

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("setfacl") is None, reason="acl (setfacl) is not installed"),
]

Run = Callable[..., Result]


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, embedder: Any) -> Run:
    return data_dir_cli(tmp_path, monkeypatch, embedder)


@pytest.fixture
def groups() -> Iterator[tuple[str, str]]:
    """Two real local groups, made for this test and removed after it."""
    tag = uuid.uuid4().hex[:6]
    made = (f"enc-a-{tag}", f"enc-b-{tag}")
    for name in made:
        subprocess.run(["groupadd", name], check=True)
    try:
        yield made
    finally:
        for name in made:
            subprocess.run(["groupdel", name], check=False)


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


def sync(run: Run, name: str) -> dict[str, Any]:
    result = run("sources", "sync", name, "--json")
    report = json.loads(result.stdout)
    assert result.exit_code == 0 and report["result"] == "ok", result.output
    return report


def retrieves(tmp_path: Path, query: str, group: str) -> set[str]:
    """The titles of the documents a member of `group` (only) retrieves for `query`."""
    store = wiring.build_store(load_settings(None, data_dir=tmp_path / "var"))
    try:
        return {hit.chunk.source.rsplit("/", 1)[-1] for hit in store.search_lexical(query, 10, [group])}
    finally:
        store.lexical.close()


def test_posix_readers_from_the_acl_and_the_mode(tmp_path: Path, groups: tuple[str, str]) -> None:
    a, b = groups
    share = tmp_path / "share"
    share.mkdir()
    for name in ("acl.md", "mode.md", "closed.md"):
        (share / name).write_text(f"# {name}\n", encoding="utf-8")
    (share / "acl.md").chmod(0o600)
    sh("setfacl", "-m", f"g:{a}:r,g:{b}:-", str(share / "acl.md"))
    (share / "mode.md").chmod(0o644)
    sh("chgrp", b, str(share / "mode.md"))
    (share / "closed.md").chmod(0o600)
    entries = {e.path: e for e in LocalConnector(share, permissions=True).list()}
    assert entries["acl.md"].readers == (f"group:{a}",)
    assert entries["mode.md"].readers == (EVERYONE, f"group:{b}")
    assert entries["closed.md"].readers == ()
    # The mask limits named groups and the owner group: a mask of no permissions lets none read.
    sh("setfacl", "-m", "m::-", str(share / "acl.md"))
    assert LocalConnector(share, permissions=True).list()[0].readers == ()
    # Without permissions asked, none are read.
    assert all(e.readers is None for e in LocalConnector(share).list())

    mapping = tmp_path / "map.yaml"
    mapping.write_text(f"{b}: [finance, audit]\nS-1-5-21-1-2-3-1104: hr\n", encoding="utf-8")
    group_map = GroupMap.load(mapping, everyone="staff")
    assert group_map.groups([f"group:{a}", f"group:{b}", EVERYONE]) == (
        tuple(sorted([a, "audit", "finance", "staff"])),
        [],
    )
    assert group_map.groups(["sid:S-1-5-21-1-2-3-1104", "sid:S-1-5-21-9", "group:4242"]) == (
        ("hr",),
        ["sid:S-1-5-21-9", "group:4242"],
    )
    assert GroupMap.load(None).groups([EVERYONE]) == ((), [])


def test_the_mirror_keeps_the_sources_permissions_even_when_a_fetch_fails(
    tmp_path: Path, groups: tuple[str, str]
) -> None:
    """New bytes that cannot be fetched keep the last good copy, but under the groups the source
    gives now: a group the source no longer lets read it must not keep it. And a revocation of
    most files at once is no shrunk listing: they are listed, only no group may read them."""
    a, b = groups
    share, mirror, state = tmp_path / "share", tmp_path / "mirror", tmp_path / "state.json"
    share.mkdir()
    for n in range(4):
        (share / f"f{n}.md").write_text(f"# File {n}\n", encoding="utf-8")
        (share / f"f{n}.md").chmod(0o600)
        sh("setfacl", "-m", f"g:{a}:r", str(share / f"f{n}.md"))
    group_map = GroupMap.load(None)

    def mirrored(connector: Any) -> Any:
        return sync_mirror(connector, mirror, state, min_ratio=0.5, group_map=group_map)

    mirrored(LocalConnector(share, permissions=True))
    assert mirror_groups(state) == {f"f{n}.md": (a,) for n in range(4)}

    (share / "f0.md").write_text("# File 0, second version\n", encoding="utf-8")
    sh("setfacl", "-x", f"g:{a}", str(share / "f0.md"))
    sh("setfacl", "-m", f"g:{b}:r", str(share / "f0.md"))
    # Gone between the listing and its fetch: the fetch fails, the old copy stays.
    result = mirrored(Interrupted(LocalConnector(share, permissions=True), (share / "f0.md").unlink))
    assert [path for path, _ in result.failed] == ["f0.md"]
    assert (mirror / "f0.md").read_text(encoding="utf-8") == "# File 0\n"
    assert mirror_groups(state)["f0.md"] == (b,)

    for n in range(1, 4):
        (share / f"f{n}.md").chmod(0o600)  # with an ACL, chmod sets the mask: no group reads
    result = mirrored(LocalConnector(share, permissions=True))
    assert result.removed == ["f0.md", "f1.md", "f2.md", "f3.md"]
    assert len(result.skipped) == 3 and not any((mirror / f"f{n}.md").exists() for n in range(4))


def test_a_group_map_that_is_not_a_mapping_is_named(tmp_path: Path) -> None:
    from core.errors import ConfigError

    mapping = tmp_path / "map.yaml"
    mapping.write_text("finance: [1, 2]\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"map.yaml: 'finance' must map to an Enclave group"):
        GroupMap.load(mapping)


def test_permission_changes_at_the_source_move_documents_without_reembedding(
    run: Run, tmp_path: Path, groups: tuple[str, str]
) -> None:
    a, b = groups
    share = tmp_path / "share"
    share.mkdir()
    (share / "budget.md").write_text(
        "# Budget\n\nThe marzipan budget for next year is 40,000 euros.\n", encoding="utf-8"
    )
    (share / "parking.md").write_text(
        "# Parking\n\nVisitors park their marzipan vans on level two.\n", encoding="utf-8"
    )
    (share / "secret.md").write_text(
        "# Secret\n\nThe marzipan recipe stays with the chef.\n", encoding="utf-8"
    )
    (share / "budget.md").chmod(0o600)
    sh("setfacl", "-m", f"g:{a}:r", str(share / "budget.md"))  # group a may read it, by its ACL
    (share / "parking.md").chmod(0o644)  # every user may read it, and its owner group
    sh("chgrp", b, str(share / "parking.md"))
    (share / "secret.md").chmod(0o600)  # its owner alone: no group
    mapping = tmp_path / "map.yaml"
    mapping.write_text("root: []\n", encoding="utf-8")  # the owner group of a root's file gives none

    added = run(
        "sources", "add", "perms", "--location", "share", "--groups", "from-source",
        "--group-map", str(mapping), "--everyone-group", "staff",
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    first = sync(run, "perms")
    rows = {row["path"]: row for row in first["documents"]["added"]}
    assert set(rows) == {"budget.md", "parking.md"}
    assert rows["budget.md"]["groups"] == [a]
    assert rows["parking.md"]["groups"] == sorted([b, "staff"])
    (skipped,) = first["documents"]["skipped"]
    assert skipped["path"] == "secret.md" and "no Enclave group may read it" in skipped["reason"]
    assert retrieves(tmp_path, "marzipan budget", a) == {"budget.md"}
    assert retrieves(tmp_path, "marzipan budget", b) == {"parking.md"}
    assert retrieves(tmp_path, "marzipan", "staff") == {"parking.md"}

    # Group a loses the file, its owner group b gains it; parking loses "other". No byte changes.
    sh("setfacl", "-x", f"g:{a}", str(share / "budget.md"))
    sh("chgrp", b, str(share / "budget.md"))
    sh("setfacl", "-m", "g::r", str(share / "budget.md"))
    (share / "parking.md").chmod(0o640)
    second = sync(run, "perms")
    mirror = second["mirror"]
    assert mirror["bytes_fetched"] == 0 and mirror["regrouped"] == ["budget.md", "parking.md"]
    assert second["ingest"]["chunks_embedded"] == 0 and second["ingest"]["chunks_added"] == 0
    changed = {row["path"]: row for row in second["documents"]["changed"]}
    assert changed["budget.md"]["groups"] == [b] and changed["parking.md"]["groups"] == [b]
    assert changed["budget.md"]["doc_id"] == rows["budget.md"]["doc_id"]
    assert retrieves(tmp_path, "marzipan budget", a) == set()
    assert retrieves(tmp_path, "marzipan budget", b) == {"budget.md", "parking.md"}
    assert retrieves(tmp_path, "marzipan", "staff") == set()

    # Made unreadable to every group (chmod on a file with an ACL sets its mask): it leaves the index.
    (share / "budget.md").chmod(0o600)
    third = sync(run, "perms")
    assert [row["path"] for row in third["documents"]["removed"]] == ["budget.md"]
    assert retrieves(tmp_path, "marzipan budget", b) == {"parking.md"}


def test_a_sid_that_maps_to_no_group_is_reported_once(run: Run, tmp_path: Path) -> None:
    """A folder's nameless group (a gid without a name, as a SID without a mapping) gives no
    group, and the sync names it once, whatever the number of files it is on."""
    share = tmp_path / "share"
    share.mkdir()
    for n in range(3):
        path = share / f"note{n}.md"
        path.write_text(f"# Note {n}\n\nA note about quince jam number {n}.\n", encoding="utf-8")
        path.chmod(0o600)
        sh("setfacl", "-m", "g:48213:r", str(path))
    (share / "note0.md").chmod(0o604)  # also every user: staff
    added = run(
        "sources", "add", "nameless", "--location", "share", "--groups", "from-source",
        "--everyone-group", "staff",
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    result = run("sources", "sync", "nameless", "--json")
    report = json.loads(result.stdout)
    assert report["mirror"]["unmapped"] == ["group:48213"]
    assert [row["path"] for row in report["documents"]["added"]] == ["note0.md"]
    shown = run("sources", "list", "--json")
    (state,) = json.loads(shown.stdout)
    assert state["last"]["unmapped"] == ["group:48213"]


def test_sid_readers_take_allows_less_denies() -> None:
    """An SMB DACL as (type, flags, mask, SID): allows of read, less denies of read; an ACE that
    only passes to children, one without read, and the system's own SID do not count. A deny
    that leaves others reading is kept (`deny:`): the file then goes to no group, since the
    denied SID's members may hold the others' groups (tests/integration/test_source_sids.py)."""
    read, write, inherit_only = 0x120089, 0x000116, 0x08
    dacl = [
        (ACCESS_DENIED, 0, read, "S-1-5-21-1-2-3-1105"),
        (ACCESS_ALLOWED, 0, read, "S-1-5-21-1-2-3-1104"),
        (ACCESS_ALLOWED, 0, read, "S-1-5-21-1-2-3-1105"),
        (ACCESS_ALLOWED, 0, write, "S-1-5-21-1-2-3-1106"),
        (ACCESS_ALLOWED, inherit_only, read, "S-1-5-21-1-2-3-1107"),
        (ACCESS_ALLOWED, 0, 0x10000000, "S-1-5-18"),
        (ACCESS_ALLOWED, 0, 0x80000000, "S-1-5-11"),
    ]
    assert sid_readers(dacl) == ("deny:sid:S-1-5-21-1-2-3-1105", EVERYONE, "sid:S-1-5-21-1-2-3-1104")
    assert sid_readers(dacl[1:]) == (EVERYONE, "sid:S-1-5-21-1-2-3-1104", "sid:S-1-5-21-1-2-3-1105")
    assert sid_readers([*dacl, (ACCESS_DENIED, 0, read, "S-1-1-0")]) == ()
    assert sid_readers(None) == (EVERYONE,)  # no DACL: every user may
    assert sid_readers([]) == ()  # an empty one: no one


def test_an_smb_share_gives_each_file_the_groups_of_its_sids(
    run: Run, tmp_path: Path, groups: tuple[str, str], samba: SambaServer
) -> None:
    a, b = groups
    sid_a, sid_b = (f"S-1-22-2-{grp.getgrnam(g).gr_gid}" for g in groups)  # Samba's "Unix Group\<name>"
    budget = samba.share_dir / "budget.md"
    budget.write_text("# Budget\n\nThe quince budget for next year is 40,000 euros.\n", encoding="utf-8")
    memo = samba.share_dir / "memo.md"
    memo.write_text("# Memo\n\nThe quince harvest starts in October.\n", encoding="utf-8")
    for path in (budget, memo):
        path.chmod(0o600)
    sh("setfacl", "-m", f"g:{a}:r", str(budget))
    sh("setfacl", "-m", f"g:{b}:r", str(memo))
    mapping = tmp_path / "sids.yaml"
    mapping.write_text(f"{sid_a}: [finance]\n{sid_b}: [legal]\n", encoding="utf-8")
    credentials = samba.credentials(tmp_path / "smb.cred")
    added = run(
        "sources", "add", "files", "--location", f"smb://127.0.0.1:{samba.port}/{samba.SHARE}",
        "--credentials-file", str(credentials), "--groups", "from-source", "--group-map", str(mapping),
    )  # fmt: skip
    assert added.exit_code == 0, added.output

    first = sync(run, "files")
    rows = {row["path"]: row for row in first["documents"]["added"]}
    assert rows["budget.md"]["groups"] == ["finance"] and rows["memo.md"]["groups"] == ["legal"]
    # The owner's own SID (a user, not in the mapping file) is named once, not dropped unsaid.
    unmapped = first["mirror"]["unmapped"]
    assert len(unmapped) == 1 and unmapped[0].startswith("sid:S-1-5-21-"), unmapped
    assert retrieves(tmp_path, "quince budget", "finance") == {"budget.md"}
    assert retrieves(tmp_path, "quince budget", "legal") == {"memo.md"}

    # The budget's ACL now lets group b read it and not group a: moved, nothing fetched or embedded.
    sh("setfacl", "-x", f"g:{a}", str(budget))
    sh("setfacl", "-m", f"g:{b}:r", str(budget))
    second = sync(run, "files")
    assert second["mirror"]["regrouped"] == ["budget.md"] and second["mirror"]["bytes_fetched"] == 0
    assert second["ingest"]["chunks_embedded"] == 0
    assert retrieves(tmp_path, "quince budget", "finance") == set()
    assert retrieves(tmp_path, "quince budget", "legal") == {"budget.md", "memo.md"}


@pytest.fixture
def samba() -> Iterator[SambaServer]:
    with running_samba() as server:
        yield server
