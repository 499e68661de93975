"""The grounding measure's matching and flags (enclave/grounding.py) on hand-made chunks and
answers: what counts as the evidence being in the context, and what does not."""

from __future__ import annotations

from pathlib import Path

from core.types import Answer, Chunk, Citation, Hit
from enclave.grounding import CorpusIndex, GroundingQuestion, merged_text, normalise, occurs, score


def test_matching_folds_case_unicode_hyphenation_and_markup_but_not_numbers() -> None:
    assert occurs("30", "thirty (30) days")
    assert not occurs("30", "within 300 days") and not occurs("30", "in 1930")
    assert occurs("touch-and-go", "practising touch- and-go landings")
    assert occurs("IO-470-E", "a Continental IO- 470-E engine")
    assert occurs("“Final” approach", '"final"   APPROACH')
    assert occurs("ﬁle", "file")  # NFKC: the ligature is two letters
    assert occurs("1,500", "the 1,500-foot-long turf strip")
    assert occurs("| **Week 1 Total**|**46** |", "| Week 1 Total|46 |")
    assert occurs("Use [KeePassXC](https://keepassxc.org/) now", "Use KeePassXC now")
    assert not occurs("", "anything")
    assert normalise("A\u00a0 B\n-\nC") == "a b-c"


def _chunk(doc: str, index: int, text: str, source: str = "/corpus/a.md") -> Chunk:
    return Chunk(f"{doc}-{index}", doc, text, source, ("eval",), index=index, title="T")


def _citation(n: int, c: Chunk) -> Citation:
    return Citation(n, c.chunk_id, c.doc_id, c.source, c.title, "", c.page, c.text[:40])


def test_neighbouring_chunks_are_merged_over_their_overlap_and_gaps_never_match() -> None:
    a = _chunk("d", 0, "The strip was 1,500 feet long and the pilot")
    b = _chunk("d", 1, "and the pilot misjudged the clearance.")
    c = _chunk("d", 3, "Weather was clear.")
    text = merged_text([c, b, a])
    assert occurs("1,500 feet long and the pilot misjudged", text)
    assert not occurs("misjudged the clearance. Weather was clear", text)


def _index(chunks: list[Chunk]) -> CorpusIndex:
    index = CorpusIndex(Path("/corpus"))
    for c in chunks:
        index.chunks.setdefault(c.doc_id, []).append(c)
        index.doc_of_path[c.source] = c.doc_id
    return index


def test_flags_of_an_answer_from_the_right_passage_and_of_one_from_elsewhere() -> None:
    right = _chunk("d", 0, "Staff receive thirty (30) days of annual leave each year.")
    other = _chunk("e", 0, "Staff receive 30 days notice of changes.", "/corpus/b.md")
    index = _index([right, other])
    q = GroundingQuestion(
        "q1",
        "tune",
        "answerable",
        "How much leave?",
        "a.md",
        ("30",),
        "Staff receive thirty (30) days of annual leave each year.",
    )
    good = Answer(
        "How much leave?", "Extractive answer\n\n> Staff receive thirty (30) days [1]", "extractive"
    )
    good.hits = [Hit(right, 0.9, 0.9)]
    good.citations = [_citation(1, right)]
    row = score(q, good, good.citations, index)
    assert row["flags"] == {
        "refused": False,
        "empty": False,
        "source_shown": True,
        "source_cited": True,
        "answer_contains": True,
        "evidence_in_context": True,
    }
    assert row["evidence_match"] == "evidence" and row["evidence_rank"] == 1

    # The same number from another document is not the evidence being in the context.
    wrong = Answer("How much leave?", "> Staff receive 30 days notice [1]", "extractive")
    wrong.hits = [Hit(other, 0.8, 0.8)]
    wrong.citations = [_citation(1, other)]
    row = score(q, wrong, wrong.citations, index)
    assert row["flags"]["evidence_in_context"] is False and row["flags"]["source_shown"] is False
    assert row["flags"]["answer_contains"] is True  # the words, though from the wrong place

    empty = Answer("How much leave?", "", "extractive")
    empty.hits = [Hit(right, 0.9, 0.9)]
    row = score(q, empty, [_citation(1, right)], index)
    assert row["flags"]["empty"] is True and row["flags"]["refused"] is False
    assert row["flags"]["evidence_in_context"] is True and row["flags"]["answer_contains"] is False

    refused = Answer("How much leave?", "The documents you have access to do not answer this.", "no_answer")
    row = score(q, refused, [], index)
    assert row["flags"]["refused"] is True and row["flags"]["empty"] is False
    assert row["flags"]["evidence_in_context"] is False and row["answers_missing"] == ["30"]
