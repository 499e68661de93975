"""Upload sources: files an admin drops on the admin page, kept under the data folder and synced
like any folder source (enclave/sources.py).

An upload source NAME is a `folder` source (in <data_dir>/sources.yaml) whose location is
<data_dir>/uploads/NAME and whose ACL file, <data_dir>/uploads/NAME.groups.yaml, gives each file
the groups chosen when it was uploaded. The first upload to a new name adds it. An upload is
checked whole before anything is kept (each file's name, type and size, the groups), then its
files are written beside their final names and renamed into place under the source's sync lock,
the ACL file updated, and an `upload` audit record written (who, the source, the groups, each
file's name, size and SHA-256); the caller then syncs the source. docs/sources.md says it for
admins, docs/security.md who may upload.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from core.errors import ConfigError, IngestError
from core.settings import Settings
from core.sources import SourceSettings, check_source_name
from core.users import parse_groups

if TYPE_CHECKING:
    from enclave.sources import Source
    from enclave.store_commands import Caller, Stores

UPLOAD_EVENT = "upload"
DEFAULT_SOURCE = "uploads"
MAX_GROUP_CHARS = 64
_ACL_HEADER = (
    "# The groups of each file uploaded to this source from the admin page (enclave/uploads.py).\n"
    "# Written by the web UI at each upload; a file with no line here is read by nobody.\n"
)


@dataclass(frozen=True)
class UploadArgs:
    """An upload as the web UI's command turn names it (enclave.admin_channel.Jobs)."""

    name: str
    files: list[str]
    groups: str
    replace: bool = False


@dataclass(frozen=True)
class Upload:
    """One file handed in: its name as uploaded, and where the web server holds it now."""

    name: str
    path: Path


def upload_folder(settings: Settings, name: str) -> Path:
    return settings.uploads_dir.resolve() / check_source_name(name)


def groups_file(settings: Settings, name: str) -> Path:
    return settings.uploads_dir.resolve() / f"{check_source_name(name)}.groups.yaml"


def is_upload_source(settings: Settings, source: Source) -> bool:
    """Whether `source` is an upload source (its files come from the admin page)."""
    cfg = source.settings
    return cfg.kind == "folder" and Path(cfg.location) == upload_folder(settings, source.name)


def upload_settings(settings: Settings, name: str) -> SourceSettings:
    """The settings of a new upload source: its folder, and its ACL file for the groups."""
    return SourceSettings(
        kind="folder", location=str(upload_folder(settings, name)), acl=groups_file(settings, name)
    )


def supported_types() -> list[str]:
    """The file extensions the ingest reads (what an upload may hold)."""
    from ingest.parsing import SUPPORTED_EXTENSIONS

    return sorted(SUPPORTED_EXTENSIONS)


def name_problem(name: str) -> str | None:
    """Why `name` cannot name an uploaded file (it would leave the folder, hide, or no file system
    takes it), or None."""
    if not name or name in (".", ".."):
        return "it is not a file name"
    if "/" in name or "\\" in name:
        return "a file name cannot hold '/' or '\\'"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "a file name cannot hold a control character (NUL, newline...)"
    if name.startswith("."):
        return "a name starting with '.' is hidden, and a sync leaves it out"
    if name != name.strip():
        return "a file name cannot start or end with a space"
    if len(name.encode("utf-8", "surrogateescape")) > 255:
        return "the name is longer than 255 bytes"
    return None


def check_groups(text: str | None) -> tuple[str, ...]:
    """The groups typed ('hr, staff'); IngestError naming what is wrong."""
    groups = parse_groups(text)
    if not groups:
        raise IngestError("Groups: give the groups that may read the uploaded files (e.g. hr, staff)")
    for group in groups:
        if len(group) > MAX_GROUP_CHARS or not re.fullmatch(r"[^\x00-\x1f\x7f:#\[\]{}]+", group):
            raise IngestError(
                f"Groups: {group[:80]!r} is not a group name (at most {MAX_GROUP_CHARS} characters, no "
                "control characters nor any of : # [ ] { })"
            )
    return groups


