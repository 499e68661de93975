"""The append-only, hash-chained audit log of every answer and failed attempt (SQLite).

`AuditLog` writes, searches, verifies and purges it; `audit.export` writes records as CSV or
JSONL. The hashed form of a record is documented in `audit.log` so that an auditor can
re-compute the chain with other tools.
"""

from audit.log import (
    GENESIS_HASH,
    SCHEMA_VERSION,
    AuditLog,
    AuditRecord,
    ConversationSummary,
    Feedback,
    PurgeResult,
    VerifyResult,
    canonical_json,
    record_hash,
)
from audit.query import RecordFilter

__all__ = [
    "GENESIS_HASH",
    "SCHEMA_VERSION",
    "AuditLog",
    "AuditRecord",
    "ConversationSummary",
    "Feedback",
    "PurgeResult",
    "RecordFilter",
    "VerifyResult",
    "canonical_json",
    "record_hash",
]
