"""The admin page's sources over real HTTP: a real Gradio server on 127.0.0.1 with the real
AdminSources (enclave/admin_sources.py) on MiniLM, embedded Chroma, the lexical index, the
manifest and the audit log, driven with gradio_client and httpx as an admin, as staff, as an
auditor and signed out.

"Sync now" syncs a real folder source through the web UI's one turn of store-writing commands;
uploads go through Gradio's real upload route and the boundary's binding of uploaded files.
A sync is held mid-way by the real embedder waiting on a marker word (tests/support/
held_embedder.py), never by timing. The chat side needs an assistant, and none is asked anything
here: `object()` stands in.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from audit import AuditLog
from core.settings import Settings
from core.sources import SourceSettings
from core.users import UserStore
from enclave import wiring
from enclave.admin_channel import Jobs
from enclave.admin_sources import AdminSources
from enclave.sources import SourcePaths, add_source, source_states
from enclave.store_commands import Stores
from tests.support.held_embedder import HeldEmbedder
from tests.support.net import (
    free_port,
    nothing_left_loopback,  # noqa: F401 (an autouse fixture)
)
from ui import build_app, serve

pytestmark = pytest.mark.slow  # real ingest, a real server

PASSWORD = "correct horse battery"
MARKER = "HELDBATCH"
LEAVE = "# Leave\n\nEvery employee receives 27 days of annual leave per year.\n"
GATES = "# Gates\n\nGate 3 of the harbour closes at 18:00 on Sundays.\n"
ROTA = "# Rota\n\nThe night shift at berth 4 starts at 22:00 and ends at 06:00.\n"
SALARIES = "# Salary bands\n\nBand C of the salary scale starts at 41,500 a year.\n"
UPLOAD_MIB = 1  # ui.max_upload_mb of the served app


@dataclass
class Served:
    url: str
    settings: Settings
    log: AuditLog
    handbook: Path
    files: Path  # files the tests upload from
    embedder: HeldEmbedder
    store: Any
    jobs: Jobs
    actions: AdminSources

    def client(self, name: str) -> Client:
        return Client(self.url, auth=(name, PASSWORD), verbose=False, analytics_enabled=False)

    @contextmanager
    def http(self, name: str | None) -> Iterator[httpx.Client]:
        """A client signed in as `name` (None: signed out)."""
        with httpx.Client(base_url=self.url, timeout=60) as http:
            if name is not None:
                assert http.post("/login", data={"username": name, "password": PASSWORD}).is_success
            yield http

    def file(self, name: str, text: str | bytes) -> Path:
        path = self.files / name
        path.write_bytes(text.encode() if isinstance(text, str) else text)
        return path

    def state(self, name: str) -> dict[str, Any]:
        return next(s for s in source_states(self.settings) if s["name"] == name)

    def records(self, event: str) -> list[Any]:
        return [r for r in reversed(self.log.last(10_000)) if r.event == event]

    def upload(self, name: str, paths: list[Path], source: str, groups: str, replace: bool = False) -> Any:
        files = [handle_file(str(p)) for p in paths]
        return self.client(name).predict(files, source, groups, replace, api_name="/admin_upload")

    def groups_of(self, file_name: str) -> list[str] | None:
        from ingest.manifest import Manifest

        manifest = Manifest(self.settings.manifest_path)
        try:
            for doc in manifest.docs():
                for f in manifest.files(doc.doc_id):
                    if Path(f.path).name == file_name:
                        return sorted(f.groups)
        finally:
            manifest.close()
        return None

    def finds(self, question: str, groups: tuple[str, ...], text: str) -> bool:
        hits = self.store.search(self.embedder.embed_query(question), 5, list(groups))
        hits += self.store.search_lexical(question, 5, list(groups))
        return any(text in h.chunk.text for h in hits)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, embedder: Any) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("admin-sources")
    handbook = root / "handbook"
    handbook.mkdir()
    (handbook / "leave.md").write_text(LEAVE, encoding="utf-8")
    (handbook / "gates.md").write_text(GATES, encoding="utf-8")
    files = root / "files"
    files.mkdir()
    settings = Settings(data_dir=root / "var")
    settings.ingest.parse_timeout_s = 0
    settings.ui.host, settings.ui.port = "127.0.0.1", free_port()
    settings.ui.max_upload_mb = UPLOAD_MIB
    add_source(settings, "handbook", SourceSettings(kind="folder", location=str(handbook), groups=["public"]))
    users = UserStore(settings.users_path)
    users.add("adam", PASSWORD, "admin", ())
    users.add("alice", PASSWORD, "staff", ("hr", "public"))
    users.add("bob", PASSWORD, "staff", ("finance", "public"))
    users.add("olga", PASSWORD, "auditor", ())
    log = AuditLog(settings.audit_path)
    store = wiring.build_store(settings)
    held = HeldEmbedder(embedder, MARKER)
    jobs = Jobs()
    actions = AdminSources(Stores(settings, held, store, log), jobs)
    gr_app = build_app(object(), users, settings, log, admin_sources=actions)
    url = serve(gr_app, settings, block=False)
    try:
        yield Served(url, settings, log, handbook, files, held, store, jobs, actions)
    finally:
        held.release()
        gr_app.close()


# -- the sources and Sync now ----------------------------------------------------------------------


def test_the_sources_are_listed_with_their_state(served: Served) -> None:
    summary, table, source_choices, upload_choices = served.client("adam").predict(api_name="/admin_sources")
    assert table["headers"] == [
        "source", "kind", "location", "groups", "schedule", "state", "last sync", "reason", "next run",
        "documents", "failures",
    ]  # fmt: skip
    rows = {r[0]: r for r in table["data"]}
    assert rows["handbook"][1:7] == ["folder", str(served.handbook), "public", "manual", "never synced", ""]
    assert summary == "1 source: 1 never synced. Choose one to see its last report, or to sync it now."
    assert "handbook" in {c[0] if isinstance(c, list | tuple) else c for c in source_choices["choices"]}
    assert "uploads" in {c[0] if isinstance(c, list | tuple) else c for c in upload_choices["choices"]}


def test_sync_now_syncs_the_source_and_shows_each_failure_with_its_reason(served: Served) -> None:
    adam = served.client("adam")
    summary, report, _, table = adam.predict("handbook", api_name="/admin_sync")
    assert summary.startswith("**Source `handbook` synced** ")
    assert "started by adam (admin page)" in summary and "2 added" in summary
    assert sorted((r[0], r[1]) for r in report["data"]) == [("gates.md", "added"), ("leave.md", "added")]
    row = next(r for r in table["data"] if r[0] == "handbook")
    assert row[5] == "ok" and row[9] == "2" and row[10] == "0"
    record = served.records("source_sync")[-1]
    assert record.user == "adam" and record.data["started_by"]["via"] == "admin page"
    assert f"Audit record {record.id}." in summary

    # A file removed and one that cannot be parsed: the report names each, the failure's reason.
    (served.handbook / "gates.md").unlink()
    (served.handbook / "broken.pdf").write_bytes(b"%PDF-1.7\n garbage without any pages")
    summary, report, _, table = adam.predict("handbook", api_name="/admin_sync")
    assert summary.startswith("**Source `handbook` synced, 1 files FAILED**")
    rows = {r[0]: r[1:] for r in report["data"]}
    assert rows["gates.md"] == ["removed", ""]
    assert rows["broken.pdf"][0] == "failed" and "broken.pdf" in rows["broken.pdf"][1]
    assert list(report["data"][0][:2]) == ["broken.pdf", "failed"]  # failures first
    assert next(r for r in table["data"] if r[0] == "handbook")[10] == "1"
    # Choosing the source shows the same last report.
    shown, again = adam.predict("handbook", api_name="/admin_source_report")
    assert shown == summary and again["data"] == report["data"]
    (served.handbook / "broken.pdf").unlink()


def test_a_busy_web_ui_says_what_is_running_and_the_first_finishes(served: Served) -> None:
    (served.handbook / "held.md").write_text(f"# Held\n\n{MARKER} notice: berth 9 is closed.\n")
    served.embedder.hold()
    first = served.client("adam").submit("handbook", api_name="/admin_sync")
    try:
        assert served.embedder.reached.wait(300), "the sync never reached the held file"
        with pytest.raises(AppError) as busy:
            served.client("adam").predict("handbook", api_name="/admin_sync")
        message = str(busy.value)
        assert "is already running `enclave sources sync` for adam on the admin page since" in message
        with pytest.raises(AppError) as busy:
            served.upload("adam", [served.file("memo.md", "# Memo\n\nA memo.\n")], "uploads", "hr")
        assert "is already running `enclave sources sync`" in str(busy.value)
        assert not (served.settings.uploads_dir / "uploads" / "memo.md").exists()
    finally:
        served.embedder.release()
    summary, *_ = first.result(timeout=300)
    assert summary.startswith("**Source `handbook` synced**") and "1 added" in summary
    assert served.state("handbook")["state"] == "ok"
    (served.handbook / "held.md").unlink()


def test_sync_now_reports_progress_while_it_runs(served: Served) -> None:
    """The progress bar's messages reach the page while the sync runs, file by file."""
    (served.handbook / "slow.md").write_text(f"# Slow\n\n{MARKER} the ferry to the island is late.\n")
    served.embedder.hold()
    progress: list[Any] = []
    try:
        with served.http("adam") as http:
            config = http.get("/config").json()
            fn_index = next(d["id"] for d in config["dependencies"] if d.get("api_name") == "admin_sync")
            session = uuid.uuid4().hex
            body = {"data": ["handbook"], "fn_index": fn_index, "session_hash": session, "event_data": None}
            joined = http.post("/gradio_api/queue/join", json=body)
            assert joined.status_code == 200, joined.text
            with http.stream("GET", "/gradio_api/queue/data", params={"session_hash": session}) as stream:
                for line in stream.iter_lines():
                    if not line.startswith("data:"):
                        continue
                    message = json.loads(line[5:])
                    if message.get("msg") == "progress":
                        progress.append(message["progress_data"])
                        if any("of 2 files" in str(p) for p in message["progress_data"] or []):
                            served.embedder.release()  # seen mid-way: let it finish
                    if message.get("msg") == "process_completed":
                        assert message["success"], message
                        break
    finally:
        served.embedder.release()
    descs = [str(p.get("desc")) for unit in progress for p in unit or []]
    assert any("1 of 2 files: leave.md" in d for d in descs), descs
    (served.handbook / "slow.md").unlink()


