"""Turn one file into headed, paged sections of text with `unstructured`, fully offline.

`parse_file()` picks unstructured's partitioner by extension, then folds its elements into
`Section`s: a Title element, or a new page, starts a new section. A Title is both the section's
`heading` and the first paragraph of its `text` (so no parsed text is ever dropped, even a heading
with nothing under it); later sections keep the nearest preceding heading, across pages too.
Tables are written one row per line, cells separated by " | ". XLSX sheets start with the sheet
name as heading. Every failure is a `ParseError` whose message starts with the path.

unstructured types stay in this module: callers get only the dataclasses below.
"""

from __future__ import annotations

import codecs
import importlib
import importlib.util
import io
import logging
import threading
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import EnclaveError, ParseError
from ingest import _classification
from ingest._spacy_offline import ensure_offline_nlp

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Section:
    """Consecutive text under one heading on one page."""

    text: str  # the text exactly as parsed, elements joined by "\n\n" (tables one row a line)
    heading: str  # nearest preceding heading ("" if none)
    # 1-based: PDF page, PPTX slide, XLSX sheet index, DOCX page where Word saved its rendered page
    # breaks; None where the format has no pages (HTML, Markdown, text, CSV, email).
    page: int | None


@dataclass(frozen=True)
class ParsedDocument:
    path: Path
    title: str  # first Title element, EML Subject, HTML <title>, else the file stem
    sections: list[Section]


@dataclass(frozen=True)
class _Format:
    label: str  # as said to the user: "could not be parsed as DOCX"
    module: str  # unstructured.partition.<module>
    function: str
    options: dict[str, Any]


_FORMATS: dict[str, _Format] = {
    # fast = pdfminer's text layer only: no OCR, no layout model, nothing to download.
    ".pdf": _Format("PDF", "pdf", "partition_pdf", {"strategy": "fast", "languages": ["eng"]}),
    ".docx": _Format("DOCX", "docx", "partition_docx", {}),
    ".pptx": _Format("PPTX", "pptx", "partition_pptx", {"include_slide_notes": True}),
    ".xlsx": _Format("XLSX", "xlsx", "partition_xlsx", {}),
    ".html": _Format("HTML", "html", "partition_html", {}),
    ".htm": _Format("HTML", "html", "partition_html", {}),
    ".md": _Format("Markdown", "md", "partition_md", {}),
    ".txt": _Format("text", "text", "partition_text", {}),
    ".csv": _Format("CSV", "csv", "partition_csv", {}),
    # Attachments are left out: they are better ingested as files of their own, and an image
    # attachment would send unstructured to its OCR/layout models, which are not installed.
    ".eml": _Format("email", "email", "partition_email", {"process_attachments": False}),
}

SUPPORTED_EXTENSIONS: frozenset[str] = frozenset(_FORMATS)

# Packages partition_pdf needs beyond pdfminer.six even for strategy="fast": it imports them at
# module level or behind `requires_dependencies`, and swallows the error of a missing one into an
# empty result. Checked up front so that the message names the package instead.
_PDF_PACKAGES = {
    "pikepdf": "pikepdf==10.18.0",
    "pypdf": "pypdf",
    "pi_heif": "pi-heif==1.4.0",
    "pdf2image": "pdf2image==1.17.0",
    "cv2": "opencv-python-headless==4.14.0.94",
    "matplotlib": "matplotlib==3.11.2",
    "onnx": "onnx==1.23.2",
    "unstructured_inference": "unstructured-inference==1.6.14 (with --no-deps: its torch/timm stack is not needed)",
}

_PDF_MAGIC = b"%PDF-"
_ZIP_MAGIC = b"PK\x03\x04"
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_BINARY_MAGIC = {
    _PDF_MAGIC: "a PDF",
    _ZIP_MAGIC: "a ZIP container (DOCX/PPTX/XLSX or archive)",
    _OLE_MAGIC: "an OLE container (legacy or encrypted Office file)",
    b"\x89PNG": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"GIF8": "a GIF image",
}
# UTF-32 first: its little-endian BOM begins with UTF-16's.
_TEXT_BOMS = (
    (b"\xff\xfe\x00\x00", "utf-32"),
    (b"\x00\x00\xfe\xff", "utf-32"),
    (b"\xef\xbb\xbf", "utf-8-sig"),
    (b"\xff\xfe", "utf-16"),
    (b"\xfe\xff", "utf-16"),
)
# Content types of an encrypted message body: PGP/MIME, and S/MIME (also as x-pkcs7-mime).
_ENCRYPTED_MAIL_MARKS = (b"multipart/encrypted", b"pkcs7-mime")
_OOXML = {".docx", ".pptx", ".xlsx"}
_TEXT_LIKE = {".html", ".htm", ".md", ".txt", ".csv", ".eml"}

