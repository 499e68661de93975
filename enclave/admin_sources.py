"""The admin page's hold on the sources (ui/admin.py): their states, "Sync now", and uploads.

A sync or an upload from the page runs as the web UI's other commands that write the store do
(the scheduler's, the admin channel's): inside the shared `Jobs` turn, so one runs at a time and
a second is refused naming the first, then through `enclave.sources.run_sync` with the admin as
its caller (`started_by.via` "admin page", the audit record's user the admin's name). What the
run reports file by file goes to the page's progress bar.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import IngestError

if TYPE_CHECKING:
    from enclave.admin_channel import Jobs
    from enclave.store_commands import Stores
    from ingest.pipeline import FileOutcome

log = logging.getLogger(__name__)

Progress = Callable[[float | None, str], None]  # (share done or None, what is happening)


class _ToProgress:
    """A command's Console whose output moves the page's progress bar."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._done = 0
        self.files = self._file

    def echo(self, text: str, err: bool = False) -> None:
        self._progress(None, text[:300])

    def _file(self, total: int, outcome: FileOutcome) -> None:
        self._done += 1
        name = Path(outcome.path).name
        self._progress(self._done / total if total else None, f"{self._done} of {total} files: {name}")


class AdminSources:
    """What the admin page may do with the sources, on the web UI's own stores (the store and
    embedder the chat reads) and its `Jobs` (one command that writes the store at a time)."""

    def __init__(self, stores: Stores, jobs: Jobs) -> None:
        self.stores = stores
        self.jobs = jobs

    @property
    def accepted_types(self) -> list[str]:
        from enclave.uploads import supported_types

        return supported_types()

    def states(self) -> list[dict[str, Any]]:
        """Every source's state (enclave.sources.source_state), each with `upload`: whether it
        is an upload source."""
        from enclave.sources import load_sources, source_states
        from enclave.uploads import is_upload_source

        settings = self.stores.settings
        sources = load_sources(settings)
        states = source_states(settings)
        for state in states:
            source = sources.get(state["name"])
            state["upload"] = source is not None and is_upload_source(settings, source)
        return states

    def last_report(self, name: str) -> dict[str, Any] | None:
        from enclave.sources import last_report

        return last_report(self.stores.settings, name)

    def sync(self, name: str, user: str, progress: Progress) -> dict[str, Any]:
        """Sync source `name` now for admin `user`: its full report (result ok or failed, with
        the reason). ConfigError for an unknown source; IngestError when the web UI runs another
        command that writes the store, or the source or data folder is busy elsewhere."""
        from enclave.sources import get_source, run_sync
        from enclave.store_commands import Call, Caller, SyncArgs

        source = get_source(self.stores.settings, name)
        caller = Caller.admin_page(user)
        with self.jobs.turn(Call("sources sync", SyncArgs(name), Path("/"), caller)):
            log.info("source %s: sync asked for by %s on the admin page", name, user)
            progress(0.0, f"syncing {name}")
            outcome = run_sync(self.stores, source, caller, _ToProgress(progress))
        assert outcome is not None  # only a scheduled sync is ever passed over
        return outcome.report

    def upload(
        self,
        name: str,
        files: Sequence[tuple[str, str]],
        groups: str,
        replace: bool,
        user: str,
        progress: Progress,
    ) -> dict[str, Any]:
        """Keep `files` ((name as uploaded, where the web server holds it)) in upload source
        `name` for `groups`, audited, then sync that source: {"upload": the upload's audit data,
        "sync": the sync's report, or None with "sync_error" when it could not start}.
        IngestError naming each file refused (nothing is kept then)."""
        from enclave.sources import get_source, load_sources, run_sync
        from enclave.store_commands import Call, Caller
        from enclave.uploads import Upload, UploadArgs, check_upload, store_upload

        settings = self.stores.settings
        given = [Upload(n, Path(p)) for n, p in files]
        existing = load_sources(settings).get((name or "").strip())
        name, chosen = check_upload(settings, name, given, groups, existing)
        caller = Caller.admin_page(user)
        args = UploadArgs(name, [u.name for u in given], ", ".join(chosen), replace)
        with self.jobs.turn(Call("sources upload", args, Path("/"), caller)):
            progress(0.0, f"storing {len(given)} files in {name}")
            stored = store_upload(self.stores, name, given, chosen, replace, caller)
            log.info(
                "upload source %s: %d files uploaded by %s on the admin page (audit record %s)",
                name, len(given), user, stored["audit_id"],
            )  # fmt: skip
            try:
                outcome = run_sync(self.stores, get_source(settings, name), caller, _ToProgress(progress))
            except IngestError as exc:  # another replica syncs it, or an ingest holds the data folder
                return {"upload": stored, "sync": None, "sync_error": str(exc)}
        assert outcome is not None
        return {"upload": stored, "sync": outcome.report, "sync_error": None}

    def remove_upload(self, name: str, file_name: str, user: str, progress: Progress) -> dict[str, Any]:
        """Remove one file from upload source `name` for admin `user`, sync the source so that its
        document leaves the index, and audit it as `document_removed` (as `enclave docs remove`):
        the record's data, with its id, and the sync's report (None, with "sync_error", when the
        sync could not start: the file is gone, its document leaves at the next sync)."""
        from enclave.sources import audit_user, get_source, run_sync
        from enclave.store_commands import Call, Caller
        from enclave.uploads import RemoveUploadArgs, remove_uploaded
        from ingest.manifest import Manifest

        settings = self.stores.settings
        name, file_name = (name or "").strip(), (file_name or "").strip()
        caller = Caller.admin_page(user)
        audit = self.stores.audit_log()
        with self.jobs.turn(
            Call("sources upload remove", RemoveUploadArgs(name, file_name), Path("/"), caller)
        ):
            audit.check_writable()  # a removal that could not be audited is never begun
            progress(0.0, f"removing {file_name} from {name}")
            held = remove_uploaded(self.stores, name, file_name)
            sync_error = None
            try:
                # Taken as a deletion even when it leaves the source far smaller (its last file):
                # the admin removed it, under the source's lock; it is no outage.
                source = get_source(settings, name)
                outcome = run_sync(self.stores, source, caller, _ToProgress(progress), allow_shrink=True)
                report = outcome.report if outcome is not None else None
            except IngestError as exc:  # another replica syncs it, or an ingest holds the data folder
                report, sync_error = None, str(exc)
            manifest = Manifest(settings.manifest_path)
            try:
                left = held["doc_id"] is not None and manifest.doc(held["doc_id"]) is None
            finally:
                manifest.close()
            data = {
                **held,
                "document_removed": left,
                "sync_audit_id": report.get("audit_id") if report else None,
                "started_by": asdict(caller),
            }
            record = audit.append("document_removed", audit_user(caller), data=data)
            log.info(
                "upload source %s: %s removed by %s on the admin page (audit record %s)",
                name, file_name, user, record.id,
            )  # fmt: skip
        return {"removed": {**data, "audit_id": record.id}, "sync": report, "sync_error": sync_error}


__all__ = ["AdminSources", "Progress"]