def check_upload(
    settings: Settings, name: str, files: Sequence[Upload], groups: str | None, existing: Source | None
) -> tuple[str, tuple[str, ...]]:
    """(the source's name, the groups) of an upload that may go ahead; otherwise IngestError
    naming every file refused and why (nothing is kept)."""
    try:
        name = check_source_name((name or "").strip())
    except ValueError as exc:
        raise IngestError(f"Upload source: {exc}") from None
    if existing is not None and not is_upload_source(settings, existing):
        raise IngestError(
            f"Upload source: '{name}' is a {existing.settings.kind} source of {existing.settings.location}, "
            "not an upload source: choose another name"
        )
    if not files:
        raise IngestError("Choose the files to upload first")
    chosen = check_groups(groups)
    types = supported_types()
    limit_mb = (existing.settings.max_file_mb if existing else None) or settings.ingest.max_file_mb
    limit = int(limit_mb * 1024 * 1024)
    problems: list[str] = []
    seen: set[str] = set()
    for upload in files:
        shown = repr(upload.name[:120])
        why = name_problem(upload.name)
        if why is None and upload.name in seen:
            why = "it is named twice in this upload"
        if why is None and Path(upload.name).suffix.lower() not in types:
            suffix = Path(upload.name).suffix or "(no extension)"
            why = f"type {suffix!r} is not one the ingest reads (it reads {', '.join(types)})"
        if why is None:
            try:
                size = upload.path.stat().st_size
            except OSError as exc:
                why = f"the uploaded copy cannot be read ({exc.strerror or exc}): upload it again"
            else:
                if size > limit:
                    why = f"it is {size / 1024 / 1024:.1f} MiB, over the {limit_mb:g} MiB limit (ingest.max_file_mb)"
        seen.add(upload.name)
        if why is not None:
            problems.append(f"{shown}: {why}")
    if problems:
        noun = "file is" if len(problems) == 1 else f"{len(problems)} files are"
        raise IngestError(f"Nothing was uploaded: {noun} refused. " + "; ".join(problems))
    return name, chosen


def _read_rules(path: Path) -> dict[str, list[str]]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"the groups file of the upload source ({path}) cannot be read: {exc}") from exc
    if not isinstance(data, dict):
        return {}
    return {str(k): [str(g) for g in v] for k, v in data.items() if isinstance(v, list)}


