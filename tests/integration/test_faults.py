"""Faults of the parts under Enclave, made for real: a Chroma server killed and started again, a
disk that fills up during an ingest (a small tmpfs), and a second ingest started while one runs.
Each ends in a clear message, nothing half-done left behind, and a next attempt that works."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import chromadb.api.client
import pytest
from typer.testing import CliRunner

from core.errors import RetrievalError
from core.settings import Settings
from core.types import Principal
from enclave import wiring
from enclave.cli import app as cli_app
from ingest.manifest import Manifest
from tests.integration.test_ingest_sync import assert_consistent, write_corpus
from tests.support.chroma_server import ChromaServer
from tests.support.filesystems import tmpfs

pytestmark = pytest.mark.slow  # real servers, real processes, a real filesystem

ENCLAVE = str(Path(sys.executable).with_name("enclave"))
ALICE = Principal("alice", "staff", ("staff",))


def enclave(
    data_dir: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The `enclave` command in a process of its own, as an operator runs it."""
    env = {
        **os.environ,
        "ENCLAVE_DATA_DIR": str(data_dir),
        "ENCLAVE_INGEST__WORKERS": "1",
        "ENCLAVE_INGEST__PARSE_TIMEOUT_S": "0",  # a few small files: parse in the process itself
        **(env or {}),
    }
    return subprocess.run([ENCLAVE, *args], env=env, capture_output=True, text=True, timeout=600)


def state(settings: Settings) -> tuple[dict[str, int], int, list[tuple[str, str, str | None]]]:
    """What is stored: chunks per document in Chroma, chunks in the lexical index, and each file
    the manifest knows."""
    files = [(f.path, f.status, f.doc_id) for f in Manifest(settings.manifest_path).files()]
    store = wiring.build_store(settings)
    return store.document_ids(), store.lexical.count(), sorted(files)


class HeldBetweenWrites:
    """The real store, whose first upsert stops after Chroma's write and before the lexical
    index's until `go_on` is set: an ingest caught in the middle of storing a batch."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.midway, self.go_on = threading.Event(), threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def upsert(self, chunks: Any, embeddings: Any) -> None:
        self.store.dense.upsert(chunks, embeddings)
        if not self.midway.is_set():
            self.midway.set()
            assert self.go_on.wait(timeout=600)
        self.store.lexical.upsert(chunks)


# -- two ingests at once --------------------------------------------------------------------------


def test_a_second_ingest_is_refused_while_one_runs_and_changes_nothing(
    settings: Settings, embedder: Any, tmp_path: Path
) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    write_corpus(first, 3)
    (second / "sub").mkdir(parents=True)
    (second / "sub" / "menu.md").write_text("# Menu\n\nThe canteen serves soup on Mondays.\n")
    # The first ingest stops in its first batch, with note-000 in Chroma and not yet in the
    # lexical index: a second writer must not come between those two writes.
    held = HeldBetweenWrites(wiring.build_store(settings))
    first_run = wiring.build_pipeline(settings, embedder=embedder, store=held)  # type: ignore[arg-type]
    first_run.embed_batch = 1  # one document a batch: the others wait behind the first
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(first_run.run, [first], ["staff"])
        try:
            assert held.midway.wait(timeout=600), (
                running.exception(timeout=0) if running.done() else "not started"
            )
            midway = state(settings)
            assert (len(midway[0]), midway[1]) == (1, 0)  # in Chroma, not in the lexical index

            # Another process: the operator's second `enclave ingest` on the same data folder.
            refused = enclave(settings.data_dir, "ingest", str(second), "--groups", "staff")
            assert refused.returncode == 1, refused.stderr
            assert refused.stderr.strip().splitlines()[-1] == (
                f"error: another ingest is running on this data folder (lock {settings.data_dir / 'ingest.lock'}); "
                "wait for it to finish"
            )
            # Bringing the lexical index in step with Chroma would copy the running batch: refused too.
            lexical = CliRunner().invoke(
                cli_app, ["--data-dir", str(settings.data_dir), "docs", "reindex", "--lexical"]
            )
            assert lexical.exit_code == 1 and "another ingest is running" in lexical.output, lexical.output
            assert state(settings) == midway  # neither touched the manifest or the stores
        finally:
            held.go_on.set()
        report = running.result(timeout=600)
    assert [f.status for f in report.files] == ["new"] * 3
    assert_consistent(settings)
    assert not any(path.startswith(str(second)) for path, _, _ in state(settings)[2])

    # Once the first is done, the second runs.
    again = wiring.build_pipeline(settings, embedder=embedder, store=wiring.build_store(settings))
    assert [f.status for f in again.run([second], ["staff"]).files] == ["new"]
    assert_consistent(settings)


# -- disk full during an ingest -------------------------------------------------------------------


def write_big_notes(folder: Path, n: int) -> None:
    """Notes of ~4,500 characters, all different (each is its own document)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        rooms = " ".join(
            f"Room {i}-{j} on floor {j % 9} holds {i * j} chairs and {j} desks." for j in range(90)
        )
        (folder / f"big-{i:03d}.md").write_text(f"# Inventory {i}\n\n{rooms}\n")


