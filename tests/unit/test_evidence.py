"""assistant.evidence: the sentence, row or field that answers is found and shown first, and a
question the passages do not answer is recognised as such (real all-MiniLM-L6-v2 embeddings)."""

from __future__ import annotations

from typing import Any

import pytest

from assistant.citations import citations_for
from assistant.evidence import (
    EvidenceFinder,
    candidates,
    expectation,
    label_match,
    question_names,
    restates,
    without_asked,
)
from assistant.extractive import ExtractiveAnswerer
from assistant.support import content_terms
from core.types import Chunk, Hit

LEAVE = (
    "Parental leave is available to every permanent employee. You are entitled to 12 weeks of "
    "paid time off for the birth, adoption or placement of a new child. You will need to sign an "
    "agreement stating that you will return to work for at least 12 weeks afterwards."
)
SICK = "Advanced sick leave can be requested by permanent staff. You can request up to 240 hours of advanced sick leave."
FORM = "Registration: N5921D\nAircraft Make: Piper\nRegistered Owner: Claire L. Koch\nInjuries: 1 Fatal"
TARIFF = "Code,Service,Unit,Charge (HVD)\nPL-01,Pilotage (vessel up to 150 m LOA),per movement,1450.00\nPL-02,Pilotage (vessel 150 m to 250 m LOA),per movement,2380.00"


def hits(*texts: str) -> list[Hit]:
    return [
        Hit(
            Chunk(f"d{i}-00000", f"d{i}", text, f"doc{i}.md", ("public",), title=f"Doc {i}"),
            1.0 - i / 10,
            0.6,
        )
        for i, text in enumerate(texts)
    ]


def one_document(*texts: str) -> list[Hit]:
    """Passages of one report, the way its chunks come back from retrieval."""
    return [
        Hit(Chunk(f"r-{i:05d}", "r", text, "report.pdf", ("public",), title="Report", index=i), 0.9, 0.6)
        for i, text in enumerate(texts)
    ]


@pytest.fixture(scope="module")
def finder(embedder: Any) -> EvidenceFinder:
    return EvidenceFinder(embedder)


@pytest.mark.parametrize(
    ("question", "kind", "units"),
    [
        ("How many weeks of paid parental leave do I get?", "number", ("week",)),
        ("How many vendor quotes must be received?", "number", ("quotes",)),
        ("How much does a berth permit cost?", "money", ()),
        ("How much annual leave do I earn each pay period?", "number", ()),
        ("When does award leave expire?", "when", ()),
        ("On what date was the list last updated?", "date", ()),
        ("Who is the Chief Pilot?", "name", ()),
        ("What email address should staff use?", "email", ()),
        ("What percentage of calls were answered?", "percent", ()),
        ("How often should the team review risks?", "frequency", ()),
        ("Does GitHub offer phone support?", "any", ()),
        ("How many total flight hours did the pilot have?", "number", ("hour",)),
        ("How many paid keeping-in-touch days can I work?", "number", ("day",)),
        ("According to the DPA-Covered Previews list, when did Copilot CLI become available?", "when", ()),
    ],
)
def test_what_a_question_asks_for(question: str, kind: str, units: tuple[str, ...]) -> None:
    expected = expectation(question)
    assert expected.kind == kind
    assert set(units) <= set(expected.units)


def test_the_number_of_the_unit_asked_for_is_what_counts() -> None:
    weeks = expectation("How many weeks of leave do I get?")
    assert weeks.met_by("You get 12 weeks of paid time off.") and weeks.met_by("a 12-week allotment")
    assert not weeks.met_by("You can request up to 240 hours of leave.")
    assert expectation("When does it expire?").met_by("It expires one year after it is issued.")
    assert expectation("When did the mission lift off?").met_by("They launched in the seventh month.")


def test_the_answering_sentence_is_shown_first(finder: EvidenceFinder, embedder: Any) -> None:
    question = "How many weeks of paid parental leave do employees get for a new child?"
    found = hits(SICK, LEAVE)
    finding = finder.find(question, found, citations_for(found))
    assert finding.answerable
    assert finding.ranked[0].candidate.text.startswith("You are entitled to 12 weeks")
    text = ExtractiveAnswerer(embedder).compose(finding)
    quoted = [line for line in text.splitlines() if line.startswith("> ")]
    assert (
        quoted[0]
        == "> You are entitled to 12 weeks of paid time off for the birth, adoption or placement of a new child. [2]"
    )


