"""`enclave sources add|list|show|sync|remove` on the command line with no web UI running: the sync
runs in the command's own process (Typer's CliRunner; the real model, real Chroma, a real smbd).

A folder source and an SMB share are added and synced; their documents reach the index with the
source's groups, and each sync writes an audit record naming every document added, changed,
moved and removed with its id and content hash, and the chain verifies. A file deleted at a
reachable source leaves the index at the next sync; a source that cannot be reached, or that is
emptied beyond min_ratio, is marked failed with the reason and removes nothing."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result

from core.settings import load_settings
from enclave import wiring
from tests.support.cli import data_dir_cli
from tests.support.samba import SambaServer, running_samba

pytestmark = pytest.mark.slow

Run = Callable[..., Result]


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, embedder: Any) -> Run:
    return data_dir_cli(tmp_path, monkeypatch, embedder)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write(folder: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text, encoding="utf-8")


def docs(run: Run) -> dict[str, dict[str, Any]]:
    listed = run("docs", "list", "--json")
    assert listed.exit_code == 0, listed.output
    return {d["doc_id"]: d for d in json.loads(listed.stdout)}


def sync(run: Run, name: str) -> tuple[int, dict[str, Any]]:
    result = run("sources", "sync", name, "--json")
    return result.exit_code, json.loads(result.stdout)


def state(run: Run, name: str) -> dict[str, Any]:
    listed = run("sources", "list", "--json")
    assert listed.exit_code == 0, listed.output
    return next(s for s in json.loads(listed.stdout) if s["name"] == name)


def audit_records(tmp_path: Path, event: str = "source_sync") -> list[Any]:
    log = wiring.build_audit(load_settings(None, data_dir=tmp_path / "var"))
    return [r for r in reversed(log.last(1000)) if r.event == event]


def by_path(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {row["path"]: row for row in rows}


FILES = {
    "hr/leave.md": "# Leave\n\nEmployees get 27 days of annual leave per year.\n",
    "parking.md": "# Parking\n\nVisitors park on level two of the blue car park.\n",
    "canteen.md": "# Canteen\n\nThe canteen serves lentil soup on Tuesdays.\n",
}


def test_a_folder_source_synced_from_the_command_line(run: Run, tmp_path: Path) -> None:
    share = tmp_path / "share"
    write(share, FILES)
    added = run("sources", "add", "handbook", "--location", "share", "--groups", "staff", "--schedule", "1h")
    assert added.exit_code == 0, added.output
    assert f"folder {share}" in added.output  # the relative path kept absolute

    code, report = sync(run, "handbook")
    assert code == 0 and report["result"] == "ok", report
    added_rows = by_path(report["documents"]["added"])
    assert set(added_rows) == set(FILES)
    for name, row in added_rows.items():
        assert row["sha256"] == sha256(share / name) and row["doc_id"] == row["sha256"][:32]
        assert row["groups"] == ["staff"]
    indexed = docs(run)
    assert {row["doc_id"] for row in added_rows.values()} == set(indexed)
    assert all(d["groups"] == ["staff"] for d in indexed.values())

    # The audit record says who started it and what came in, as the report does.
    (record,) = audit_records(tmp_path)
    assert record.user.startswith("cli:") and record.data["started_by"]["via"] == "command line"
    assert record.data["source"] == "handbook" and by_path(record.data["added"]) == added_rows
    assert report["audit_id"] == record.id

    # Changed, moved and deleted at the source: each reaches the index at the next sync.
    old_leave = sha256(share / "hr/leave.md")
    parking = sha256(share / "parking.md")
    (share / "hr/leave.md").write_text(
        "# Leave\n\nEmployees get 28 days of annual leave.\n", encoding="utf-8"
    )
    (share / "parking.md").rename(share / "hr" / "parking.md")
    (share / "canteen.md").unlink()
    canteen_id = added_rows["canteen.md"]["doc_id"]
    code, report = sync(run, "handbook")
    assert code == 0, report
    changes = report["documents"]
    (changed,) = changes["changed"]
    assert changed["path"] == "hr/leave.md" and changed["previous_sha256"] == old_leave
    assert changed["sha256"] == sha256(share / "hr/leave.md")
    (moved,) = changes["moved"]
    assert (moved["from"], moved["path"], moved["sha256"]) == ("parking.md", "hr/parking.md", parking)
    (removed,) = changes["removed"]
    assert removed == {
        "path": "canteen.md",
        "doc_id": canteen_id,
        "sha256": removed["sha256"],
        "document_removed": True,
    }
    assert removed["sha256"].startswith(canteen_id)
    assert canteen_id not in docs(run) and len(docs(run)) == 2
    assert by_path(audit_records(tmp_path)[-1].data["removed"]) == {"canteen.md": removed}

    # Emptied beyond min_ratio: taken for an outage, nothing removed, marked failed with the reason.
    for path in share.rglob("*.md"):
        path.unlink()
    before = docs(run)
    result = run("sources", "sync", "handbook")
    assert result.exit_code == 1
    assert "lists 0 files where it listed 2" in result.output and "nothing was removed" in result.output
    assert docs(run) == before
    failed = state(run, "handbook")
    assert failed["state"] == "failed" and "lists 0 files where it listed 2" in failed["reason"]
    assert failed["documents"] == 2 and failed["last_ok_at"] is not None
    assert audit_records(tmp_path)[-1].error is not None

    assert "enclave sources sync handbook --allow-shrink" in failed["reason"]

    shown = run("sources", "show", "handbook")
    assert shown.exit_code == 0 and "state: failed" in shown.output, shown.output
    # The files really were deleted: the administrator says so, once.
    code, report = sync(run, "handbook")
    assert code == 1 and report["result"] == "failed"  # still refused without it
    result = run("sources", "sync", "handbook", "--allow-shrink")
    assert result.exit_code == 0, result.output
    assert docs(run) == {} and state(run, "handbook")["documents"] == 0
    assert len(audit_records(tmp_path)[-1].data["removed"]) == 2
    assert audit_records(tmp_path)[-1].data["allow_shrink"] is True
    verified = run("audit", "verify")
    assert verified.exit_code == 0 and "audit log intact" in verified.output, verified.output


def test_an_smb_source_that_cannot_be_reached_is_marked_failed_and_removes_nothing(
    run: Run, tmp_path: Path, samba: SambaServer
) -> None:
    write(samba.share_dir, FILES)
    credentials = samba.credentials(tmp_path / "share.cred")
    location = f"smb://127.0.0.1:{samba.port}/{samba.SHARE}"
    added = run(
        "sources", "add", "files", "--location", location, "--credentials-file", str(credentials), "--groups", "hr",
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    code, report = sync(run, "files")
    assert code == 0 and len(report["documents"]["added"]) == 3, report
    indexed = docs(run)
    assert len(indexed) == 3 and all(d["groups"] == ["hr"] for d in indexed.values())

    samba.stop()
    (samba.share_dir / "canteen.md").unlink()  # a deletion the outage must not pass on
    result = run("sources", "sync", "files")
    assert result.exit_code == 1
    assert f"smb://127.0.0.1:{samba.port}/docs" in result.output and "nothing was removed" in result.output
    assert docs(run) == indexed
    failed = state(run, "files")
    assert failed["state"] == "failed" and location in failed["reason"]
    assert "password" not in json.dumps(failed) and samba.password not in json.dumps(failed)

    samba.start()
    code, report = sync(run, "files")
    assert code == 0 and [r["path"] for r in report["documents"]["removed"]] == ["canteen.md"], report
    assert len(docs(run)) == 2 and state(run, "files")["state"] == "ok"
    for record in audit_records(tmp_path):
        assert samba.password not in json.dumps(record.data)


def test_sources_are_removed_with_their_documents(run: Run, tmp_path: Path) -> None:
    write(tmp_path / "a", {"one.md": "# One\n\nThe first handbook page.\n"})
    write(tmp_path / "b", {"two.md": "# Two\n\nThe second handbook page.\n"})
    for name in ("a", "b"):
        assert run("sources", "add", name, "--location", name, "--groups", "staff").exit_code == 0
        assert sync(run, name)[0] == 0
    assert len(docs(run)) == 2
    removed = run("sources", "remove", "a")
    assert removed.exit_code == 0 and "1 files left the index" in removed.output, removed.output
    assert [d["paths"][0].endswith("two.md") for d in docs(run).values()] == [True]
    assert not (tmp_path / "var" / "sources" / "a").exists()
    assert [s["name"] for s in json.loads(run("sources", "list", "--json").stdout)] == ["b"]
    (record,) = audit_records(tmp_path, "source_removed")
    assert [r["path"] for r in record.data["removed"]] == ["one.md"]


def test_bad_input_is_refused_naming_it(run: Run, tmp_path: Path) -> None:
    (tmp_path / "share").mkdir()
    open_cred = tmp_path / "open.cred"
    open_cred.write_text("username=u\npassword=p\n")
    os.chmod(open_cred, 0o644)
    cases = [
        (["--location", "share"], "give the groups"),
        (["--location", "share", "--groups", "from-source,staff"], "so it goes alone"),
        (["--location", "share", "--groups", "staff", "--everyone-group", "all"], "not of fixed groups"),
        (["--location", "smb://files/share", "--groups", "a"], "needs a credentials_file"),
        (["--location", "smb://files", "--groups", "a", "--credentials-file", str(open_cred)], "smb://server/share"),
        (["--location", "smb://files/s", "--groups", "a", "--credentials-file", str(open_cred)], "chmod 600"),
        (["--location", "share", "--groups", "a", "--schedule", "daily"], "schedule 'daily'"),
        (["--location", "share", "--groups", "a", "--encrypt"], "encrypt is a setting of smb sources"),
    ]  # fmt: skip
    for args, says in cases:
        result = run("sources", "add", "docs", *args)
        assert result.exit_code == 1 and says in result.output, (args, result.output)
    assert run("sources", "add", "Bad", "--location", "share", "--groups", "a").exit_code == 1
    assert not (tmp_path / "var" / "sources.yaml").exists()  # nothing kept of a refused source

    assert run("sources", "add", "docs", "--location", "share", "--groups", "a").exit_code == 0
    again = run("sources", "add", "docs", "--location", "share", "--groups", "b")
    assert again.exit_code == 1 and "--replace" in again.output
    assert run("sources", "add", "docs", "--location", "share", "--groups", "b", "--replace").exit_code == 0
    assert state(run, "docs")["groups"] == ["b"]
    unknown = run("sources", "sync", "nope")
    assert unknown.exit_code == 1 and "no source named 'nope'" in unknown.output

    config = tmp_path / "enclave.yaml"
    config.write_text(
        f"sources:\n  docs:\n    kind: folder\n    location: {tmp_path / 'share'}\n    groups: [c]\n"
    )
    twice = run("--config", str(config), "sources", "list")
    assert twice.exit_code == 1, twice.output
    assert "source 'docs' is defined twice" in twice.output and "sources.yaml" in twice.output


def test_an_acl_file_gives_the_source_s_folders_their_groups(run: Run, tmp_path: Path) -> None:
    share = tmp_path / "share"
    write(share, {"policy.md": "# Policy\n\nThe dress code is smart casual.\n",
                  "finance/budget.md": "# Budget\n\nThe crane budget is 4.2 million euros.\n"})  # fmt: skip
    acl = tmp_path / "acl.yaml"  # folders relative to the source's top, not to the file
    acl.write_text(".: [staff]\nfinance: [finance]\n", encoding="utf-8")
    assert run("sources", "add", "corp", "--location", "share", "--acl", str(acl)).exit_code == 0
    code, report = sync(run, "corp")
    assert code == 0, report
    groups = {row["path"]: row["groups"] for row in report["documents"]["added"]}
    assert groups == {"policy.md": ["staff"], "finance/budget.md": ["finance"]}
    assert sorted(d["groups"] for d in docs(run).values()) == [["finance"], ["staff"]]


@pytest.fixture
def samba() -> Iterator[SambaServer]:
    with running_samba() as server:
        yield server
