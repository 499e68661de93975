"""Enclave's LLM client and Assistant against real vLLM (CPU build) with DeepSeek-R1's reasoning
parser, serving tiny models built by the tests: the scripted one answers the same text to any prompt,
the random one never stops before max_tokens."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tokenizers import Tokenizer

from assistant.llm import VllmChatModel
from core.errors import LLMUnavailable
from core.settings import Settings
from core.types import Principal, StreamEvent
from enclave import wiring
from tests.support.tiny_model import CONTEXT_LENGTH, SCRIPTED_ANSWER, SCRIPTED_REASONING
from tests.support.vllm_server import VllmServer, free_port, post_json

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

MESSAGES = [
    {"role": "system", "content": "Answer from the numbered sources only."},
    {"role": "user", "content": "When did the mission lift off?"},
]
ALICE = Principal("alice", "staff", ("public",))


def joined(deltas: list[tuple[str, str]], kind: str) -> str:
    return "".join(text for k, text in deltas if k == kind)


def whole_completion(server: VllmServer, max_tokens: int) -> dict[str, Any]:
    """The same request without streaming, straight from the server."""
    body = {"model": server.model, "messages": MESSAGES, "temperature": 0, "max_tokens": max_tokens}
    choice = post_json(f"{server.base_url}/chat/completions", body, timeout=120)["choices"][0]  # type: ignore[index]
    return dict(choice)


def test_scripted_reasoning_stays_out_of_the_answer(vllm_scripted: VllmServer) -> None:
    deltas = list(VllmChatModel(vllm_scripted.base_url, vllm_scripted.model).stream(MESSAGES))
    kinds = [k for k, _ in deltas]
    assert joined(deltas, "reasoning") == SCRIPTED_REASONING
    assert joined(deltas, "token") == SCRIPTED_ANSWER
    assert kinds.index("token") > max(i for i, k in enumerate(kinds) if k == "reasoning")
    assert deltas[-1] == ("finish", "stop")


@pytest.mark.parametrize("variant", ["scripted", "random"])
def test_streamed_deltas_in_order_make_the_whole_answer(variant: str, request: pytest.FixtureRequest) -> None:
    server: VllmServer = request.getfixturevalue(f"vllm_{variant}")
    model = VllmChatModel(server.base_url, server.model, max_tokens=40, temperature=0)
    deltas = list(model.stream(MESSAGES))
    whole = whole_completion(server, max_tokens=40)
    message = whole["message"]
    assert len(deltas) > 3  # streamed token by token, not in one piece
    assert joined(deltas, "reasoning") == (message.get("reasoning") or "")
    assert joined(deltas, "token") == (message.get("content") or "")
    assert deltas[-1] == ("finish", whole["finish_reason"])


def test_max_tokens_cut_off_is_reported_as_length(vllm_random: VllmServer) -> None:
    deltas = list(VllmChatModel(vllm_random.base_url, vllm_random.model, max_tokens=8).stream(MESSAGES))
    assert deltas[-1] == ("finish", "length")
    assert joined(deltas, "reasoning") + joined(deltas, "token")


def test_prompt_over_the_context_window_is_llm_unavailable(vllm_scripted: VllmServer) -> None:
    model = VllmChatModel(vllm_scripted.base_url, vllm_scripted.model)
    too_long = [{"role": "user", "content": "launch " * (CONTEXT_LENGTH + 100)}]
    with pytest.raises(LLMUnavailable, match="context window") as caught:
        list(model.stream(too_long))
    assert vllm_scripted.base_url in str(caught.value)


def test_server_not_listening_is_llm_unavailable_naming_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(LLMUnavailable, match=url):
        list(VllmChatModel(url, "tiny-scripted", timeout_s=5).stream(MESSAGES))


@pytest.fixture
def assistant_on_vllm(
    settings: Settings, embedder: Any, vllm_scripted: VllmServer, tmp_path: Path
) -> Settings:
    """Settings for a stack on the scripted server, with one document ingested for `public`."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "mission.md").write_text(
        "# Mission log\n\nThe mission lifted off from pad 39A in July, on schedule, with three crew.\n"
    )
    settings.llm.base_url = vllm_scripted.base_url
    settings.llm.model = vllm_scripted.model
    store = wiring.build_store(settings)
    assert not wiring.build_pipeline(settings, embedder=embedder, store=store).run([docs], ["public"]).failed
    return settings


def ask(settings: Settings, embedder: Any, question: str) -> list[StreamEvent]:
    store = wiring.build_store(settings)
    return list(wiring.build_assistant(settings, embedder=embedder, store=store).stream(ALICE, question))


def test_assistant_answers_with_reasoning_apart_and_citations_audited(
    assistant_on_vllm: Settings, embedder: Any
) -> None:
    events = ask(assistant_on_vllm, embedder, "When did the mission lift off?")
    kinds = [e.kind for e in events]
    assert kinds[0] == "sources" and kinds[-1] == "done"
    assert kinds.index("token") > max(i for i, k in enumerate(kinds) if k == "reasoning")
    answer = events[-1].answer
    assert answer is not None
    assert (answer.mode, answer.finish_reason) == ("llm", "stop")
    assert answer.reasoning == SCRIPTED_REASONING
    assert answer.text == SCRIPTED_ANSWER and SCRIPTED_REASONING not in answer.text
    assert [c.n for c in answer.citations] == [1]
    assert answer.citations[0].source.endswith("mission.md")

    audit = wiring.build_audit(assistant_on_vllm)
    record = audit.last(1)[0]
    assert record.event == "answer" and record.id == answer.audit_id
    assert record.data["reasoning"] == SCRIPTED_REASONING and record.data["answer"] == SCRIPTED_ANSWER
    assert audit.verify().ok


def test_assistant_cut_off_mid_answer_says_so(
    assistant_on_vllm: Settings, embedder: Any, tiny_models: dict[str, Path]
) -> None:
    tokenizer = Tokenizer.from_file(str(tiny_models["scripted"] / "tokenizer.json"))
    reasoning_tokens = len(tokenizer.encode(SCRIPTED_REASONING, add_special_tokens=False).ids)
    answer_start = tokenizer.encode(SCRIPTED_ANSWER, add_special_tokens=False).ids[:2]
    # The reasoning, </think>, then the answer's first two tokens.
    assistant_on_vllm.llm.max_tokens = reasoning_tokens + 1 + len(answer_start)
    answer = ask(assistant_on_vllm, embedder, "When did the mission lift off?")[-1].answer
    assert answer is not None
    assert answer.finish_reason == "length" and answer.reasoning == SCRIPTED_REASONING
    assert answer.text.startswith(tokenizer.decode(answer_start))
    assert f"cut off at the limit of {assistant_on_vllm.llm.max_tokens} tokens" in answer.text
