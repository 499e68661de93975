"""What the health checks and the admin overview report: plain data that any layer can show.

The checks themselves live in `enclave/health.py` (they need every part of Enclave); the admin
page (`ui/admin.py`) and `enclave doctor` only read these types.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class CheckResult:
    """One health check: `ok` False means something an operator must fix; `detail` says what,
    in one or two sentences naming the setting or path; `figures` holds the numbers behind it.
    `warn` (with `ok` True) means it works but an operator should act: the detail says how.
    (No figure is called "path": gradio_client would take a dict holding one for a file.)"""

    name: str
    ok: bool
    detail: str
    figures: Mapping[str, Any] = field(default_factory=dict)
    warn: bool = False

    @property
    def label(self) -> str:
        """How `enclave doctor` and the admin page mark it: ok, warn or FAIL."""
        return "FAIL" if not self.ok else "warn" if self.warn else "ok"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"figures": dict(self.figures)}


@dataclass(frozen=True)
class GroupCount:
    """Documents readable by one group, and their chunks (a document of two groups counts in both)."""

    group: str
    documents: int
    chunks: int


@dataclass(frozen=True)
class AdminStatus:
    """Everything the admin page shows, gathered at one moment."""

    checks: Sequence[CheckResult]
    groups: Sequence[GroupCount]
    documents: int  # distinct documents in the manifest
    chunks: int  # their chunks, as the manifest counts them
    last_ingest: Mapping[str, Any] | None  # the last ingest report (see ingest/reports.py), if any
    last_ingest_error: str | None = None  # why the last report could not be read

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)
