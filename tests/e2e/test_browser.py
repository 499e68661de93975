"""The web UI in a real browser: Debian's Chromium, headless, driven by Playwright, against the real
app on 127.0.0.1 (real ingest of a few demo files in two groups with MiniLM, embedded Chroma and
unstructured; the extractive answerer; the real audit log and sign-in).

Staff sign in on the login page, ask with Enter, watch the answer stream in with its sources, open
a source and rate the answer; they cannot open the auditor page or another group's file. The
auditor finds that answer, opens it, verifies the chain and exports. Every request any page makes
is recorded, and a test fails if one went anywhere but loopback.

Needs /usr/bin/chromium (`apt-get install chromium`): without it these tests skip, or fail when
REQUIRE_BROWSER=1. Playwright's own browser downloads are never used. ENCLAVE_SCREENSHOTS=1 also
writes docs/screenshots/*.png, which the README shows.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import os
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from audit import AuditLog
from core.settings import Settings, load_settings
from enclave import wiring
from enclave.demo import DEMO_CORPUS
from tests.support.chromium import launched
from tests.support.net import free_port
from tests.support.served import doc_id_of
from ui import build_app, serve

pytestmark = [pytest.mark.browser, pytest.mark.slow]

LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
WAIT_MS = 60_000  # a ceiling for slow machines, never a delay: every wait ends when the page is ready
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "docs" / "screenshots"
# Read at import: the autouse _clean_env fixture removes every ENCLAVE_* variable before a test.
SAVE_SCREENSHOTS = os.environ.get("ENCLAVE_SCREENSHOTS") == "1"

ORG = "Harbourview Port Authority"
PASSWORD = "browser test password"
FILES = {
    "public": ["berth-booking-procedure.md", "office-hours-and-holidays.txt"],
    "finance": ["supplier-payment-terms.csv"],
}
QUESTION = "How many hours before arrival must a berth application be submitted?"
ANSWER_TEXT = "at least 72 hours before the vessel"
SECTION = "Submitting a berth application"
COMMENT = "Please also say where form BA-1 is found."


@pytest.fixture(scope="module")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Headless Chromium; Playwright gives each launch a fresh, empty user-data folder."""
    with launched(tmp_path_factory.mktemp("chromium")) as browser:
        from playwright.sync_api import expect

        expect.set_options(timeout=WAIT_MS)
        yield browser


# -- the app ------------------------------------------------------------------------------------


@dataclass
class Served:
    url: str
    settings: Settings
    audit: AuditLog
    doc_ids: dict[str, str]  # file name -> document id


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, embedder: Any) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("browser")
    settings = load_settings(None, data_dir=root / "var")
    settings.ingest.parse_timeout_s = 0
    settings.ui.port = free_port()
    settings.ui.org_name = ORG
    store = wiring.build_store(settings)
    pipeline = wiring.build_pipeline(settings, embedder=embedder, store=store)
    doc_ids = {}
    for group, names in FILES.items():
        (root / group).mkdir()
        for name in names:
            shutil.copy(DEMO_CORPUS / group / name, root / group / name)
        report = pipeline.run([root / group], [group])
        assert not [f for f in report.files if f.status == "failed"], report.summary()
        doc_ids.update({name: doc_id_of(settings, root / group / name) for name in names})
    users = wiring.build_users(settings)
    users.add("alice", PASSWORD, "staff", ("public",))
    users.add("audrey", PASSWORD, "auditor", ("public",))
    audit = wiring.build_audit(settings)
    assistant = wiring.build_assistant(settings, embedder=embedder, store=store)
    app = build_app(assistant, users, settings, audit=audit)
    url = serve(app, settings, block=False, sources=wiring.build_originals(settings).find)
    try:
        yield Served(url, settings, audit, doc_ids)
    finally:
        app.close()


# -- pages, and every request they make ------------------------------------------------------