def test_disk_full_during_ingest_stops_with_what_to_do_and_the_rerun_completes(
    embedder: Any, tmp_path: Path
) -> None:
    kept, more = tmp_path / "kept", tmp_path / "more"
    write_corpus(kept, 3)
    write_big_notes(more, 60)
    # One chunk a note: ~1 MB to store over the three indexes, for 60 embeddings.
    big_chunks = {"ENCLAVE_INGEST__CHUNK_CHARS": "5000"}
    with tmpfs(tmp_path / "disk", 16 * 1024) as disk:
        data = disk.path / "var"
        settings = Settings(data_dir=data)
        settings.ingest.chunk_chars, settings.ingest.workers, settings.ingest.parse_timeout_s = 5000, 1, 0
        done = wiring.build_pipeline(settings, embedder=embedder).run([kept], ["staff"])
        assert not done.failed
        before = {f.doc_id: f.chunks for f in done.files}
        # The `enclave` processes below write to this Chroma from now on; this process opens it
        # afresh at the end, not through a client that has not seen their writes.
        chromadb.api.client.SharedSystemClient.clear_system_cache()

        # Every process writes to this disk from here on; Chroma, the manifest or the lexical
        # index, whichever asks for space first, is refused it.
        # Room enough to open them all (SQLite's shared-memory files), not to store the batch.
        filler = disk.fill(leave_bytes=256 * 1024)
        full = enclave(data, "ingest", str(more), "--groups", "staff", env=big_chunks)
        assert full.returncode == 1
        last = full.stderr.strip().splitlines()[-1]
        assert last.startswith("error: the disk is full, so the ingest stopped ("), full.stderr[-3000:]
        assert f"Free space on the disk holding the data folder {data}" in last
        assert "run the ingest again" in last and "documents stored before are unchanged" in last
        assert "Traceback" not in full.stderr

        filler.unlink()
        rerun = enclave(data, "ingest", str(kept), str(more), "--groups", "staff", "--json", env=big_chunks)
        assert rerun.returncode == 0, rerun.stderr[-3000:]
        report = json.loads(rerun.stdout)
        assert report["counts"]["new"] == 60 and report["counts"]["unchanged"] == 3
        assert report["counts"]["failed"] == 0

        assert_consistent(settings)  # one copy of each document, the manifest and Chroma agree
        stored = wiring.build_store(settings).document_ids()
        assert {doc: stored[doc] for doc in before} == before  # the documents from before, intact
        assert len(stored) == 63