# -- uploads -----------------------------------------------------------------------------------------


def test_an_upload_is_stored_hashed_ingested_for_its_groups_and_audited(served: Served) -> None:
    rota = served.file("rota.md", ROTA)
    salaries = served.file("salary bands.md", SALARIES)
    summary, table, cleared, _, sources, _, upload_choices = served.upload(
        "adam", [rota, salaries], "uploads", "hr, payroll"
    )
    assert summary.startswith("**2 files uploaded to `uploads`** for hr, payroll (audit record ")
    assert "2 new, 0 replaced, 0 unchanged." in summary and "**Source `uploads` synced**" in summary
    assert cleared is None
    digests = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (rota, salaries)}
    assert {r[0]: (r[2], r[3], r[4]) for r in table["data"]} == {
        "rota.md": (digests["rota.md"], "new", "added"),
        "salary bands.md": (digests["salary bands.md"], "new", "added"),
    }
    # Kept under the data folder, byte for byte, with their groups.
    folder = served.settings.uploads_dir / "uploads"
    assert {p.name for p in folder.iterdir()} == {"rota.md", "salary bands.md"}
    assert (folder / "rota.md").read_bytes() == rota.read_bytes()
    assert served.groups_of("rota.md") == ["hr", "payroll"]
    # One copy on disk: the source's mirror links each uploaded file rather than copying it.
    mirror = SourcePaths.of(served.settings, "uploads").mirror
    assert all(os.path.samefile(folder / name, mirror / name) for name in ("rota.md", "salary bands.md"))
    row = next(r for r in sources["data"] if r[0] == "uploads")
    assert row[1] == "upload" and row[3] == "chosen per file at upload" and row[5] == "ok"
    assert "uploads" in {c[0] if isinstance(c, list | tuple) else c for c in upload_choices["choices"]}
    # Audited: who, which source, the groups, each file with its SHA-256; then the sync itself.
    upload = served.records("upload")[-1]
    assert upload.user == "adam" and upload.data["source"] == "uploads"
    assert upload.data["groups"] == ["hr", "payroll"] and upload.data["started_by"]["via"] == "admin page"
    assert {f["name"]: f["sha256"] for f in upload.data["files"]} == digests
    sync = served.records("source_sync")[-1]
    assert sync.user == "adam" and sync.id > upload.id
    assert {a["path"]: a["sha256"] for a in sync.data["added"]} == digests
    # Retrievable by its groups only.
    assert served.finds("When does the night shift at berth 4 start?", ("hr",), "22:00")
    assert not served.finds("When does the night shift at berth 4 start?", ("finance", "public"), "22:00")