@dataclass
class Traffic:
    """Every URL the browser asked for: requests (fetches, the queue's event streams, files,
    downloads) and websockets."""

    urls: list[str] = field(default_factory=list)

    def foreign(self) -> list[str]:
        """URLs for a host other than loopback (data: and blob: URLs have no host and stay in the page)."""
        out = []
        for url in self.urls:
            parts = urlsplit(url)
            if parts.scheme in ("data", "blob", "about"):
                continue
            if parts.hostname not in LOOPBACK:
                out.append(url)
        return out


OpenPage = Callable[..., Any]


@pytest.fixture
def open_page(chromium: Any) -> Iterator[OpenPage]:
    """Opens pages in fresh browser contexts (no shared cookies) that record every request; when
    the test ends, asserts that requests were made and that none left loopback."""
    traffic = Traffic()
    contexts: list[Any] = []

    def open_page(width: int = 1280, height: int = 860) -> Any:
        context = chromium.new_context(viewport={"width": width, "height": height}, accept_downloads=True)
        context.set_default_timeout(WAIT_MS)
        context.on("request", lambda request: traffic.urls.append(request.url))
        context.on("page", lambda page: page.on("websocket", lambda ws: traffic.urls.append(ws.url)))
        contexts.append(context)
        return context.new_page()

    yield open_page
    for context in contexts:
        context.close()
    assert traffic.urls, "the browser made no request at all: the recording is broken"
    assert traffic.foreign() == []


def sign_in(page: Any, served: Served, user: str, path: str = "") -> None:
    """Open `path`, be sent to the login page, sign in there and land on `path`."""
    from playwright.sync_api import expect

    page.goto(served.url + path)
    expect(page).to_have_url(re.compile(r"/login\?next="))
    page.get_by_label("User name").fill(user)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(served.url + path)


def screenshot(page: Any, name: str, *, full_page: bool = False) -> None:
    """Saved for the README only when ENCLAVE_SCREENSHOTS=1, so a test run leaves docs alone."""
    if SAVE_SCREENSHOTS:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        # Finished, not mid-way: the sources panel slides open after the answer arrives.
        page.screenshot(path=str(SCREENSHOTS / name), full_page=full_page, animations="disabled")


def scroll_to_end(chat: Any) -> None:
    """The conversation scrolled to its last message (the sources panel grows after the answer)."""
    chat.get_by_role("log").evaluate("log => log.scrollTo(0, log.scrollHeight)")


class QueueStream:
    """What the server streamed to the page over Gradio's queue (its /queue/data event
    streams), read as it arrives through the DevTools protocol."""

    def __init__(self, page: Any) -> None:
        self.chunks: list[str] = []
        self._ids: set[str] = set()
        self._cdp = page.context.new_cdp_session(page)
        self._cdp.on("Network.requestWillBeSent", self._sent)
        self._cdp.on("Network.responseReceived", self._response)
        self._cdp.on("Network.dataReceived", self._data)
        self._cdp.send("Network.enable")

    def _sent(self, event: dict[str, Any]) -> None:
        if "/gradio_api/queue/data" in event["request"]["url"]:
            self._ids.add(event["requestId"])

    def _response(self, event: dict[str, Any]) -> None:
        if event["requestId"] in self._ids:
            try:
                done = self._cdp.send("Network.streamResourceContent", {"requestId": event["requestId"]})
            except Exception:
                return  # a short stream that had already ended (the page's load events)
            self.chunks.append(base64.b64decode(done.get("bufferedData", "")).decode("utf-8"))

    def _data(self, event: dict[str, Any]) -> None:
        if event["requestId"] in self._ids and event.get("data"):
            self.chunks.append(base64.b64decode(event["data"]).decode("utf-8"))

    def messages(self) -> list[dict[str, Any]]:
        text = "".join(self.chunks)
        return [json.loads(line[5:]) for line in text.splitlines() if line.startswith("data:")]


# -- staff ----------------------------------------------------------------------------------------


