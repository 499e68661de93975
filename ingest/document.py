"""What parsing one file gives: headed, paged sections, the mail's attachments, or a reason why not.

    ParseError (core)           the file could not be parsed: corrupt, encrypted, empty (failed)
     └── Unsupported            this installation does not read it (skipped, not failed)
          ├── NeedsOCR          a scan or an image, and tesseract is not installed
          └── NeedsLibreOffice  a legacy .doc/.ppt, and LibreOffice is not installed

Plain frozen dataclasses: no library type leaves `ingest.parsing`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from core.errors import ParseError


class Unsupported(ParseError):
    """This installation does not read the file: an unknown type, or a tool it needs is missing.

    The file itself may be fine, so an ingest records it as skipped, with the message as reason.
    """


class NeedsOCR(Unsupported):
    """The file is a scan or an image: its text can only be read by OCR, which needs tesseract."""


class NeedsLibreOffice(Unsupported):
    """A legacy binary Office file (.doc, .ppt) that only LibreOffice converts."""


@dataclass(frozen=True)
class Section:
    """Consecutive text under one heading on one page."""

    text: str  # the text exactly as parsed, elements joined by "\n\n" (tables one row a line)
    heading: str  # nearest preceding heading ("" if none)
    # 1-based: PDF page, PPTX slide, XLSX sheet index, DOCX page where Word saved its rendered page
    # breaks, frame of a multi-page TIFF; None where the format has no pages (HTML, Markdown,
    # text, CSV, JSON, email).
    page: int | None


@dataclass(frozen=True)
class Attachment:
    """A file attached to a mail, to be ingested as a document of its own, linked to the mail."""

    name: str  # the attachment's file name, no folders; made up from its type when it has none
    data: bytes


@dataclass(frozen=True)
class ParsedDocument:
    path: Path
    title: str  # first Title element, mail Subject, HTML <title>, else the file stem
    sections: list[Section]
    attachments: list[Attachment] = field(default_factory=list)  # EML and MSG only
