"""The web UI's scheduler: each configured source synced when its schedule says (enclave/sources.py).

One thread. It reads the sources and their state afresh at every pass, so a source added, changed
or removed (enclave.yaml needs a restart; `enclave sources add` does not) is seen without a
restart, and a restart loses nothing: when a source is next due comes from the state its last
sync wrote. It runs a due sync as one of the web UI's commands that write the store (the admin
channel's `Jobs`: one at a time, a command-line ingest refused meanwhile, naming it); a sync that
finds the store busy, or its source being synced elsewhere, waits for the next pass. With several
replicas each has a scheduler; the sync's locks and its due check under them make one run it.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from core.errors import EnclaveError, IngestError

if TYPE_CHECKING:
    from enclave.admin_channel import Jobs
    from enclave.sources import Source
    from enclave.store_commands import Stores

log = logging.getLogger(__name__)

LONGEST_WAIT_S = 10.0  # between passes when nothing is due sooner (an added source is seen by then)
BUSY_WAIT_S = 5.0  # before trying again a due sync that could not start
SHORTEST_WAIT_S = 1.0


class _Logged:
    """A scheduled sync's Console: what it says goes to the server's log."""

    files: None = None  # the run logs one line per file (ingest.pipeline.ProgressDisplay)

    def echo(self, text: str, err: bool = False) -> None:
        log.info("%s", text)


class SourceScheduler:
    def __init__(self, stores: Stores, jobs: Jobs) -> None:
        self.stores = stores
        self.jobs = jobs
        self.started = datetime.now(UTC)  # a never-synced cron source first runs after this
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._problem: str | None = None  # the last configuration error logged, not repeated
        self._waiting: set[str] = set()  # due sources that could not start yet (said once each)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="source-scheduler", daemon=True)
        self._thread.start()
        log.info("source scheduler started")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                wait = self.run_due()
            except Exception:
                log.exception("source scheduler: a pass failed; trying again in %.0f s", LONGEST_WAIT_S)
                wait = LONGEST_WAIT_S
            self._stop.wait(wait)

    def run_due(self) -> float:
        """Run every source that is due now; return the seconds until the next one is."""
        from enclave.sources import SourcePaths, load_sources, next_run, read_status

        settings = self.stores.settings
        try:
            sources = load_sources(settings)
        except EnclaveError as exc:
            if str(exc) != self._problem:
                log.error("source scheduler: no source runs until this is fixed: %s", exc)
                self._problem = str(exc)
            return LONGEST_WAIT_S
        self._problem = None
        soonest = LONGEST_WAIT_S
        for name, source in sources.items():
            if self._stop.is_set():
                break
            status = read_status(SourcePaths.of(settings, name))
            due = next_run(source.settings, status, self.started)
            if due is None:
                continue
            left = (due - datetime.now(UTC)).total_seconds()
            if left > 0:
                if name in self._waiting:
                    self._waiting.discard(name)
                    last = status.get("last") or {}
                    log.info(
                        "source %s: synced by another process (started %s on %s, pid %s); next run %s",
                        name, last.get("started_at"), last.get("host"), last.get("pid"), due.isoformat(),
                    )  # fmt: skip
                soonest = min(soonest, left)
                continue
            if self._run(source):
                self._waiting.discard(name)
            else:
                if name not in self._waiting:
                    log.info(
                        "source %s is due, but another sync of it or another ingest into the data folder "
                        "holds its lock (here or on another replica); trying again every %.0f s",
                        name, BUSY_WAIT_S,
                    )  # fmt: skip
                    self._waiting.add(name)
                soonest = min(soonest, BUSY_WAIT_S)
        return max(SHORTEST_WAIT_S, soonest)

    def _run(self, source: Source) -> bool:
        """Run one due sync; False when it did not run (the store or the source busy, or another
        replica ran it: the next pass, soon, sees which)."""
        from pathlib import Path

        from enclave.sources import run_sync
        from enclave.store_commands import Call, Caller, SyncArgs

        caller = Caller.schedule()
        call = Call("sources sync", SyncArgs(source.name), Path("/"), caller)
        try:
            with self.jobs.turn(call):
                outcome = run_sync(
                    self.stores, source, caller, _Logged(), scheduled=True, anchor=self.started
                )
        except IngestError as exc:
            log.info("source %s is due, but %s; trying again shortly", source.name, exc)
            return False
        if outcome is None:
            log.debug("source %s: not run here (another replica, or an ingest, holds its locks)", source.name)
            return False
        return True


__all__ = ["BUSY_WAIT_S", "LONGEST_WAIT_S", "SourceScheduler"]
