"""The last ingest report, kept in the data folder so that the admin page (and anyone) can see
what the latest `enclave ingest` did: when, which paths, the counts, and every failure with its
reason. Written aside and renamed, so a reader never sees half a report.

Also what an ingest did to the documents (`document_changes`), for its audit record: each file
added, changed, moved or removed with its document id and content hash.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import IngestError

if TYPE_CHECKING:
    from ingest.manifest import FileEntry, Manifest
    from ingest.pipeline import IngestReport

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


def files_under(manifest: Manifest, roots: Sequence[Path]) -> dict[str, FileEntry]:
    """The manifest's files under `roots` (resolved), by path: what a run over them may change."""
    resolved = [Path(r).resolve() for r in roots]
    found: dict[str, FileEntry] = {}
    for entry in manifest.files():
        path = Path(entry.path.split("#", 1)[0])
        if any(path == r or r in path.parents for r in resolved):
            found[entry.path] = entry
    return found


def document_changes(
    report: IngestReport, before: Mapping[str, FileEntry], manifest: Manifest, root: Path | None = None
) -> dict[str, list[dict[str, Any]]]:
    """What a run did to the documents, by file: `added`, `changed`, `moved` (a file renamed or
    moved, its document kept), `removed`, and the files `failed` or `skipped` with the reason.

    Each file comes with its document id and `sha256`, the SHA-256 of its bytes (a document id is
    the first 32 hex digits of it; a mail attachment has its id only), and the groups that may
    read it; a changed file also with what it held before, a removed one with whether its
    document left the index (another file may hold the same bytes). `before` is `files_under`
    taken before the run; paths are shown relative to `root` (a source's mirror) when given."""
    prefix = str(Path(root).resolve()) + "/" if root is not None else ""

    def shown(path: str) -> str:
        return path[len(prefix) :] if prefix and path.startswith(prefix) else path

    def held(path: str, doc_id: str | None) -> dict[str, Any]:
        entry = manifest.file(path)
        row: dict[str, Any] = {"path": shown(path), "doc_id": doc_id}
        if entry is not None:
            row.update(doc_id=entry.doc_id or doc_id, sha256=entry.sha256, groups=list(entry.groups))
        return row

    linked: dict[str, list[str]] = {}
    for f in report.files:
        if f.status == "linked" and f.doc_id and f.attached_to is None:
            linked.setdefault(f.doc_id, []).append(f.path)
    changes: dict[str, list[dict[str, Any]]] = {
        k: [] for k in ("added", "changed", "moved", "removed", "failed", "skipped")
    }
    for f in report.files:
        if f.status != "pruned":
            continue
        previous = before.get(f.path)
        sha = previous.sha256 if previous else None
        targets = linked.get(f.doc_id or "")
        if targets:
            to = targets.pop(0)
            changes["moved"].append({**held(to, f.doc_id), "from": shown(f.path), "sha256": sha})
        else:
            changes["removed"].append(
                {
                    "path": shown(f.path),
                    "doc_id": f.doc_id,
                    "sha256": sha,
                    "document_removed": f.doc_id is not None and manifest.doc(f.doc_id) is None,
                }
            )
    for f in report.files:
        if f.status == "new" or (f.status == "linked" and f.path in linked.get(f.doc_id or "", [])):
            changes["added"].append(held(f.path, f.doc_id))
        elif f.status == "linked" and f.attached_to is not None:
            changes["added"].append(held(f.path, f.doc_id))
        elif f.status == "changed":
            row = held(f.path, f.doc_id)
            previous = before.get(f.path)
            if previous is not None:
                row.update(previous_doc_id=previous.doc_id, previous_sha256=previous.sha256)
                if list(previous.groups) != row.get("groups"):
                    row["previous_groups"] = list(previous.groups)
            changes["changed"].append(row)
        elif f.status in ("failed", "skipped"):
            changes[f.status].append({"path": shown(f.path), "reason": f.error})
    return changes
