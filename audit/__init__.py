"""The append-only, hash-chained audit log of every answer and failed attempt (SQLite).

`AuditLog` writes, reads and verifies it; the hashed form of a record is documented in
`audit.log` so that an auditor can re-compute the chain with other tools.
"""

from audit.log import (
    GENESIS_HASH,
    SCHEMA_VERSION,
    AuditLog,
    AuditRecord,
    VerifyResult,
    canonical_json,
    record_hash,
)

__all__ = [
    "GENESIS_HASH",
    "SCHEMA_VERSION",
    "AuditLog",
    "AuditRecord",
    "VerifyResult",
    "canonical_json",
    "record_hash",
]