def test_the_same_name_is_replaced_only_when_asked(served: Served) -> None:
    first = served.file("notice.md", "# Notice\n\nThe canteen opens at 07:30.\n")
    served.upload("adam", [first], "notices", "public")
    changed = served.file("notice.md", "# Notice\n\nThe canteen opens at 08:00 from May.\n")
    with pytest.raises(AppError) as refused:
        served.upload("adam", [changed], "notices", "public")
    message = str(refused.value)
    assert "upload source 'notices' holds 'notice.md' already, with other content" in message
    assert "tick 'Replace files of the same name'" in message
    stored = served.settings.uploads_dir / "notices" / "notice.md"
    assert "07:30" in stored.read_text()
    before = hashlib.sha256(stored.read_bytes()).hexdigest()
    summary, table, *_ = served.upload("adam", [changed], "notices", "public, staff", replace=True)
    assert "0 new, 1 replaced, 0 unchanged." in summary
    assert table["data"][0][3:] == ["replaced", "changed"]
    assert "08:00" in stored.read_text()
    mirrored = SourcePaths.of(served.settings, "notices").mirror / "notice.md"
    assert os.path.samefile(stored, mirrored) and "08:00" in mirrored.read_text()
    stamp = stored.stat().st_mtime_ns
    record = served.records("upload")[-1]
    assert record.data["files"][0]["previous_sha256"] == before
    assert served.groups_of("notice.md") == ["public", "staff"]
    # The same bytes again: nothing to replace, nothing new in the index.
    summary, table, *_ = served.upload("adam", [changed], "notices", "public, staff")
    assert "0 new, 0 replaced, 1 unchanged." in summary and table["data"][0][3:] == ["unchanged", "unchanged"]
    assert stored.stat().st_mtime_ns == stamp  # a sync never dates the upload it links
    # The same bytes for other groups: the document moves to them, nothing is embedded again.
    summary, table, *_ = served.upload("adam", [changed], "notices", "hr")
    assert table["data"][0][3:] == ["unchanged", "changed"]
    assert served.groups_of("notice.md") == ["hr"]
    sync = served.records("source_sync")[-1]
    assert sync.data["counts"].get("new", 0) == 0 and sync.data["changed"][0]["previous_groups"] == [
        "public",
        "staff",
    ]


