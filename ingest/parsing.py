"""Turn one file into headed, paged sections of text, fully offline.

`parse_file()` checks the bytes first (empty, mislabelled, encrypted, damaged, ZIP bomb), then
reads the file with unstructured's partitioner for its format, or with Enclave's own reader
(CSV/TSV, JSON/NDJSON, OCR of images and scanned pages), and folds the result into `Section`s:
a Title element, a new page or a table starts a new section. A Title is both the section's
`heading` and the first paragraph of its `text` (so no parsed text is ever dropped, even a
heading with nothing under it); later sections keep the nearest preceding heading, across pages
too. A Title that is a form's label ("Registration:") or, where Titles come from classifying
text (PDF, plain text), a field ("Seats: 4") is no heading: a label takes its value, and the
label/value pairs printed on one line of a PDF are joined left to right (`formats.fields`), so
a two-column form keeps each label with its value. Tables are written one row per line, cells
separated by " | ", as sections of their own: a table longer than `table_chars` is cut into
groups of rows that each start with the header row again. Spreadsheet sheets start with the
sheet name as heading. Mails also give their attachments, as bytes.

Every failure is a `ParseError` whose message starts with the path. `Unsupported` and its
subclasses (`NeedsOCR`, `NeedsLibreOffice`) mean "skipped here", not "broken";
`unsupported_reason()` says so before parsing. Which format needs what:

    unstructured only       PDF (text layer), DOCX, PPTX, XLSX, XLS, HTML, XML, Markdown, text, EML
    + python-oxmsg          MSG
    + pandoc (pypandoc-binary wheel)  RST, Org, RTF, ODT, EPUB
    own reader              CSV, TSV, JSON, NDJSON
    tesseract-ocr (apt)     images; PDF pages without a text layer
    LibreOffice (apt)       DOC, PPT

unstructured types stay in this module: callers get only the dataclasses of `ingest.document`.
"""

from __future__ import annotations

import codecs
import contextlib
import dataclasses
import importlib
import importlib.util
import io
import itertools
import logging
import re
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any

from core.errors import EnclaveError, ParseError
from ingest import _classification
from ingest._spacy_offline import ensure_offline_nlp
from ingest.document import (
    Attachment,
    NeedsLibreOffice,
    NeedsOCR,
    ParsedDocument,
    Section,
    Unsupported,
)
from ingest.formats import containers, encoding, fields, mail, ocr, office, pdf, records, tables
from ingest.formats import one_line as _one_line

__all__ = [
    "SUPPORTED_EXTENSIONS",
    "TABLE_CHARS",
    "Attachment",
    "NeedsLibreOffice",
    "NeedsOCR",
    "ParseError",
    "ParsedDocument",
    "Section",
    "Unsupported",
    "is_supported",
    "parse_file",
    "unsupported_reason",
    "warm_up",
]

log = logging.getLogger(__name__)

# Tables and JSON records are grouped into sections of at most this many characters: the
# default chunk size, so that the chunker keeps each group whole, header row included.
TABLE_CHARS = 1000


@dataclass(frozen=True)
class _Format:
    label: str  # as said to the user: "could not be parsed as DOCX"
    reader: str  # "unstructured", or Enclave's own: "delimited", "json", "ndjson", "image"
    container: str  # what the bytes must be: pdf, zip, ole, legacy, text, rtf, image
    module: str = ""  # unstructured.partition.<module>
    function: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    zip_kind: str = ""  # for container "zip": what containers.inspect_zip must find


def _unstructured(label: str, container: str, module: str, function: str, **options: Any) -> _Format:
    return _Format(label, "unstructured", container, module, function, options, zip_kind=label)


_PDF = _unstructured("PDF", "pdf", "pdf", "partition_pdf", strategy="fast", languages=["eng"])
_DOCX = _unstructured("DOCX", "zip", "docx", "partition_docx")
_PPTX = _unstructured("PPTX", "zip", "pptx", "partition_pptx", include_slide_notes=True)
_XLSX = _unstructured("XLSX", "zip", "xlsx", "partition_xlsx")
_HTML = _unstructured("HTML", "text", "html", "partition_html")
_RTF = _unstructured("RTF", "rtf", "rtf", "partition_rtf")
_EMAIL = _unstructured(
    # Attachments are not partitioned here: they come back as `attachments`, to be ingested as
    # documents of their own (an image attachment would send unstructured to its OCR models).
    "email",
    "text",
    "email",
    "partition_email",
    process_attachments=False,
)
_IMAGE = _Format("image", "image", "image")