def test_a_field_and_a_table_row_answer_under_their_labels(finder: EvidenceFinder) -> None:
    found = hits(FORM, TARIFF)
    owner = finder.find("Who is the registered owner of the Piper N5921D?", found, citations_for(found))
    assert owner.answerable and owner.ranked[0].candidate.text == "Registered Owner: Claire L. Koch"
    charge = finder.find(
        "What is the pilotage charge per movement for a 200-metre vessel?", found, citations_for(found)
    )
    assert charge.answerable and "2380.00" in " ".join(s.candidate.text for s in charge.ranked[:3])


def test_a_question_on_the_topic_that_the_passages_do_not_answer_is_not_answerable(
    finder: EvidenceFinder,
) -> None:
    found = hits(SICK, LEAVE)
    days = finder.find(
        "How many business days does HR take to approve an advanced sick leave request?",
        found,
        citations_for(found),
    )
    assert not days.answerable and "number of days" in days.reason
    fee = finder.find("What fee is charged for a late leave request?", found, citations_for(found))
    assert not fee.answerable


def test_overlapping_chunks_give_each_sentence_once() -> None:
    found = hits(LEAVE, LEAVE)
    texts = [c.text for c in candidates(found, citations_for(found))]
    assert len(texts) == len(set(texts)) == 3


def test_a_field_counts_when_the_question_names_its_label() -> None:
    from assistant.evidence import label_match
    from assistant.support import content_terms

    def asked(question: str) -> set[str]:
        return content_terms(question)

    destination = asked("What destination is listed for the Cessna 172 flight near Boquete?")
    assert label_match(destination, "Destination: Volcan") == 1.0
    assert label_match(destination, "- Destination: Volcan") == 1.0  # a list of fields
    assert label_match(destination, "Destination:") == 0.0  # a label with no value answers nothing
    gusts = asked("What wind gusts were recorded at Weiser Air Park?")
    assert label_match(gusts, "Wind Speed/Gusts: 8 knots / 11 knots") == pytest.approx(2 / 3)
    # One word of two is not the field asked for: "the accident" does not ask for its number.
    assert label_match(asked("Who owned the aircraft in the accident?"), "Accident Number: DFW08CA044") == 0.0
    # A long lead-in before a colon is a sentence, not a label.
    leave = asked("How many days of sick leave can I use for family care?")
    assert label_match(leave, "You can use Sick Leave for: doctor appointments") == 0.0


def test_a_named_field_answers_though_it_is_short_and_far_in_meaning(finder: EvidenceFinder) -> None:
    narrative = (
        "On December 23, 2007, a Cessna 172 was destroyed when it collided with terrain near "
        "Boquete, Panama. The flight departed Islas Secas at about 1145."
    )
    form = "Departure Point: Islas Secas\nType of Flight Plan Filed: Unknown\nDestination: Volcan"
    found = one_document(narrative, form)
    finding = finder.find(
        "What destination is listed for the Cessna 172 flight that crashed near Boquete, Panama?",
        found,
        citations_for(found),
    )
    assert finding.answerable and finding.ranked[0].candidate.text == "Destination: Volcan"
    assert finding.ranked[0].cosine < finding.ranked[1].cosine  # the field wins on its label, not meaning


def test_a_value_from_a_document_about_something_else_answers_nothing(finder: EvidenceFinder) -> None:
    venice = Chunk(
        "v-00000", "v", "Location: Venice, FL\nAircraft: Cessna 152\nAltimeter Setting:", "v.pdf", ("p",)
    )
    other = Chunk(
        "o-00005",
        "o",
        "Conditions at Accident Site: Visual\nAltimeter Setting: 30.27 inches Hg",
        "o.pdf",
        ("p",),
    )
    found = [Hit(venice, 0.9, 0.66), Hit(other, 0.8, 0.62)]
    question = "What altimeter setting was reported for the Cessna 152 accident at Venice, Florida?"
    finding = finder.find(question, found, citations_for(found))
    # Venice's report leaves the field empty: the other report's value is not taken for it.
    theirs = next(r for r in finding.ranked if "30.27" in r.candidate.text)
    assert theirs.label == 0.0 and theirs is not finding.ranked[0]
    # The same field in the report the question is about answers it.
    venice_full = Chunk("v-00000", "v", venice.text + " 30.02 inches Hg", "v.pdf", ("p",))
    found = [Hit(venice_full, 0.9, 0.66), Hit(other, 0.8, 0.62)]
    finding = finder.find(question, found, citations_for(found))
    assert finding.answerable and finding.ranked[0].candidate.text == "Altimeter Setting: 30.02 inches Hg"


