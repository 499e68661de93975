"""ingest -> ask -> audit -> verify on the real parts: real unstructured, the real MiniLM model,
embedded Chroma on tmp_path, the SQLite audit log. No mocks."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from core.errors import LLMUnavailable
from core.settings import Settings
from core.types import Principal
from enclave import wiring
from tests.support.chroma_server import both_store_modes

pytestmark = pytest.mark.slow

HANDBOOK = """# Staff Handbook

## Parking

Staff park in the blue car park behind Building C. Permits cost 12 euros per month and are
issued by the facilities desk on the ground floor.

## Bicycles

The bicycle shelter next to the east entrance has 40 covered racks and two repair stands.
"""

BUDGET = """# Budget 2026

## Capital spending

The capital budget for the new crane at berth 7 is 4.2 million euros, approved by the board
on 3 March 2026. Works start in September.
"""

ALICE = Principal("alice", "staff", ("public",))
FIONA = Principal("fiona", "staff", ("finance", "public"))


@pytest.fixture
def corpus(tmp_path: Path) -> dict[str, Path]:
    public = tmp_path / "docs" / "public"
    finance = tmp_path / "docs" / "finance"
    public.mkdir(parents=True)
    finance.mkdir(parents=True)
    (public / "handbook.md").write_text(HANDBOOK)
    (public / "canteen.txt").write_text(
        "The canteen opens at 11:30 and closes at 14:00. The soup of the day costs 3 euros.\n"
    )
    (finance / "budget.md").write_text(BUDGET)
    return {"public": public, "finance": finance}


@pytest.fixture
def stack(settings: Settings, embedder: Any, store_mode: str) -> dict[str, Any]:
    store = wiring.build_store(settings)
    assert store.dense.location.startswith("http://") == (store_mode == "http")  # the mode under test
    return {
        "store": store,
        "pipeline": wiring.build_pipeline(settings, embedder=embedder, store=store),
        "assistant": wiring.build_assistant(settings, embedder=embedder, store=store),
        "audit": wiring.build_audit(settings),
    }


def ingest_all(stack: dict[str, Any], corpus: dict[str, Path]) -> None:
    assert not stack["pipeline"].run([corpus["public"]], ["public"]).failed
    assert not stack["pipeline"].run([corpus["finance"]], ["finance"]).failed


@both_store_modes
def test_ingest_ask_audit_verify(stack: dict[str, Any], corpus: dict[str, Path]) -> None:
    report = stack["pipeline"].run([corpus["public"]], ["public"])
    assert report.count("new") == 2 and report.chunks_added >= 2

    answer = stack["assistant"].ask(ALICE, "How much does a parking permit cost?")
    assert answer.mode == "extractive"
    assert "12 euros" in answer.text
    assert answer.citations and answer.citations[0].source.endswith("handbook.md")
    assert answer.citations[0].section == "Parking"
    assert f"[{answer.citations[0].n}]" in answer.text

    record = stack["audit"].get(answer.audit_id)
    assert record.user == "alice" and record.event == "answer"
    assert record.question == "How much does a parking permit cost?"
    retrieved = record.data["retrieved"]
    assert retrieved and all(len(r["sha256"]) == 64 and "score" in r for r in retrieved)
    assert record.data["citations"][0]["chunk_id"] == answer.citations[0].chunk_id
    assert stack["audit"].verify().ok


@both_store_modes
def test_groups_restrict_retrieval(stack: dict[str, Any], corpus: dict[str, Path]) -> None:
    ingest_all(stack, corpus)
    question = "What is the capital budget for the new crane?"
    alice = stack["assistant"].ask(ALICE, question)
    assert "4.2 million" not in alice.text
    assert all("finance" not in c.source for c in alice.citations)
    record = stack["audit"].get(alice.audit_id)
    assert all("/finance/" not in r["source"] for r in record.data["retrieved"])

    fiona = stack["assistant"].ask(FIONA, question)
    assert "4.2 million" in fiona.text
    assert any(c.source.endswith("budget.md") for c in fiona.citations)


def test_no_relevant_passage_means_no_answer(stack: dict[str, Any], corpus: dict[str, Path]) -> None:
    ingest_all(stack, corpus)
    answer = stack["assistant"].ask(ALICE, "Which striker won the 1998 football world cup final?")
    assert answer.mode == "no_answer"
    assert "do not answer" in answer.text
    assert answer.citations == []


def test_user_without_groups_sees_nothing(stack: dict[str, Any], corpus: dict[str, Path]) -> None:
    ingest_all(stack, corpus)
    answer = stack["assistant"].ask(Principal("nobody", "staff", ()), "parking permit cost")
    assert answer.mode == "no_answer" and answer.hits == []


@both_store_modes
def test_incremental_reingest(stack: dict[str, Any], corpus: dict[str, Path]) -> None:
    pipeline, store = stack["pipeline"], stack["store"]
    pipeline.run([corpus["public"]], ["public"])
    before = store.count()

    again = pipeline.run([corpus["public"]], ["public"])
    assert again.count("unchanged") == 2 and again.chunks_added == 0
    assert store.count() == before

    handbook = corpus["public"] / "handbook.md"
    handbook.write_text(HANDBOOK.replace("12 euros", "15 euros"))
    changed = pipeline.run([corpus["public"]], ["public"])
    assert changed.count("changed") == 1 and changed.count("unchanged") == 1
    assert store.count() == before
    answer = stack["assistant"].ask(ALICE, "How much does a parking permit cost?")
    assert "15 euros" in answer.text and "12 euros" not in answer.text

    (corpus["public"] / "canteen.txt").unlink()
    kept = pipeline.run([corpus["public"]], ["public"])
    assert kept.count("pruned") == 0
    assert store.count() == before  # without --prune nothing is removed
    pruned = pipeline.run([corpus["public"]], ["public"], prune=True)
    assert pruned.count("pruned") == 1
    assert store.count() < before
    assert all(not s.endswith("canteen.txt") for s in _sources(store))


@both_store_modes
def test_changing_groups_moves_the_document(stack: dict[str, Any], corpus: dict[str, Path]) -> None:
    pipeline, store = stack["pipeline"], stack["store"]
    pipeline.run([corpus["finance"]], ["finance"])
    n = store.count()
    report = pipeline.run([corpus["finance"]], ["finance", "public"])
    assert report.count("changed") == 1
    assert store.count() == n  # moved, not copied
    assert stack["assistant"].ask(ALICE, "capital budget for the new crane").mode == "extractive"


def test_corrupt_and_unsupported_files_are_reported(stack: dict[str, Any], corpus: dict[str, Path]) -> None:
    public = corpus["public"]
    (public / "broken.docx").write_bytes(b"PK\x03\x04 this is not really a zip")
    (public / "photo.xyz").write_bytes(b"\x00\x01")
    report = stack["pipeline"].run([public], ["public"])
    outcomes = {Path(f.path).name: f for f in report.files}
    assert outcomes["handbook.md"].status == "new"
    assert outcomes["broken.docx"].status == "failed"
    assert "broken.docx" in (outcomes["broken.docx"].error or "")
    assert outcomes["photo.xyz"].status == "skipped"
    assert report.failed


@both_store_modes
def test_broken_new_version_keeps_the_old_chunks(stack: dict[str, Any], corpus: dict[str, Path]) -> None:
    public = corpus["public"]
    docx = public / "memo.docx"
    _write_docx(docx, "The fire drill is on Tuesday at 10:00 in the main yard.")
    stack["pipeline"].run([public], ["public"])
    before = stack["store"].count()
    docx.write_bytes(b"PK\x03\x04 truncated")
    report = stack["pipeline"].run([public], ["public"])
    assert {Path(f.path).name: f.status for f in report.files}["memo.docx"] == "failed"
    assert stack["store"].count() == before
    assert "Tuesday" in stack["assistant"].ask(ALICE, "When is the fire drill?").text


def test_llm_down_is_a_clear_error_and_audited(
    settings: Settings, embedder: Any, corpus: dict[str, Path]
) -> None:
    import socket

    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings.llm.base_url = f"http://127.0.0.1:{port}/v1"
    settings.llm.model = "deepseek-r1-distill"
    settings.llm.timeout_s = 5
    store = wiring.build_store(settings)
    wiring.build_pipeline(settings, embedder=embedder, store=store).run([corpus["public"]], ["public"])
    assistant = wiring.build_assistant(settings, embedder=embedder, store=store)
    with pytest.raises(LLMUnavailable, match=f"127.0.0.1:{port}"):
        assistant.ask(ALICE, "How much does a parking permit cost?")
    audit = wiring.build_audit(settings)
    record = audit.last(1)[0]
    assert record.event == "answer_error" and f"127.0.0.1:{port}" in (record.error or "")
    assert record.data["retrieved"]  # what was retrieved is kept even when the LLM failed
    assert audit.verify().ok


def test_audit_detects_an_edited_answer(
    stack: dict[str, Any], corpus: dict[str, Path], settings: Settings
) -> None:
    ingest_all(stack, corpus)
    first = stack["assistant"].ask(ALICE, "How much does a parking permit cost?")
    stack["assistant"].ask(ALICE, "When does the canteen open?")
    db = sqlite3.connect(settings.audit_path)
    for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
        db.execute(f"DROP TRIGGER {name}")  # an attacker with file access
    db.execute("UPDATE records SET question = 'something else' WHERE id = ?", (first.audit_id,))
    db.commit()
    db.close()
    result = wiring.build_audit(settings).verify()
    assert not result.ok and result.first_bad_id == first.audit_id


def _sources(store: Any) -> set[str]:
    out = set()
    for groups in store.access_classes().values():
        col = store.dense._collection(groups, create=False)
        out |= {m["source"] for m in col.get(include=["metadatas"])["metadatas"]}
    return out


def _write_docx(path: Path, text: str) -> None:
    import docx

    d = docx.Document()
    d.add_heading("Memo", level=1)
    d.add_paragraph(text)
    d.save(str(path))