def _sha256(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


@contextlib.contextmanager
def _staged(folder: Path, upload: Upload) -> Iterator[Path]:
    """A copy of `upload` beside its final place (a hidden name a sync leaves out), synced to disk;
    removed unless it was renamed into place."""
    fd, name = tempfile.mkstemp(dir=folder, prefix=".upload-")
    staged = Path(name)
    try:
        with os.fdopen(fd, "wb") as dest, upload.path.open("rb") as src:
            shutil.copyfileobj(src, dest, 1024 * 1024)
            dest.flush()
            os.fsync(dest.fileno())
        os.chmod(staged, 0o644)
        yield staged
    finally:
        with contextlib.suppress(FileNotFoundError):
            staged.unlink()


def store_upload(
    stores: Stores,
    name: str,
    files: Sequence[Upload],
    groups: Sequence[str],
    replace: bool,
    caller: Caller,
) -> dict[str, Any]:
    """Keep `files` in upload source `name` for `groups` (adding the source if new), and audit it.
    A file of the same name with other bytes is replaced only with `replace`; otherwise nothing is
    kept and IngestError names it. Returns the audit record's data, with its id."""
    from enclave.sources import SourcePaths, add_source, audit_user, load_sources
    from ingest.pipeline import exclusive
    from ingest.sources import write_atomically

    settings = stores.settings
    audit = stores.audit_log()
    audit.check_writable()  # an upload that could not be audited is never kept
    folder = upload_folder(settings, name)
    acl = groups_file(settings, name)
    paths = SourcePaths.of(settings, name)
    paths.root.mkdir(parents=True, exist_ok=True)
    with exclusive(paths.lock, busy=f"a sync of source '{name}' is running"):
        if name not in load_sources(settings):
            add_source(settings, name, upload_settings(settings, name))
        folder.mkdir(parents=True, exist_ok=True)
        rules = _read_rules(acl)
        kept: list[dict[str, Any]] = []
        with contextlib.ExitStack() as staging:
            staged = [(u, staging.enter_context(_staged(folder, u))) for u in files]
            conflicts = []
            for upload, copy in staged:
                sha = _sha256(copy)
                entry: dict[str, Any] = {"name": upload.name, "size": copy.stat().st_size, "sha256": sha}
                target = folder / upload.name
                if target.exists():
                    previous = _sha256(target)
                    if previous == sha:
                        entry["stored"] = "unchanged"
                    elif replace:
                        entry.update(stored="replaced", previous_sha256=previous)
                    else:
                        conflicts.append(repr(upload.name[:120]))
                else:
                    entry["stored"] = "new"
                kept.append(entry)
            if conflicts:
                raise IngestError(
                    f"Nothing was uploaded: upload source '{name}' holds {', '.join(conflicts)} already, with "
                    "other content; tick 'Replace files of the same name' to replace "
                    + ("it" if len(conflicts) == 1 else "them")
                )
            for upload in files:
                rules[upload.name] = list(groups)
            # The groups first: a sync that runs between the two sees a rule for a file not there
            # yet (harmless), never a file without its rule.
            body = yaml.safe_dump(rules, sort_keys=True, allow_unicode=True)
            write_atomically(acl, (_ACL_HEADER + body).encode("utf-8"), mode=0o644)
            for (upload, copy), entry in zip(staged, kept, strict=True):
                if entry["stored"] != "unchanged":
                    os.replace(copy, folder / upload.name)
            fd = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    data = {
        "source": name,
        "groups": list(groups),
        "replace": replace,
        "files": kept,
        "started_by": asdict(caller),
    }
    record = audit.append(UPLOAD_EVENT, audit_user(caller), data=data)
    return {**data, "audit_id": record.id}


@dataclass(frozen=True)
class RemoveUploadArgs:
    """The removal of one uploaded file, as the web UI's command turn names it."""

    name: str
    file: str


def remove_uploaded(stores: Stores, name: str, file_name: str) -> dict[str, Any]:
    """Delete `file_name` from upload source `name` (and its line of the groups file) under the
    source's sync lock; the caller then syncs the source, which takes its document out of the
    index. Returns what the index held for it (doc_id, sha256, title, groups, paths), for the
    audit record. ConfigError for a source that is not an upload source or a file it does not
    hold, naming both."""
    from enclave.sources import SourcePaths, get_source
    from ingest.manifest import Manifest
    from ingest.pipeline import exclusive
    from ingest.sources import write_atomically

    settings = stores.settings
    source = get_source(settings, name)
    if not is_upload_source(settings, source):
        raise ConfigError(
            f"source '{name}' is not an upload source: a file of it is removed at its location, then "
            "the next sync takes it out of the index"
        )
    folder = upload_folder(settings, name)
    problem = name_problem(file_name)
    target = folder / file_name
    if problem is not None or not target.is_file():
        raise ConfigError(f"upload source '{name}' holds no file named {file_name[:120]!r}")
    paths = SourcePaths.of(settings, name)
    mirrored = str((paths.mirror / file_name).resolve())
    held: dict[str, Any] = {"source": name, "file": file_name, "doc_id": None, "sha256": None}
    manifest = Manifest(settings.manifest_path)
    try:
        entry = manifest.file(mirrored)
        doc = manifest.doc(entry.doc_id) if entry is not None and entry.doc_id else None
        if entry is not None:
            held.update(doc_id=entry.doc_id, sha256=entry.sha256, groups=list(entry.groups))
        if doc is not None:
            held["title"] = doc.title
    finally:
        manifest.close()
    held["paths"] = [str(target), mirrored]
    acl = groups_file(settings, name)
    with exclusive(paths.lock, busy=f"a sync of source '{name}' is running"):
        target.unlink(missing_ok=True)
        rules = _read_rules(acl)
        # The last rule stays: an ACL file must hold one (ingest.acl), a rule for a file that is
        # not there is harmless, and an upload of that name again writes its own.
        if file_name in rules and len(rules) > 1:
            del rules[file_name]
            body = yaml.safe_dump(rules, sort_keys=True, allow_unicode=True)
            write_atomically(acl, (_ACL_HEADER + body).encode("utf-8"), mode=0o644)
    return held


__all__ = [
    "DEFAULT_SOURCE",
    "UPLOAD_EVENT",
    "RemoveUploadArgs",
    "Upload",
    "UploadArgs",
    "check_groups",
    "check_upload",
    "groups_file",
    "is_upload_source",
    "name_problem",
    "remove_uploaded",
    "store_upload",
    "supported_types",
    "upload_folder",
    "upload_settings",
]
