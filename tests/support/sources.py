"""Helpers for the source connector tests: what a mirror folder holds, and a real connector with
something done to its real source at a chosen moment of a sync (the server stopped between the
listing and the first fetch, or in the middle of a large file). Nothing here fakes a source."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from ingest.sources.base import Connector, Entry
from ingest.sources.mirror import STAGING


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Each mirrored file (the staging folder left out): its bytes and mtime_ns."""
    found: dict[str, tuple[bytes, int]] = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if d != STAGING]
        for name in filenames:
            path = Path(dirpath) / name
            found[path.relative_to(folder).as_posix()] = (path.read_bytes(), path.stat().st_mtime_ns)
    return found


def contents(folder: Path) -> dict[str, bytes]:
    return {path: data for path, (data, _) in snapshot(folder).items()}


class _Tripwire:
    """A destination file that does `action` once, after the first block is written to it."""

    def __init__(self, dest: BinaryIO, action: Callable[[], None]) -> None:
        self._dest = dest
        self._action: Callable[[], None] | None = action

    def write(self, data: bytes) -> int:
        n = self._dest.write(data)
        if self._action is not None:
            action, self._action = self._action, None
            action()
        return n


class Interrupted:
    """`connector`, with `action` done to its source after the listing (after_fetches=0), after
    that many fetches, or (mid_fetch=True) once the first block of the next fetch has arrived."""

    def __init__(
        self,
        connector: Connector,
        action: Callable[[], None],
        after_fetches: int = 0,
        mid_fetch: bool = False,
    ) -> None:
        self.inner = connector
        self.kind = connector.kind
        self.location = connector.location
        self._action: Callable[[], None] | None = action
        self._after = after_fetches
        self._mid = mid_fetch
        self.done: list[str] = []  # paths fetched whole

    def _fire(self) -> None:
        if self._action is not None:
            action, self._action = self._action, None
            action()

    def list(self) -> list[Entry]:
        entries = self.inner.list()
        if self._after == 0 and not self._mid:
            self._fire()
        return entries

    def fetch(self, entry: Entry, dest: BinaryIO) -> None:
        if self._mid and len(self.done) == self._after and self._action is not None:
            action, self._action = self._action, None
            self.inner.fetch(entry, _Tripwire(dest, action))  # type: ignore[arg-type]
        else:
            self.inner.fetch(entry, dest)
        self.done.append(entry.path)
        if not self._mid and len(self.done) == self._after:
            self._fire()

    def close(self) -> None:
        self.inner.close()
