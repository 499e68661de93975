"""Readers and checks that Enclave does itself, next to unstructured: tables, JSON, OCR, mail
attachments, container checks (ZIP bombs, encryption) and the external tools (tesseract,
LibreOffice). They return plain data or `ingest.document` types, never unstructured's."""