@pytest.fixture
def small_files(served: Served) -> Iterator[None]:
    """ingest.max_file_mb at 1 KiB for one test (Gradio's own limit stays as the server began)."""
    saved = served.settings.ingest.max_file_mb
    served.settings.ingest.max_file_mb = 1 / 1024
    yield
    served.settings.ingest.max_file_mb = saved


def test_bad_files_are_refused_naming_each_and_nothing_is_kept(served: Served, small_files: None) -> None:
    good = served.file("fine.md", "# Fine\n\nA fine file.\n")
    program = served.file("setup.exe", b"MZ\x90\x00 not a document")
    large = served.file("large.md", "# Large\n\n" + "x" * 4000)
    before = sorted(served.settings.uploads_dir.rglob("*"))
    records = len(served.records("upload"))
    with pytest.raises(AppError) as refused:
        served.upload("adam", [good, program, large], "uploads", "hr")
    message = str(refused.value)
    assert message.startswith("Nothing was uploaded: 2 files are refused.")
    assert "'setup.exe': type '.exe' is not one the ingest reads" in message
    assert "'large.md': it is 0.0 MiB, over the 0.000976562 MiB limit (ingest.max_file_mb)" in message
    assert "fine.md" not in message
    for groups, why in (("", "Groups: give the groups"), ("hr, a:b", "Groups: 'a:b' is not a group name")):
        with pytest.raises(AppError) as refused:
            served.upload("adam", [good], "uploads", groups)
        assert why in str(refused.value)
    with pytest.raises(AppError) as refused:
        served.upload("adam", [good], "handbook", "hr")
    assert "'handbook' is a folder source of" in str(refused.value) and "not an upload source" in str(
        refused.value
    )
    with pytest.raises(AppError) as refused:
        served.upload("adam", [good], "../etc", "hr")
    assert "Upload source: source name '../etc'" in str(refused.value)
    assert sorted(served.settings.uploads_dir.rglob("*")) == before
    assert len(served.records("upload")) == records