# Library loggers whose warnings are about the file, not the user's action: kept at debug.
_LIBRARY_LOGGERS = ("unstructured", "unstructured_inference", "pdfminer", "pypdf", "pikepdf")

_setup_lock = threading.Lock()
_setup_done = False


def is_supported(path: Path) -> bool:
    """Whether `parse_file` handles this file's extension (case-insensitive)."""
    return Path(path).suffix.lower() in SUPPORTED_EXTENSIONS


def parse_file(path: Path) -> ParsedDocument:
    """Parse one file into sections; raise `ParseError("<path>: <reason>")` if it cannot be.

    Corrupt, encrypted, empty, text-less, mislabelled and unsupported files are all refused
    with a plain reason. No connection is attempted (see `ingest._spacy_offline`).
    """
    path = Path(path)
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        supported = ", ".join(sorted(SUPPORTED_EXTENSIONS))
        raise ParseError(
            f"{path}: unsupported file type {path.suffix or '(no extension)'!r}; supported: {supported}"
        )
    head = _read_head(path)
    encoding = _check_content(path, fmt, head)
    _prepare(path)
    elements = _partition(path, fmt, encoding)
    sections = _sections(elements, per_sheet_heading=fmt.label == "XLSX")
    if not sections:
        if fmt.label == "email" and any(mark in head.lower() for mark in _ENCRYPTED_MAIL_MARKS):
            raise ParseError(
                f"{path}: is encrypted (PGP or S/MIME); it cannot be read without the recipient's key"
            )
        if fmt.label == "PDF":
            damage = _pdf_damage(path)
            if damage:
                raise ParseError(f"{path}: contains no readable text; the PDF is damaged ({damage})")
            raise ParseError(f"{path}: contains no text (a scanned PDF needs OCR, which Enclave does not do)")
        raise ParseError(f"{path}: contains no text")
    return ParsedDocument(path=path, title=_title(path, fmt, elements), sections=sections)


def _read_head(path: Path, size: int = 8192) -> bytes:
    try:
        if not path.is_file():
            reason = "does not exist" if not path.exists() else "is not a regular file"
            raise ParseError(f"{path}: {reason}")
        with path.open("rb") as fh:
            head = fh.read(size)
    except OSError as exc:
        raise ParseError(f"{path}: cannot be read: {exc.strerror or exc}") from exc
    if not head:
        raise ParseError(f"{path}: is empty (0 bytes)")
    return head


def _check_content(path: Path, fmt: _Format, head: bytes) -> str | None:
    """Refuse, with a plain reason, files that are not what their extension says, or are locked.

    Returns the text encoding to pass on when the bytes show it (a BOM, or UTF-16 without one).
    """
    ext = path.suffix.lower()
    if fmt.label == "PDF":
        if _PDF_MAGIC not in head[:1024]:  # the spec allows junk before the header, within 1 KiB
            raise ParseError(
                f"{path}: is not a PDF (no %PDF header); its content does not match its extension"
            )
        _require_pdf_packages(path)
        _check_pdf_opens(path)
    elif ext in _OOXML:
        if head.startswith(_OLE_MAGIC):
            raise ParseError(f"{path}: {_ole_reason(path, fmt)}")
        if not head.startswith(_ZIP_MAGIC):
            raise ParseError(
                f"{path}: is not a {fmt.label} file (not a ZIP container); "
                "its content does not match its extension"
            )
    elif ext in _TEXT_LIKE:
        for magic, kind in _BINARY_MAGIC.items():
            if head.startswith(magic):
                raise ParseError(
                    f"{path}: is {kind}, not {fmt.label}; its content does not match its extension"
                )
        encoding = _text_encoding(head)
        if encoding is None and b"\x00" in head:
            raise ParseError(f"{path}: is binary, not {fmt.label} (it contains NUL bytes)")
        if _is_blank(path, encoding):  # some partitioners (CSV) fail on it instead of returning nothing
            raise ParseError(f"{path}: contains no text")
        return encoding
    return None


