"""On the real stack without an LLM (ingest, embedded Chroma, MiniLM, audit log): follow-ups are
searched by the rule's stand-alone query; and the semantic half of the citation-support check,
with the real embedding model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from assistant.support import (
    ATTRIBUTE_MIN_LEXICAL,
    ATTRIBUTE_MIN_SEMANTIC,
    MIN_LEXICAL,
    MIN_SEMANTIC,
    SupportChecker,
)
from core.settings import Settings
from core.types import Principal
from enclave import wiring

pytestmark = pytest.mark.slow  # real model and store

ALICE = Principal("alice", "staff", ("public",))
LEAVE = (
    "# Annual leave\n\nFull-time staff receive 25 days of annual leave each year. "
    "Part-time staff receive leave in proportion to their contracted hours.\n"
)
PARKING = "# Parking\n\nStaff permits for the blue car park cost 12 euros per month.\n"


def test_follow_up_is_searched_with_the_previous_questions_terms(
    settings: Settings, embedder: Any, tmp_path: Path
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "leave.md").write_text(LEAVE)
    (docs / "parking.md").write_text(PARKING)
    settings.ingest.workers = 1
    store = wiring.build_store(settings)
    assert not wiring.build_pipeline(settings, embedder=embedder, store=store).run([docs], ["public"]).failed
    assistant = wiring.build_assistant(settings, embedder=embedder, store=store)

    history = (("How many days of annual leave do full-time staff get?", "25 days [1]."),)
    answer = assistant.ask(ALICE, "And part-timers?", history)
    assert answer.mode == "extractive"
    assert answer.search_query == "And part-timers? days annual leave full-time staff"
    assert answer.citations and answer.citations[0].source.endswith("leave.md")
    record = wiring.build_audit(settings).last(1)[0]
    assert record.data["query"] == {"query": answer.search_query, "method": "rule"}

    alone = assistant.ask(ALICE, "How much does a parking permit cost per month?", history)
    assert alone.search_query == "How much does a parking permit cost per month?"  # stands alone
    assert wiring.build_audit(settings).last(1)[0].data["query"]["method"] == "as_asked"


def test_paraphrase_is_supported_by_meaning_and_an_unrelated_claim_is_weak(embedder: Any) -> None:
    leave = LEAVE.split("\n\n", 1)[1]
    text = (
        "Employees working full time are entitled to twenty-five days off annually [1]. "
        "The harbour crane was painted blue in 1998 [1]."
    )
    paraphrase, unrelated = SupportChecker(embedder).check(text, {1: leave})
    assert paraphrase.lexical is not None and paraphrase.lexical < MIN_LEXICAL  # few shared words...
    assert paraphrase.semantic is not None and paraphrase.semantic >= MIN_SEMANTIC  # ...same meaning
    assert paraphrase.level == "supported"
    assert unrelated.semantic is not None and unrelated.semantic < MIN_SEMANTIC
    assert (unrelated.level, unrelated.cited) == ("weak", (1,))


def test_uncited_paraphrase_is_attributed_to_its_passage_and_a_claim_none_backs_is_not(embedder: Any) -> None:
    sources = {
        1: PARKING.split("\n\n", 1)[1],
        2: LEAVE.split("\n\n", 1)[1],
        3: "Expense claims are filed within 30 days of purchase, with the receipt attached.",
    }
    text = (
        "Employees working full time are entitled to twenty-five days off annually. "
        "The harbour crane was painted blue."  # no number: judged by meaning, not the number rule
    )
    paraphrase, unrelated = SupportChecker(embedder).check(text, sources, attribute=True)
    assert (paraphrase.level, paraphrase.cited, paraphrase.attributed) == ("supported", (2,), True)
    assert paraphrase.lexical is not None and paraphrase.lexical < ATTRIBUTE_MIN_LEXICAL  # by meaning
    assert (unrelated.level, unrelated.cited, unrelated.attributed) == ("uncited", (), False)
    assert unrelated.semantic is not None and unrelated.semantic < ATTRIBUTE_MIN_SEMANTIC
