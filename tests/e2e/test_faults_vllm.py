"""Faults around a streaming answer from real vLLM (CPU build, the session's tiny models): the server
killed mid-answer and started again, and an audit log that cannot be written, seen through the
real web UI over HTTP. Restarting vLLM is the slow part: it happens once here, on the session's
own `vllm_random` server, which later tests get back serving on the same port."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from gradio_client.utils import apply_diff

from assistant.service import WITHHELD
from audit import AuditLog
from core.errors import LLMUnavailable
from core.settings import Settings
from core.types import Principal, StreamEvent
from enclave import wiring
from tests.integration.test_ui_chat_http import PASSWORD, Browser, free_port, text_of
from tests.support.filesystems import tmpfs
from tests.support.tiny_model import SCRIPTED_ANSWER
from tests.support.vllm_server import VllmServer
from ui import build_app, markup, serve

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

ALICE = Principal("alice", "staff", ("public",))
QUESTION = "When did the mission lift off?"
# Worded unlike the scripted answer ("The mission lifted off in July [1]."), so that the answer's
# words on the page can only have come from the model's stream, never from the sources list.
MISSION = "# Mission log\n\nThe crew of three launched from pad 39A in the seventh month, on schedule.\n"


def ingest_mission(settings: Settings, embedder: Any, tmp_path: Path) -> Any:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "mission.md").write_text(MISSION)
    store = wiring.build_store(settings)
    assert not wiring.build_pipeline(settings, embedder=embedder, store=store).run([docs], ["public"]).failed
    return store


# -- vLLM killed mid-answer, then started again ---------------------------------------------------


def test_vllm_killed_mid_answer_is_a_clear_audited_error_and_after_a_restart_the_next_question_works(
    settings: Settings, embedder: Any, vllm_random: VllmServer, tmp_path: Path
) -> None:
    settings.llm.base_url, settings.llm.model = vllm_random.base_url, vllm_random.model
    settings.llm.max_tokens = 200  # the random model never stops early: the kill lands mid-answer
    store = ingest_mission(settings, embedder, tmp_path)
    # One assistant throughout, as in a running app: its client must get over the dead server.
    assistant = wiring.build_assistant(settings, embedder=embedder, store=store)
    audit = wiring.build_audit(settings)

    seen: list[StreamEvent] = []
    with pytest.raises(LLMUnavailable) as broke:
        for event in assistant.stream(ALICE, QUESTION):
            seen.append(event)
            if event.kind in ("reasoning", "token") and len(seen) == 2:  # after "sources"
                vllm_random.kill()
    assert str(broke.value).startswith(f"the language model at {vllm_random.base_url} broke off the answer")
    failed = audit.last(1)[0]
    assert (failed.event, failed.user, failed.question) == ("answer_error", "alice", QUESTION)
    assert failed.error == str(broke.value)
    streamed = {kind: "".join(e.text for e in seen if e.kind == kind) for kind in ("reasoning", "token")}
    assert streamed["reasoning"] or streamed["token"]
    # What the user had seen before it broke is on record.
    assert (failed.data["reasoning"], failed.data["answer"]) == (streamed["reasoning"], streamed["token"])

    with pytest.raises(
        LLMUnavailable, match=r"is unavailable .*ask an administrator to check the LLM service"
    ):
        assistant.ask(ALICE, QUESTION)  # while it is down
    assert audit.last(1)[0].event == "answer_error"

    vllm_random.restart()
    answer = assistant.ask(ALICE, QUESTION)
    # Answered in full again; the random model's words back nothing, so they may be withheld.
    assert answer.finish_reason == "length" and answer.mode in ("llm", "no_answer")
    records = audit.last(3)[::-1]  # oldest first
    assert [r.event for r in records] == ["answer_error", "answer_error", "answer"]
    assert records[-1].id == answer.audit_id and audit.verify().ok


# -- the audit log cannot be written: the answer is withheld --------------------------------------


@dataclass
class Streamed:
    """One question asked on the chat page: every state of the chat while it streamed, the
    final one, and the toasts."""

    states: list[list[dict[str, Any]]] = field(default_factory=list)
    toasts: list[str] = field(default_factory=list)

    @property
    def final(self) -> list[dict[str, Any]]:
        return self.states[-1]


def ask_on_page(browser: Browser, question: str) -> Streamed:
    """Send `question` as the page does and rebuild the chat from each streamed update (the first
    carries the outputs whole, the rest carry diffs, as gradio_client applies them)."""
    joined = browser.http.post(
        "/gradio_api/queue/join",
        json={
            "data": [question, None],
            "fn_index": browser.fn_ids["chat"],
            "session_hash": browser.session,
            "event_data": None,
            "trigger_id": None,
        },
    )
    assert joined.is_success, joined.text
    event_id = joined.json()["event_id"]
    out = Streamed()
    outputs: list[Any] | None = None
    with browser.http.stream(
        "GET", "/gradio_api/queue/data", params={"session_hash": browser.session}
    ) as stream:
        for line in stream.iter_lines():
            if not line.startswith("data:"):
                continue
            message = json.loads(line[5:])
            if message.get("event_id") != event_id:
                continue
            if message.get("msg") == "log":
                out.toasts.append(str(message.get("log")))
            data = (message.get("output") or {}).get("data")
            if message.get("msg") == "process_generating":
                outputs = list(data) if outputs is None else [apply_diff(o, d) for o, d in zip(outputs, data)]
                out.states.append(outputs[1])
            if message.get("msg") == "process_completed":
                assert message.get("success"), message
                out.states.append(data[1])
                return out
    raise AssertionError("the event stream ended before the answer completed")


def answers(audit: AuditLog) -> list[str]:
    """The events of the answer records (sign-ins are on the log too)."""
    return [r.event for r in audit.search(event=["answer", "answer_error"], limit=None)]


def answer_texts(chat: list[dict[str, Any]]) -> str:
    """The text of the answer messages of the chat's last turn (not the question, not reasoning
    or sources panels): the page shows the whole conversation, earlier turns too."""
    return "\n".join(
        text_of(m) for m in last_turn(chat) if m["role"] == "assistant" and not m.get("metadata")
    )


def last_turn(chat: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages from the last question on."""
    users = [i for i, m in enumerate(chat) if m["role"] == "user"]
    return chat[users[-1] :] if users else chat