def _is_blank(path: Path, encoding: str | None) -> bool:
    """Whether the file decodes to whitespace only; stops at the first block with text in it."""
    decoder = codecs.getincrementaldecoder(encoding or "utf-8")(errors="ignore")
    try:
        with path.open("rb") as fh:
            while block := fh.read(65536):
                if decoder.decode(block).strip():
                    return False
    except OSError as exc:
        raise ParseError(f"{path}: cannot be read: {exc.strerror or exc}") from exc
    return not decoder.decode(b"", final=True).strip()


def _text_encoding(head: bytes) -> str | None:
    """The encoding shown by a byte-order mark, or by the NUL pattern of BOM-less UTF-16; else None."""
    for bom, encoding in _TEXT_BOMS:
        if head.startswith(bom):
            return encoding
    sample = head[: len(head) // 2 * 2]
    if len(sample) < 4:
        return None
    pairs = len(sample) // 2
    even_nuls, odd_nuls = sample[0::2].count(0), sample[1::2].count(0)
    # ASCII-heavy UTF-16 has a NUL in (nearly) every other byte and almost none in between.
    if odd_nuls > 0.3 * pairs and even_nuls < 0.05 * pairs:
        return "utf-16-le"
    if even_nuls > 0.3 * pairs and odd_nuls < 0.05 * pairs:
        return "utf-16-be"
    return None


def _require_pdf_packages(path: Path) -> None:
    missing = [pin for module, pin in _PDF_PACKAGES.items() if importlib.util.find_spec(module) is None]
    if missing:
        raise ParseError(f"{path}: cannot be parsed: PDF support needs {'; '.join(missing)}")


def _check_pdf_opens(path: Path) -> None:
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
        raise ParseError(f"{path}: could not be parsed as PDF: {_one_line(exc)}") from exc


def _pdf_damage(path: Path) -> str:
    """qpdf's first complaint about a PDF it had to repair, or "" for a sound one."""
    import pikepdf

    try:
        with pikepdf.open(path) as pdf:
            complaints = [str(w) for w in pdf.get_warnings()]
    except Exception as exc:
        return _one_line(exc)
    # qpdf prefixes each warning with the path, which the message already starts with, and its
    # first one is often just "file is damaged": the next one says how.
    details = [c.replace(f"{path}: ", "") for c in complaints]
    specific = [d for d in details if d != "file is damaged"]
    return (specific or details or [""])[0]


def _ole_reason(path: Path, fmt: _Format) -> str:
    # An OOXML file saved with a password is wrapped in an OLE container; so is a legacy
    # .doc/.xls/.ppt renamed to the new extension. msoffcrypto tells the two apart.
    try:
        import msoffcrypto

        with path.open("rb") as fh:
            encrypted = bool(msoffcrypto.OfficeFile(fh).is_encrypted())
    except Exception:
        log.debug("msoffcrypto could not inspect %s", path, exc_info=True)
        return f"is an encrypted or legacy (pre-2007) Office file, not a {fmt.label} file"
    if encrypted:
        return "is encrypted (password protected); remove the password to ingest it"
    return f"is a legacy (pre-2007) Office file, not a {fmt.label} file; save it as {path.suffix.lower()}"


def _prepare(path: Path) -> None:
    """Process-wide setup, once: library logs to debug, telemetry off, the local spaCy model."""
    global _setup_done
    if not _setup_done:
        with _setup_lock:
            if not _setup_done:
                _relay_library_logs()
                _setup_done = True
    try:
        ensure_offline_nlp()  # also switches unstructured's telemetry off before importing it
        _classification.install()
    except ImportError as exc:
        raise ParseError(f"{path}: cannot be parsed: {exc}") from exc


class _DebugRelay(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        log.debug("%s: %s", record.name, record.getMessage())


def _relay_library_logs() -> None:
    # unstructured and pdfminer warn per file ("Cannot set gray non-stroke color", "No languages
    # specified") straight to the user's terminal; those belong in the debug log. Handlers see
    # records of child loggers too, which a logger filter would not.
    relay = _DebugRelay()
    for name in _LIBRARY_LOGGERS:
        library_log = logging.getLogger(name)
        library_log.addHandler(relay)
        library_log.propagate = False


def _partition(path: Path, fmt: _Format, encoding: str | None) -> list[Any]:
    options: dict[str, Any] = {"filename": str(path), **fmt.options}
    if encoding and fmt.label == "email":
        # partition_email takes no encoding; RFC 5322 mail is 8-bit, so hand it UTF-8 bytes.
        try:
            data = path.read_bytes().decode(encoding).encode("utf-8")
        except (OSError, UnicodeError) as exc:
            raise ParseError(f"{path}: could not be decoded as {encoding}: {_one_line(exc)}") from exc
        options.update(filename=None, file=io.BytesIO(data), metadata_filename=str(path))
    elif encoding:
        options["encoding"] = encoding
    try:
        partition: Callable[..., list[Any]] = getattr(
            importlib.import_module(f"unstructured.partition.{fmt.module}"), fmt.function
        )
    except ImportError as exc:
        raise ParseError(f"{path}: cannot be parsed: {fmt.label} support is not installed ({exc})") from exc
    # Library warnings go to the debug log, not the terminal (nor, under pytest, become errors).
    # catch_warnings swaps process-wide state, so two threads parsing at once may each see the
    # other's filters; the worst outcome is a warning logged at the wrong level.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            elements = partition(**options)
        except EnclaveError:
            raise  # EgressBlocked and the like are not the file's fault and must stay visible
        except Exception as exc:
            log.debug("unstructured failed on %s", path, exc_info=True)
            raise ParseError(f"{path}: could not be parsed as {fmt.label}: {_one_line(exc)}") from exc
    for warning in caught:
        log.debug("%s: %s: %s", path, warning.category.__name__, warning.message)
    return list(elements)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _sections(elements: Iterable[Any], per_sheet_heading: bool) -> list[Section]:
    sections: list[Section] = []
    heading = ""
    page: int | None = None
    sheet: str | None = None
    body: list[str] = []

    def flush() -> None:
        if body:
            sections.append(Section(text="\n\n".join(body), heading=heading, page=page))
            body.clear()

    for element in elements:
        text = _element_text(element)
        if not text.strip():
            continue  # PageBreak, empty paragraphs, image placeholders
        metadata = element.metadata
        element_page = metadata.page_number
        if element_page != page:
            flush()
            page = element_page
        if per_sheet_heading and metadata.page_name and metadata.page_name != sheet:
            flush()
            sheet = metadata.page_name
            heading = sheet
        if element.category == "Title":
            flush()
            heading = " ".join(text.split())
        body.append(text)
    flush()
    return sections


def _element_text(element: Any) -> str:
    if element.category == "Table":
        html = getattr(element.metadata, "text_as_html", None)
        if html:
            rows = _table_rows(html)
            if rows:
                return "\n".join(rows)
    return str(element.text or "")


def _table_rows(html: str) -> list[str]:
    """Rows of an HTML table as "cell | cell | cell" lines; rows with no text are dropped."""
    import lxml.html

    try:
        root = lxml.html.fragment_fromstring(html, create_parent="div")
    except Exception:  # malformed markup: the caller falls back to the element's flat text
        log.debug("table HTML could not be read", exc_info=True)
        return []
    lines = []
    for row in root.iter("tr"):
        cells = [" ".join(cell.text_content().split()) for cell in row if cell.tag in ("td", "th")]
        if any(cells):
            lines.append(" | ".join(cells))
    return lines


def _title(path: Path, fmt: _Format, elements: Sequence[Any]) -> str:
    if fmt.label == "email":
        subject = next((e.metadata.subject for e in elements if getattr(e.metadata, "subject", None)), None)
        if subject and subject.strip():
            return " ".join(subject.split())
    if fmt.label == "HTML":
        html_title = _html_title(path)
        if html_title:
            return html_title
    for element in elements:
        if element.category == "Title" and str(element.text or "").strip():
            return " ".join(str(element.text).split())
    return path.stem


def _html_title(path: Path) -> str:
    import lxml.html

    try:
        # lxml honours the page's <meta charset>; bytes in, so no guessing on our side.
        tree = lxml.html.document_fromstring(path.read_bytes())
    except Exception:
        log.debug("no <title> read from %s", path, exc_info=True)
        return ""
    title = tree.findtext(".//title") or ""
    return " ".join(title.split())
