"""The checks an upload passes before anything is kept (enclave/uploads.py), the boundary's rule
for a file slot (ui/boundary.py: only files this sign-in uploaded), and how the admin page shows
a source's location (ui/admin.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import IngestError
from core.settings import Settings
from enclave.uploads import Upload, check_groups, check_upload, name_problem
from ui.admin import shown_location
from ui.boundary import Event


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("", "not a file name"),
        ("..", "not a file name"),
        ("../../etc/passwd", "cannot hold '/'"),
        ("..\\boot.ini", "cannot hold '/' or '\\'"),
        ("a\x00b.md", "control character"),
        ("line\nbreak.md", "control character"),
        (".bashrc", "hidden"),
        (" leading.md", "space"),
        ("x" * 253 + ".md", "longer than 255 bytes"),
    ],
)
def test_a_name_that_could_leave_the_folder_or_hide_is_refused(name: str, why: str) -> None:
    problem = name_problem(name)
    assert problem is not None and why in problem


def test_ordinary_names_pass() -> None:
    assert name_problem("Übersicht 2026 (final).docx") is None
    assert name_problem("rota.md") is None


def test_groups_are_named_and_checked() -> None:
    assert check_groups("staff, hr,, hr") == ("hr", "staff")
    with pytest.raises(IngestError, match="give the groups"):
        check_groups(" , ")
    with pytest.raises(IngestError, match="'a: b' is not a group name"):
        check_groups("a: b")


def test_every_refused_file_is_named_with_its_reason(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "var")
    settings.ingest.max_file_mb = 1 / 1024
    (tmp_path / "ok.md").write_text("fine")
    (tmp_path / "big.txt").write_text("x" * 2000)
    (tmp_path / "tool.exe").write_bytes(b"MZ")
    files = [
        Upload("ok.md", tmp_path / "ok.md"),
        Upload("big.txt", tmp_path / "big.txt"),
        Upload("tool.exe", tmp_path / "tool.exe"),
        Upload("ok.md", tmp_path / "ok.md"),
        Upload("gone.md", tmp_path / "gone.md"),
    ]
    with pytest.raises(IngestError) as refused:
        check_upload(settings, "uploads", files, "hr", None)
    message = str(refused.value)
    assert message.startswith("Nothing was uploaded: 4 files are refused.")
    assert "'big.txt': it is 0.0 MiB, over the 0.000976562 MiB limit" in message
    assert "'tool.exe': type '.exe' is not one the ingest reads" in message
    assert "'ok.md': it is named twice in this upload" in message
    assert "'gone.md': the uploaded copy cannot be read" in message
    assert check_upload(settings, " uploads ", files[:1], "hr", None) == ("uploads", ("hr",))
    with pytest.raises(IngestError, match="Choose the files"):
        check_upload(settings, "uploads", [], "hr", None)


def _upload_event() -> Event:
    return Event(7, "admin_upload", ("files", "text", "text", "boolean"), False, True)


def test_a_file_slot_takes_only_files_this_sign_in_uploaded() -> None:
    mine = "/tmp/gradio/abc/rota.md"
    uploaded = {mine}.__contains__
    event = _upload_event()
    ok = {"path": mine, "meta": {"_type": "gradio.FileData"}, "orig_name": "../x", "size": 3, "url": None}
    assert event.check([[ok], "uploads", "hr", False], None, uploaded=uploaded) is None
    refused = [
        [{**ok, "path": "/etc/passwd"}],  # a server path
        [{**ok, "path": mine, "is_stream": True}],
        [{**ok, "extra": 1}],  # a key FileData has not
        [{**ok, "meta": {"_type": "gradio.ImageData"}}],
        [{**ok, "size": True}],
        [],  # no file at all
        "rota.md",
        {"path": "/etc/passwd"},
    ]
    for files in refused:
        why = event.check([files, "uploads", "hr", False], None, uploaded=uploaded)
        assert why is not None and "must be files you uploaded" in why, files
    # Without the caller's uploads (the default), nothing passes; a file anywhere else is refused.
    assert event.check([[ok], "uploads", "hr", False], None) is not None
    why = event.check([None, {"path": mine}, "hr", False], None, uploaded=uploaded)
    assert why is not None
    assert event.check([None, "uploads", "hr", "yes"], None, uploaded=uploaded) is not None


def test_locations_show_no_query_or_fragment() -> None:
    assert shown_location("/srv/docs") == "/srv/docs"
    assert shown_location("smb://files:445/share/hr") == "smb://files:445/share/hr"
    assert shown_location("https://cloud/remote.php/dav/files/x/?token=s3cret") == (
        "https://cloud/remote.php/dav/files/x/?…"
    )
    assert "s3cret" not in shown_location("https://user:s3cret@cloud/dav")
