"""parse_file on real-world files nobody made for Enclave: unstructured's example documents, the
18F handbook downloads and NTSB accident reports, from ../shared/corpus.

Every example document ends as pinned in tests/fixtures/external_corpus_expected.json (parsed,
skipped or failed, with a reason; a mail's attachments too, each as ingest parses it), none
crashes, and a sentence copied from one file of each
format is found in its parsed text. The other two corpora must simply end classified. Files are
parsed by 2 worker processes; the pin leaves out files over its max_bytes (a 1,225-page novel,
a 619-page PDF: minutes each, nothing the others do not show). To re-pin after a deliberate
change: `.venv/bin/python tests/fixtures/make_external_corpus_expected.py`, then review the diff.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ingest.formats import ocr, office
from tests.fixtures import make_external_corpus_expected as pin

CORPUS = pin.CORPUS
HANDBOOK = CORPUS / "18f-handbook" / "downloads"
NTSB = CORPUS / "ntsb-reports" / "data" / "v1" / "docs"
NTSB_SAMPLE = 5

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not pin.EXAMPLES.is_dir(),
        reason=f"{pin.EXAMPLES} is not here (the shared corpus is checked out next to the repo as ../shared)",
    ),
]

# One literal sentence (or table row) per format, copied from the source file.
SENTENCES = {
    "pdf/fake-memo.pdf": "A total of 3 trucks were used for 15 hours.",
    "handbook-1p.docx": "The Handbook does not present a full and complete statement of the law; "
    "it should not be used as a substitute for legal research and analysis.",
    "language-docs/eng_spa_mult.doc": "They are endowed with reason and conscience and should act "
    "towards one another in a spirit of brotherhood.",
    "fake.odt": "Lorem ipsum dolor sit amet.",
    "fake-doc.rtf": "My first paragraph.",
    "winter-sports.epub": "These sixteen turns, or changes of direction while skating on one foot, "
    "comprise all the varieties of so doing that seem theoretically possible",
    "fake-power-point.pptx": "Here is some text in a text box!",
    "language-docs/eng_spa_mult.ppt": "Testing multiple languages",
    "stanley-cups.xlsx": "Maple Leafs | TOR | 13",
    "tests-example.xls": "What is 2+2?",
    "stanley-cups.csv": "Maple Leafs | TOR | 13",
    "stanley-cups.tsv": "Maple Leafs | TOR | 13",
    "fake-html.html": "My first paragraph. lorem ipsum dolor set amet.",
    "fake-html-pre.htm": "To deter and punish terrorist acts in the United States",
    "factbook.xml": "Port of Spain",
    "README.md": "These documents can be used to test out the parsers in the library.",
    "README.rst": "The sample docs directory contains the following files:",
    "README.org": "The sample docs directory contains the following files:",
    "fake-text.txt": "This is a test document to use for unit tests.",
    "fake-text-utf-16-be.txt": "This is a test document to use for unit tests.",
    "eml/fake-email.eml": "This is a test email to use for unit tests.",
    "fake-email.msg": "This is a test email to use for unit tests.",
    "arbitrary-records.json": "name: Watering Can",
    "simple.ndjson": "text: These are a few of my favorite things:",
}
# Read by OCR: checked only where tesseract is installed.
OCR_SENTENCES = {
    "img/layout-parser-paper-fast.jpg": "A Unified Toolkit for Deep Learning Based Document Image Analysis",
    "img/DA-1p.png": "We arrived in the dead of night.",
}


def expected_files() -> dict[str, dict[str, Any]]:
    files: dict[str, dict[str, Any]] = json.loads(pin.EXPECTED.read_text(encoding="utf-8"))["files"]
    return files


@pytest.fixture(scope="module")
def example_results() -> dict[str, dict[str, Any]]:
    runnable = [pin.EXAMPLES / rel for rel, e in expected_files().items() if e["outcome"] != "too_large"]
    results = pin.run(runnable)
    return {str(Path(path).relative_to(pin.EXAMPLES)): result for path, result in results.items()}


def expectation(entry: dict[str, Any]) -> dict[str, Any] | None:
    """Outcome, reason and a mail's attachments' outcomes this machine must give, or None where
    any outcome but a crash will do."""
    if ocr.missing() and "without_tesseract" in entry:
        entry = entry["without_tesseract"]
    if entry["reason"] == "needs LibreOffice" and not office.missing():
        if "with_libreoffice" not in entry:
            return None  # pinned where LibreOffice was missing: what it makes of the file is not pinned
        entry = entry["with_libreoffice"]
    return {
        "outcome": entry["outcome"],
        "reason": entry["reason"],
        "attachments": entry.get("attachments", {}),
    }


def test_the_pin_covers_every_file() -> None:
    on_disk = {str(p.relative_to(pin.EXAMPLES)) for p in pin.corpus_files(pin.EXAMPLES)}
    assert set(expected_files()) == on_disk


def test_every_example_document_ends_as_pinned(example_results: dict[str, dict[str, Any]]) -> None:
    crashes = {rel: r["trace"] for rel, r in example_results.items() if r["outcome"] == "crash"}
    crashes.update(
        {
            f"{rel}#{name}": a["message"]
            for rel, r in example_results.items()
            for name, a in r.get("attachments", {}).items()
            if a["outcome"] == "crash"
        }
    )
    assert not crashes, "\n\n".join(f"{rel}:\n{trace}" for rel, trace in crashes.items())
    wrong = []
    for rel, entry in expected_files().items():
        if entry["outcome"] == "too_large":
            continue
        result = example_results[rel]
        got = {
            "outcome": result["outcome"],
            "reason": pin.reason_key(result),
            "attachments": pin.attachment_keys(result),
        }
        want = expectation(entry)
        if want is not None and got != want:
            wrong.append(f"{rel}: expected {want}, got {got}: {result['message']}")
    assert not wrong, "\n".join(wrong)


def test_every_message_names_its_file(example_results: dict[str, dict[str, Any]]) -> None:
    for result in example_results.values():
        if result["outcome"] in ("failed", "skipped"):
            assert result["message"].startswith(f"{result['path']}: "), result["message"]
        for name, attachment in result.get("attachments", {}).items():  # "<mail>#<name>: <reason>"
            if attachment["outcome"] in ("failed", "skipped"):
                assert attachment["message"].startswith(f"{result['path']}#{name}: "), attachment["message"]


def normalised(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize("rel", sorted(SENTENCES))
def test_a_known_sentence_of_each_format_survives(
    example_results: dict[str, dict[str, Any]], rel: str
) -> None:
    result = example_results[rel]
    assert result["outcome"] == "parsed", result["message"]
    assert normalised(SENTENCES[rel]) in normalised(result["text"])


@pytest.mark.skipif(ocr.missing() is not None, reason="the tesseract command is not installed")
@pytest.mark.parametrize("rel", sorted(OCR_SENTENCES))
def test_a_known_sentence_survives_ocr(example_results: dict[str, dict[str, Any]], rel: str) -> None:
    result = example_results[rel]
    assert result["outcome"] == "parsed", result["message"]
    assert normalised(OCR_SENTENCES[rel]) in normalised(result["text"])


def test_sentences_cover_every_parsed_format(example_results: dict[str, dict[str, Any]]) -> None:
    parsed = {Path(rel).suffix.lower() for rel, r in example_results.items() if r["outcome"] == "parsed"}
    covered = {Path(rel).suffix.lower() for rel in [*SENTENCES, *OCR_SENTENCES]}
    image_formats = pin.OCR_SUFFIXES - {".pdf"}
    assert parsed - covered <= image_formats  # one image sample per OCR path is enough


def test_the_18f_handbook_and_ntsb_reports_end_classified() -> None:
    files = pin.corpus_files(HANDBOOK) if HANDBOOK.is_dir() else []
    files += sorted(NTSB.glob("*.pdf"))[:NTSB_SAMPLE] if NTSB.is_dir() else []
    if not files:
        pytest.skip("neither ../shared/corpus/18f-handbook nor ntsb-reports is here")
    results = pin.run(files)
    outcomes = {path: r["outcome"] for path, r in results.items()}
    assert set(outcomes.values()) <= {"parsed", "skipped", "failed"}, {
        path: results[path]["trace"] for path, o in outcomes.items() if o == "crash"
    }
    # Real documents, all with a text layer: every one is read.
    assert all(o == "parsed" for o in outcomes.values()), {
        p: results[p]["message"] for p, o in outcomes.items() if o != "parsed"
    }
