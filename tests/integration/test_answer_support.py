"""On the real stack without an LLM (ingest, embedded Chroma, MiniLM, audit log): follow-ups are
searched by the rule's stand-alone query; and the semantic half of the citation-support check,
with the real embedding model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

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
