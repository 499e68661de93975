"""The chunker: headings are not chunked twice, long sections are cut evenly, nothing is lost."""

from __future__ import annotations

import re
from pathlib import Path

from core.types import Chunk
from ingest.chunking import Chunker, embedding_text, without_heading
from ingest.document import ParsedDocument, Section

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
