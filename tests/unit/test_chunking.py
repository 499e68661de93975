"""The chunker: headings and labels travel with their text, tables keep their header, pages stay
right, chunks fit the model's window, long sections are cut evenly, nothing is lost."""

from __future__ import annotations

import re
from pathlib import Path

from core.types import Chunk
from ingest.chunking import Chunker, WordPieces, embedding_text, without_heading
from ingest.document import ParsedDocument, Section
from ingest.formats import tables

TITLE = "Induction of myelodysplasia by myeloid-derived suppressor cells."


def _sentences(n: int, words: int = 12) -> str:
    return " ".join(f"Sentence {i} " + " ".join(f"w{i}x{j}" for j in range(words)) + "." for i in range(n))


def _doc(*sections: Section, title: str = TITLE) -> ParsedDocument:
    return ParsedDocument(path=Path("doc.md"), title=title, sections=list(sections))


def test_a_heading_repeated_as_the_first_paragraph_is_not_a_chunk_of_its_own() -> None:
    body = _sentences(14)
    assert 1000 - len(TITLE) < len(body) < 1900  # title + body do not fit one chunk
    doc = _doc(Section(text=f"{TITLE}\n\n{body}", heading=TITLE, page=None))
    chunks = Chunker().chunks(doc, "d", "doc.md", ["staff"])
    assert len(chunks) == 2
    assert all(TITLE not in c.text for c in chunks)
    # the heading still travels with every chunk: as metadata, and once in what is embedded
    assert all(c.section == TITLE for c in chunks)
    assert all(embedding_text(c).startswith(TITLE + "\n\n") for c in chunks)
    assert all(embedding_text(c).count(TITLE) == 1 for c in chunks)


def test_a_heading_only_section_and_a_differing_first_line_are_kept() -> None:
    assert without_heading("Annex A", "Annex A") == "Annex A"
    assert without_heading("Annex A\n\n   ", "Annex A") == "Annex A\n\n   "
    assert without_heading("Annex B\n\ntext", "Annex A") == "Annex B\n\ntext"
    assert without_heading("  Annex   A \n\ntext", "Annex A") == "text"
    assert without_heading("text", "") == "text"
    doc = _doc(Section(text="Annex A", heading="Annex A", page=3))
    (chunk,) = Chunker().chunks(doc, "d", "doc.md", ["staff"])
    assert chunk.text == "Annex A" and chunk.page == 3


def test_a_long_section_is_cut_into_even_pieces_without_losing_text() -> None:
    text = _sentences(23)  # ~1.9 times the chunk size, yet greedy gives two full pieces and a tail
    greedy = Chunker()._splitter(1000).split_text(text)
    assert len(greedy) == 3 and len(greedy[-1]) < 0.5 * len(greedy[0])
    pieces = Chunker().split(text)
    assert len(pieces) == len(greedy)
    assert all(len(p) <= 1000 for p in pieces)
    assert min(map(len, pieces)) > 0.7 * max(map(len, pieces))
    for sentence in re.findall(r"Sentence \d+ [^.]*\.", text):
        assert any(sentence in p for p in pieces), sentence
    assert all(p in text for p in pieces)  # byte-exact slices of the section


def test_short_sections_are_one_chunk_each_and_never_merge() -> None:
    doc = _doc(
        Section(text="First part.", heading="One", page=1),
        Section(text="Second part.", heading="One", page=2),
    )
    chunks = Chunker().chunks(doc, "d", "doc.md", ["b", "a", "a"])
    assert [(c.text, c.page, c.index) for c in chunks] == [("First part.", 1, 0), ("Second part.", 2, 1)]
    assert chunks[0].groups == ("a", "b")


def test_context_leaves_out_a_heading_that_repeats_the_title() -> None:
    def chunk(title: str, section: str) -> Chunk:
        return Chunk(
            chunk_id="c", doc_id="d", text="t", source="s", groups=("g",), title=title, section=section
        )

    assert chunk("Report", "Report").context == "Report"
    assert chunk("Report", " Report ").context == "Report"
    assert chunk("Report", "Costs").context == "Report / Costs"
    assert chunk("", "Costs").context == "Costs"
    assert chunk("Report", "").context == "Report"
    assert embedding_text(chunk("", "")) == "t"


def _texts(doc: ParsedDocument, chunker: Chunker | None = None) -> list[tuple[str, str, int | None]]:
    return [(c.text, c.section, c.page) for c in (chunker or Chunker()).chunks(doc, "d", "doc.md", ["staff"])]


