"""Sources beside a running web UI (real processes: `enclave serve` on embedded Chroma, the
`enclave` command, a real smbd): `enclave sources sync` is carried out by the web UI over its
admin channel; the web UI syncs a source on its schedule by itself, and a file deleted at the
source leaves the index at the next scheduled sync; a restart of the web UI keeps each source's
state, and the schedule goes on from it. Results are read from the sources' state and the audit
log, never from how long anything took."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from core.settings import Settings
from enclave import wiring
from enclave.sources import source_states
from tests.support import samba as samba_support
from tests.support.samba import SambaServer
from tests.support.web_ui import WebUI, enclave, web_ui

pytestmark = pytest.mark.slow

WAIT_S = 240.0  # the most a test waits for the web UI to do something by itself


@dataclass
class Site:
    root: Path
    env: dict[str, str]
    web: WebUI
    samba: SambaServer

    @property
    def settings(self) -> Settings:
        return Settings(data_dir=self.root / "var")

    def enclave(self, *args: str) -> Any:
        return enclave(self.env, *args)

    def state(self, name: str) -> dict[str, Any]:
        return next(s for s in source_states(self.settings) if s["name"] == name)

    def records(self, source: str) -> list[Any]:
        log = wiring.build_audit(self.settings)
        return [
            r for r in reversed(log.last(10_000)) if r.event == "source_sync" and r.data["source"] == source
        ]

    def docs(self) -> dict[str, dict[str, Any]]:
        listed = self.enclave("docs", "list", "--json")
        assert listed.returncode == 0, listed.stderr
        return {Path(d["paths"][0]).name: d for d in json.loads(listed.stdout) if d["paths"]}


def wait_for(what: str, check: Callable[[], Any], web: WebUI) -> Any:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        assert web.process.poll() is None, web.log()[-3000:]
        time.sleep(1)
    raise AssertionError(f"the web UI did not {what} within {WAIT_S:.0f} s:\n{web.log()[-3000:]}")


@pytest.fixture(scope="module")
def site(models_cache: Path) -> Iterator[Site]:
    samba_support.require()
    # A short folder: the admin channel's socket path must fit a unix socket's 107 bytes.
    root = Path(tempfile.mkdtemp(prefix="enclave-sources-"))
    samba = SambaServer().start()
    try:
        import os

        env = {k: v for k, v in os.environ.items() if not k.startswith("ENCLAVE_")}
        env.update(
            {
                "ENCLAVE_DATA_DIR": str(root / "var"),
                "ENCLAVE_NETWORK__GUARD": "strict",
                "ENCLAVE_EMBEDDING__CACHE_DIR": str(models_cache),
                "ENCLAVE_INGEST__PARSE_TIMEOUT_S": "0",  # small runs parse in the web UI itself
            }
        )
        with web_ui(env, root / "serve.log") as web:
            site = Site(root, env, web, samba)
            yield site
            site.web.stop()
    finally:
        samba.close()
        shutil.rmtree(root, ignore_errors=True)


def test_an_smb_source_is_synced_by_the_web_ui_for_the_command_line(site: Site) -> None:
    share = site.samba.share_dir
    (share / "rota.md").write_text("# Rota\n\nThe night shift starts at 22:00 at berth 4.\n")
    (share / "gates.md").write_text("# Gates\n\nGate 3 closes at 18:00 on Sundays.\n")
    credentials = site.samba.credentials(site.root / "smb.cred")
    location = f"smb://127.0.0.1:{site.samba.port}/{site.samba.SHARE}"
    added = site.enclave(
        "sources", "add", "shifts", "--location", location, "--credentials-file", str(credentials),
        "--groups", "operations",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr

    done = site.enclave("sources", "sync", "shifts", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["started_by"]["via"] == "admin channel" and report["result"] == "ok"
    assert "`enclave sources sync` for root" in site.web.log()
    assert "INFO ingest.pipeline: [" in done.stderr  # its progress, replayed
    assert {r["path"] for r in report["documents"]["added"]} == {"rota.md", "gates.md"}
    assert site.docs()["rota.md"]["groups"] == ["operations"]

    # The share's server stopped: marked failed, saying why; nothing leaves the index.
    site.samba.stop()
    (share / "gates.md").unlink()
    try:
        failed = site.enclave("sources", "sync", "shifts")
        assert failed.returncode == 1
        assert location in failed.stderr and "nothing was removed" in failed.stderr
        assert set(site.docs()) == {"rota.md", "gates.md"}
        assert site.state("shifts")["state"] == "failed"
        (last,) = site.records("shifts")[-1:]
        assert last.error is not None and location in last.error
    finally:
        site.samba.start()
    assert site.enclave("sources", "sync", "shifts").returncode == 0
    assert set(site.docs()) == {"rota.md"}


def test_the_web_ui_syncs_a_source_on_its_schedule(site: Site) -> None:
    folder = site.root / "notices"
    folder.mkdir()
    (folder / "fire.md").write_text("# Fire drill\n\nThe fire drill is on the first Monday of the month.\n")
    (folder / "lunch.md").write_text("# Lunch\n\nLunch is served from 12:00 to 13:30.\n")
    (folder / "post.md").write_text("# Post\n\nThe post room opens at 08:00.\n")
    added = site.enclave(
        "sources", "add", "notices", "--location", str(folder), "--groups", "staff", "--schedule", "2s"
    )
    assert added.returncode == 0, added.stderr

    first = wait_for("sync the new source", lambda: site.records("notices"), site.web)[0]
    assert first.user == "schedule" and first.data["started_by"]["via"] == "schedule"
    assert {r["path"] for r in first.data["added"]} == {"fire.md", "lunch.md", "post.md"}
    state = wait_for("record the sync", lambda: (s := site.state("notices"))["state"] == "ok" and s, site.web)
    assert state["documents"] == 3 and state["last"]["started_by"]["user"] == "schedule"

    (folder / "lunch.md").unlink()

    def removed() -> list[dict[str, Any]]:
        return [row for r in site.records("notices") for row in r.data.get("removed", [])]

    (gone,) = wait_for("take the deletion at a scheduled sync", removed, site.web)
    assert gone["path"] == "lunch.md" and gone["document_removed"] is True
    assert "lunch.md" not in site.docs() and {"fire.md", "post.md"} <= set(site.docs())
    verified = site.enclave("audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_a_restart_keeps_each_sources_state(site: Site) -> None:
    folder = site.root / "manuals"
    folder.mkdir()
    (folder / "crane.md").write_text("# Crane\n\nThe crane is inspected every 90 days.\n")
    added = site.enclave(
        "sources", "add", "manuals", "--location", str(folder), "--groups", "staff", "--schedule", "1h"
    )
    assert added.returncode == 0, added.stderr
    wait_for("sync the hourly source once", lambda: site.state("manuals")["state"] == "ok", site.web)
    before = {name: site.state(name) for name in ("manuals", "shifts")}

    site.web.stop()
    with web_ui(site.env, site.root / "serve-again.log") as again:
        site.web = again
        after = {name: site.state(name) for name in ("manuals", "shifts")}
        for name in after:
            for key in ("state", "last", "last_ok_at", "documents", "next_run"):
                assert after[name][key] == before[name][key], (name, key)
        # The 2 s source syncs again after the restart; the hourly one waits for its hour.
        runs = len(site.records("notices"))
        wait_for(
            "sync the 2 s source after the restart", lambda: len(site.records("notices")) > runs + 1, again
        )
        assert len(site.records("manuals")) == 1
        assert site.state("manuals")["next_run"] == before["manuals"]["next_run"]
