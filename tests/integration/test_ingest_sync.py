"""Incremental ingest on the real parts: content decides identity, groups follow the files,
a batch is stored with one upsert between two manifest transactions, and an interrupted run
(SIGKILL, or a failure at any step of a batch's writes) leaves exactly one copy."""

from __future__ import annotations

import contextlib
import email.message
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.settings import Settings
from enclave import wiring
from ingest.acl import GroupPolicy
from ingest.manifest import Manifest
from tests.support.chroma_server import both_store_modes
from tests.support.cli import shared_embedder

pytestmark = pytest.mark.slow


class CountingEmbedder:
    """The real embedder, counting the passages it is asked to embed."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.model_id = inner.model_id
        self.embedded = 0

    def embed_documents(self, texts: Any) -> list[list[float]]:
        self.embedded += len(texts)
        return self.inner.embed_documents(texts)  # type: ignore[no-any-return]

    def embed_query(self, text: str) -> list[float]:
        return self.inner.embed_query(text)  # type: ignore[no-any-return]


def write_corpus(folder: Path, n: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (folder / f"note-{i:03d}.md").write_text(
            f"# Note {i}\n\n## Facts\n\nRoom {i} on floor {i % 7} holds {i * 3} chairs and {i + 2} tables. "
            f"The key for room {i} is kept at reception desk {i % 4}.\n"
        )


def write_mail(path: Path, attachments: dict[str, bytes]) -> Path:
    msg = email.message.EmailMessage()
    msg["Subject"] = f"Minutes {path.stem}"
    msg.set_content(f"The minutes of {path.stem} are attached.\n")
    for name, data in attachments.items():
        msg.add_attachment(data, maintype="text", subtype="plain", filename=name)
    path.write_bytes(bytes(msg))
    return path


def assert_consistent(settings: Settings) -> None:
    store = wiring.build_store(settings)
    manifest = Manifest(settings.manifest_path)
    stored = store.document_ids()  # chunks per document, read from Chroma itself
    expected = {d.doc_id: d.chunks for d in manifest.docs()}
    assert stored == expected, "store and manifest disagree"
    assert manifest.pending() == []
    for doc in manifest.docs():  # held by a file, or attached to a mail a file holds
        assert manifest.sources(doc.doc_id), f"{doc.doc_id} is held by no file"
    assert manifest.orphan_docs() == []
    ids = [
        cid
        for groups in store.access_classes().values()
        for cid in store.dense._collection(groups, create=False).get(include=[])["ids"]
    ]
    assert len(ids) == len(set(ids)), "a chunk is stored twice"


@pytest.fixture
def parts(settings: Settings, embedder: Any) -> dict[str, Any]:
    counting = CountingEmbedder(embedder)
    store = wiring.build_store(settings)
    settings.ingest.workers = 1
    settings.ingest.parse_timeout_s = 0  # no limit: parse in this process (test_ingest_parsers has the limit)
    return {
        "embedder": counting,
        "store": store,
        "pipeline": wiring.build_pipeline(settings, embedder=counting, store=store),  # type: ignore[arg-type]
        "manifest": Manifest(settings.manifest_path),
    }


@both_store_modes
def test_rename_and_copy_are_not_embedded_again(
    parts: dict[str, Any], tmp_path: Path, settings: Settings
) -> None:
    docs = tmp_path / "docs"
    write_corpus(docs, 3)
    pipeline, emb = parts["pipeline"], parts["embedder"]
    pipeline.run([docs], ["staff"])
    embedded, chunks = emb.embedded, parts["store"].count()

    (docs / "note-000.md").rename(docs / "renamed.md")
    shutil.copy(docs / "note-001.md", docs / "copy-of-note-001.md")
    report = pipeline.run([docs], ["staff"], prune=True)
    status = {Path(f.path).name: f.status for f in report.files}
    assert status["renamed.md"] == "linked" and status["copy-of-note-001.md"] == "linked"
    assert status["note-000.md"] == "pruned"
    assert emb.embedded == embedded  # nothing embedded again
    assert parts["store"].count() == chunks  # stored once
    copy = parts["manifest"].file(str((docs / "copy-of-note-001.md").resolve()))
    held_by = {Path(f.path).name for f in parts["manifest"].files(copy.doc_id)}
    assert held_by == {"note-001.md", "copy-of-note-001.md"}
    assert_consistent(settings)


@both_store_modes
def test_groups_are_the_union_of_the_files_holding_a_document(
    parts: dict[str, Any], tmp_path: Path, settings: Settings
) -> None:
    public, hr = tmp_path / "public", tmp_path / "hr"
    write_corpus(hr, 1)
    public.mkdir()
    shutil.copy(hr / "note-000.md", public / "same.md")
    pipeline, manifest = parts["pipeline"], parts["manifest"]
    pipeline.run([hr], ["hr"])
    doc_id = manifest.docs()[0].doc_id
    assert manifest.doc(doc_id).groups == ("hr",)
    pipeline.run([public], ["public"])
    assert manifest.doc(doc_id).groups == ("hr", "public")
    (public / "same.md").unlink()
    pipeline.run([public], ["public"], prune=True)
    assert manifest.doc(doc_id).groups == ("hr",)  # moved back: public readers lose it
    assert_consistent(settings)


def test_acl_file_assigns_groups_per_folder(
    parts: dict[str, Any], tmp_path: Path, settings: Settings
) -> None:
    root = tmp_path / "share"
    write_corpus(root / "general", 1)
    (root / "finance" / "secret").mkdir(parents=True)
    (root / "finance" / "q1.md").write_text("# Q1\n\nRevenue in Q1 was 7.1 million.\n")
    (root / "finance" / "secret" / "m.md").write_text("# Merger\n\nThe merger code name is Heron.\n")
    acl = root / "acl.yaml"
    acl.write_text(".: [staff]\nfinance: [finance]\nfinance/secret: [board]\n")
    policy = GroupPolicy.from_file(acl)
    parts["pipeline"].run([root / "general", root / "finance"], policy)
    groups = {Path(f.path).name: f.groups for f in parts["manifest"].files()}
    assert groups == {"note-000.md": ("staff",), "q1.md": ("finance",), "m.md": ("board",)}


def test_dry_run_changes_nothing(parts: dict[str, Any], tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    write_corpus(docs, 2)
    report = parts["pipeline"].run([docs], ["staff"], dry_run=True)
    assert report.count("new") == 2 and report.dry_run
    assert parts["store"].count() == 0 and parts["manifest"].files() == []


class Crash(BaseException):
    """Dies like SIGKILL would: nothing after it runs (BaseException passes every `except Exception`)."""


class CountingStore:
    """The real store, recording each write; `crash_at` ("delete" or "upsert") dies halfway
    through the first such write, after doing half of it for real."""

    def __init__(self, store: Any, crash_at: str | None = None) -> None:
        self.store = store
        self.crash_at = crash_at
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def upsert(self, chunks: Any, embeddings: Any) -> None:
        self.calls.append("upsert")
        if self.crash_at == "upsert":
            half = max(1, len(chunks) // 2)
            self.store.upsert(chunks[:half], embeddings[:half])
            raise Crash()
        self.store.upsert(chunks, embeddings)

    def delete_document(self, doc_id: str, groups: Any) -> int:
        self.calls.append("delete_document")
        n = int(self.store.delete_document(doc_id, groups))
        if self.crash_at == "delete":
            raise Crash()
        return n

    def move_document(self, doc_id: str, from_groups: Any, to_groups: Any) -> int:
        self.calls.append("move_document")
        return int(self.store.move_document(doc_id, from_groups, to_groups))


class CountingManifest(Manifest):
    """The real manifest, counting transactions; `crash_in_vouch` dies inside the transaction
    that vouches for a batch (it rolls back, as a kill before its commit would)."""

    def __init__(self, path: Path, crash_in_vouch: bool = False) -> None:
        super().__init__(path)
        self.transactions = 0
        self.crash_in_vouch = crash_in_vouch

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Any]:
        self.transactions += 1
        with super().transaction() as db:
            yield db

    def put_file(self, db: Any, path: str, status: str, *args: Any, **kwargs: Any) -> None:
        super().put_file(db, path, status, *args, **kwargs)
        if self.crash_in_vouch and status == "ingested":
            raise Crash()


def counting_pipeline(
    settings: Settings, embedder: Any, store: CountingStore, manifest: CountingManifest
) -> Any:
    pipeline = wiring.build_pipeline(settings, embedder=embedder, store=store)  # type: ignore[arg-type]
    pipeline.manifest = manifest
    return pipeline


@both_store_modes
def test_a_batch_is_stored_with_one_upsert_between_two_manifest_transactions(
    parts: dict[str, Any], tmp_path: Path, settings: Settings, embedder: Any
) -> None:
    docs = tmp_path / "docs"
    write_corpus(docs, 5)
    write_mail(
        docs / "board.eml", {"agenda.txt": b"Item one: the harbour dues.\n", "budget.txt": b"Dues rise 3%.\n"}
    )
    store = CountingStore(parts["store"])
    manifest = CountingManifest(settings.manifest_path)
    pipeline = counting_pipeline(settings, embedder, store, manifest)

    report = pipeline.run([docs], ["staff"])
    assert [f.status for f in report.files] == ["new"] * 8  # 5 notes, the mail, its 2 attachments
    assert store.calls == ["upsert"]  # 8 documents, one write
    assert manifest.transactions == 2  # announce, vouch

    store.calls.clear()
    manifest.transactions = 0
    report = pipeline.run([docs], ["staff"], force=True)  # every document rewritten
    assert [f.status for f in report.files] == ["changed"] * 8
    assert store.calls == ["delete_document"] * 8 + ["upsert"]
    assert manifest.transactions == 2
    assert_consistent(settings)


@both_store_modes
@pytest.mark.parametrize(
    ("crash_at", "force"),
    [("upsert", False), ("delete", True), ("upsert", True), ("vouch", True)],
    ids=[
        "new-batch-dies-in-upsert",
        "rewrite-dies-in-delete",
        "rewrite-dies-in-upsert",
        "dies-before-vouching",
    ],
)
def test_a_batch_killed_at_any_write_is_rolled_back(
    parts: dict[str, Any], tmp_path: Path, settings: Settings, embedder: Any, crash_at: str, force: bool
) -> None:
    docs = tmp_path / "docs"
    write_corpus(docs, 4)
    mail = write_mail(docs / "board.eml", {"agenda.txt": b"Item one: the harbour dues.\n"})
    if force:
        parts["pipeline"].run([docs], ["staff"])
        (docs / "note-000.md").write_text("# Note 0\n\nRoom 0 moved to the annex.\n")  # changed, new id
    store = CountingStore(parts["store"], crash_at=None if crash_at == "vouch" else crash_at)
    manifest = CountingManifest(settings.manifest_path, crash_in_vouch=crash_at == "vouch")
    with pytest.raises(Crash):
        counting_pipeline(settings, embedder, store, manifest).run([docs], ["staff"], force=force)

    report = wiring.build_pipeline(settings, embedder=embedder, store=parts["store"]).run([docs], ["staff"])
    assert report.recovered >= 1
    statuses = {Path(f.path).name: f.status for f in report.files}
    assert set(statuses) == {
        "note-000.md",
        "note-001.md",
        "note-002.md",
        "note-003.md",
        "board.eml",
        "board.eml#agenda.txt",
    }
    # Every document of the killed batch is stored again: none kept half-written chunks.
    assert set(statuses.values()) <= {"new", "changed"}
    mail_doc = Manifest(settings.manifest_path).file(str(mail)).doc_id
    assert [a.name for a in Manifest(settings.manifest_path).attachments(mail_doc)] == ["agenda.txt"]
    assert_consistent(settings)


def write_long_corpus(folder: Path, n: int) -> None:
    """Notes of ~13 chunks each at chunk_chars=100: a run stores them in several batches."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        rooms = [
            f"Room {i}-{j} on floor {j} holds {i * j} chairs; its key is at desk {(i + j) % 4}."
            for j in range(12)
        ]
        (folder / f"note-{i:03d}.md").write_text(f"# Note {i}\n\n" + "\n\n".join(rooms) + "\n")


