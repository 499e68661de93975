"""The append-only, hash-chained audit log of every answer and failed attempt.

- `audit.records`: the record and its canonical hashed form (`canonical_json`, `record_hash`).
- `audit.log`: the SQLite log (`AuditLog`): write, search, purge; `audit.postgres` is the
  PostgreSQL one.
- `audit.verification`: re-computing the chain (`VerifyResult`).
- `audit.anchors`: chain heads written down outside the log, and checking the log against them.
- `audit.export`: records as CSV or JSONL.
- `audit.access`: what a user could read, and was shown, over a day (`access_report`).

docs/audit-format.md describes the format and the hashing, so that an auditor can re-verify an
export with other tools.
"""

from audit.access import AccessReport, access_report, read_access
from audit.log import SCHEMA_VERSION, AuditLog, ConversationSummary, PurgeResult
from audit.query import RecordFilter
from audit.records import (
    GENESIS_HASH,
    MAX_COMMENT_CHARS,
    AuditRecord,
    Feedback,
    canonical_json,
    record_hash,
)
from audit.verification import VerifyResult

__all__ = [
    "GENESIS_HASH",
    "MAX_COMMENT_CHARS",
    "SCHEMA_VERSION",
    "AccessReport",
    "AuditLog",
    "AuditRecord",
    "ConversationSummary",
    "Feedback",
    "PurgeResult",
    "RecordFilter",
    "VerifyResult",
    "access_report",
    "canonical_json",
    "read_access",
    "record_hash",
]