def test_a_hostile_file_name_is_neutralised_by_the_upload_route(served: Served) -> None:
    """A name with ../ or a NUL, posted straight to the upload route: Gradio keeps only its last
    part, cleaned, inside its cache; stored, it lands inside the upload source's folder."""
    with served.http("adam") as http:
        parts = [
            ("../../../../evil.md", b"# Evil\n\nNothing to see.\n"),
            ("nul\x00name.md", b"# Nul\n\nA NUL.\n"),
        ]
        body = b"".join(
            b'--XyZ\r\nContent-Disposition: form-data; name="files"; filename="'
            + name.encode()
            + b'"\r\nContent-Type: text/markdown\r\n\r\n'
            + data
            + b"\r\n"
            for name, data in parts
        )
        posted = http.post(
            "/gradio_api/upload",
            content=body + b"--XyZ--\r\n",
            headers={"content-type": "multipart/form-data; boundary=XyZ"},
        )
        assert posted.status_code == 200, posted.text
        paths = posted.json()
        assert [Path(p).name for p in paths] == ["evil.md", "nulname.md"]  # as sent, raw
        session = uuid.uuid4().hex
        config = http.get("/config").json()
        fn_index = next(d["id"] for d in config["dependencies"] if d.get("api_name") == "admin_upload")
        files = [{"path": p, "meta": {"_type": "gradio.FileData"}, "orig_name": "../../x.md"} for p in paths]
        body = {"data": [files, "uploads", "hr", False], "fn_index": fn_index, "session_hash": session}
        assert http.post("/gradio_api/queue/join", json={**body, "event_data": None}).status_code == 200
        with http.stream("GET", "/gradio_api/queue/data", params={"session_hash": session}) as stream:
            for line in stream.iter_lines():
                if '"process_completed"' in line:
                    assert '"success": true' in line or '"success":true' in line, line
                    break
    folder = served.settings.uploads_dir / "uploads"
    assert (folder / "evil.md").is_file() and (folder / "nulname.md").is_file()
    assert not any(Path(p).exists() for p in paths)  # kept under the data folder: Gradio's copies gone
    assert not (served.settings.data_dir / "evil.md").exists()
    assert not any(p.name == "evil.md" for p in served.settings.data_dir.parent.glob("*"))


