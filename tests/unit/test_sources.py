"""What every source shares: which entries a selection keeps, which names a mirror refuses, the
credentials file, and the mtime a mirrored copy gets from its marker."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import ConfigError
from ingest.sources import Entry, Selection, mirror_mtime_ns, path_problem, read_credentials


def kept(selection: Selection, *paths: str) -> list[str]:
    entries, _ = selection.apply([Entry(p, 10, "m") for p in paths])
    return [e.path for e in entries]


def test_patterns_without_a_slash_match_any_name_on_the_path() -> None:
    selection = Selection(include=("*.pdf",), exclude=("archive", "~$*"))
    assert kept(
        selection, "a.pdf", "hr/B.PDF", "hr/archive/old.pdf", "hr/~$lock.pdf", "notes.txt", "x.pdf.txt"
    ) == ["a.pdf", "hr/B.PDF"]


def test_patterns_with_a_slash_match_from_the_top() -> None:
    selection = Selection(include=("hr/**", "*/public/*.md"))
    assert kept(
        selection, "hr/a.txt", "hr/x/y/z.txt", "it/hr/a.txt", "it/public/a.md", "it/public/x/a.md"
    ) == [
        "hr/a.txt",
        "hr/x/y/z.txt",
        "it/public/a.md",
    ]
    assert kept(Selection(exclude=("**/drafts/**",)), "drafts/a", "x/drafts/b", "x/draftsman") == [
        "x/draftsman"
    ]


def test_hidden_names_are_left_out_and_a_size_limit_is_reported() -> None:
    entries, skipped = Selection(max_bytes=100).apply(
        [Entry(".git/config", 5, "m"), Entry("a/.DS_Store", 5, "m"), Entry("big.bin", 2 << 20, "m")]
    )
    assert entries == []
    assert skipped == [("big.bin", "2.0 MiB is over the source's size limit of 100 bytes")]


@pytest.mark.parametrize(
    "path", ["../etc/passwd", "a/../../b", "/etc/passwd", "a//b", "./a", "", "a/\0b", "x" * 256]
)
def test_a_name_that_would_leave_the_mirror_is_refused(path: str) -> None:
    assert path_problem(path) is not None
    entries, skipped = Selection().apply([Entry(path, 1, "m")])
    assert entries == [] and skipped[0][0] == path and skipped[0][1].startswith("cannot be mirrored: ")


def test_ordinary_names_pass() -> None:
    for path in ("a", "hr/policy v2 (final).docx", "INBOX/1234.eml", "ünïcode/名前.txt", "x" * 255):
        assert path_problem(path) is None


def test_the_credentials_file(tmp_path: Path) -> None:
    path = tmp_path / "share.cred"
    path.write_text("# the file server\nusername = svc-enclave\npassword=p=ss word \ndomain=CORP\n")
    path.chmod(0o600)
    credentials = read_credentials(path)
    assert (credentials.username, credentials.password, credentials.domain) == (
        "svc-enclave",
        "p=ss word",
        "CORP",
    )
    assert "p=ss" not in repr(credentials)

    path.chmod(0o644)
    with pytest.raises(ConfigError, match=f"readable by every user: chmod 600 {path}"):
        read_credentials(path)
    path.chmod(0o600)
    path.write_text("user=a\npasswd=b\n")
    with pytest.raises(ConfigError, match="line 2: expected username=, password= or domain="):
        read_credentials(path)
    path.write_text("username=a\n")
    with pytest.raises(ConfigError, match="needs a username= and a password= line"):
        read_credentials(path)
    with pytest.raises(ConfigError, match="cannot be read"):
        read_credentials(tmp_path / "missing.cred")


def test_a_copy_is_dated_by_its_source_to_the_second_and_by_its_marker_below() -> None:
    modified = 1_750_000_123_456_789_000
    a = mirror_mtime_ns(Entry("a", 1, '"etag-1"', modified_ns=modified))
    assert a == mirror_mtime_ns(Entry("b", 1, '"etag-1"', modified_ns=modified))  # the marker decides
    assert a // 10**9 == modified // 10**9
    assert a != mirror_mtime_ns(Entry("a", 1, '"etag-2"', modified_ns=modified))
    assert 0 <= mirror_mtime_ns(Entry("a", 1, "7:1234")) < 10**9  # no time from the source
