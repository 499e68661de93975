"""The audit record and its canonical hashed form (docs/audit-format.md describes both for auditors).

`canonical_json` is the one serialisation that is stored and hashed; `record_hash` is a record's
SHA-256 over it. Nothing here touches a database.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from audit.query import FEEDBACK_EVENT, RATINGS
from core.errors import AuditIntegrityError

# The `prev_hash` of the first record ever written.
GENESIS_HASH = "0" * 64
# The longest comment a feedback record may carry.
MAX_COMMENT_CHARS = 2000


@dataclass(frozen=True)
class AuditRecord:
    """One entry of the log, as stored and hashed."""

    id: int
    ts: str
    event: str
    user: str
    question: str
    error: str | None
    data: dict[str, Any]
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class Feedback:
    """A thumbs up or down on an answer: the `feedback` record `id`, about answer `record_id`."""

    id: int
    ts: str
    user: str
    record_id: int
    rating: str
    comment: str | None

    @classmethod
    def of(cls, record: AuditRecord) -> Feedback | None:
        """The feedback a `feedback` record holds, or None if it is not one."""
        data = record.data
        target, rating, comment = data.get("record_id"), data.get("rating"), data.get("comment")
        if (
            record.event != FEEDBACK_EVENT
            or not isinstance(target, int)
            or rating not in RATINGS
            or not (comment is None or isinstance(comment, str))
        ):
            return None
        return cls(record.id, record.ts, record.user, target, rating, comment)


def canonical_json(value: Any) -> str:
    """The one serialisation that is stored and hashed. Raises TypeError if `value` is not JSON."""
    try:
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        text.encode("utf-8")
    except TypeError as exc:
        raise TypeError(f"audit data is not JSON-serialisable: {exc}") from exc
    except ValueError as exc:
        # NaN/Infinity are not JSON and lone surrogates are not UTF-8: either would give a
        # record another tool cannot read or re-hash, so they are refused like any other
        # value json cannot represent.
        raise TypeError(f"audit data is not JSON-serialisable: {exc}") from exc
    return text


def record_hash(
    id: int,
    ts: str,
    event: str,
    user: str,
    question: str,
    error: str | None,
    data: Mapping[str, Any],
    prev_hash: str,
) -> str:
    """SHA-256 hex of a record's canonical form, as docs/audit-format.md describes."""
    preimage = canonical_json(
        {
            "id": id,
            "ts": ts,
            "event": event,
            "user": user,
            "question": question,
            "error": error,
            "data": data,
            "prev_hash": prev_hash,
        }
    )
    return hashlib.sha256(preimage.encode("utf-8")).hexdigest()


def _quoted(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, allow_nan=False)


def stored_record_hash(
    id: object,
    ts: object,
    event: object,
    user: object,
    question: object,
    error: object,
    data_text: str,
    prev_hash: object,
) -> str:
    """`record_hash` of a row whose `data` column holds canonical JSON: the same bytes, built by
    concatenation (docs/audit-format.md). Raises TypeError/ValueError for values
    JSON cannot hold."""
    preimage = (
        '{"data":' + data_text + ',"error":' + _quoted(error) + ',"event":' + _quoted(event)
        + ',"id":' + _quoted(id) + ',"prev_hash":' + _quoted(prev_hash) + ',"question":'
        + _quoted(question) + ',"ts":' + _quoted(ts) + ',"user":' + _quoted(user) + "}"
    )  # fmt: skip
    return hashlib.sha256(preimage.encode("utf-8")).hexdigest()


def check_text(name: str, value: object, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str):
        raise TypeError(f"audit {name} must be a str, not {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"audit {name} is not valid Unicode text: {exc}") from exc


def prepare_entry(
    event: str, user: str, question: str, error: str | None, data: Mapping[str, Any] | None
) -> tuple[str, str, str, str | None, str, dict[str, Any]]:
    """Checked arguments of a record, with its data as stored text and as read back."""
    check_text("event", event)
    if not event:
        raise ValueError("audit event must not be empty")
    check_text("user", user)
    check_text("question", question)
    check_text("error", error, optional=True)
    if data is not None and not isinstance(data, Mapping):
        raise TypeError(f"audit data must be a mapping, not {type(data).__name__}")
    payload = canonical_json(dict(data or {}))
    # What is hashed is what a later reader parses back, so the two always agree
    # (tuples become lists, and so on).
    stored_data: dict[str, Any] = json.loads(payload)
    return event, user, question, error, payload, stored_data


def record_from_row(row: Sequence[Any], label: str) -> AuditRecord:
    record_id, ts, event, user, question, error, data, prev_hash, digest = row
    try:
        payload = json.loads(data)
    except (TypeError, ValueError) as exc:
        raise AuditIntegrityError(
            f"audit log {label}: record {record_id} has unreadable data ({exc}); run verify"
        ) from exc
    return AuditRecord(record_id, ts, event, user, question, error, payload, prev_hash, digest)