# -- who may do it -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [None, "alice", "olga"])
def test_only_admins_upload_or_sync(served: Served, name: str | None) -> None:
    """Refused at the boundary: the upload route, the events by queue and by name, before any
    handler runs; staff and auditors' refusals are audited."""
    status = 401 if name is None else 403
    state = served.state("handbook")
    uploads = sorted(served.settings.uploads_dir.rglob("*"))
    denied = len(served.records("access_denied"))
    with served.http(name) as http:
        posted = http.post("/gradio_api/upload", files=[("files", ("memo.md", b"# Memo\n", "text/markdown"))])
        assert posted.status_code == status, posted.text
        progress = http.get("/gradio_api/upload_progress", params={"upload_id": "abc"})
        assert progress.status_code == status
        session = uuid.uuid4().hex
        if name is not None:
            config = http.get("/config").json()
            ids = {d.get("api_name"): d["id"] for d in config["dependencies"]}
        else:
            ids = {"admin_sync": 0, "admin_upload": 0, "admin_remove_upload": 0}
        for api, data in (
            ("admin_sync", ["handbook"]),
            ("admin_upload", [None, "uploads", "hr", False]),
            ("admin_remove_upload", ["uploads", "rota.md"]),
        ):
            body = {"data": data, "fn_index": ids[api], "session_hash": session, "event_data": None}
            assert http.post("/gradio_api/queue/join", json=body).status_code == status, api
            assert http.post(f"/gradio_api/call/{api}", json={"data": data}).status_code == status, api
    assert served.state("handbook")["last"] == state["last"]
    assert sorted(served.settings.uploads_dir.rglob("*")) == uploads
    if name is not None:
        denials = [r.data for r in served.records("access_denied")[denied:] if r.user == name]
        assert {(d["path"], d["reason"]) for d in denials} >= {
            ("/gradio_api/upload", "role"),
            ("/gradio_api/upload_progress", "role"),
            ("/gradio_api/queue/join", "The event 'admin_sync' is for the admin role only."),
            ("/gradio_api/queue/join", "The event 'admin_upload' is for the admin role only."),
            ("/gradio_api/queue/join", "The event 'admin_remove_upload' is for the admin role only."),
        }


@pytest.mark.parametrize("name", ["alice", "olga"])
def test_the_handlers_check_the_role_themselves(served: Served, name: str) -> None:
    """Behind the boundary, each handler refuses anyone but an admin before it looks at a file or
    a source (called here as Gradio would call them, with the signed-in user's request)."""
    import gradio as gr

    from ui.admin import NOT_ALLOWED, AdminPage

    page = AdminPage(
        None, served.log, UserStore(served.settings.users_path), served.settings.ui, served.actions
    )
    request = SimpleNamespace(username=name)
    memo = served.file("memo.md", "# Memo\n")
    uploads = sorted(served.settings.uploads_dir.rglob("*"))
    state = served.state("handbook")
    calls = {
        "upload files": lambda: page.upload_now([str(memo)], "uploads", "hr", False, request),
        "remove an uploaded file": lambda: page.remove_now("uploads", "rota.md", request),
        "sync a source": lambda: page.sync_now("handbook", request),
        "see the sources": lambda: page.sources_view(request),
        "read a source's report": lambda: page.source_report("handbook", request),
    }
    for action, call in calls.items():
        with pytest.raises(gr.Error) as refused:
            call()
        assert refused.value.message == NOT_ALLOWED, action
    assert memo.exists() and sorted(served.settings.uploads_dir.rglob("*")) == uploads
    assert served.state("handbook")["last"] == state["last"]
    denied = [
        r.data for r in served.records("access_denied") if r.user == name and r.data.get("page") == "admin"
    ]
    assert {d["action"] for d in denied} >= set(calls)


def test_an_uploaded_file_is_removed_from_the_page_and_audited(served: Served) -> None:
    """One file out of an upload source: gone from it, its mirror and the index at once, audited
    as document_removed (as `enclave docs remove`) with the sync's own record; the others stay."""
    memo = served.file("berth memo.md", "# Berth memo\n\nBerth 9 is closed for dredging until June.\n")
    keep = served.file("keep.md", "# Keep\n\nThe pilot boat leaves from pier 2.\n")
    served.upload("adam", [memo, keep], "removals", "hr")
    assert served.finds("Which berth is closed for dredging?", ("hr",), "Berth 9")
    sha = hashlib.sha256(memo.read_bytes()).hexdigest()
    adam = served.client("adam")
    with pytest.raises(AppError, match=r"upload source 'removals' holds no file named 'nothing\.md'"):
        adam.predict("removals", "nothing.md", api_name="/admin_remove_upload")
    with pytest.raises(AppError, match="source 'handbook' is not an upload source"):
        adam.predict("handbook", "leave.md", api_name="/admin_remove_upload")

    summary, cleared, *_ = adam.predict("removals", "berth memo.md", api_name="/admin_remove_upload")
    assert summary.startswith("**`berth memo.md` removed from `removals`** (audit record ")
    assert "its document left the index." in summary and cleared == ""
    folder = served.settings.uploads_dir / "removals"
    mirror = SourcePaths.of(served.settings, "removals").mirror
    assert {p.name for p in folder.iterdir()} == {"keep.md"} and {p.name for p in mirror.iterdir()} == {
        "keep.md"
    }
    assert "berth memo.md" not in (served.settings.uploads_dir / "removals.groups.yaml").read_text()
    assert not served.finds("Which berth is closed for dredging?", ("hr",), "Berth 9")
    assert served.finds("Where does the pilot boat leave from?", ("hr",), "pier 2")
    record = served.records("document_removed")[-1]
    assert record.user == "adam" and record.data["started_by"]["via"] == "admin page"
    assert record.data["source"] == "removals" and record.data["file"] == "berth memo.md"
    assert record.data["sha256"] == sha and record.data["doc_id"] == sha[:32]
    assert record.data["document_removed"] is True and record.data["groups"] == ["hr"]
    sync = served.records("source_sync")[-1]
    assert sync.id == record.data["sync_audit_id"] and sync.id < record.id
    assert [r["path"] for r in sync.data["removed"]] == ["berth memo.md"]

    # The last file of a source too: a deliberate removal is no outage.
    adam.predict("removals", "keep.md", api_name="/admin_remove_upload")
    assert not served.finds("Where does the pilot boat leave from?", ("hr",), "pier 2")
    assert served.state("removals")["state"] == "ok"