def test_a_heading_travels_with_the_text_it_heads() -> None:
    doc = _doc(
        Section(text="Safety", heading="Safety", page=1),
        Section(text=f"Fire drills\n\n{_sentences(4)}", heading="Fire drills", page=1),
        Section(text="Visitors\n\n" + _sentences(8), heading="Visitors", page=1),
    )
    assert _texts(doc) == [
        # "Safety" alone heads nothing: the section it joins names the chunk, and it stays as text
        (f"Safety\n\n{_sentences(4)}", "Fire drills", 1),
        (_sentences(8), "Visitors", 1),
    ]


def test_labels_join_the_section_after_them_and_a_long_one_keeps_them_in_its_first_piece() -> None:
    form = "Registration: N5921D\nAircraft: Piper PA-22-150"
    narrative = _sentences(14)  # longer than a chunk
    doc = _doc(
        Section(text=form, heading="Report", page=1),
        Section(text=f"Analysis\n\n{narrative}", heading="Analysis", page=1),
    )
    chunks = Chunker().chunks(doc, "d", "doc.md", ["staff"])
    assert len(chunks) == 2 and all(len(c.text) <= 1000 for c in chunks)
    assert chunks[0].text.startswith(f"{form}\n\nAnalysis\n\nSentence 0 ")
    assert chunks[0].section == "Report"


def test_a_table_cut_by_rows_keeps_its_header_in_every_chunk() -> None:
    header = "Name | Department | Extension"
    rows = [f"Person {i} with a longer name | Department {i % 7} | {1000 + i}" for i in range(60)]
    doc = _doc(
        Section(
            text="Phone list\n\nAsk the front desk for numbers not listed here.", heading="Phone list", page=2
        ),
        *tables.table_sections([header, *rows], "Phone list", 2, 1000),
    )
    chunks = Chunker().chunks(doc, "d", "doc.md", ["staff"])
    with_rows = [c for c in chunks if "Person" in c.text]
    assert len(with_rows) >= 3
    for chunk in with_rows:
        lines = chunk.text.split("\n")
        assert header in lines and lines.index(header) < min(
            i for i, line in enumerate(lines) if "Person" in line
        )
        assert len(chunk.text) <= 1000 and chunk.page == 2
    # every row whole in some chunk, in order
    found = [line for c in with_rows for line in c.text.split("\n") if line.startswith("Person")]
    assert sorted(set(found), key=found.index) == rows


def test_a_heading_at_the_bottom_of_a_page_joins_the_text_on_the_next_with_its_page() -> None:
    doc = _doc(
        Section(text="Scope\n\n" + _sentences(6), heading="Scope", page=1),
        Section(text="Procedure", heading="Procedure", page=1),
        Section(text="Pilots file the plan an hour before departure.", heading="Procedure", page=2),
        Section(text="Page 2 of 2", heading="Procedure", page=3),
    )
    assert _texts(doc) == [
        (_sentences(6), "Scope", 1),
        ("Pilots file the plan an hour before departure.", "Procedure", 2),
        # text never crosses a page: a short one with nothing to join on its page stays alone
        ("Page 2 of 2", "Procedure", 3),
    ]


def test_a_short_text_at_the_end_of_its_page_joins_the_one_before_it() -> None:
    doc = _doc(
        Section(text="Scope\n\n" + _sentences(3), heading="Scope", page=1),
        Section(text="Notes\n\nSee annex B.", heading="Notes", page=1),
        Section(text="Annex B\n\n" + _sentences(3), heading="Annex B", page=2),
    )
    assert _texts(doc) == [
        (f"{_sentences(3)}\n\nNotes\n\nSee annex B.", "Scope", 1),
        (_sentences(3), "Annex B", 2),
    ]


def test_chunks_stay_within_the_embedding_models_window() -> None:
    counter = WordPieces.of(None)
    assert counter is not None and counter.window == 256
    # URLs and hashes take many word pieces per character: 990 characters, far over 256 pieces
    text = " ".join(f"https://example.org/a{i:03d}/x7Qz9kPw{i}" for i in range(30))[:990]
    assert counter.count(text) > 256
    doc = _doc(Section(text=f"Links\n\n{text}", heading="Links", page=None))
    chunks = Chunker(word_pieces=counter).chunks(doc, "d", "doc.md", ["staff"])
    assert len(chunks) >= 2
    assert all(counter.count(embedding_text(c)) <= 256 for c in chunks)
    for url in text.split()[:-1]:  # every whole URL is in some chunk
        assert any(url in c.text for c in chunks)


def test_a_document_that_is_only_a_heading_is_one_chunk() -> None:
    doc = _doc(Section(text="Annex C", heading="Annex C", page=4), title="Annex C")
    assert _texts(doc) == [("Annex C", "Annex C", 4)]
