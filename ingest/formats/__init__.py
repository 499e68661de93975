"""Readers and checks that Enclave does itself, next to unstructured: tables, JSON, OCR, mail
attachments, container checks (ZIP bombs, encryption) and the external tools (tesseract,
LibreOffice). They return plain data or `ingest.document` types, never unstructured's."""


def one_line(exc: BaseException) -> str:
    """An exception as one line for a message: its type, then its text with whitespace collapsed."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
