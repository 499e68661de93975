"""The last ingest report, kept in the data folder so that the admin page (and anyone) can see
what the latest `enclave ingest` did: when, which paths, the counts, and every failure with its
reason. Written aside and renamed, so a reader never sees half a report.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.errors import IngestError

LAST_REPORT = Path("reports") / "last-ingest.json"


def last_report_path(data_dir: Path) -> Path:
    return Path(data_dir) / LAST_REPORT


def save_last_report(data_dir: Path, report: Mapping[str, Any], paths: Iterable[Path | str] = ()) -> Path:
    """Write `report` (IngestReport.as_dict()) as the latest, with the time it finished and the
    paths it was given; return the file written."""
    target = last_report_path(data_dir)
    data = {
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "paths": [str(Path(p).resolve()) for p in paths],
        **report,
    }
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(data, fh, indent=2, ensure_ascii=False)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise IngestError(
            f"the ingest report could not be kept in {target}: {exc.strerror or exc}; "
            "check that the data folder is writable"
        ) from exc
    return target


def load_last_report(data_dir: Path) -> dict[str, Any] | None:
    """The latest report, or None when no ingest has run yet; IngestError if it is unreadable."""
    path = last_report_path(data_dir)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise IngestError(f"the last ingest report {path} cannot be read: {exc.strerror or exc}") from exc
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise IngestError(
            f"the last ingest report {path} is not valid JSON ({exc}); the next ingest replaces it"
        ) from exc
    if not isinstance(data, dict):
        raise IngestError(
            f"the last ingest report {path} does not hold a report; the next ingest replaces it"
        )
    return data
