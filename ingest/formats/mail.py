"""Mail attachments (EML, MSG) as `Attachment`s, and telling an encrypted mail from an empty one."""

from __future__ import annotations

import email
import email.policy
import logging
import mimetypes
import re
from email.message import EmailMessage, Message
from pathlib import Path, PurePosixPath
from typing import Any

from ingest.document import Attachment

log = logging.getLogger(__name__)

# Content types of an encrypted message body: PGP/MIME, and S/MIME (also as x-pkcs7-mime).
ENCRYPTED_MARKS = (b"multipart/encrypted", b"pkcs7-mime")
_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\:*?\"<>|]+")


def safe_name(name: str | None, index: int, content_type: str | None) -> str:
    """A file name without folders or control characters; made up when the mail gives none."""
    base = PurePosixPath((name or "").replace("\\", "/")).name
    base = _UNSAFE.sub("_", base).strip(" .")[:200]
    if base:
        return base
    extension = mimetypes.guess_extension(content_type or "") or ".bin"
    return f"attachment-{index}{extension}"


def eml_parts(data: bytes) -> tuple[str, list[Attachment]]:
    """The Subject and the attachments of an RFC 822 message, nested messages as .eml files."""
    message = email.message_from_bytes(data, policy=email.policy.default)
    if not isinstance(message, EmailMessage):
        return "", []
    subject = " ".join(str(message.get("subject", "") or "").split())
    out: list[Attachment] = []
    for part in message.iter_attachments():
        payload = _payload(part)
        if payload:
            out.append(
                Attachment(safe_name(part.get_filename(), len(out) + 1, part.get_content_type()), payload)
            )
    return subject, out


def _payload(part: Message) -> bytes | None:
    if part.get_content_type() == "message/rfc822":
        inner = part.get_payload()
        if isinstance(inner, list) and inner and isinstance(inner[0], Message):
            return inner[0].as_bytes()
        return None
    if part.is_multipart():
        return part.as_bytes()  # an attached multipart (rare): kept whole, as a mail
    try:
        data = part.get_payload(decode=True)
    except Exception:  # a malformed transfer encoding: the attachment is lost, the mail is not
        log.debug("attachment could not be decoded", exc_info=True)
        return None
    return data if isinstance(data, bytes) else None


def is_encrypted(head: bytes, attachments: list[Attachment]) -> bool:
    """Whether a mail without readable body is encrypted: PGP/MIME or S/MIME content types in its
    first bytes, or an Outlook item whose only parts are PGP or S/MIME envelopes."""
    if any(mark in head.lower() for mark in ENCRYPTED_MARKS):
        return True
    return bool(attachments) and all(_is_envelope(a) for a in attachments)


def _is_envelope(attachment: Attachment) -> bool:
    name = attachment.name.lower()
    if name.endswith((".pgp-encrypted", ".p7m", ".asc")) or name == "smime.p7m":
        return True
    start = attachment.data[:64].lstrip()
    return start.startswith(b"-----BEGIN PGP MESSAGE") or start.startswith(b"Version: 1")


def msg_attachments(message: Any) -> list[Attachment]:
    """The attachments of an open python-oxmsg Message (embedded Outlook items have no bytes)."""
    out: list[Attachment] = []
    for attachment in message.attachments:
        data = attachment.file_bytes
        if data:
            out.append(Attachment(safe_name(attachment.file_name, len(out) + 1, attachment.mime_type), data))
    return out


def msg_is_encrypted(message: Any) -> bool:
    """S/MIME encrypted Outlook item: IPM.Note.SMIME (signed-only items end in .MultipartSigned)."""
    kind = str(message.message_class or "").lower()
    return kind.startswith("ipm.note.smime") and not kind.endswith("multipartsigned")


def open_msg(path: Path | bytes) -> Any:
    """An Outlook item from its file, or from its bytes (an attachment served again)."""
    from oxmsg import Message

    return Message.load(path if isinstance(path, bytes) else str(path))
