"""Anchors: the chain head (sequence number and hash) written down outside the log, and the check
that the log still holds every head written down, so that a log cut back, rewritten or replaced
by an older copy fails verification even when it is consistent in itself.

An anchor file is JSON lines, appended to and never rewritten (hand it to auditors, or keep it
on WORM storage); docs/audit-format.md describes a line. `PeriodicAnchor` writes one at a set
interval from the web server, to its log and, when configured, to the file.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from audit.query import format_ts
from audit.records import GENESIS_HASH, canonical_json

log = logging.getLogger(__name__)

_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class Anchor:
    """The chain head at time `at`: `seq` records written in all (the id of the newest), and the
    hash of record `seq` (the genesis hash when `seq` is 0). `log` names the log it was taken of."""

    seq: int
    hash: str
    at: str
    log: str

    @classmethod
    def of_head(cls, head: tuple[int, str], label: str) -> Anchor:
        return cls(head[0], head[1], format_ts(datetime.now(UTC)), label)

    def line(self) -> str:
        """The anchor as one line of an anchor file (canonical JSON, without the newline)."""
        return canonical_json({"seq": self.seq, "hash": self.hash, "at": self.at, "log": self.log})

    @classmethod
    def parse(cls, text: str, where: str) -> Anchor:
        """An anchor from one line of an anchor file; ValueError naming `where` if it is not one."""
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"{where} is not a JSON anchor line: {exc}") from exc
        if not isinstance(value, dict):
            raise ValueError(f"{where} is not a JSON object with seq and hash")
        seq, digest = value.get("seq"), value.get("hash")
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
            raise ValueError(f"{where}: seq must be a whole number >= 0, not {seq!r}")
        if not isinstance(digest, str) or len(digest) != 64 or not set(digest) <= _HEX:
            raise ValueError(f"{where}: hash must be 64 lowercase hex digits, not {digest!r}")
        at, label = value.get("at", ""), value.get("log", "")
        return cls(seq, digest, at if isinstance(at, str) else "", label if isinstance(label, str) else "")


def read_anchors(path: Path) -> list[Anchor]:
    """Every anchor in the file `path`, oldest first. ValueError naming the file (and the line)
    when it cannot be read, holds a line that is not an anchor, or holds none."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise ValueError(f"anchor file {path} cannot be read: {reason}") from exc
    anchors = [
        Anchor.parse(line, f"anchor file {path} line {number}")
        for number, line in enumerate(text.splitlines(), start=1)
        if line.strip()
    ]
    if not anchors:
        raise ValueError(f"anchor file {path} holds no anchor; write one with `enclave audit anchor`")
    return anchors


def last_anchor(path: Path) -> Anchor | None:
    """The newest anchor in the file `path`; None when the file does not exist yet."""
    if not path.exists():
        return None
    return read_anchors(path)[-1]


def append_anchor(path: Path, anchor: Anchor) -> None:
    """Add `anchor` as the file's last line, on disk before returning (created mode 0640)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        os.write(fd, (anchor.line() + "\n").encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class ChainState:
    """What the log holds now, as anchors are checked against it (read in one snapshot):
    `head` (count, hash of the newest), `purged` (the chain anchor: records up to it were
    removed by retention purges, and the hash of the last one), and `hashes` of the records
    asked about that it still holds."""

    head: tuple[int, str]
    purged: tuple[int, str]
    hashes: Mapping[int, str]


@dataclass(frozen=True)
class AnchorCheck:
    """Outcome of checking a log against anchors: `ok`, how many anchors were `checked` before
    the first that failed (all when ok), and `reason`, in words."""

    ok: bool
    checked: int
    reason: str


def check_anchors(anchors: Sequence[Anchor], state: ChainState, source: str) -> AnchorCheck:
    """Whether the log in `state` still holds every head in `anchors` (read from `source`)."""
    count, head_hash = state.head
    purged, purged_hash = state.purged
    for n, anchor in enumerate(anchors):
        taken = f"the anchor of record {anchor.seq} in {source} (written {anchor.at or 'at an unknown time'})"
        if anchor.seq > count:
            return AnchorCheck(
                False,
                n,
                f"{taken}: the log now ends at record {count}, below the anchor; it was cut back, "
                "or replaced by an older copy",
            )
        if anchor.seq == 0:
            found: str | None = GENESIS_HASH
        elif anchor.seq == count:
            found = head_hash
        elif anchor.seq == purged:
            found = purged_hash
        elif anchor.seq < purged:
            continue  # removed by a retention purge that a checkpoint vouches for (verify checks it)
        else:
            found = state.hashes.get(anchor.seq)
        if found is None:
            return AnchorCheck(False, n, f"{taken}: the log no longer holds record {anchor.seq}")
        if found != anchor.hash:
            return AnchorCheck(
                False,
                n,
                f"{taken}: record {anchor.seq} has hash {found}, not the anchor's {anchor.hash}; "
                "the log was rewritten from there, or replaced by another copy",
            )
    newest = anchors[-1] if anchors else None
    if newest is None:
        return AnchorCheck(True, 0, f"no anchors in {source}")
    noun = "anchor" if len(anchors) == 1 else "anchors"
    return AnchorCheck(
        True,
        len(anchors),
        f"the log holds the {len(anchors)} {noun} in {source} (the newest: record {newest.seq}, "
        f"written {newest.at or 'at an unknown time'})",
    )


class AnchoredLog(Protocol):
    """What `PeriodicAnchor` needs of a log: its head, and a name for it."""

    def anchor(self) -> Anchor: ...


class PeriodicAnchor:
    """Writes the chain head every `interval_s` seconds, from a daemon thread, to this module's
    logger (the server log) and, when `path` is set, to that anchor file. One is written at
    start. A failure is logged and retried at the next interval; the server keeps running."""

    def __init__(self, audit: AnchoredLog, interval_s: float, path: Path | None = None) -> None:
        if interval_s <= 0:
            raise ValueError(f"anchor interval must be > 0 seconds, got {interval_s}")
        self.audit = audit
        self.interval_s = interval_s
        self.path = path
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="audit-anchor", daemon=True)

    def start(self) -> PeriodicAnchor:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def write_once(self) -> Anchor:
        anchor = self.audit.anchor()
        log.info("audit anchor: %s", anchor.line())
        if self.path is not None:
            append_anchor(self.path, anchor)
        return anchor

    def _run(self) -> None:
        while True:
            try:
                self.write_once()
            except Exception:
                log.exception("audit anchor could not be written; retrying in %s s", self.interval_s)
            if self._stop.wait(self.interval_s):
                return