def test_staff_asks_sees_the_answer_stream_opens_a_source_and_rates_it(
    open_page: OpenPage, served: Served
) -> None:
    from playwright.sync_api import expect

    page = open_page()
    page.goto(served.url)
    expect(page.get_by_role("heading", name=ORG)).to_be_visible()
    screenshot(page, "login.png")
    sign_in(page, served, "alice")
    expect(page.locator("#enclave-whoami")).to_contain_text("Signed in as alice · staff · groups: public")

    stream = QueueStream(page)
    box = page.locator("#enclave-question textarea")
    box.fill(QUESTION)
    box.press("Enter")  # the keyboard submits; no click
    chat = page.locator("#enclave-chat")
    answer = chat.locator("[data-testid=bot]").filter(has_text="Audit record")
    expect(answer).to_contain_text(ANSWER_TEXT)
    expect(box).to_be_editable()  # unlocked again once the answer is complete
    audit_id = int(re.search(r"Audit record (\d+)", answer.inner_text()).group(1))  # type: ignore[union-attr]

    # Streamed: the question and the sources reached the page in messages of their own,
    # before the message holding the finished answer.
    updates = [m for m in stream.messages() if m.get("msg") == "process_generating"]
    assert len(updates) >= 2, stream.messages()
    assert QUESTION in json.dumps(updates[0]) and "Audit record" not in json.dumps(updates[0])
    assert any("Audit record" in json.dumps(m) for m in stream.messages()[1:])

    # The sources panel: title, section, file, the passage itself, and a link to the original.
    sources = chat.locator(".thought-group").filter(has_text="Sources (")
    expect(sources).to_contain_text("Berth Booking Procedure")
    expect(sources).to_contain_text(SECTION)
    expect(sources).to_contain_text("berth-booking-procedure.md")
    expect(sources).to_contain_text("Berth Application (form BA-1)")
    link = sources.get_by_role("link", name="open the file").first
    expect(link).to_be_visible()
    scroll_to_end(chat)
    screenshot(page, "chat.png")

    with page.context.expect_page() as opened:
        link.click()
    original = opened.value
    expect(original).to_have_url(served.url + "files/" + served.doc_ids["berth-booking-procedure.md"])
    expect(original.locator("body")).to_contain_text("Procedure PO-02, version 3.4")
    original.close()

    answer.hover()
    page.get_by_role("button", name="Dislike").last.click()
    expect(
        page.get_by_text(f"Your thumbs down on the answer (audit record {audit_id}) is recorded")
    ).to_be_visible()
    comment = page.locator("#enclave-comment textarea")
    comment.fill(COMMENT)
    comment.press("Enter")
    expect(page.get_by_text("your comment is recorded with your rating")).to_be_visible()

    record = served.audit.get(audit_id)
    assert record is not None and record.user == "alice" and record.question == QUESTION
    feedback = served.audit.feedback_for(audit_id)
    assert [(f.user, f.rating, f.comment) for f in feedback] == [
        ("alice", "down", None),
        ("alice", "down", COMMENT),
    ]
    opened_files = [r for r in served.audit.last(50) if r.event == "file_opened" and r.user == "alice"]
    assert opened_files and opened_files[0].data["doc_id"] == served.doc_ids["berth-booking-procedure.md"]


def test_staff_cannot_open_the_auditor_page_or_another_groups_file(
    open_page: OpenPage, served: Served
) -> None:
    from playwright.sync_api import expect

    page = open_page()
    sign_in(page, served, "alice")
    refused = page.goto(served.url + "audit")
    assert refused is not None and refused.status == 403
    expect(page.get_by_role("alert")).to_have_text(
        "This page is for the auditor role only; you are signed in as alice."
    )
    expect(page.locator("#enclave-audit-panel")).to_have_count(0)  # no part of the page was served

    finance = served.doc_ids["supplier-payment-terms.csv"]
    refused = page.goto(served.url + "files/" + finance)
    assert refused is not None and refused.status == 403
    expect(page.get_by_role("alert")).to_have_text(
        "You may not open this document: it belongs to none of your groups."
    )
    assert "supplier" not in page.content().lower()
    denied = [r for r in served.audit.last(50) if r.event == "access_denied" and r.user == "alice"]
    assert {r.data.get("doc_id") for r in denied} >= {finance}
    assert any(r.data.get("path") == "/audit" for r in denied)


