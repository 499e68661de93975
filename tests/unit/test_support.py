"""Each sentence of a generated answer is graded against the sources it cites (lexical part;
the semantic part runs with the real embedding model in tests/integration/test_answer_support.py)."""

from __future__ import annotations

from assistant.service import unsupported_refusal
from assistant.support import SupportChecker, answer_sentences, content_terms, lexical_support
from core.types import Chunk, Hit

LEAVE = "Full-time staff get 25 days of annual leave per year. Leave must be booked two weeks ahead."
PARKING = "Staff permits for the blue car park cost 12 euros per month."


def spans(text: str) -> list[str]:
    return [text[a:b] for a, b in answer_sentences(text)]


def test_sentences_keep_their_citations_and_leave_markdown_outside() -> None:
    text = (
        "You get 25 days [1]. Book it early.[1][2] Really?\n\n- First item [2].\n1. Second item\n## Heading"
    )
    assert spans(text) == [
        "You get 25 days [1].",
        "Book it early.[1][2]",
        "Really?",
        "First item [2].",
        "Second item",
        "Heading",
    ]


def test_decimals_and_abbreviated_numbers_do_not_split_sentences() -> None:
    assert spans("The budget is 4.2 million euros [1]. It rose by 3.5% [2].") == [
        "The budget is 4.2 million euros [1].",
        "It rose by 3.5% [2].",
    ]


def test_content_terms_drop_stop_words_and_markers_and_stem() -> None:
    assert content_terms("The policies [1] were booked by the staff") == {"policy", "book", "staff"}
    assert "25" in content_terms("25 days")


def test_lexical_support_is_the_share_of_content_words_found() -> None:
    assert lexical_support("Staff get 25 days of annual leave.", [LEAVE]) == 1.0
    # staff, get, 30, day, annual, leave: all but 30 are there
    assert lexical_support("Staff get 30 days of annual leave.", [LEAVE]) == 5 / 6
    assert lexical_support("Parking costs 12 euros.", [LEAVE]) == 0.0


def test_checker_grades_supported_weak_and_uncited_sentences() -> None:
    text = (
        "Full-time staff get 25 days of annual leave [1]. "
        "Parking permits cost 12 euros a month [1]. "
        "Many companies offer more leave than that. "
        "The documents do not say whether unused leave carries over."
    )
    graded = SupportChecker(None).check(text, {1: LEAVE, 2: PARKING})
    assert [(g.level, g.cited) for g in graded] == [
        ("supported", (1,)),
        ("weak", (1,)),  # cites the leave policy for a parking fact
        ("uncited", ()),
        ("supported", ()),  # saying the documents do not answer needs no citation
    ]
    assert all(text[g.start : g.end] == g.text for g in graded)
    assert graded[1].lexical is not None and graded[1].lexical < 0.5


def test_citation_to_a_source_not_given_counts_as_no_citation() -> None:
    graded = SupportChecker(None).check("Parking costs 12 euros [3].", {1: PARKING})
    assert [(g.level, g.cited) for g in graded] == [("uncited", ())]


def test_attribution_gives_an_uncited_sentence_the_source_that_backs_it() -> None:
    text = "Full-time staff get 25 days of annual leave. A parking permit costs 12 euros per month."
    graded = SupportChecker(None).check(text, {1: PARKING, 2: LEAVE}, attribute=True)
    assert [(g.level, g.cited, g.attributed) for g in graded] == [
        ("supported", (2,), True),
        ("supported", (1,), True),
    ]


def test_attribution_leaves_a_sentence_no_source_backs_uncited_and_keeps_model_citations() -> None:
    text = (
        "Full-time staff get 25 days of annual leave [1]. "
        "Most firms reimburse gym memberships and bicycles. "
        "The documents do not say whether unused leave carries over."
    )
    graded = SupportChecker(None).check(text, {1: LEAVE, 2: PARKING}, attribute=True)
    assert [(g.level, g.cited, g.attributed) for g in graded] == [
        ("supported", (1,), False),  # the model's own citation, checked as before
        ("uncited", (), False),  # no passage backs it: marked, never given a citation
        ("supported", (), False),
    ]
    assert graded[1].lexical == 0.0  # its best source's score, for the record


def test_without_attribution_an_uncited_sentence_stays_uncited() -> None:
    graded = SupportChecker(None).check("Full-time staff get 25 days of annual leave.", {1: LEAVE})
    assert [(g.level, g.cited, g.attributed) for g in graded] == [("uncited", (), False)]


def hit(title: str) -> Hit:
    return Hit(Chunk(title, title, "text", f"{title}.md", ("public",), title=title), 1.0)


def test_an_answer_no_passage_backs_is_refused_naming_the_documents_searched() -> None:
    text = "Most firms reimburse gym memberships. Bicycles are popular."
    graded = SupportChecker(None).check(text, {1: LEAVE, 2: PARKING}, attribute=True)
    refusal = unsupported_refusal(graded, [hit("Annual leave"), hit("Parking"), hit("Parking")])
    assert refusal is not None and "(Annual leave; Parking)" in refusal and "none of its sentences" in refusal


def test_an_answer_saying_only_that_the_sources_do_not_answer_is_a_refusal() -> None:
    graded = SupportChecker(None).check(
        "The documents do not answer this question.", {1: LEAVE}, attribute=True
    )
    refusal = unsupported_refusal(graded, [hit("Annual leave")])
    assert refusal == "The documents searched (Annual leave) do not answer this question."


def test_an_answer_with_one_backed_sentence_is_kept() -> None:
    text = "Full-time staff get 25 days of annual leave. Most firms reimburse gym memberships."
    graded = SupportChecker(None).check(text, {1: LEAVE}, attribute=True)
    assert unsupported_refusal(graded, [hit("Annual leave")]) is None


def test_an_answer_whose_own_citations_are_all_weak_is_kept_flagged() -> None:
    graded = SupportChecker(None).check(
        "Parking permits cost 12 euros a month [1].", {1: LEAVE}, attribute=True
    )
    assert [g.level for g in graded] == ["weak"]
    assert unsupported_refusal(graded, [hit("Annual leave")]) is None


def test_a_number_no_source_states_is_never_attributed() -> None:
    question = "How many days of annual leave do staff get?"
    invented = "Full-time staff get 30 days of annual leave."
    graded = SupportChecker(None).check(invented, {1: LEAVE}, attribute=True, question=question)
    assert [(g.level, g.cited) for g in graded] == [("uncited", ())]
    # A number taken from the question is no claim of the model's.
    echoed = SupportChecker(None).check(
        "Staff ask about 2024 leave: full-time staff get 25 days.",
        {1: LEAVE},
        attribute=True,
        question="How much leave do staff get in 2024?",
    )
    assert [(g.level, g.cited) for g in echoed] == [("supported", (1,))]
