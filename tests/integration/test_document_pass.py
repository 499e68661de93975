"""The second pass inside the best documents (assistant/focus.py) on the real parts: a report
ingested by the real ingest into embedded Chroma, asked through the real Assistant. The field
that answers sits in a chunk retrieval does not rank among the passages; the pass finds it in
the document the best passage comes from, and the extractive answer quotes it first."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from core.settings import Settings
from core.types import Principal
from enclave import wiring

pytestmark = pytest.mark.slow

NARRATIVE = (
    "On December 23, 2007, a Cessna 172 was destroyed when it collided with mountainous terrain "
    "near Boquete, Panama, shortly after it left Islas Secas on a personal flight. The pilot and "
    "two passengers were fatally injured. Visual meteorological conditions prevailed along the "
    "route and no flight plan was filed with the local authority. The wreckage was found on a "
    "steep slope the next morning by a search party from the village, and the investigation is "
    "under the jurisdiction of the government of Panama, which may be asked for further detail."
)
WEATHER = "\n".join(  # a list of fields, one per line, as a form's fields come out of a PDF
    "- " + field
    for field in [
        "Conditions at Accident Site: Visual Conditions",
        "Condition of Light: Day",
        "Observation Facility, Elevation: MPDA, 90 ft msl",
        "Distance from Accident Site: 12 Nautical Miles",
        "Lowest Cloud Condition: Scattered / 3000 ft agl",
        "Visibility: 10 Miles",
        "Wind Speed/Gusts: 8 knots / 11 knots",
        "Departure Point: Islas Secas",
        "Type of Flight Plan Filed: Unknown",
        "Destination: Volcan",
    ]
)
AIRCRAFT = "\n".join(
    "- " + field
    for field in [
        "Aircraft Make: Cessna",
        "Model/Series: 172",
        "Aircraft Category: Airplane",
        "Year of Manufacture: 1968",
        "Amateur Built: No",
        "Airworthiness Certificate: Normal",
        "Engine Manufacturer: Lycoming",
        "Engine Model/Series: O-320-E2D",
        "Registered Owner: Aero Chiriqui SA",
        "Operator: Aero Chiriqui SA",
    ]
)
OTHER = (
    "On December 6, 2007, a Piper PA-28 struck trees while landing at a private strip near "
    "Arteaga, Mexico, on a flight from Saltillo. The student pilot was not injured and the "
    "airplane was substantially damaged. The flight was conducted in day visual conditions."
)
ALL = Principal("ann", "staff", ("public",))


def report(folder: Path) -> Path:
    folder.mkdir()
    text = (
        "# Aviation accident report DFW08WA050\n\n## Narrative\n\n"
        + NARRATIVE
        + "\n\n## Aircraft and owner information\n\n"
        + AIRCRAFT
        + "\n\n## Meteorological information and flight plan\n\n"
        + WEATHER
        + "\n"
    )
    (folder / "boquete.md").write_text(text)
    (folder / "arteaga.md").write_text(
        "# Aviation accident report DFW08WA043\n\n## Narrative\n\n" + OTHER + "\n"
    )
    return folder


@pytest.fixture
def answers(settings: Settings, embedder: Any, tmp_path: Path) -> Any:
    settings.retrieval.top_k = 1  # only the best passage: the field is not it
    store = wiring.build_store(settings)
    wiring.build_pipeline(settings, embedder=embedder, store=store).run(
        [report(tmp_path / "docs")], ["public"]
    )

    def ask(question: str, extra: int) -> Any:
        settings.retrieval.document_pass = extra
        return wiring.build_assistant(settings, embedder=embedder, store=store).ask(ALL, question)

    return ask


def test_the_field_that_answers_is_found_inside_the_best_document(answers: Any) -> None:
    question = "What destination is listed for the Cessna 172 flight that crashed near Boquete, Panama?"
    without = answers(question, 0)
    assert len(without.hits) == 1 and "Destination: Volcan" not in without.hits[0].chunk.text
    assert "Volcan" not in without.text

    found = answers(question, 2)
    assert found.mode == "extractive"
    assert len(found.hits) >= 2 and {h.chunk.doc_id for h in found.hits} == {without.hits[0].chunk.doc_id}
    assert any("Destination: Volcan" in h.chunk.text for h in found.hits[1:])  # after retrieval's own
    quoted = [line for line in found.text.splitlines() if line.startswith("> ")]
    assert quoted[0].startswith("> Destination: Volcan ["), found.text


def test_the_pass_adds_nothing_when_no_other_chunk_holds_what_is_asked(answers: Any) -> None:
    found = answers("What happened to the Cessna 172 near Boquete, Panama on December 23, 2007?", 2)
    assert len(found.hits) == 1  # the narrative answers; the forms hold none of its rarer words


def test_a_question_that_names_its_report_is_given_that_reports_passages(
    settings: Settings, embedder: Any, tmp_path: Path
) -> None:
    settings.retrieval.top_k = 5  # more passages than the report has chunks: the other report's come too
    store = wiring.build_store(settings)
    wiring.build_pipeline(settings, embedder=embedder, store=store).run(
        [report(tmp_path / "docs")], ["public"]
    )

    def hits(question: str, extra: int) -> list[Any]:
        settings.retrieval.document_pass = extra
        return wiring.build_assistant(settings, embedder=embedder, store=store).ask(ALL, question).hits

    named = "What engine model was fitted to the Cessna 172 that crashed near Boquete, Panama in 2007?"
    without = hits(named, 0)
    titles = {h.chunk.source.rsplit("/", 1)[-1] for h in without}
    assert titles == {"boquete.md", "arteaga.md"}, titles  # retrieval alone mixes the two reports
    focused = hits(named, 2)
    assert {h.chunk.source.rsplit("/", 1)[-1] for h in focused} == {"boquete.md"}
    assert any("Engine Model/Series: O-320-E2D" in h.chunk.text for h in focused)
    # Names both reports hold single out neither: the other report's passages stay.
    both = hits("What happened in December 2007 on a flight in day visual conditions?", 2)
    assert {h.chunk.source.rsplit("/", 1)[-1] for h in both} == {"boquete.md", "arteaga.md"}
