"""Checks on container files before any library opens them: ZIP bombs and damage, which Office
format a ZIP really holds, and encryption (OLE-wrapped Office, ODF, EPUB DRM).

Each check returns a reason (a phrase to put after the file's path) or raises `ContainerError`.
"""

from __future__ import annotations

import logging
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

# Python's zipfile never unpacks more than a member's declared size, so the declared sizes
# bound what any library reading through it (python-docx, python-pptx, openpyxl) can unpack.
MAX_MEMBERS = 10_000
MAX_UNPACKED_BYTES = 1 << 30  # 1 GiB, all members together
MAX_RATIO = 100  # unpacked/packed, checked for members over RATIO_FLOOR_BYTES
RATIO_FLOOR_BYTES = 10 << 20  # small members compress as they like: XML styles reach ~40x

OOXML_FOLDERS = {"word/": "DOCX", "xl/": "XLSX", "ppt/": "PPTX"}
ZIP_MIMETYPES = {
    "application/vnd.oasis.opendocument.text": "ODT",
    "application/vnd.oasis.opendocument.spreadsheet": "ODS",
    "application/vnd.oasis.opendocument.presentation": "ODP",
    "application/epub+zip": "EPUB",
}
# EPUB's encryption.xml also lists fonts merely obfuscated (not DRM) by these two algorithms.
_FONT_OBFUSCATION = {"http://www.idpf.org/2008/embedding", "http://ns.adobe.com/pdf/enc#RC"}


class ContainerError(ValueError):
    """The container is damaged, too large once unpacked, or encrypted; str() is the reason."""


@dataclass(frozen=True)
class ZipContents:
    names: frozenset[str]
    kind: str | None  # "DOCX", "XLSX", "PPTX", "ODT", "EPUB", ... or None: some other ZIP


def inspect_zip(path: Path) -> ZipContents:
    """Open the central directory only, refuse bombs, and say what the ZIP holds."""
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            _refuse_bomb(infos)
            names = frozenset(info.filename for info in infos)
            kind = _kind(archive, names)
            if kind == "ODT" or kind == "ODS" or kind == "ODP":
                _refuse_encrypted_odf(archive, names)
            elif kind == "EPUB":
                _refuse_epub_drm(archive, names)
    except ContainerError:
        raise
    except zipfile.BadZipFile as exc:
        raise ContainerError(f"is damaged: not a complete ZIP container, perhaps truncated ({exc})") from exc
    except (OSError, EOFError, ValueError, NotImplementedError, RuntimeError) as exc:
        raise ContainerError(
            f"is damaged: its ZIP container cannot be read ({type(exc).__name__}: {exc})"
        ) from exc
    return ZipContents(names=names, kind=kind)


def _refuse_bomb(infos: list[zipfile.ZipInfo]) -> None:
    if len(infos) > MAX_MEMBERS:
        raise ContainerError(
            f"holds {len(infos)} files in its ZIP container, over the limit of {MAX_MEMBERS}"
        )
    total = sum(info.file_size for info in infos)
    if total > MAX_UNPACKED_BYTES:
        raise ContainerError(
            f"would unpack to {total / 1e9:.1f} GB, over the limit of {MAX_UNPACKED_BYTES / 1e9:.1f} GB "
            "(a ZIP bomb, or a document far larger than any real one)"
        )
    for info in infos:
        if info.file_size > RATIO_FLOOR_BYTES:
            ratio = info.file_size / max(info.compress_size, 1)
            if ratio > MAX_RATIO:
                raise ContainerError(
                    f"has a member ({info.filename}) that would unpack {ratio:.0f} times its packed size "
                    f"to {info.file_size / 1e6:.0f} MB, over the ratio limit of {MAX_RATIO} (a ZIP bomb?)"
                )


def _kind(archive: zipfile.ZipFile, names: frozenset[str]) -> str | None:
    if "mimetype" in names:
        info = archive.getinfo("mimetype")
        if info.file_size <= 200:
            mimetype = archive.read(info).decode("ascii", "replace").strip()
            if mimetype in ZIP_MIMETYPES:
                return ZIP_MIMETYPES[mimetype]
    if "[Content_Types].xml" in names:
        for folder, kind in OOXML_FOLDERS.items():
            if any(name.startswith(folder) for name in names):
                return kind
    return None


def _refuse_encrypted_odf(archive: zipfile.ZipFile, names: frozenset[str]) -> None:
    manifest = "META-INF/manifest.xml"
    if manifest in names and archive.getinfo(manifest).file_size < (16 << 20):
        if b"encryption-data" in archive.read(manifest):
            raise ContainerError("is encrypted (password protected); remove the password to ingest it")


def _refuse_epub_drm(archive: zipfile.ZipFile, names: frozenset[str]) -> None:
    encryption = "META-INF/encryption.xml"
    if encryption in names and archive.getinfo(encryption).file_size < (16 << 20):
        text = archive.read(encryption).decode("utf-8", "replace")
        algorithms = set(re.findall(r'Algorithm="([^"]+)"', text))
        methods = set(re.findall(r'EncryptionMethod[^>]*Algorithm="([^"]+)"', text))
        if methods - _FONT_OBFUSCATION or (algorithms and not methods):
            raise ContainerError("is DRM-protected (encrypted EPUB); only a DRM-free copy can be ingested")


def ole_reason(path: Path, label: str, legacy_extension: bool) -> str | None:
    """For an OLE compound file: why it cannot be read as `label`, or None if it can.

    An OOXML file saved with a password is wrapped in an OLE container; so is a legacy
    .doc/.xls/.ppt. msoffcrypto tells encrypted from plain.
    """
    try:
        import msoffcrypto

        with path.open("rb") as fh:
            encrypted = bool(msoffcrypto.OfficeFile(fh).is_encrypted())
    except Exception:
        log.debug("msoffcrypto could not inspect %s", path, exc_info=True)
        if legacy_extension:
            return None  # let the reader try: its own error is the better message
        return f"is an encrypted or legacy (pre-2007) Office file, not a {label} file"
    if encrypted:
        return "is encrypted (password protected); remove the password to ingest it"
    if legacy_extension:
        return None
    return f"is a legacy (pre-2007) Office file, not a {label} file; save it as {path.suffix.lower()}"
