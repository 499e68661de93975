"""The one exception hierarchy of Enclave.

    EnclaveError
     ├── ConfigError            settings or users file invalid
     ├── IngestError            a file could not be ingested
     │    └── ParseError        ... because its content could not be parsed
     ├── RetrievalError         the vector store failed or is unreachable
     ├── LLMUnavailable         the LLM endpoint is down, timed out or refused
     ├── AccessDenied           a principal asked for something outside its rights
     ├── AuditIntegrityError    the audit log is broken or cannot be written
     ├── EgressBlocked          a connection to a host outside the allow-list
     ├── BundleError            an offline bundle cannot be made, is altered or will not install
     └── SourceError            a source (share, WebDAV, mailbox) could not be synced; nothing removed
          ├── SourceUnavailable ... it cannot be reached, refused us, or its listing failed part-way
          └── SourceShrank      ... it lists far fewer files than last time (an outage, not deletions)

Errors are converted only at the edges: the CLI prints one line and exits non-zero,
the UI shows the same words. Messages name the input and, where there is one, the fix.
"""

from __future__ import annotations


class EnclaveError(Exception):
    """Base of every error Enclave raises on purpose."""


class ConfigError(EnclaveError):
    """Settings, a config file or the users file are invalid."""


class IngestError(EnclaveError):
    """A file could not be ingested; the message names it."""


class ParseError(IngestError):
    """A file's content could not be parsed (corrupt, encrypted, unsupported)."""


class RetrievalError(EnclaveError):
    """The vector store failed."""


class LLMUnavailable(EnclaveError):
    """The LLM endpoint is down, timed out or answered with an error."""


class AccessDenied(EnclaveError):
    """A principal asked for something outside its rights."""


class AuditIntegrityError(EnclaveError):
    """The audit log's hash chain is broken, or a record could not be written."""


class EgressBlocked(EnclaveError, PermissionError):
    """A connection to a host outside the allow-list was refused by the offline guard."""


class BundleError(EnclaveError):
    """An offline bundle cannot be made, does not match its manifest, or will not install."""


class SourceError(EnclaveError):
    """A source could not be synced: its mirror and state are left as they were, nothing removed."""


class SourceUnavailable(SourceError):
    """A source cannot be reached, refused the credentials, or failed part-way through a listing
    or a download; the message names the source and why."""


class SourceShrank(SourceError):
    """A source lists far fewer entries than at its last sync: taken for an outage (an unmounted
    share, a half-restored server), not for deletions. Both counts are in the message."""

    def __init__(self, message: str, before: int, now: int) -> None:
        super().__init__(message)
        self.before = before
        self.now = now
