"""Where a synced document is shown to live (ingest.sources.shown_location) and how a mirror path
is mapped to it (enclave.sources.SourceLocations), from the location each sync records."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from core.types import Citation
from enclave.sources import SourceLocations
from ingest.sources import shown_location
from ui.markup import citation_markdown


@pytest.mark.parametrize(
    ("location", "path", "shown"),
    [
        ("smb://fileserver/finance", "Budgets/2026.xlsx", "\\\\fileserver\\finance\\Budgets\\2026.xlsx"),
        ("smb://fileserver/finance/Teams", "a b.docx", "\\\\fileserver\\finance\\Teams\\a b.docx"),
        (
            "smb://fileserver:1445/finance",
            "Budgets/a b.xlsx",
            "smb://fileserver:1445/finance/Budgets/a%20b.xlsx",
        ),
        (
            "https://dav.example/remote.php/dav/files/x/",
            "Budgets/2026.xlsx",
            "https://dav.example/remote.php/dav/files/x/Budgets/2026.xlsx",
        ),
        ("https://u:secret@dav.example:8443/d/", "a.md", "https://dav.example:8443/d/a.md"),
        ("imaps://mail.example:993", "INBOX/42.eml", "imap://mail.example/INBOX;UID=42"),
        (
            "imap://mail.example:1143",
            "Team/Rotas/7.eml#rota.txt",
            "imap://mail.example:1143/Team/Rotas;UID=7#rota.txt",
        ),
        ("/srv/docs", "hr/leave.md", None),
    ],
)
def test_shown_location(location: str, path: str, shown: str | None) -> None:
    assert shown_location(location, path) == shown
    assert "secret" not in (shown or "")


def state(folder: Path, location: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "mirror-state.json").write_text(
        json.dumps({"format": 1, "location": location, "listed": 0, "entries": {}})
    )


def test_a_mirror_path_is_shown_at_the_location_its_last_sync_recorded(tmp_path: Path) -> None:
    sources = tmp_path / "sources"
    state(sources / "finance-share", "smb://fileserver/finance")
    locate = SourceLocations(sources)
    mirror = (sources / "finance-share" / "mirror").resolve()
    assert locate(str(mirror / "Budgets" / "2026.xlsx")) == "\\\\fileserver\\finance\\Budgets\\2026.xlsx"
    # Not a source's mirror, or a source never synced: nothing to show beyond the file's name.
    assert locate(str(tmp_path / "uploads" / "a.md")) is None
    assert locate(str(sources / "never" / "mirror" / "a.md")) is None
    assert locate("policy.md") is None

    # A sync from a new location changes what is shown, with nothing ingested again.
    state(sources / "finance-share", "smb://fs2/finance")
    os.utime(sources / "finance-share" / "mirror-state.json", ns=(1, 1))
    assert locate(str(mirror / "Budgets" / "2026.xlsx")) == "\\\\fs2\\finance\\Budgets\\2026.xlsx"


def test_the_chat_shows_the_location_in_full_and_otherwise_the_file_name() -> None:
    mirror = "/srv/enclave/var/sources/finance-share/mirror/Budgets/2026.xlsx"
    synced = Citation(
        1, "d:1", "d", mirror, "Budget", "", None, "", "\\\\fileserver\\finance\\Budgets\\2026.xlsx"
    )
    shown = citation_markdown(synced)
    assert "`\\\\fileserver\\finance\\Budgets\\2026.xlsx`" in shown and "/srv/enclave" not in shown
    local = Citation(1, "d:1", "d", "/srv/docs/hr/leave.md", "Leave", "", None, "")
    assert "`leave.md`" in citation_markdown(local) and "/srv/docs" not in citation_markdown(local)