def test_dimensions_want_their_units() -> None:
    tall = expectation("How tall was the tree the Aerostar 601 struck?")
    assert tall.met_by("It struck a 60-foot tree.") and not tall.met_by("Aircraft: Ted Aerostar 601")
    old = expectation("How old was the student pilot?")
    assert old.met_by("Age: 17, Male") and old.met_by("The pilot, age 85, was landing.")
    assert not old.met_by("Aircraft: Piper PA-28-140")


def test_a_value_the_question_itself_gives_is_no_answer() -> None:
    question = "How much altitude did the student lose while slipping the PA-28-140 at Murfreesboro?"
    narrative = "The student pilot slipped the Piper PA-28-140 in order to lose altitude on final approach."
    assert "PA-28-140" not in without_asked(narrative, question)
    assert not expectation(question).met_by(narrative, question)
    assert expectation(question).met_by(narrative)  # without the question: a number, as before
    # A unit the question names stays, so that a new figure in it still reads as that unit.
    hours = "How many hours had the pilot flown in the 24 hours before the accident?"
    assert expectation(hours).met_by("Flight Time: 1364 hours (Total, all aircraft)", hours)
    assert not expectation(hours).met_by("Flight Time: 24 hours (Last 24 hours)", hours)


def test_an_event_answers_when(finder: EvidenceFinder) -> None:
    when = expectation("When should the team update the README?")
    assert when.met_by("The team should update the README upon a new project phase.")
    assert when.met_by("Send it at the end of discovery.") and not when.met_by("The README is a template.")


def test_a_line_that_gives_back_the_question_ranks_below_one_that_answers(finder: EvidenceFinder) -> None:
    question = "What was the pilot of the Air Tractor AT-401 doing when he crashed near Soledad, CA?"
    assert restates("Aircraft: Air Tractor AT-401", question)
    assert not restates("The pilot was seeding an area next to mountainous terrain.", question)
    pasted = "The capital budget for the new crane at berth 7 is 4.2 million euros."
    assert not restates(pasted, pasted)  # a sentence searched for is found, not given back
    found = one_document(
        "Location: Soledad, CA\nAircraft: Air Tractor AT-401",
        "The pilot was seeding an area next to mountainous terrain. The airplane was destroyed.",
    )
    finding = finder.find(question, found, citations_for(found))
    assert finding.ranked[0].candidate.text.startswith("The pilot was seeding"), finding.ranked[:3]
    assert {s.candidate.text for s in finding.ranked if s.restates} == {
        "Location: Soledad, CA",
        "Aircraft: Air Tractor AT-401",
    }
    # Only the restating lines: nothing answers.
    alone = one_document("Location: Soledad, CA\nAircraft: Air Tractor AT-401")
    assert not finder.find(question, alone, citations_for(alone)).answerable


def test_labels_with_a_comma_count_and_a_label_of_names_does_not() -> None:
    asked = content_terms("What latitude and longitude are recorded for the Murfreesboro accident?")
    assert label_match(asked, "Latitude, Longitude: 35.877500, -86.377500") == 1.0
    question = "What service fee is deducted when an organization funds GitHub Sponsors?"
    names = content_terms(" ".join(question_names(question)))
    assert question_names(question) == {"github", "sponsors"}
    line = "GitHub does not: Act as a money transmitter"
    assert label_match(content_terms(question), line) == 1.0  # the label's one word is in the question
    assert label_match(content_terms(question), line, names) == 0.0  # but it is only the subject's name
    assert question_names("Who do I call, and what is the 72-hour number? I need it.") == {"72-hour"}


def test_a_rewrite_holding_the_passages_words_does_not_make_the_answer_a_repeat(
    finder: EvidenceFinder,
) -> None:
    # A model rewrites follow-ups, and may write anything: the passage's own sentence, say. What
    # counts as given back is what the user asked.
    passage = "The mission lifted off from pad 39A in July, on schedule, with three crew."
    found = hits(passage)
    finding = finder.find("When did the mission lift off?", found, citations_for(found), search_query=passage)
    assert finding.answerable and finding.ranked[0].typed and not finding.ranked[0].restates