@pytest.fixture
def page_on_vllm(
    settings: Settings, embedder: Any, vllm_scripted: VllmServer, tmp_path: Path
) -> Iterator[tuple[Browser, Any, Path]]:
    """The chat page on the scripted vLLM, with the audit log alone on a small tmpfs."""
    with tmpfs(tmp_path / "auditfs", 4096) as disk:
        settings.audit.path = disk.path / "audit.sqlite3"
        settings.llm.base_url, settings.llm.model = vllm_scripted.base_url, vllm_scripted.model
        settings.ui.port = free_port()
        store = ingest_mission(settings, embedder, tmp_path)
        users = wiring.build_users(settings)
        users.add("alice", PASSWORD, "staff", ("public",))
        app = build_app(wiring.build_assistant(settings, embedder=embedder, store=store), users, settings)
        browser = Browser(serve(app, settings, block=False), "alice")
        try:
            yield browser, disk, settings.audit.path
        finally:
            browser.close()
            app.close()


def test_an_answer_that_cannot_be_audited_is_withheld_and_the_user_told_why(
    page_on_vllm: tuple[Browser, Any, Path],
) -> None:
    browser, disk, audit_path = page_on_vllm
    assert SCRIPTED_ANSWER.startswith("The mission lifted off in July")  # what the page shows
    answered = ask_on_page(browser, QUESTION)
    assert "lifted off in July" in answer_texts(answered.final)
    audit = AuditLog(audit_path)
    assert answers(audit) == ["answer"]

    # The disk fills while the answer streams: the log opens and locks, but the record does not
    # fit. A reader kept open (the auditor page, say) keeps SQLite's WAL file, so the record
    # must grow it. What had streamed is taken back off the page; only the reason stays.
    reader = sqlite3.connect(audit_path)
    logged = reader.execute("SELECT count(*) FROM records").fetchone()
    filler = disk.fill(leave_bytes=0)
    full = ask_on_page(browser, QUESTION)
    assert any("lifted off in July" in answer_texts(state) for state in full.states[:-1])  # it streamed
    assert answer_texts(full.final) == markup.error_markdown(WITHHELD)
    assert not any(
        (m.get("metadata") or {}).get("title", "").startswith("Sources") for m in last_turn(full.final)
    )
    assert any("withheld" in toast for toast in full.toasts)
    assert reader.execute("SELECT count(*) FROM records").fetchone() == logged  # nothing written
    filler.unlink()
    reader.close()

    # Read-only: the question is refused before anything is searched or streamed.
    disk.remount("ro")
    refused = ask_on_page(browser, QUESTION)
    assert not any("lifted off in July" in answer_texts(state) for state in refused.states)
    assert answer_texts(refused.final) == markup.error_markdown(WITHHELD)
    assert str(audit_path) not in json.dumps(refused.states)  # the server's paths stay in its log

    disk.remount("rw")
    again = ask_on_page(browser, QUESTION)
    assert "lifted off in July" in answer_texts(again.final)
    assert answers(audit) == ["answer", "answer"] and audit.verify().ok