def state_apart(settings: Settings) -> Any:
    """`state`, read by a process of its own, which closes the stores when it exits: one open in
    this process would spare the next opener the writes SQLite makes to open a database."""
    code = "import json, sys; from core.settings import Settings; from tests.integration.test_faults import state; "
    code += "print(json.dumps(state(Settings(data_dir=sys.argv[1]))))"
    root = Path(__file__).resolve().parents[2]
    read = subprocess.run(
        [sys.executable, "-c", code, str(settings.data_dir)],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert read.returncode == 0, read.stderr[-3000:]
    return json.loads(read.stdout)


def test_disk_already_full_before_ingest_says_so_and_changes_nothing(embedder: Any, tmp_path: Path) -> None:
    kept, more = tmp_path / "kept", tmp_path / "more"
    write_corpus(kept, 3)
    write_big_notes(more, 2)
    with tmpfs(tmp_path / "disk", 16 * 1024) as disk:
        data = disk.path / "var"
        settings = Settings(data_dir=data)
        # In processes of their own, as for `state_apart`: nothing here holds the stores open.
        assert enclave(data, "ingest", str(kept), "--groups", "staff").returncode == 0
        before = state_apart(settings)
        assert len(before[0]) == 3

        # Not a byte free: Chroma cannot open. A few KiB: Chroma opens, the manifest cannot
        # (SQLite's "disk I/O error", its WAL index not growing). Both are the full disk.
        for leave in (0, 40 * 1024):
            filler = disk.fill(leave_bytes=leave)
            full = enclave(data, "ingest", str(more), "--groups", "staff")
            assert full.returncode == 1
            assert "Traceback" not in full.stderr, full.stderr[-3000:]
            last = full.stderr.strip().splitlines()[-1]
            assert last.startswith("error: the disk is full, so the ingest did not start: "), last
            assert f"free on the disk holding the data folder {data} (" in last
            assert "Nothing stored was changed" in last and "run the ingest again" in last
            filler.unlink()
            assert state_apart(settings) == before

        # Space freed: the same ingest goes through.
        settings.ingest.workers, settings.ingest.parse_timeout_s = 1, 0
        again = wiring.build_pipeline(settings, embedder=embedder).run([more], ["staff"])
        assert [f.status for f in again.files] == ["new", "new"]
        assert_consistent(settings)


# -- the Chroma server down, then back ------------------------------------------------------------


def test_chroma_server_down_then_back(settings: Settings, embedder: Any, tmp_path: Path) -> None:
    """A server of its own: the session's `chroma_server` is shared by other tests."""
    docs = tmp_path / "docs"
    write_corpus(docs, 2)
    server = ChromaServer().start()
    try:
        settings.store.mode = "http"
        settings.store.host, settings.store.port = server.host, server.port
        settings.store.collection_prefix = server.fresh_prefix()
        store = wiring.build_store(settings)  # one store and one assistant throughout, as in `serve`
        pipeline = wiring.build_pipeline(settings, embedder=embedder, store=store)
        assert not pipeline.run([docs], ["staff"]).failed
        assistant = wiring.build_assistant(settings, embedder=embedder, store=store)
        audit = wiring.build_audit(settings)
        question = "How many chairs does room 1 hold?"
        assert assistant.ask(ALICE, question).mode == "extractive"

        server.kill()
        # Names the server and why: "Chroma at http://127.0.0.1:PORT failed to list collections:
        # [Errno 111] Connection refused".
        with pytest.raises(RetrievalError, match=rf"Chroma at {server.url} .*Connection refused") as down:
            assistant.ask(ALICE, question)
        failed = audit.last(1)[0]
        assert (failed.event, failed.user, failed.question) == ("answer_error", "alice", question)
        assert failed.error == str(down.value)  # the failed attempt is on record, with its reason
        write_corpus(docs, 3)  # one more file, while the server is down
        with pytest.raises(RetrievalError, match="Chroma"):
            pipeline.run([docs], ["staff"])
        assert len(Manifest(settings.manifest_path).files()) == 2  # nothing recorded as stored

        server.start()
        answer = assistant.ask(ALICE, question)
        assert answer.mode == "extractive" and answer.citations
        assert answer.citations[0].source.endswith("note-001.md")
        report = pipeline.run([docs], ["staff"])
        assert [f.status for f in report.files] == ["unchanged", "unchanged", "new"]
        assert_consistent(settings)
        assert audit.verify().ok
    finally:
        server.stop()