def test_chat_is_usable_at_phone_width(open_page: OpenPage, served: Served) -> None:
    from playwright.sync_api import expect

    page = open_page(width=390, height=844)
    sign_in(page, served, "alice")
    send = page.get_by_role("button", name="Send", exact=True)
    # The conversations sidebar starts closed on a phone; open, it would cover the whole chat,
    # and the click below (which refuses a covered button) would fail.
    expect(page.locator("#enclave-history")).not_to_have_class(re.compile(r"\bopen\b"))
    page.locator("#enclave-question textarea").fill("When is the berth allocation meeting held?")
    send.click()
    answer = page.locator("#enclave-chat [data-testid=bot]").filter(has_text="Audit record")
    expect(answer).to_contain_text("10:00")
    expect(page.locator("#enclave-chat .thought-group").filter(has_text="Sources (")).to_contain_text(
        "Berth Booking Procedure"
    )
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # nothing runs off the side
    scroll_to_end(page.locator("#enclave-chat"))
    screenshot(page, "chat-mobile.png")


# -- auditor --------------------------------------------------------------------------------------


def rated_answer(served: Served) -> int:
    """The id of alice's answer to QUESTION with the thumbs-down comment (the staff test gives it;
    run alone, this test makes its own through the assistant and the audit log)."""
    for record in served.audit.last(200):
        if record.event == "answer" and record.question == QUESTION and served.audit.feedback_for(record.id):
            return record.id
    from core.types import Principal

    assistant = wiring.build_assistant(served.settings, store=wiring.build_store(served.settings))
    done = [
        e for e in assistant.stream(Principal("alice", "staff", ("public",)), QUESTION) if e.kind == "done"
    ]
    audit_id = done[0].answer.audit_id
    assert audit_id is not None
    served.audit.feedback("alice", audit_id, "down", COMMENT)
    return audit_id