def test_an_uploaded_file_is_usable_by_the_sign_in_that_uploaded_it_only(served: Served) -> None:
    """Another sign-in (the same admin's included) cannot hand the upload event a file it did not
    upload, nor follow that upload's progress; a server path is refused the same way."""
    with served.http("adam") as first, served.http("adam") as second:
        posted = first.post(
            "/gradio_api/upload",
            params={"upload_id": "first-upload"},
            files=[("files", ("mine.md", b"# Mine\n\nOnly mine.\n", "text/markdown"))],
        )
        assert posted.status_code == 200, posted.text
        [path] = posted.json()
        config = second.get("/config").json()
        fn_index = next(d["id"] for d in config["dependencies"] if d.get("api_name") == "admin_upload")
        for target in (path, str(served.settings.users_path), "/etc/passwd"):
            files = [{"path": target, "meta": {"_type": "gradio.FileData"}}]
            body = {
                "data": [files, "uploads", "hr", False],
                "fn_index": fn_index,
                "session_hash": uuid.uuid4().hex,
                "event_data": None,
            }
            refused = second.post("/gradio_api/queue/join", json=body)
            assert refused.status_code == 400, target
            assert "must be files you uploaded from this page" in refused.json()["detail"]
            refused = second.post("/gradio_api/call/admin_upload", json={"data": body["data"]})
            assert refused.status_code == 400, target
        progress = second.get("/gradio_api/upload_progress", params={"upload_id": "first-upload"})
        assert progress.status_code == 403
    assert not (served.settings.uploads_dir / "uploads" / "mine.md").exists()


def test_an_upload_over_the_limit_is_refused_before_it_is_read(served: Served) -> None:
    body = b"x" * (UPLOAD_MIB * 1024 * 1024 + 1)
    with served.http("adam") as http:
        refused = http.post("/gradio_api/upload", files=[("files", ("big.md", body, "text/markdown"))])
    assert refused.status_code == 413
    assert (
        f"more than the {UPLOAD_MIB} MiB allowed for one upload (ui.max_upload_mb)"
        in refused.json()["detail"]
    )


def test_an_upload_sent_chunked_cannot_pass_the_limit_without_a_content_length(served: Served) -> None:
    """A body with no Content-Length (chunked) is cut off once over the limit: no path comes back."""
    boundary = "enclave-chunked"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="big.md"\r\n'
        "Content-Type: text/markdown\r\n\r\n".encode()
        + b"x" * (UPLOAD_MIB * 1024 * 1024 + 64 * 1024)
        + f"\r\n--{boundary}--\r\n".encode()
    )

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 64 * 1024):
            yield body[start : start + 64 * 1024]

    with served.http("adam") as http:
        try:
            answer = http.post(
                "/gradio_api/upload",
                content=chunks(),
                headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
            )
        except httpx.HTTPError:
            return  # the server dropped the body: nothing was kept
    assert answer.status_code != 200, answer.text[:500]
