"""Source connectors mirrored into a local folder, each against its real source: a folder on this
machine, Samba's smbd, a WsgiDAV server and Dovecot, started by the tests on 127.0.0.1.

For every kind: a first sync fetches everything, an unchanged one nothing, a changed file is
fetched again and only it, a renamed or moved file is taken from the mirror where the source
gives an identity, a deleted file leaves the mirror, the include/exclude patterns and the size
limit hold; a source stopped in the middle of a sync, or emptied, removes nothing and leaves the
mirror and its state as they were.
"""

from __future__ import annotations

import email
import email.message
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError

from core.errors import IngestError, SourceShrank, SourceUnavailable
from core.settings import Settings
from enclave import wiring
from ingest.sources import Connector, LocalConnector, MirrorResult, Selection, sync_mirror
from ingest.sources.imap import ImapConnector
from ingest.sources.mirror import STAGING
from ingest.sources.smb import SmbConnector
from ingest.sources.webdav import WebDavConnector
from tests.support import dovecot as dovecot_support
from tests.support import samba as samba_support
from tests.support.dovecot import DovecotServer
from tests.support.samba import SambaServer
from tests.support.sources import Interrupted, contents, snapshot
from tests.support.webdav import WebDavServer

MIN_RATIO = 0.5
BASE_TIME_NS = 1_750_000_000 * 1_000_000_000


@dataclass
class FileSource:
    """A source backed by a folder of this machine that the test writes into: the folder itself,
    or the folder a real server serves."""

    kind: str
    root: Path
    connect: Callable[[], Connector]
    stop: Callable[[], None]  # the source goes away: the server stopped, the folder moved away
    resume: Callable[[], None]  # ... and comes back with the same files
    gives_identity: bool
    clock: int = 0

    def put(self, rel: str, data: bytes) -> None:
        """Write a file, each write with an mtime whole seconds after the last (a WebDAV ETag
        holds the mtime in seconds)."""
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        self.clock += 10
        stamp = BASE_TIME_NS + self.clock * 1_000_000_000
        os.utime(path, ns=(stamp, stamp))