def test_auditor_finds_the_rated_answer_verifies_the_chain_and_exports(
    open_page: OpenPage, served: Served
) -> None:
    from playwright.sync_api import expect

    audit_id = rated_answer(served)
    page = open_page()
    sign_in(page, served, "audrey", "audit")
    panel = page.locator("#enclave-audit-panel").first
    expect(panel).to_be_visible()
    expect(page.locator("#enclave-audit-whoami")).to_contain_text("Signed in as audrey · auditor")

    page.locator("#enclave-audit-user").locator("textarea, input").first.fill("alice")
    text = page.locator("#enclave-audit-text").locator("textarea, input").first
    text.fill("berth application")
    text.press("Enter")
    expect(page.locator("#enclave-audit-summary")).to_have_text(
        "1 record matches, newest first. Select a row to open it."
    )
    page.locator("#enclave-audit-table").get_by_role("gridcell", name=QUESTION).click()

    record = page.locator("#enclave-audit-record")
    expect(record).to_contain_text(f"Audit record {audit_id} · answer")
    expect(record).to_contain_text("Retrieved passages")
    expect(record).to_contain_text("berth-booking-procedure.md")
    expect(record.locator("table").filter(has_text="comment")).to_contain_text(COMMENT)
    stored = served.audit.get(audit_id)
    assert stored is not None
    expect(record).to_contain_text(stored.hash)

    page.locator("#enclave-audit-verify").click()
    verified = page.locator("#enclave-audit-verified")
    expect(verified).to_contain_text("Chain intact")
    assert served.audit.verify().ok
    screenshot(page, "auditor.png", full_page=True)

    downloads = {}
    for fmt in ("csv", "jsonl"):
        page.locator(f"#enclave-audit-export-{fmt}").click()
        link = page.locator(f"#enclave-audit-download a[download$='.{fmt}']")
        with page.expect_download() as started:
            link.click()
        download = started.value
        assert download.suggested_filename.endswith(f".{fmt}")
        downloads[fmt] = Path(download.path()).read_text(encoding="utf-8")
    rows = list(csv.DictReader(io.StringIO(downloads["csv"])))
    assert [(int(r["id"]), r["user"], r["question"]) for r in rows] == [(audit_id, "alice", QUESTION)]
    lines = [json.loads(line) for line in downloads["jsonl"].splitlines() if line.strip()]
    assert [(line["id"], line["hash"]) for line in lines] == [(audit_id, stored.hash)]
    exported = dict(lines[0])
    digest = exported.pop("hash")
    canonical = json.dumps(exported, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert hashlib.sha256(canonical.encode("utf-8")).hexdigest() == digest  # checkable on its own
    exports = [r for r in served.audit.last(20) if r.event == "audit_export" and r.user == "audrey"]
    assert {r.data["format"] for r in exports} == {"csv", "jsonl"}


# -- admin: sources and upload ----------------------------------------------------------------------

MARKER = "HELDBATCH"  # a sync holding a file with this word waits for the test (HeldEmbedder)
ROTA = "# Night shift rota\n\nThe night shift at berth 4 starts at 22:00 and ends at 06:00.\n"
ROTA_QUESTION = "When does the night shift at berth 4 start?"


@dataclass
class SourcesSite:
    served: Served
    notices: Path  # the folder source "notices"
    embedder: Any  # HeldEmbedder


@pytest.fixture(scope="module")
def sources_site(tmp_path_factory: pytest.TempPathFactory, embedder: Any) -> Iterator[SourcesSite]:
    """The web UI with its admin page running sources (enclave.admin_sources.AdminSources on the
    same store and audit log as the chat), a folder source "notices", an admin and two staff."""
    from core.sources import SourceSettings
    from enclave.admin_channel import Jobs
    from enclave.admin_sources import AdminSources
    from enclave.health import AdminOverview
    from enclave.sources import add_source
    from enclave.store_commands import Stores
    from tests.support.held_embedder import HeldEmbedder

    root = tmp_path_factory.mktemp("browser-sources")
    notices = root / "notices"
    notices.mkdir()
    (notices / "canteen.md").write_text("# Canteen\n\nThe canteen opens at 07:30 on weekdays.\n")
    settings = load_settings(None, data_dir=root / "var")
    settings.ingest.parse_timeout_s = 0
    settings.ui.port = free_port()
    settings.ui.org_name = ORG
    add_source(settings, "notices", SourceSettings(kind="folder", location=str(notices), groups=["public"]))
    users = wiring.build_users(settings)
    users.add("adam", PASSWORD, "admin", ())
    users.add("hanna", PASSWORD, "staff", ("hr", "public"))
    users.add("felix", PASSWORD, "staff", ("finance", "public"))
    audit = wiring.build_audit(settings)
    store = wiring.build_store(settings)
    held = HeldEmbedder(embedder, MARKER)
    assistant = wiring.build_assistant(settings, embedder=embedder, store=store)
    actions = AdminSources(Stores(settings, held, store, audit), Jobs())
    status = AdminOverview(settings, store)
    app = build_app(assistant, users, settings, audit=audit, admin_status=status, admin_sources=actions)
    url = serve(app, settings, block=False, sources=wiring.build_originals(settings).find)
    try:
        yield SourcesSite(Served(url, settings, audit, {}), notices, held)
    finally:
        held.release()
        app.close()


def ask(page: Any, question: str) -> Any:
    """Ask in the chat; the finished answer's message."""
    from playwright.sync_api import expect

    box = page.locator("#enclave-question textarea")
    box.fill(question)
    box.press("Enter")
    answer = page.locator("#enclave-chat [data-testid=bot]").filter(has_text="Audit record")
    expect(answer).to_have_count(1)
    return answer


def test_admin_uploads_for_a_group_syncs_a_source_and_staff_of_that_group_only_find_it(
    open_page: OpenPage, sources_site: SourcesSite, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    served = sources_site.served
    page = open_page(height=1400)
    sign_in(page, served, "adam", "admin")
    expect(page.locator("#enclave-admin-panel").first).to_be_visible()
    sources = page.locator("#enclave-admin-sources")
    expect(sources).to_contain_text("notices")
    expect(sources).to_contain_text("never synced")

    # Upload a file for the hr group: kept, hashed, ingested, audited.
    rota = tmp_path / "rota.md"
    rota.write_text(ROTA)
    page.locator("#enclave-admin-upload-files input[type=file]").set_input_files(str(rota))
    expect(page.locator("#enclave-admin-upload-files")).to_contain_text(f"{len(ROTA)}.0 B")  # uploaded
    page.locator("#enclave-admin-upload-groups textarea").fill("hr")
    page.locator("#enclave-admin-upload").click()
    result = page.locator("#enclave-admin-upload-result")
    expect(result).to_contain_text("1 file uploaded to uploads for hr")
    expect(result).to_contain_text("Source uploads synced")
    digest = hashlib.sha256(ROTA.encode()).hexdigest()
    expect(page.locator("#enclave-admin-uploaded")).to_contain_text(digest)
    expect(page.locator("#enclave-admin-uploaded")).to_contain_text("added")
    expect(sources).to_contain_text("uploads")
    stored = served.settings.uploads_dir / "uploads" / "rota.md"
    assert stored.read_text() == ROTA
    upload = next(r for r in served.audit.last(50) if r.event == "upload")
    assert upload.user == "adam" and upload.data["groups"] == ["hr"]
    assert upload.data["files"][0]["sha256"] == digest

    # Sync now on the folder source: its result, then a second sync followed file by file.
    picker = page.locator("#enclave-admin-source input")
    picker.fill("notices")
    picker.press("Enter")
    page.locator("#enclave-admin-sync").click()
    report = page.locator("#enclave-admin-report-summary")
    expect(report).to_contain_text("Source notices synced")
    expect(report).to_contain_text("1 added")
    expect(page.locator("#enclave-admin-report")).to_contain_text("canteen.md")

    (sources_site.notices / "ferry.md").write_text(
        f"# Ferry\n\n{MARKER}: the island ferry leaves at 09:15.\n"
    )
    sources_site.embedder.hold()
    try:
        page.locator("#enclave-admin-sync").click()
        expect(page.get_by_text(re.compile(r"1 of 2 files: canteen\.md")).first).to_be_visible()
        screenshot(page, "admin-sources.png", full_page=True)
    finally:
        sources_site.embedder.release()
    expect(report).to_contain_text("1 added, 0 changed")
    expect(page.locator("#enclave-admin-report")).to_contain_text("ferry.md")
    expect(sources.locator("tr").filter(has_text="notices")).to_contain_text("ok")

    # Staff of hr retrieve the upload; staff of another group do not.
    hanna = open_page()
    sign_in(hanna, served, "hanna")
    answer = ask(hanna, ROTA_QUESTION)
    expect(answer).to_contain_text("22:00")
    expect(hanna.locator("#enclave-chat .thought-group").filter(has_text="Sources (")).to_contain_text(
        "rota.md"
    )
    felix = open_page()
    sign_in(felix, served, "felix")
    answer = ask(felix, ROTA_QUESTION)
    expect(answer).not_to_contain_text("22:00")
    expect(felix.locator("#enclave-chat")).not_to_contain_text("rota.md")

    # The admin removes the upload: it leaves the source and the index, audited.
    page.locator("#enclave-admin-remove-name textarea").fill("rota.md")
    page.locator("#enclave-admin-remove").click()
    expect(result).to_contain_text("rota.md removed from uploads")
    expect(result).to_contain_text("its document left the index")
    assert not stored.exists()
    removed = next(r for r in served.audit.last(50) if r.event == "document_removed")
    assert removed.user == "adam" and removed.data["sha256"] == digest
    again = open_page()
    sign_in(again, served, "hanna")
    expect(ask(again, ROTA_QUESTION)).not_to_contain_text("22:00")