_FORMATS: dict[str, _Format] = {
    # fast = pdfminer's text layer only: no layout model, nothing to download; OCR is ours.
    ".pdf": _PDF,
    ".docx": _DOCX,
    ".pptx": _PPTX,
    ".xlsx": _XLSX,
    ".xls": _unstructured("XLS", "ole", "xlsx", "partition_xlsx"),  # xlrd reads it
    ".doc": _Format("DOC", "legacy", "ole"),
    ".ppt": _Format("PPT", "legacy", "ole"),
    ".odt": _unstructured("ODT", "zip", "odt", "partition_odt"),
    ".epub": _unstructured("EPUB", "zip", "epub", "partition_epub"),
    ".rtf": _RTF,
    ".html": _HTML,
    ".htm": _HTML,
    ".xml": _unstructured("XML", "text", "xml", "partition_xml"),
    ".md": _unstructured("Markdown", "text", "md", "partition_md"),
    ".rst": _unstructured("reStructuredText", "text", "rst", "partition_rst"),
    ".org": _unstructured("Org", "text", "org", "partition_org"),
    ".txt": _unstructured("text", "text", "text", "partition_text"),
    ".csv": _Format("CSV", "delimited", "text"),
    ".tsv": _Format("TSV", "delimited", "text", options={"delimiter": "\t"}),
    ".json": _Format("JSON", "json", "text"),
    ".ndjson": _Format("NDJSON", "ndjson", "text"),
    ".jsonl": _Format("NDJSON", "ndjson", "text"),
    ".eml": _EMAIL,
    ".msg": _unstructured("Outlook message", "ole", "msg", "partition_msg", process_attachments=False),
    **{
        ext: _IMAGE
        for ext in (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp", ".heic", ".heif")
    },
}

SUPPORTED_EXTENSIONS: frozenset[str] = frozenset(_FORMATS)

# A legacy extension over modern content (Word and Excel save such files when asked to): read
# what is there.
_MODERN = {".doc": {"DOCX": _DOCX}, ".ppt": {"PPTX": _PPTX}, ".xls": {"XLSX": _XLSX}}
_SPREADSHEETS = {"XLSX", "XLS"}
_PANDOC_TEXT = {"reStructuredText", "Org"}  # pandoc reads UTF-8 only: other encodings re-encoded
# Partitioners whose Titles come from classifying text, not from markup: there a short
# `Label: value` text is a form's field, never a heading.
_CLASSIFIED_TITLES = {"pdf", "text", "xml"}

# Packages partition_pdf needs beyond pdfminer.six even for strategy="fast": it imports them at
# module level or behind `requires_dependencies`, and swallows the error of a missing one into an
# empty result. Checked up front so that the message names the package instead.
_PDF_PACKAGES = {
    "pikepdf": "pikepdf==10.18.0",
    "pypdf": "pypdf",
    "pypdfium2": "pypdfium2==5.15.2",
    "pi_heif": "pi-heif==1.4.0",
    "pdf2image": "pdf2image==1.17.0",
    "cv2": "opencv-python-headless==4.14.0.94",
    "matplotlib": "matplotlib==3.11.2",
    "onnx": "onnx==1.23.2",
    "unstructured_inference": "unstructured-inference==1.6.14 (with --no-deps: its torch/timm stack is not needed)",
}
_PANDOC_PACKAGES = {"pypandoc": "pypandoc-binary==1.17"}

_PDF_MAGIC = b"%PDF-"
_ZIP_MAGIC = b"PK\x03\x04"
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_RTF_MAGIC = b"{\\rtf"
_BINARY_MAGIC = {
    _PDF_MAGIC: "a PDF",
    _ZIP_MAGIC: "a ZIP container (DOCX/PPTX/XLSX/ODT/EPUB or archive)",
    b"PK\x05\x06": "an empty ZIP archive",
    _OLE_MAGIC: "an OLE container (legacy or encrypted Office file, or Outlook message)",
    b"\x89PNG": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"GIF8": "a GIF image",
    b"II*\x00": "a TIFF image",
    b"MM\x00*": "a TIFF image",
    b"\x7fELF": "an executable",
    b"MZ": "a Windows executable",
    b"\x1f\x8b": "a gzip archive",
}
_TEXT_MAGIC_FREE = {_RTF_MAGIC: "an RTF document"}  # text formats that must not be taken for text

# Library loggers whose warnings are about the file, not the user's action: kept at debug.
_LIBRARY_LOGGERS = ("unstructured", "unstructured_inference", "pdfminer", "pypdf", "pikepdf", "pypandoc")

_setup_lock = threading.Lock()
_setup_done = False


def unsupported_reason(path: Path) -> str | None:
    """Why this installation skips the file (no reader for its type, a tool missing), or None.

    Looks at the extension (case-insensitive) and, for .doc/.ppt, the first bytes: Word and
    PowerPoint save DOCX/PPTX content under the old names too, which needs no LibreOffice.
    """
    path = Path(path)
    ext = path.suffix.lower()
    fmt = _FORMATS.get(ext)
    if fmt is None:
        return f"unsupported file type {ext or '(no extension)'!r}"
    if fmt.reader == "image":
        return ocr.missing()
    if fmt.reader == "legacy" and office.missing():
        try:
            with path.open("rb") as fh:
                head = fh.read(8)
        except OSError:
            head = b""
        if head.startswith(_ZIP_MAGIC) or head.startswith(_RTF_MAGIC):
            return None
        return office.missing()
    return None


def is_supported(path: Path) -> bool:
    """Whether `parse_file` can read this kind of file here (see `unsupported_reason`)."""
    return unsupported_reason(path) is None


def parse_file(path: Path, *, table_chars: int = TABLE_CHARS) -> ParsedDocument:
    """Parse one file into sections; raise `ParseError("<path>: <reason>")` if it cannot be.

    Corrupt, encrypted, empty, text-less and mislabelled files raise `ParseError`; files this
    installation does not read raise `Unsupported` (`NeedsOCR`, `NeedsLibreOffice`). No
    connection is attempted (see `ingest._spacy_offline`). `table_chars`: the most characters
    of one group of table rows (or JSON records); pass the chunk size when it is not the default.
    """
    path = Path(path)
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        supported = ", ".join(sorted(SUPPORTED_EXTENSIONS))
        raise Unsupported(
            f"{path}: unsupported file type {path.suffix or '(no extension)'!r}; supported: {supported}"
        )
    head = _read_head(path)
    fmt, text_encoding = _check_content(path, fmt, head)
    if fmt.reader == "delimited":
        return _parse_delimited(path, fmt, text_encoding, table_chars)
    if fmt.reader in ("json", "ndjson"):
        return _parse_records(path, fmt, text_encoding, table_chars)
    if fmt.reader == "image":
        return _parse_image(path)
    if fmt.reader == "legacy":
        return _parse_legacy(path, fmt, table_chars)
    return _parse_unstructured(path, path, fmt, text_encoding, head, table_chars)


# --- checks on the bytes ---------------------------------------------------------------------


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


_AN = {"XLSX", "XLS", "ODT", "ODS", "ODP", "EPUB", "RTF", "HTML", "XML", "Org", "NDJSON", "email", "image"}


def _a(label: str) -> str:
    """The label with its article: "a DOCX file", "an XLSX file"."""
    return f"{'an' if label in _AN or label.startswith('Outlook') else 'a'} {label}"


def _what(head: bytes) -> str | None:
    for magic, kind in _BINARY_MAGIC.items():
        if head.startswith(magic):
            return kind
    return None


def _mismatch(path: Path, fmt: _Format, head: bytes, detail: str) -> ParseError:
    kind = _what(head)
    if kind:
        return ParseError(f"{path}: is {kind}, not {fmt.label}; its content does not match its extension")
    return ParseError(
        f"{path}: is not {_a(fmt.label)} file ({detail}); its content does not match its extension"
    )


def _check_content(path: Path, fmt: _Format, head: bytes) -> tuple[_Format, str | None]:
    """Refuse, with a plain reason, files that are not what their extension says, are locked, or
    are too large once unpacked. Returns the format to read (a .doc may hold DOCX) and the text
    encoding to pass on when the bytes show it (a BOM, or UTF-16 without one)."""
    if fmt.container == "pdf":
        if _PDF_MAGIC not in head[:1024]:  # the spec allows junk before the header, within 1 KiB
            raise ParseError(
                f"{path}: is not a PDF (no %PDF header); its content does not match its extension"
            )
        _require(path, "PDF", _PDF_PACKAGES)
        pdf.check_opens(path)
    elif fmt.container == "zip":
        if head.startswith(_OLE_MAGIC):
            reason = containers.ole_reason(path, fmt.label, legacy_extension=False)
            raise ParseError(f"{path}: {reason}")
        if not head.startswith(_ZIP_MAGIC):
            raise _mismatch(path, fmt, head, "not a ZIP container")
        found = _inspect_zip(path, fmt)
        if found != fmt.zip_kind:
            what = f"{_a(found)} file" if found else "a ZIP archive"
            raise ParseError(f"{path}: is {what}, not {fmt.label}; its content does not match its extension")
        if fmt.label in ("ODT", "EPUB"):
            _require(path, fmt.label, _PANDOC_PACKAGES)
    elif fmt.container == "ole":
        ext = path.suffix.lower()
        if head.startswith(_ZIP_MAGIC) and ext in _MODERN:
            found = _inspect_zip(path, fmt)
            modern = _MODERN[ext].get(found or "")
            if modern is None:
                what = f"{_a(found)} file" if found else "a ZIP archive"
                raise ParseError(
                    f"{path}: is {what}, not {fmt.label}; its content does not match its extension"
                )
            return modern, None
        if head.lstrip().startswith(_RTF_MAGIC) and ext == ".doc":
            _require(path, "RTF", _PANDOC_PACKAGES)
            return _RTF, None  # Word's "Save as .doc" of an RTF document
        if not head.startswith(_OLE_MAGIC):
            raise _mismatch(path, fmt, head, "not an OLE container")
        if ext != ".msg":
            reason = containers.ole_reason(path, fmt.label, legacy_extension=True)
            if reason:
                raise ParseError(f"{path}: {reason}")
        if fmt.reader == "legacy" and office.missing():
            raise NeedsLibreOffice(f"{path}: is a legacy {fmt.label} file: it {office.missing()}")
    elif fmt.container == "rtf":
        if not head.lstrip().startswith(_RTF_MAGIC):
            raise _mismatch(path, fmt, head, "no {\\rtf header")
        _require(path, "RTF", _PANDOC_PACKAGES)
    elif fmt.container == "text":
        kind = _what(head)
        if kind is None:
            kind = next((k for magic, k in _TEXT_MAGIC_FREE.items() if head.lstrip().startswith(magic)), None)
        if kind:
            raise ParseError(f"{path}: is {kind}, not {fmt.label}; its content does not match its extension")
        text_encoding = encoding.sniff(head)
        if text_encoding is None and b"\x00" in head:
            raise ParseError(f"{path}: is binary, not {fmt.label} (it contains NUL bytes)")
        if _is_blank(path, text_encoding):  # some partitioners fail on it instead of returning nothing
            raise ParseError(f"{path}: contains no text")
        if fmt.label in _PANDOC_TEXT:
            _require(path, fmt.label, _PANDOC_PACKAGES)
        return fmt, text_encoding
    elif fmt.container == "image":
        reason = ocr.missing()
        if reason:
            raise NeedsOCR(f"{path}: is an image: it {reason}")
    return fmt, None


def _inspect_zip(path: Path, fmt: _Format) -> str | None:
    try:
        return containers.inspect_zip(path).kind
    except containers.ContainerError as exc:
        reason = str(exc)
        if reason.startswith("is damaged"):
            raise ParseError(f"{path}: could not be parsed as {fmt.label}: the file {reason}") from exc
        raise ParseError(f"{path}: {reason}") from exc


def _is_blank(path: Path, text_encoding: str | None) -> bool:
    """Whether the file decodes to whitespace only; stops at the first block with text in it."""
    decoder = codecs.getincrementaldecoder(text_encoding or "utf-8")(errors="ignore")
    try:
        with path.open("rb") as fh:
            while block := fh.read(65536):
                if decoder.decode(block).strip():
                    return False
    except OSError as exc:
        raise ParseError(f"{path}: cannot be read: {exc.strerror or exc}") from exc
    return not decoder.decode(b"", final=True).strip()


def _require(path: Path, label: str, packages: dict[str, str]) -> None:
    missing = [pin for module, pin in packages.items() if importlib.util.find_spec(module) is None]
    if missing:
        raise ParseError(f"{path}: cannot be parsed: {label} support needs {'; '.join(missing)}")


# --- Enclave's own readers -------------------------------------------------------------------


_FRONT_MATTER = re.compile(r"\A\ufeff?---[ \t]*\r?\n(.*?)^(?:---|\.\.\.)[ \t]*$\r?\n?", re.S | re.M)
_YAML_LINE = re.compile(r"^(?:[\w.-]+[ \t]*:(?:[ \t].*)?|[ \t]+\S.*|-[ \t].*|#.*|)$")
_FRONT_TITLE = re.compile(r"^title[ \t]*:[ \t]*(.+?)[ \t]*$", re.M)


def front_matter(text: str) -> tuple[str, str | None]:
    """(its title, the text without it) for Markdown that opens with a YAML front matter block
    (Jekyll, Hugo, MkDocs, GitHub Docs: `---`, `key: value` lines, `---`); ("", None) for any
    other. The block is the page's metadata, not its text: indexed, its lines become passages
    ("versions: fpt: '*'") and answers quote them. Its `title` is the page's title."""
    match = _FRONT_MATTER.match(text)
    if not match or not all(_YAML_LINE.match(line) for line in match.group(1).splitlines()):
        return "", None
    found = _FRONT_TITLE.search(match.group(1))
    title = " ".join(found.group(1).strip("'\"").split()) if found else ""
    return title, "\n" * match.group(0).count("\n") + text[match.end() :]


def _read_text(path: Path, fmt: _Format, text_encoding: str | None) -> str:
    try:
        return encoding.decode(path.read_bytes(), text_encoding)
    except OSError as exc:
        raise ParseError(f"{path}: cannot be read: {exc.strerror or exc}") from exc
    except (UnicodeError, LookupError) as exc:
        raise ParseError(f"{path}: could not be decoded as {fmt.label}: {_one_line(exc)}") from exc


def _parse_delimited(path: Path, fmt: _Format, text_encoding: str | None, table_chars: int) -> ParsedDocument:
    text = _read_text(path, fmt, text_encoding)
    try:
        rows = tables.delimited_rows(text, fmt.options.get("delimiter"))
    except Exception as exc:  # csv.Error: a field over the size limit, a NUL inside a field
        raise ParseError(f"{path}: could not be parsed as {fmt.label}: {_one_line(exc)}") from exc
    sections = tables.table_sections(rows, heading="", page=None, max_chars=table_chars)
    if not sections:
        raise ParseError(f"{path}: contains no text")
    return ParsedDocument(path=path, title=path.stem, sections=sections)


def _parse_records(path: Path, fmt: _Format, text_encoding: str | None, table_chars: int) -> ParsedDocument:
    text = _read_text(path, fmt, text_encoding)
    try:
        value = records.load_ndjson(text) if fmt.reader == "ndjson" else records.load_json(text)
        sections = records.sections(value, table_chars)
    except records.RecordsError as exc:
        raise ParseError(f"{path}: {exc}") from exc
    except RecursionError as exc:
        raise ParseError(f"{path}: could not be parsed as {fmt.label}: nested too deeply") from exc
    if not sections:
        raise ParseError(f"{path}: contains no text (no values in the {fmt.label})")
    return ParsedDocument(path=path, title=path.stem, sections=sections)


@contextlib.contextmanager
def _library_warnings(path: Path) -> Iterator[None]:
    """Warnings of the libraries reading `path` (Pillow's about palettes, say) go to the debug
    log, not the terminal (nor, under pytest, become errors)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for warning in caught:
        log.debug("%s: %s: %s", path, warning.category.__name__, warning.message)


def _parse_image(path: Path) -> ParsedDocument:
    with _library_warnings(path):
        return _read_image(path)


def _read_image(path: Path) -> ParsedDocument:
    sections = []
    frames = ocr.image_frames(path)  # one at a time: a long fax TIFF must not sit in memory whole
    while True:
        try:
            number, count, frame = next(frames)
        except StopIteration:
            break
        except Exception as exc:  # PIL's UnidentifiedImageError, DecompressionBombError, truncation
            log.debug("image %s could not be read", path, exc_info=True)
            raise ParseError(f"{path}: could not be read as an image: {_one_line(exc)}") from exc
        try:
            text = ocr.image_text(frame)
        except ocr.OCRError as exc:
            raise ParseError(f"{path}: OCR failed on image {number}: {exc}") from exc
        if text:
            sections.append(Section(text=text, heading="", page=number if count > 1 else None))
    if not sections:
        raise ParseError(f"{path}: contains no text (OCR found none in the image)")
    return ParsedDocument(path=path, title=path.stem, sections=sections)


def _parse_legacy(path: Path, fmt: _Format, table_chars: int) -> ParsedDocument:
    target = office.TARGETS[path.suffix.lower()]
    modern = _DOCX if target == "docx" else _PPTX
    with tempfile.TemporaryDirectory(prefix="enclave-convert-") as folder:
        try:
            converted = office.convert(path, target, Path(folder))
        except office.ConversionError as exc:
            raise ParseError(f"{path}: could not be parsed as {fmt.label}: {exc}") from exc
        head = _read_head(converted)
        return _parse_unstructured(path, converted, modern, None, head, table_chars)


# --- unstructured ----------------------------------------------------------------------------


def _parse_unstructured(
    path: Path, source: Path, fmt: _Format, text_encoding: str | None, head: bytes, table_chars: int
) -> ParsedDocument:
    """Partition `source` (the file itself, or its conversion) and fold the elements into sections;
    every message names `path`, the file the user gave."""
    _prepare(path)
    attachments: list[Attachment] = []
    subject = ""
    if fmt.module == "msg":
        message = _open_msg(path)
        attachments, subject = mail.msg_attachments(message), " ".join(str(message.subject or "").split())
    data, front_title = None, ""
    if fmt.label == "Markdown" and source == path:
        front_title, body = front_matter(_read_text(path, fmt, text_encoding))
        data = body.encode("utf-8") if body is not None else None
    elements, titles = _partition(path, source, fmt, text_encoding, data)
    if fmt.label == "PDF":
        pdf.refuse_if_too_complex(path)
        with _library_warnings(path):
            elements = pdf.with_ocr_pages(path, elements)
    if fmt.label == "email":
        subject, attachments = _eml_parts(path, text_encoding)
    classified = fmt.module in _CLASSIFIED_TITLES
    sections = _sections(elements, titles.is_title, fmt.label in _SPREADSHEETS, table_chars, classified)
    title = front_title or _title(path, fmt, elements, titles.is_title, fallback=subject)
    if sections:
        return ParsedDocument(path=path, title=title, sections=sections, attachments=attachments)
    if fmt.label == "PDF":
        pdf.raise_empty(path)
    if mail.is_encrypted(head, attachments):
        raise ParseError(
            f"{path}: is encrypted (PGP or S/MIME); it cannot be read without the recipient's key"
        )
    if attachments:
        # A mail that only carries files: its own document says what it carried.
        names = ", ".join(a.name for a in attachments)
        section = Section(text=f"{title}\n\nAttachments: {names}", heading=title, page=None)
        return ParsedDocument(path=path, title=title, sections=[section], attachments=attachments)
    raise ParseError(f"{path}: contains no text")


def _open_msg(path: Path) -> Any:
    try:
        message = mail.open_msg(path)
    except Exception as exc:
        log.debug("python-oxmsg could not open %s", path, exc_info=True)
        raise ParseError(f"{path}: could not be parsed as an Outlook message: {_one_line(exc)}") from exc
    if mail.msg_is_encrypted(message):
        raise ParseError(f"{path}: is encrypted (S/MIME); it cannot be read without the recipient's key")
    return message


def _eml_parts(path: Path, text_encoding: str | None) -> tuple[str, list[Attachment]]:
    try:
        return _eml_bytes_parts(path.read_bytes(), text_encoding)
    except Exception:  # the body is parsed already; a broken attachment must not lose it
        log.warning("%s: its attachments could not be read", path, exc_info=True)
        return "", []


def _eml_bytes_parts(data: bytes, text_encoding: str | None) -> tuple[str, list[Attachment]]:
    if text_encoding:
        data = data.decode(text_encoding).encode("utf-8")
    return mail.eml_parts(data)


def mail_attachments(data: bytes, name: str) -> list[Attachment]:
    """The attachments `parse_file` gives for a mail (EML, MSG) with these bytes and file name, in
    the same order; none for any other file. For serving an attachment again from its mail
    (ingest.originals). Raises what the mail libraries raise on a broken mail."""
    fmt = _FORMATS.get(PurePath(name).suffix.lower())
    if fmt is _EMAIL:
        # As parse_file: the encoding its first bytes show (read_head's 8 KiB), the rest as UTF-8.
        return _eml_bytes_parts(data, encoding.sniff(data[:8192]))[1]
    if fmt is not None and fmt.module == "msg":
        return mail.msg_attachments(mail.open_msg(data))
    return []


def warm_up() -> None:
    """Do now the process-wide setup that the first unstructured parse would do (imports, the
    spaCy model): a parser process calls it before its first file, whose time limit should
    measure parsing, not imports. Never raises: a failure shows again, with the file's name,
    when that file is parsed."""
    try:
        _prepare(Path("(warm-up)"))
    except Exception:
        log.debug("warm-up of the parsers failed", exc_info=True)


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
        pdf.relax_complexity_check()
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


def _partition(
    path: Path, source: Path, fmt: _Format, text_encoding: str | None, data: bytes | None = None
) -> tuple[list[Any], _classification.Titles]:
    """`data`, when given, is the file's text to partition instead of the file (UTF-8)."""
    options: dict[str, Any] = {"filename": str(source), **fmt.options}
    if source != path:
        options["metadata_filename"] = str(path)
    if data is not None:
        options.update(filename=None, file=io.BytesIO(data), metadata_filename=str(path))
    elif text_encoding and (fmt.label == "email" or fmt.label in _PANDOC_TEXT):
        # partition_email takes no encoding (RFC 5322 mail is 8-bit) and pandoc reads UTF-8 only.
        data = _read_text(path, fmt, text_encoding).encode("utf-8")
        options.update(filename=None, file=io.BytesIO(data), metadata_filename=str(path))
    elif fmt.label in _PANDOC_TEXT:
        data = _read_text(path, fmt, None).encode("utf-8")  # cp1252 and friends, as UTF-8
        options.update(filename=None, file=io.BytesIO(data), metadata_filename=str(path))
    elif text_encoding:
        options["encoding"] = text_encoding
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
        pdf.start()
        try:
            with _classification.deferred_titles() as titles:
                elements = list(partition(**options))
            titles.resolve()
        except EnclaveError:
            raise  # EgressBlocked and the like are not the file's fault and must stay visible
        except Exception as exc:
            log.debug("unstructured failed on %s", path, exc_info=True)
            raise ParseError(f"{path}: could not be parsed as {fmt.label}: {_one_line(exc)}") from exc
    for warning in caught:
        log.debug("%s: %s: %s", path, warning.category.__name__, warning.message)
    return elements, titles


# --- elements to sections --------------------------------------------------------------------


@dataclass
class _Block:
    """The text of one element, or of several printed on one line, on its way into a section."""

    text: str
    page: int | None
    sheet: str | None
    heading: bool  # starts a section
    rows: list[str]  # a table's rows, header first; empty for text
    box: fields.Box | None  # where the last of its elements is printed (PDF text layer only)


def _box(element: Any) -> fields.Box | None:
    coordinates = getattr(element.metadata, "coordinates", None)
    points = getattr(coordinates, "points", None)
    if not points or len(points) < 3:
        return None
    (left, top), (right, bottom) = points[0], points[2]
    return (float(left), float(top), float(right), float(bottom))


def _blocks(elements: Iterable[Any], is_title: Callable[[Any], bool], classified: bool) -> list[_Block]:
    """Elements as blocks: a label joins its value, elements printed on one line join as one.

    A Title is a heading unless it is a label ("Registration:"), a field ("Seats: 4") where titles
    come from classifying text (PDF, plain text) rather than from markup, or part of a line.
    """
    items: list[_Block] = []
    markup: list[bool] = []  # a Title from markup (a style, a tag): never a form's value
    for element in elements:
        rows = _table_rows_of(element)
        text = "\n".join(rows) if rows else str(element.text or "")
        if not text.strip():
            continue  # PageBreak, empty paragraphs, image placeholders
        metadata = element.metadata
        title = is_title(element)
        items.append(
            _Block(
                text=text,
                page=metadata.page_number,
                sheet=getattr(metadata, "page_name", None),
                heading=title and not fields.is_label(text) and not (classified and fields.is_field(text)),
                rows=rows,
                box=_box(element),
            )
        )
        markup.append(title and not classified)
    blocks: list[_Block] = []
    for block, markup_heading in zip(*_form_lines(items, markup), strict=True):
        previous = blocks[-1] if blocks else None
        separator = _joined_by(previous, block, markup_heading) if previous else None
        if previous is None or separator is None:
            blocks.append(block)
            continue
        previous.text += separator + block.text
        previous.heading = False
        previous.box = block.box
    return blocks


def _form_lines(items: list[_Block], markup: list[bool]) -> tuple[list[_Block], list[bool]]:
    """The label/value pairs of each printed line that holds a label, joined left to right into
    one block where the line's first element was, whatever order the PDF gave them in (pdfminer
    reads some forms row by row, others column by column)."""
    lines: dict[tuple[int | None, int], list[int]] = {}
    anchor: dict[int | None, list[tuple[float, int]]] = {}
    for i, item in enumerate(items):
        if item.box is None or item.rows:
            continue
        tops = anchor.setdefault(item.page, [])
        line = next((n for top, n in tops if abs(top - item.box[1]) <= fields.SAME_LINE), None)
        if line is None:
            line = len(tops)
            tops.append((item.box[1], line))
        lines.setdefault((item.page, line), []).append(i)
    gone: set[int] = set()
    for members in lines.values():
        texts = [items[i].text for i in members]
        if len(members) < 2 or not any(fields.is_label(t) or fields.is_field(t) for t in texts):
            continue
        ordered = sorted(members, key=lambda i: items[i].box[0] if items[i].box else 0.0)
        text = items[ordered[0]].text
        for before, i in itertools.pairwise(ordered):
            after = items[i].text
            if fields.is_label(after) or fields.is_field(after):
                text += "\n" + after
            else:
                text += (" " if fields.is_label(items[before].text.rsplit("\n", 1)[-1]) else " | ") + after
        first = min(members)
        items[first] = dataclasses.replace(items[first], text=text, heading=False, box=items[ordered[-1]].box)
        markup[first] = False
        gone.update(i for i in members if i != first)
    kept = [i for i in range(len(items)) if i not in gone]
    return [items[i] for i in kept], [markup[i] for i in kept]


def _joined_by(previous: _Block, block: _Block, markup_heading: bool) -> str | None:
    """How `block` continues `previous` on one line ("Label: value", "cell | cell", or a new
    line for the next label of a printed line), or None when it starts a block of its own."""
    if previous.rows or block.rows or previous.page != block.page or previous.sheet != block.sheet:
        return None
    label_waits = fields.is_label(previous.text.rsplit("\n", 1)[-1])
    if previous.box is not None and block.box is not None:
        if not fields.same_line(previous.box, block.box):
            return None
        if fields.is_label(block.text) or fields.is_field(block.text):
            return "\n"
        return " " if label_waits else " | "
    # No layout to go by: a label takes the short text right after it as its value.
    if (
        label_waits
        and not markup_heading
        and "\n" not in block.text.strip()
        and len(block.text.split()) <= 12
        and not fields.is_label(block.text)
    ):
        return " "
    return None


def _sections(
    elements: Iterable[Any],
    is_title: Callable[[Any], bool],
    spreadsheet: bool,
    table_chars: int,
    classified: bool = False,
) -> list[Section]:
    """Fold elements into sections: a heading, a new page or a new sheet starts one; every table
    is a section (or several, of whole rows, each with the header row) of its own.
    `classified`: Titles come from classifying text (PDF, plain text), not from markup."""
    sections: list[Section] = []
    heading = ""
    page: int | None = None
    sheet: str | None = None
    body: list[str] = []

    def flush() -> None:
        if body:
            sections.append(Section(text="\n\n".join(body), heading=heading, page=page))
            body.clear()

    for block in _blocks(elements, is_title, classified):
        if block.page != page:
            flush()
            page = block.page
        if spreadsheet and block.sheet and block.sheet != sheet:
            flush()
            sheet = block.sheet
            heading = sheet
        if block.heading:
            flush()
            heading = " ".join(block.text.split())
        if block.rows:
            # Rows stay whole and each group of them under the header row: a chunk of a table
            # retrieved on its own still says what its columns are.
            flush()
            sections.extend(tables.table_sections(block.rows, heading, page, table_chars))
            continue
        body.append(block.text)
    flush()
    return sections


def _table_rows_of(element: Any) -> list[str]:
    if element.category != "Table":
        return []
    html = getattr(element.metadata, "text_as_html", None)
    return _table_rows(html) if html else []


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
        cells = [cell.text_content() for cell in row if cell.tag in ("td", "th")]
        if any(c.strip() for c in cells):
            lines.append(tables.row_line(cells))
    return lines


def _title(
    path: Path, fmt: _Format, elements: Sequence[Any], is_title: Callable[[Any], bool], fallback: str
) -> str:
    """The mail Subject, the HTML <title>, the first Title element, else `fallback`, else the stem."""
    if fallback and fmt.module == "msg":
        return fallback
    if fmt.label == "email":
        subject = next((e.metadata.subject for e in elements if getattr(e.metadata, "subject", None)), None)
        if subject and subject.strip():
            return " ".join(subject.split())
    if fmt.label == "HTML":
        html_title = _html_title(path)
        if html_title:
            return html_title
    if fallback and fmt.label == "email":
        return fallback
    for element in elements:
        if is_title(element) and str(element.text or "").strip():
            return " ".join(str(element.text).split())
    return fallback or path.stem


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