def need(reason: str | None, require_env: str) -> None:
    """Skip when a server cannot run here, or fail where CI requires it."""
    if reason is None:
        return
    if os.environ.get(require_env) == "1":
        pytest.fail(f"{require_env}=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture
def folder_source(tmp_path: Path) -> FileSource:
    root, away = tmp_path / "share", tmp_path / "share-away"
    root.mkdir()
    return FileSource(
        "folder", root, lambda: LocalConnector(root), stop=lambda: root.rename(away),
        resume=lambda: away.rename(root), gives_identity=True,
    )  # fmt: skip


@pytest.fixture
def samba(tmp_path: Path) -> Iterator[SambaServer]:
    need(samba_support.missing(), samba_support.REQUIRE_ENV)
    server = SambaServer().start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def smb_source(samba: SambaServer, tmp_path: Path) -> FileSource:
    credentials = samba.credentials(tmp_path / "smb.cred")
    return FileSource(
        "smb", samba.share_dir,
        lambda: SmbConnector("127.0.0.1", samba.SHARE, credentials_file=credentials, port=samba.port),
        stop=samba.stop, resume=samba.start, gives_identity=True,
    )  # fmt: skip


@pytest.fixture
def webdav(tmp_path: Path) -> Iterator[WebDavServer]:
    server = WebDavServer().start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def webdav_source(webdav: WebDavServer, tmp_path: Path) -> FileSource:
    credentials = webdav.credentials(tmp_path / "webdav.cred")
    return FileSource(
        "webdav", webdav.share_dir, lambda: WebDavConnector(webdav.url, credentials_file=credentials),
        stop=webdav.stop, resume=webdav.start, gives_identity=False,
    )  # fmt: skip


@pytest.fixture(params=["folder", "smb", "webdav"])
def source(request: pytest.FixtureRequest) -> FileSource:
    return request.getfixturevalue(f"{request.param}_source")  # type: ignore[no-any-return]


class Mirror:
    def __init__(self, base: Path) -> None:
        self.folder = base / "files"
        self.state = base / "state.json"

    def sync(self, connector: Connector, **options: Any) -> MirrorResult:
        options.setdefault("min_ratio", MIN_RATIO)
        try:
            return sync_mirror(connector, self.folder, self.state, **options)
        finally:
            connector.close()


@pytest.fixture
def mirror(tmp_path: Path) -> Mirror:
    return Mirror(tmp_path / "mirror")


TREE = {
    "handbook.md": b"# Handbook\n\nStaff get 25 days of leave.\n",
    "hr/policy.txt": b"Expenses are paid within 30 days.\n" * 20,
    "hr/forms/claim.csv": b"item,amount\ntaxi,12\n",
    "finance/budget.txt": b"The budget for 2027 is 4.2 million.\n" * 50,
}


def fill(source: FileSource, tree: dict[str, bytes] = TREE) -> None:
    for rel, data in tree.items():
        source.put(rel, data)


def test_first_sync_fetches_everything_and_a_resync_nothing(source: FileSource, mirror: Mirror) -> None:
    fill(source)
    first = mirror.sync(source.connect())
    assert sorted(first.added) == sorted(TREE)
    assert first.bytes_fetched == sum(len(d) for d in TREE.values())
    assert contents(mirror.folder) == TREE

    before = snapshot(mirror.folder)
    again = mirror.sync(source.connect())
    assert again.bytes_fetched == 0
    assert sorted(again.unchanged) == sorted(TREE) and not (again.added or again.changed or again.removed)
    assert snapshot(mirror.folder) == before  # same bytes, same mtimes: the ingest skips them all


def test_a_changed_file_is_fetched_again_and_only_it(source: FileSource, mirror: Mirror) -> None:
    fill(source)
    mirror.sync(source.connect())
    before = snapshot(mirror.folder)
    new = b"# Handbook\n\nStaff get 28 days of leave.\n"  # the same size
    assert len(new) == len(TREE["handbook.md"])
    source.put("handbook.md", new)

    result = mirror.sync(source.connect())
    assert result.changed == ["handbook.md"] and result.bytes_fetched == len(new)
    after = snapshot(mirror.folder)
    assert after["handbook.md"][0] == new
    assert after["handbook.md"][1] != before["handbook.md"][1]  # the ingest sees it changed
    assert {k: v for k, v in after.items() if k != "handbook.md"} == {
        k: v for k, v in before.items() if k != "handbook.md"
    }


def test_a_renamed_or_moved_file_is_taken_from_the_mirror(source: FileSource, mirror: Mirror) -> None:
    fill(source)
    mirror.sync(source.connect())
    (source.root / "archive").mkdir()
    os.rename(source.root / "finance/budget.txt", source.root / "archive/budget-2027.txt")
    os.rename(source.root / "handbook.md", source.root / "staff-handbook.md")

    result = mirror.sync(source.connect())
    expected = dict(TREE)
    expected["archive/budget-2027.txt"] = expected.pop("finance/budget.txt")
    expected["staff-handbook.md"] = expected.pop("handbook.md")
    assert contents(mirror.folder) == expected
    if source.gives_identity:
        assert result.moved == [
            ("finance/budget.txt", "archive/budget-2027.txt"),
            ("handbook.md", "staff-handbook.md"),
        ]
        assert result.bytes_fetched == 0 and not (result.added or result.removed)
    else:  # no identity: fetched under the new name, the old name removed
        assert sorted(result.added) == ["archive/budget-2027.txt", "staff-handbook.md"]
        assert result.removed == ["finance/budget.txt", "handbook.md"]
    assert not (mirror.folder / "finance").exists()  # a folder left empty goes too
    assert mirror.sync(source.connect()).bytes_fetched == 0


def test_a_deleted_file_leaves_the_mirror(source: FileSource, mirror: Mirror) -> None:
    fill(source)
    mirror.sync(source.connect())
    (source.root / "hr/forms/claim.csv").unlink()

    result = mirror.sync(source.connect())
    assert result.removed == ["hr/forms/claim.csv"] and result.bytes_fetched == 0
    assert "hr/forms/claim.csv" not in contents(mirror.folder)
    assert not (mirror.folder / "hr/forms").exists()


def test_include_exclude_and_the_size_limit(source: FileSource, mirror: Mirror) -> None:
    fill(source)
    source.put("hr/drafts/raise.docx", b"draft")
    source.put("hr/~$policy.txt", b"an Office lock file")
    source.put(".hidden/notes.txt", b"hidden")
    source.put("video/townhall.MD", b"x" * 5000)
    selection = Selection(
        include=("*.md", "*.txt", "*.csv", "hr/**"), exclude=("drafts", "~$*"), max_bytes=1000
    )
    result = mirror.sync(source.connect(), selection=selection)
    assert sorted(contents(mirror.folder)) == ["handbook.md", "hr/forms/claim.csv", "hr/policy.txt"]
    assert result.skipped == [
        ("finance/budget.txt", "1.8 KiB is over the source's size limit of 1000 bytes"),
        ("video/townhall.MD", "4.9 KiB is over the source's size limit of 1000 bytes"),
    ]
    assert result.listed == 3


def test_a_source_stopped_after_the_listing_removes_nothing(source: FileSource, mirror: Mirror) -> None:
    fill(source)
    mirror.sync(source.connect())
    source.put("handbook.md", b"# Handbook\n\nNew text.\n")
    (source.root / "hr/policy.txt").unlink()
    source.put("new.txt", b"a new file\n")
    os.rename(source.root / "finance/budget.txt", source.root / "a-budget.txt")  # a move, staged first
    before, state = snapshot(mirror.folder), mirror.state.read_bytes()

    with pytest.raises(SourceUnavailable) as raised:
        mirror.sync(Interrupted(source.connect(), source.stop))
    assert source.connect().location in str(raised.value)
    assert snapshot(mirror.folder) == before and mirror.state.read_bytes() == state
    assert not list((mirror.folder / STAGING).glob("*.part"))  # no half file left behind


def test_a_sync_stopped_half_way_resumes_without_fetching_again(source: FileSource, mirror: Mirror) -> None:
    """What a failed sync fetched stays staged (not in the mirror, not in its state): the next
    sync places it without fetching it again."""
    fill(source)
    interrupted = Interrupted(source.connect(), source.stop, after_fetches=2)
    with pytest.raises(SourceUnavailable):
        mirror.sync(interrupted)
    assert contents(mirror.folder) == {} and not mirror.state.exists()
    source.resume()

    result = mirror.sync(source.connect())
    assert contents(mirror.folder) == TREE and sorted(result.added) == sorted(TREE)
    fetched_before = sum(len(TREE[path]) for path in interrupted.done)
    assert len(interrupted.done) == 2
    assert result.bytes_fetched == sum(len(d) for d in TREE.values()) - fetched_before
    assert not (mirror.folder / STAGING).exists()


def test_a_server_stopped_in_the_middle_of_a_large_file_removes_nothing(
    source: FileSource, mirror: Mirror
) -> None:
    if source.kind == "folder":
        pytest.skip("a local file being read is read to its end when its folder is moved away")
    fill(source)
    mirror.sync(source.connect())
    (source.root / "hr/policy.txt").unlink()
    large = os.urandom(48 << 20)  # more than loopback's socket buffers hold
    source.put("video/townhall.mp4", large)
    before, state = snapshot(mirror.folder), mirror.state.read_bytes()

    interrupted = Interrupted(source.connect(), source.stop, mid_fetch=True)
    with pytest.raises(SourceUnavailable) as raised:
        mirror.sync(interrupted)
    assert source.connect().location in str(raised.value)
    assert snapshot(mirror.folder) == before and mirror.state.read_bytes() == state
    assert list((mirror.folder / STAGING).iterdir()) == []  # no half file kept

    source.resume()
    result = mirror.sync(source.connect())
    assert result.added == ["video/townhall.mp4"] and result.removed == ["hr/policy.txt"]
    assert contents(mirror.folder)["video/townhall.mp4"] == large


def test_an_emptied_source_removes_nothing_until_told(source: FileSource, mirror: Mirror) -> None:
    fill(source)
    mirror.sync(source.connect())
    before, state = snapshot(mirror.folder), mirror.state.read_bytes()
    for rel in TREE:
        (source.root / rel).unlink()

    with pytest.raises(SourceShrank) as raised:
        mirror.sync(source.connect())
    assert (raised.value.before, raised.value.now) == (4, 0)
    assert "lists 0 files where it listed 4 at the last sync" in str(raised.value)
    assert snapshot(mirror.folder) == before and mirror.state.read_bytes() == state

    source.put("hr/policy.txt", TREE["hr/policy.txt"])  # 1 of 4: still under the ratio
    with pytest.raises(SourceShrank):
        mirror.sync(source.connect())
    result = mirror.sync(source.connect(), min_ratio=0.0)  # the deletions were real
    assert sorted(result.removed) == ["finance/budget.txt", "handbook.md", "hr/forms/claim.csv"]


def test_a_file_gone_at_fetch_fails_alone_and_keeps_its_copy(source: FileSource, mirror: Mirror) -> None:
    fill(source)
    mirror.sync(source.connect())
    source.put("handbook.md", b"# Handbook\n\nA new version.\n")
    source.put("new.txt", b"a new file\n")

    def delete() -> None:
        (source.root / "handbook.md").unlink()

    result = mirror.sync(Interrupted(source.connect(), delete))
    assert [path for path, _ in result.failed] == ["handbook.md"]
    assert "handbook.md" in result.failed[0][1]
    assert result.added == ["new.txt"]
    assert contents(mirror.folder)["handbook.md"] == TREE["handbook.md"]  # the last good copy

    again = mirror.sync(source.connect())  # now the listing says it is gone
    assert again.removed == ["handbook.md"]


def test_an_upload_folder_is_linked_into_the_mirror_not_copied(tmp_path: Path, mirror: Mirror) -> None:
    """hard_links (an upload source, whose files are only replaced by a rename): each file is
    linked, dated by the file itself and never re-dated, and a replaced file is linked anew."""
    root = tmp_path / "uploads"
    root.mkdir()
    for rel, data in TREE.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    stamps = {rel: (root / rel).stat().st_mtime_ns for rel in TREE}
    first = mirror.sync(LocalConnector(root, hard_links=True))
    assert sorted(first.added) == sorted(TREE) and first.bytes_fetched == 0
    assert all(os.path.samefile(root / rel, mirror.folder / rel) for rel in TREE)
    assert {rel: (root / rel).stat().st_mtime_ns for rel in TREE} == stamps
    again = mirror.sync(LocalConnector(root, hard_links=True))
    assert sorted(again.unchanged) == sorted(TREE) and not again.changed

    staged = root / ".upload-new"
    staged.write_bytes(b"# Handbook\n\nStaff get 28 days of leave.\n")
    os.replace(staged, root / "handbook.md")  # as enclave/uploads.py replaces a file
    replaced = mirror.sync(LocalConnector(root, hard_links=True))
    assert replaced.changed == ["handbook.md"] and replaced.bytes_fetched == 0
    assert os.path.samefile(root / "handbook.md", mirror.folder / "handbook.md")
    assert contents(mirror.folder) == {**TREE, "handbook.md": b"# Handbook\n\nStaff get 28 days of leave.\n"}
    # Without hard_links (any other folder source): copies, as before.
    copied = Mirror(tmp_path / "copied")
    copied.sync(LocalConnector(root))
    assert not os.path.samefile(root / "handbook.md", copied.folder / "handbook.md")


def test_a_second_sync_of_the_same_mirror_is_refused(folder_source: FileSource, mirror: Mirror) -> None:
    fill(folder_source)
    refused: list[Exception] = []

    def sync_again() -> None:
        with pytest.raises(IngestError) as raised:
            mirror.sync(folder_source.connect())
        refused.append(raised.value)

    mirror.sync(Interrupted(folder_source.connect(), sync_again))
    assert f"another sync of {folder_source.root} is running" in str(refused[0])
    assert contents(mirror.folder) == TREE


def test_a_missing_folder_is_unavailable(tmp_path: Path, mirror: Mirror) -> None:
    with pytest.raises(SourceUnavailable, match="no such folder"):
        mirror.sync(LocalConnector(tmp_path / "not-mounted"))
    assert not mirror.state.exists()


def test_smb_wrong_credentials_name_the_source_and_the_file(
    samba: SambaServer, tmp_path: Path, mirror: Mirror
) -> None:
    wrong = samba.credentials(tmp_path / "wrong.cred", password="not-the-password")
    connector = SmbConnector("127.0.0.1", samba.SHARE, credentials_file=wrong, port=samba.port)
    with pytest.raises(SourceUnavailable) as raised:
        mirror.sync(connector)
    assert str(raised.value) == (
        f"smb://127.0.0.1:{samba.port}/docs: listing failed: the server refused the user name or "
        f"password of {wrong}"
    )
    assert "not-the-password" not in str(raised.value)
    no_share = SmbConnector(
        "127.0.0.1", "nope", credentials_file=samba.credentials(tmp_path / "ok.cred"), port=samba.port
    )
    with pytest.raises(SourceUnavailable, match="the server has no share named 'nope'"):
        mirror.sync(no_share)
    samba.stop()
    with pytest.raises(
        SourceUnavailable, match=f"smb://127.0.0.1:{samba.port}/docs: listing failed: .*refused"
    ):
        mirror.sync(SmbConnector("127.0.0.1", samba.SHARE, credentials_file=wrong, port=samba.port))


@pytest.mark.slow
def test_an_smb_sync_works_when_descriptors_above_1024_are_in_use(
    smb_source: FileSource, mirror: Mirror
) -> None:
    """A server holding many connections and files gives the SMB socket a descriptor above 1023,
    which select() refuses ("filedescriptor out of range in select()"): smbprotocol's wait is
    done with poll() (ingest/sources/smb.py), so the sync goes through."""
    smb_source.put("handbook.md", b"# Handbook\n\nStaff get 25 days of leave a year.\n")
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        assert min(set(range(2048)) - {*held, 0, 1, 2}) >= 1024 or max(held) >= 1024
        result = mirror.sync(smb_source.connect())
    finally:
        for fd in held:
            os.close(fd)
    assert result.added == ["handbook.md"]


def test_an_smb_share_through_the_ingest(
    smb_source: FileSource, mirror: Mirror, settings: Settings, embedder: Any
) -> None:
    """The mirror as the ingest sees it: an unchanged share is all unchanged, an edited file (the
    same size) is parsed again, a renamed one is linked to its document, not embedded again."""
    smb_source.put("handbook.md", b"# Handbook\n\nStaff get 25 days of leave a year.\n")
    smb_source.put("hr/policy.md", b"# Expenses\n\nExpenses are paid within 30 days of a claim.\n")
    store = wiring.build_store(settings)
    pipeline = wiring.build_pipeline(settings, embedder=embedder, store=store)

    def sync_and_ingest() -> tuple[MirrorResult, dict[str, str]]:
        result = mirror.sync(smb_source.connect())
        report = pipeline.run([mirror.folder], ["staff"], prune=True)
        root = mirror.folder.resolve()
        return result, {Path(f.path).relative_to(root).as_posix(): f.status for f in report.files}

    assert sync_and_ingest()[1] == {"handbook.md": "new", "hr/policy.md": "new"}
    result, statuses = sync_and_ingest()
    assert result.bytes_fetched == 0 and statuses == {"handbook.md": "unchanged", "hr/policy.md": "unchanged"}

    smb_source.put("handbook.md", b"# Handbook\n\nStaff get 28 days of leave a year.\n")
    os.rename(smb_source.root / "hr/policy.md", smb_source.root / "hr/expenses.md")
    result, statuses = sync_and_ingest()
    assert result.moved == [("hr/policy.md", "hr/expenses.md")] and result.changed == ["handbook.md"]
    assert statuses == {"handbook.md": "changed", "hr/expenses.md": "linked", "hr/policy.md": "pruned"}
    hits = store.search(embedder.embed_query("How many days of leave do staff get?"), 1, ["staff"])
    assert "28 days" in hits[0].chunk.text


def test_webdav_wrong_credentials_name_the_source_and_the_file(
    webdav: WebDavServer, tmp_path: Path, mirror: Mirror
) -> None:
    wrong = webdav.credentials(tmp_path / "wrong.cred", password="not-the-password")
    with pytest.raises(SourceUnavailable) as raised:
        mirror.sync(WebDavConnector(webdav.url, credentials_file=wrong))
    assert str(raised.value) == (
        f"{webdav.url}: listing / failed: the server refused the user name or password of {wrong}"
    )
    assert "not-the-password" not in str(raised.value)
    right = webdav.credentials(tmp_path / "right.cred")
    with pytest.raises(
        SourceUnavailable, match=r"listing / failed: no such folder on the server \(HTTP 404\)"
    ):
        mirror.sync(WebDavConnector(webdav.url + "missing/", credentials_file=right))
    webdav.stop()
    with pytest.raises(SourceUnavailable, match=f"{webdav.url}: listing / failed: .*[Cc]onnection refused"):
        mirror.sync(WebDavConnector(webdav.url, credentials_file=right))


# -- IMAP: each message a <folder>/<UID>.eml ----------------------------------------------------


@pytest.fixture
def dovecot() -> Iterator[DovecotServer]:
    need(dovecot_support.missing(), dovecot_support.REQUIRE_ENV)
    server = DovecotServer().start()
    try:
        yield server
    finally:
        server.close()


class Mailbox:
    """The test's own IMAP session to the same mailbox, to deliver, move and delete mail."""

    def __init__(self, server: DovecotServer) -> None:
        self.client = IMAPClient("127.0.0.1", port=server.port, ssl=False, timeout=30)
        self.client.login(server.USER, server.password)
        self.clock = 0

    def deliver(self, folder: str, msg: email.message.EmailMessage) -> None:
        self.clock += 60
        arrived = datetime.fromtimestamp(BASE_TIME_NS // 10**9 + self.clock, tz=UTC)
        self.client.append(folder, bytes(msg), msg_time=arrived)

    def uids(self, folder: str) -> list[int]:
        self.client.select_folder(folder)
        return sorted(self.client.search("ALL"))

    def close(self) -> None:
        try:
            self.client.logout()
        except (IMAPClientError, OSError):  # the server was stopped under it
            self.client.shutdown()


@pytest.fixture
def mailbox(dovecot: DovecotServer) -> Iterator[Mailbox]:
    box = Mailbox(dovecot)
    try:
        yield box
    finally:
        box.close()


def message(
    subject: str, body: str, attachment: bytes | None = None, message_id: bool = True
) -> email.message.EmailMessage:
    msg = email.message.EmailMessage()
    msg["From"] = "Harbour office <office@example.org>"
    msg["To"] = "Staff <staff@example.org>"
    msg["Subject"] = subject
    if message_id:
        msg["Message-ID"] = f"<{subject.replace(' ', '-').lower()}@example.org>"
    msg.set_content(body)
    if attachment is not None:
        msg.add_attachment(attachment, maintype="text", subtype="plain", filename="rota.txt")
    return msg


def subjects(folder: Path) -> dict[str, str]:
    return {path: email.message_from_bytes(data)["Subject"] for path, data in contents(folder).items()}


def imap_connector(server: DovecotServer, tmp_path: Path, **options: Any) -> ImapConnector:
    options.setdefault("security", "none")
    options.setdefault("port", server.port)
    credentials = server.credentials(tmp_path / "imap.cred")
    return ImapConnector("127.0.0.1", credentials_file=credentials, **options)


def test_imap_messages_are_mirrored_by_uid_and_uidvalidity(
    dovecot: DovecotServer, mailbox: Mailbox, mirror: Mirror, tmp_path: Path
) -> None:
    mailbox.client.create_folder("Archive")
    mailbox.deliver("INBOX", message("Leave policy", "Staff get 25 days of leave.\n"))
    mailbox.deliver("INBOX", message("Night rota", "The rota is attached.\n", b"Mon: Ann\nTue: Bo\n"))
    mailbox.deliver("Archive", message("Old news", "The canteen moved.\n"))
    mailbox.deliver("Archive", message("No id", "A message without a Message-ID.\n", message_id=False))

    first = mirror.sync(imap_connector(dovecot, tmp_path))
    assert subjects(mirror.folder) == {
        "Archive/1.eml": "Old news",
        "Archive/2.eml": "No id",
        "INBOX/1.eml": "Leave policy",
        "INBOX/2.eml": "Night rota",
    }
    assert first.bytes_fetched == sum(len(d) for d in contents(mirror.folder).values())
    again = mirror.sync(imap_connector(dovecot, tmp_path))
    assert again.bytes_fetched == 0 and len(again.unchanged) == 4

    # Moved to another folder: a new UID there, the same message; taken from the mirror.
    mailbox.client.select_folder("INBOX")
    mailbox.client.move([2], "Archive")
    # Deleted: expunged.
    mailbox.client.select_folder("Archive")
    mailbox.client.delete_messages([1])
    mailbox.client.expunge()
    result = mirror.sync(imap_connector(dovecot, tmp_path))
    assert result.moved == [("INBOX/2.eml", "Archive/3.eml")] and result.removed == ["Archive/1.eml"]
    assert result.bytes_fetched == 0
    assert subjects(mirror.folder) == {
        "Archive/2.eml": "No id",
        "Archive/3.eml": "Night rota",
        "INBOX/1.eml": "Leave policy",
    }

    # The folder rebuilt (a restore): a new UIDVALIDITY, so no entry in it is what it was, and
    # its UIDs are given anew. A message with a Message-ID is known by it and comes from the
    # mirror (Night rota, now UID 2); the one without is fetched again.
    mailbox.client.select_folder("Archive")
    kept = mailbox.client.fetch(mailbox.uids("Archive"), ["BODY.PEEK[]", "INTERNALDATE"])
    mailbox.client.unselect_folder()
    mailbox.client.delete_folder("Archive")
    mailbox.client.create_folder("Archive")
    for data in kept.values():
        mailbox.client.append("Archive", data[b"BODY[]"], msg_time=data[b"INTERNALDATE"])
    result = mirror.sync(imap_connector(dovecot, tmp_path))
    assert result.unchanged == ["INBOX/1.eml"]
    assert result.moved == [("Archive/3.eml", "Archive/2.eml")] and result.added == ["Archive/1.eml"]
    assert subjects(mirror.folder) == {
        "Archive/1.eml": "No id",
        "Archive/2.eml": "Night rota",
        "INBOX/1.eml": "Leave policy",
    }
    assert result.bytes_fetched == len(contents(mirror.folder)["Archive/1.eml"])


def test_imap_stopped_after_the_listing_or_emptied_removes_nothing(
    dovecot: DovecotServer, mailbox: Mailbox, mirror: Mirror, tmp_path: Path
) -> None:
    for n in range(4):
        mailbox.deliver("INBOX", message(f"Notice {n}", f"Notice number {n}.\n"))
    mirror.sync(imap_connector(dovecot, tmp_path))
    mailbox.deliver("INBOX", message("Notice 4", "A new one.\n"))
    mailbox.client.select_folder("INBOX")
    mailbox.client.delete_messages([1])
    mailbox.client.expunge()
    before, state = snapshot(mirror.folder), mirror.state.read_bytes()

    with pytest.raises(
        SourceUnavailable, match=f"imap://127.0.0.1:{dovecot.port}: reading INBOX/5.eml failed"
    ):
        mirror.sync(Interrupted(imap_connector(dovecot, tmp_path), dovecot.stop))
    assert snapshot(mirror.folder) == before and mirror.state.read_bytes() == state
    with pytest.raises(SourceUnavailable, match=r"listing failed: .*[Cc]onnection refused"):
        mirror.sync(imap_connector(dovecot, tmp_path))

    dovecot.start()
    mailbox = Mailbox(dovecot)
    mailbox.client.select_folder("INBOX")
    mailbox.client.delete_messages(mailbox.uids("INBOX"))
    mailbox.client.expunge()
    mailbox.close()
    with pytest.raises(SourceShrank, match="lists 0 files where it listed 4"):
        mirror.sync(imap_connector(dovecot, tmp_path))
    assert snapshot(mirror.folder) == before and mirror.state.read_bytes() == state


def test_imap_wrong_credentials_tls_and_folders(
    dovecot: DovecotServer, mailbox: Mailbox, mirror: Mirror, tmp_path: Path
) -> None:
    mailbox.client.create_folder("Team.Rotas")
    mailbox.deliver("Team.Rotas", message("Rota", "Rota for May.\n"))
    mailbox.deliver("INBOX", message("Hello", "Hello.\n"))
    wrong = dovecot.credentials(tmp_path / "wrong.cred", password="not-the-password")
    connector = ImapConnector("127.0.0.1", port=dovecot.port, security="none", credentials_file=wrong)
    with pytest.raises(SourceUnavailable) as raised:
        mirror.sync(connector)
    assert str(raised.value) == (
        f"imap://127.0.0.1:{dovecot.port}: listing failed: the server refused the user name or "
        f"password of {wrong}"
    )
    # TLS, verified against the server's own certificate; the hierarchy as folders.
    for security, port in (("ssl", dovecot.tls_port), ("starttls", dovecot.port)):
        connector = imap_connector(dovecot, tmp_path, security=security, port=port, ca_file=dovecot.ca_file)
        assert [e.path for e in connector.list()] == ["INBOX/1.eml", "Team/Rotas/1.eml"]
        connector.close()
    untrusted = imap_connector(dovecot, tmp_path, security="ssl", port=dovecot.tls_port)
    with pytest.raises(SourceUnavailable, match="certificate verify failed"):
        untrusted.list()
    only = imap_connector(dovecot, tmp_path, folders=("Team.Rotas",))
    assert subjects(mirror.folder) == {} and [e.path for e in only.list()] == ["Team/Rotas/1.eml"]
    only.close()
    with pytest.raises(SourceUnavailable, match="no folder named 'Sent' on the server"):
        imap_connector(dovecot, tmp_path, folders=("Sent",)).list()


@pytest.mark.slow
def test_a_mail_and_its_attachment_through_the_ingest(
    dovecot: DovecotServer,
    mailbox: Mailbox,
    mirror: Mirror,
    tmp_path: Path,
    settings: Settings,
    embedder: Any,
) -> None:
    mailbox.deliver(
        "INBOX", message("Night rota", "The night rota for May is attached.\n", b"Mon: Ann\nTue: Bo\n")
    )
    mirror.sync(imap_connector(dovecot, tmp_path))
    store = wiring.build_store(settings)
    report = wiring.build_pipeline(settings, embedder=embedder, store=store).run([mirror.folder], ["staff"])
    root = mirror.folder.resolve()
    statuses = {Path(f.path).relative_to(root).as_posix(): f.status for f in report.files}
    assert statuses == {"INBOX/1.eml": "new", "INBOX/1.eml#rota.txt": "new"}
    hits = store.search(embedder.embed_query("Who works on Tuesday night?"), 3, ["staff"])
    assert any("Tue: Bo" in h.chunk.text and h.chunk.source.endswith("INBOX/1.eml#rota.txt") for h in hits)
