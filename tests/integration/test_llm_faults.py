"""Faults of the LLM server that real vLLM cannot show on demand, through the real stack (ingest,
embedded Chroma, MiniLM, audit log) and the real client, against the scripted OpenAI-compatible
stub of tests/support/openai_stub.py: a request left unanswered, a stream that stalls or breaks
off, an HTTP 500, and model text citing sources that were never supplied. Prompt tokens are
counted with the tiny test model's tokenizer files (llm.tokenizer_path)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from assistant.service import Assistant
from audit.log import AuditLog
from core.errors import LLMUnavailable
from core.settings import Settings
from core.types import Principal, StreamEvent
from enclave import wiring
from tests.support.openai_stub import (
    Cut,
    Fail,
    Reply,
    ScriptedChatServer,
    Stall,
    StallMidStream,
    scripted_chat_server,
)
from tests.support.tiny_model import build_tiny_model

pytestmark = pytest.mark.slow  # real model, real store, a server

ALICE = Principal("alice", "staff", ("public",))
QUESTION = "When did the mission lift off?"


@dataclass
class Stack:
    settings: Settings
    stub: ScriptedChatServer
    assistant: Assistant
    audit: AuditLog

    def ask(self, question: str = QUESTION, history: tuple[tuple[str, str], ...] = ()) -> list[StreamEvent]:
        return list(self.assistant.stream(ALICE, question, history))

    def last_record(self) -> Any:
        return self.audit.last(1)[0]


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "scripted", "scripted")


@pytest.fixture
def stack(settings: Settings, embedder: Any, tmp_path: Path, tokenizer_dir: Path) -> Iterator[Stack]:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "mission.md").write_text(
        "# Mission log\n\nThe mission lifted off from pad 39A in July, on schedule, with three crew.\n"
    )
    with scripted_chat_server() as stub:
        settings.llm.base_url = stub.base_url
        settings.llm.model = stub.model
        settings.llm.timeout_s = 1.0
        settings.llm.tokenizer_path = tokenizer_dir
        settings.llm.context_window = 2048
        settings.llm.max_tokens = 256
        settings.ingest.workers = 1  # one small file: parse in this process
        store = wiring.build_store(settings)
        assert (
            not wiring.build_pipeline(settings, embedder=embedder, store=store).run([docs], ["public"]).failed
        )
        assistant = wiring.build_assistant(settings, embedder=embedder, store=store)
        yield Stack(settings, stub, assistant, wiring.build_audit(settings))


def test_timeout_is_a_clear_error_and_the_next_question_works(stack: Stack) -> None:
    stack.stub.push(Stall(30))
    with pytest.raises(LLMUnavailable, match=r"did not answer within 1 s; try again later") as caught:
        stack.ask()
    assert stack.stub.base_url in str(caught.value)
    failed = stack.last_record()
    assert failed.event == "answer_error" and "did not answer within 1 s" in failed.error
    assert failed.data["mode"] == "error" and failed.data["prompt"]  # what was sent is on record

    answer = stack.ask()[-1].answer
    assert answer is not None and (answer.mode, answer.text) == ("llm", "The stub answers [1].")
    assert stack.last_record().event == "answer" and stack.audit.verify().ok


def test_server_breaking_off_mid_stream_is_an_error_recorded_with_what_streamed(stack: Stack) -> None:
    stack.stub.push(Cut(tokens=("The mission ", "lifted off "), reasoning=("Thinking about ", "the log")))
    seen: list[StreamEvent] = []
    with pytest.raises(LLMUnavailable, match="broke off the answer"):
        for event in stack.assistant.stream(ALICE, QUESTION):
            seen.append(event)
    assert "".join(e.text for e in seen if e.kind == "token") == "The mission lifted off "
    record = stack.last_record()
    assert record.event == "answer_error" and "broke off the answer" in record.error
    assert record.data["answer"] == "The mission lifted off "
    assert record.data["reasoning"] == "Thinking about the log"
    assert stack.ask()[-1].answer.mode == "llm"  # type: ignore[union-attr]


def test_server_stalling_mid_stream_times_out_with_what_streamed_recorded(stack: Stack) -> None:
    stack.stub.push(StallMidStream(tokens=("The mission ",), seconds=30, reasoning=("Looking at the log",)))
    with pytest.raises(LLMUnavailable, match=r"stopped sending the answer for 1 s"):
        stack.ask()
    record = stack.last_record()
    assert record.event == "answer_error" and record.data["answer"] == "The mission "
    assert record.data["reasoning"] == "Looking at the log"


def test_http_error_is_named(stack: Stack) -> None:
    stack.stub.push(Fail(500, "engine crashed"))
    with pytest.raises(LLMUnavailable, match=r"answered HTTP 500.*engine crashed"):
        stack.ask()
    assert stack.last_record().event == "answer_error"


def test_citations_to_sources_not_supplied_are_removed_reported_and_flagged(stack: Stack) -> None:
    stack.stub.push(
        Reply(("The mission lifted off in July [1]. ", "The finance budget is 4.2 million [4][2]."))
    )
    events = stack.ask()
    supplied = next(e for e in events if e.kind == "sources").citations
    answer = events[-1].answer
    assert answer is not None and len(supplied) == 1
    assert answer.text == "The mission lifted off in July [1]. The finance budget is 4.2 million ."
    assert [c.n for c in answer.citations] == [1] and answer.citations[0].source.endswith("mission.md")
    assert [(s.level, s.cited) for s in answer.support] == [("supported", (1,)), ("uncited", ())]
    record = stack.last_record()
    assert record.data["citations_removed"] == [4, 2]
    assert record.data["weakly_supported"] == ["The finance budget is 4.2 million ."]
    assert [s["level"] for s in record.data["support"]] == ["supported", "uncited"]


def test_failed_rewrite_falls_back_to_the_rule_and_reasoning_never_goes_back(stack: Stack) -> None:
    history = (
        ("When did the mission lift off?", "<think>SECRET-REASONING-1</think>It lifted off in July [1]."),
    )
    stack.stub.push(Fail(500, "rewrite failed"), Reply(("It had three crew [1].",)))
    answer = stack.ask("How many crew did it carry?", history)[-1].answer
    assert answer is not None and answer.mode == "llm"
    query = stack.last_record().data["query"]
    assert query["method"] == "rule" and "HTTP 500" in query["note"]
    assert query["query"] == "How many crew did it carry? mission lift"
    assert answer.search_query == query["query"]
    rewrite_request, answer_request = stack.stub.requests[-2:]
    assert "Follow-up question: How many crew did it carry?" in json.dumps(rewrite_request)
    sent = json.dumps([rewrite_request, answer_request])
    assert "SECRET-REASONING" not in sent and "think>" not in sent
    assert {"role": "assistant", "content": "It lifted off in July [1]."} in answer_request["messages"]
