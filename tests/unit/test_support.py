"""Each sentence of a generated answer is graded against the sources it cites (lexical part;
the semantic part runs with the real embedding model in tests/integration/test_answer_support.py)."""

from __future__ import annotations

from assistant.support import SupportChecker, answer_sentences, content_terms, lexical_support

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