def test_sigkill_at_any_moment_then_rerun_leaves_one_copy(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    write_long_corpus(docs, 60)
    env = {
        **os.environ,
        "ENCLAVE_DATA_DIR": str(tmp_path / "var"),
        "ENCLAVE_INGEST__WORKERS": "1",
        # Parsed in the ingest process: no parser process to start (and warm up) in each of the
        # three runs. What a kill interrupts is the batch writes, which are the same either way.
        "ENCLAVE_INGEST__PARSE_TIMEOUT_S": "0",
        "ENCLAVE_INGEST__CHUNK_CHARS": "100",
    }  # ~20 notes a batch: kills land in later batches
    cmd = [str(Path(sys.executable).with_name("enclave")), "ingest", str(docs), "--groups", "staff"]
    for kill_after in (3, 17):
        proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
        assert proc.stderr is not None
        seen = 0
        deadline = time.monotonic() + 300
        while seen < kill_after and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            seen += "ingest.pipeline" in line and "] new " in line
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert seen >= kill_after, "ingest finished or stalled before it could be killed"
    final = subprocess.run([*cmd, "--json"], env=env, capture_output=True, text=True, timeout=600)
    assert final.returncode == 0, final.stderr
    counts = json.loads(final.stdout)["counts"]
    assert counts["new"] + counts["unchanged"] == 60
    settings = Settings(data_dir=tmp_path / "var")
    assert_consistent(settings)
    assert len(Manifest(settings.manifest_path).docs()) == 60


def test_docs_commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, embedder: Any) -> None:
    from typer.testing import CliRunner

    from enclave.cli import app

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(wiring, "build_embedder", shared_embedder(embedder))
    monkeypatch.setenv("ENCLAVE_INGEST__PARSE_TIMEOUT_S", "0")  # see tests/support/cli.py
    docs = tmp_path / "docs"
    write_corpus(docs, 2)
    shutil.copy(docs / "note-000.md", docs / "dup.md")
    run = CliRunner()
    base = ["--data-dir", str(tmp_path / "var")]
    assert run.invoke(app, [*base, "ingest", str(docs), "--groups", "staff"]).exit_code == 0
    listed = json.loads(run.invoke(app, [*base, "docs", "list", "--json"]).stdout)
    assert len(listed) == 2
    shown = json.loads(run.invoke(app, [*base, "docs", "show", str(docs / "dup.md"), "--json"]).stdout)
    assert sorted(Path(p).name for p in shown["paths"]) == ["dup.md", "note-000.md"]
    result = run.invoke(app, [*base, "docs", "remove", shown["doc_id"]])
    assert result.exit_code == 0, result.output
    assert len(json.loads(run.invoke(app, [*base, "docs", "list", "--json"]).stdout)) == 1
    dry = run.invoke(app, [*base, "ingest", str(docs), "--groups", "staff", "--dry-run", "--json"])
    assert json.loads(dry.stdout)["counts"]["new"] == 2  # removed, so the files would come back
    report = tmp_path / "report.json"
    assert (
        run.invoke(app, [*base, "ingest", str(docs), "--groups", "staff", "--report", str(report)]).exit_code
        == 0
    )
    assert json.loads(report.read_text())["counts"]["new"] == 2
    assert_consistent(Settings(data_dir=tmp_path / "var"))

    # reindex: every document parsed and embedded again in one run per set of groups, in place
    before = {
        d["doc_id"]: d["chunks"]
        for d in json.loads(run.invoke(app, [*base, "docs", "list", "--json"]).stdout)
    }
    result = run.invoke(app, [*base, "docs", "reindex", "--json"])
    assert result.exit_code == 0, result.output
    reports = json.loads(result.stdout)
    assert len(reports) == 1 and reports[0]["groups"] == ["staff"]  # one set of groups, so one run
    assert reports[0]["counts"]["changed"] == 2
    after = {
        d["doc_id"]: d["chunks"]
        for d in json.loads(run.invoke(app, [*base, "docs", "list", "--json"]).stdout)
    }
    assert after == before
    assert_consistent(Settings(data_dir=tmp_path / "var"))
    one = run.invoke(app, [*base, "docs", "reindex", shown["doc_id"]])
    assert one.exit_code == 0, one.output
    assert "note-000.md: changed" in one.output or "dup.md: changed" in one.output, one.output
