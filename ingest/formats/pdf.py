"""PDF specifics around unstructured's text-layer partitioner: opening checks, OCR of pages
without a text layer, and telling blank, damaged and scanned PDFs apart when no text came out.

`relax_complexity_check()` keeps partition_pdf on the text layer for PDFs with vector-heavy
pages: its "too complex" heuristic (many graphics operators per text operator on any one page,
typical of a report with charts) otherwise sends the whole file to the hi_res layout model,
which is not installed, and the result is empty. Its caps against crafted content streams
(CVE-2026-33123: decoded bytes and array entries per page and per document) stay; a file they
refuse is reported as such.
"""

from __future__ import annotations

import functools
import logging
import sys
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from core.errors import ParseError
from ingest.formats import ocr, one_line

log = logging.getLogger(__name__)

_lock = threading.Lock()
_relaxed = False
_local = threading.local()  # .refused: set when the caps refused the file being partitioned


def relax_complexity_check() -> None:
    """Patch partition_pdf's complexity check as described above; idempotent, thread-safe."""
    global _relaxed
    if _relaxed:
        return
    with _lock:
        if _relaxed:
            return
        from unstructured.partition import pdf as partition_pdf_module

        original = getattr(partition_pdf_module, "is_pdf_too_complex", None)
        if original is None:
            raise ImportError(
                "unstructured.partition.pdf no longer has is_pdf_too_complex; "
                "ingest/formats/pdf.py must be updated for this unstructured version"
            )

        @functools.wraps(original)
        def is_pdf_too_complex(*args: Any, **kwargs: Any) -> bool:
            kwargs["max_graphics_ops"] = sys.maxsize  # the heuristic off, the safety caps on
            refused = bool(original(*args, **kwargs))
            _local.refused = refused
            return refused

        partition_pdf_module.is_pdf_too_complex = is_pdf_too_complex
        _relaxed = True


def start() -> None:
    _local.refused = False


def refused_as_too_complex() -> bool:
    """Whether the last partition in this thread was refused by the content-stream caps."""
    return bool(getattr(_local, "refused", False))


def check_opens(path: Path) -> None:
    # partition_pdf turns any pdfminer failure, a password among them, into an empty result, so
    # the PDF is opened here first. qpdf repairs what can be repaired and says what cannot.
    import pikepdf

    try:
        with pikepdf.open(path):
            pass
    except pikepdf.PasswordError as exc:
        raise ParseError(
            f"{path}: is encrypted (password protected); remove the password to ingest it"
        ) from exc
    except Exception as exc:  # pikepdf.PdfError and qpdf's other complaints
        log.debug("pikepdf could not open %s", path, exc_info=True)
        raise ParseError(f"{path}: could not be parsed as PDF: {one_line(exc)}") from exc


def damage(path: Path) -> str:
    """qpdf's first complaint about a PDF it had to repair, or "" for a sound one."""
    import pikepdf

    try:
        with pikepdf.open(path) as pdf:
            complaints = [str(w) for w in pdf.get_warnings()]
    except Exception as exc:
        return one_line(exc)
    # qpdf prefixes each warning with the path, which the message already starts with, and its
    # first one is often just "file is damaged": the next one says how.
    details = [c.replace(f"{path}: ", "") for c in complaints]
    specific = [d for d in details if d != "file is damaged"]
    return (specific or details or [""])[0]


def refuse_if_too_complex(path: Path) -> None:
    """After partition_pdf: raise if its content-stream caps refused the file (then nothing else,
    OCR included, should read it either)."""
    if refused_as_too_complex():
        raise ParseError(
            f"{path}: could not be parsed as PDF: a page's content streams exceed the safety limits "
            "of unstructured's PDF reader (decoded size or array entries)"
        )


def raise_empty(path: Path) -> None:
    """Say why a PDF gave no text at all: damaged, blank, or a scan (OCR missing or blind)."""
    problem = damage(path)
    if problem:
        raise ParseError(f"{path}: contains no readable text; the PDF is damaged ({problem})")
    if pages_blank(path):
        raise ParseError(f"{path}: contains no text (its pages are blank)")
    reason = ocr.missing()
    if reason:
        from ingest.document import NeedsOCR

        raise NeedsOCR(f"{path}: has no text layer (a scan): it {reason}")
    raise ParseError(f"{path}: contains no text (none in its text layer, and OCR found none)")


def pages_blank(path: Path) -> bool:
    """Whether every page renders to an empty sheet (no scan on it to OCR)."""
    try:
        import pypdfium2

        pdf = pypdfium2.PdfDocument(str(path))
    except Exception:
        return False
    try:
        for index in range(len(pdf)):
            page = pdf[index]
            try:
                image = page.render(scale=50 / 72, grayscale=True).to_pil()
            finally:
                page.close()
            if not ocr.is_blank(image):
                return False
        return True
    except Exception:
        log.debug("pages of %s could not be rendered", path, exc_info=True)
        return False
    finally:
        pdf.close()


class OcrText:
    """Text read by OCR from one page, shaped like the unstructured elements `_sections` reads."""

    category = "NarrativeText"

    def __init__(self, text: str, page: int) -> None:
        self.text = text
        self.metadata = SimpleNamespace(page_number=page, page_name=None, text_as_html=None)


def with_ocr_pages(path: Path, elements: list[Any]) -> list[Any]:
    """`elements` with the OCR text of every page that has no text layer, in page order.

    Without tesseract the pages are left out (a PDF with no text at all is refused later)."""
    if ocr.missing():
        return elements
    import pypdfium2

    with_text = {e.metadata.page_number for e in elements if str(e.text or "").strip()}
    try:
        pdf = pypdfium2.PdfDocument(str(path))
    except Exception:
        log.debug("pypdfium2 could not open %s for OCR", path, exc_info=True)
        return elements
    found: list[Any] = []
    try:
        scanned = [n for n in range(1, len(pdf) + 1) if n not in with_text]
        if scanned:
            log.debug("%s: OCR of %d page(s) without a text layer", path, len(scanned))
        for number in scanned:
            try:
                text = ocr.image_text(ocr.pdf_page_image(pdf, number))
            except ocr.OCRError as exc:
                raise ParseError(f"{path}: OCR failed on page {number}: {exc}") from exc
            except Exception as exc:  # pdfium could not render the page
                log.debug("page %d of %s could not be rendered", number, path, exc_info=True)
                raise ParseError(
                    f"{path}: page {number} could not be rendered for OCR: {one_line(exc)}"
                ) from exc
            if text:
                found.append(OcrText(text, number))
    finally:
        pdf.close()
    if not found:
        return elements
    return sorted([*elements, *found], key=lambda e: e.metadata.page_number or 0)  # stable
