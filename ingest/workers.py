"""Parsing one file with its mail attachments, in parser processes watched for time.

`parse_tree()` parses a file and, for a mail, each attachment (written to a temporary file
with its own name, parsed by the same parser, mails attached to mails followed `max_depth`
deep), and returns it all as `Piece`s; it runs in a parser process, or in the ingest process
when no time limit is set. `ParserPool` runs it in spawned parser processes and yields the
results in input order. Before each parse (the file, then each attachment) a process tells the
pool what it starts; one still on the same parse after `timeout_s` is killed (SIGKILL: a parse
stuck in native code stops too). The file then fails with a reason naming it and the limit;
for an attachment, the mail is parsed again without it. A process that dies on its own fails
the file it was parsing the same way. Either way the pool is started afresh and the files that
were waiting are parsed again; nothing else is lost.

Each process first loads what every parse needs (`parsing.warm_up()`: unstructured, the spaCy
model), before its clock starts, so that the limit measures parsing, not imports.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import dataclasses
import hashlib
import itertools
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import EnclaveError, IngestError
from ingest.document import ParsedDocument, Unsupported

log = logging.getLogger(__name__)

Parse = Callable[[Path], ParsedDocument]
Key = tuple[int, ...]  # () the file itself; (2,) its second attachment; (2, 1) that one's first


@dataclass
class Piece:
    """A parsed file or attachment: its document, or the exception that says why not."""

    source: str  # the file's path; for an attachment "<mail source>#<name>"
    result: ParsedDocument | Exception
    key: Key = ()
    name: str = ""  # an attachment's file name
    sha256: str = ""  # an attachment's content hash (a file's is taken by the ingest process)
    size: int = 0
    parts: list[Piece] = field(default_factory=list)  # a mail's attachments


@dataclass(frozen=True)
class Limits:
    max_bytes: int  # an attachment larger than this fails, as a file would
    max_depth: int  # attachments of attachments ... followed this many levels deep


# -- in the parser process ------------------------------------------------------------------------

_started: Any = None  # the queue to the pool, set by init_worker in a parser process


def init_worker(guard_mode: str, allowed: list[str], started: Any) -> None:
    from core.offline import disable_telemetry, install_guard

    disable_telemetry()
    install_guard(guard_mode, allowed)
    global _started
    _started = started
    _exit_with_parent()
    from ingest.parsing import warm_up

    warm_up()


def _exit_with_parent() -> None:
    """A parser process whose ingest process died (SIGKILL) exits instead of lingering."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(1)

    threading.Thread(target=watch, name="enclave-parent-watch", daemon=True).start()


def _notify(index: int, key: Key, source: str) -> None:
    if _started is not None:
        # CLOCK_MONOTONIC is one clock for every process of the machine: the pool measures from here.
        _started.put((index, key, source, os.getpid(), time.monotonic()))


def parse_tree(parse: Parse, path: Path, index: int, limits: Limits, skip: Mapping[Key, str]) -> Piece:
    """Parse `path` and its attachments; never raises for a file's fault. `index` names the task
    to the pool; `skip`: attachments not to parse again, with the reason to give instead."""
    source = str(path)
    _notify(index, (), source)
    result = _parse_one(parse, path, source)
    if not isinstance(result, ParsedDocument):
        return Piece(source, result)
    piece = Piece(source, dataclasses.replace(result, attachments=[]))
    piece.parts = _attachments(parse, result, source, index, (), limits, skip)
    return piece


def parse_attachments(parse: Parse, mail: ParsedDocument, source: str, limits: Limits) -> list[Piece]:
    """The attachments of a parsed mail, parsed as `parse_tree` does (in this process)."""
    return _attachments(parse, mail, source, -1, (), limits, {})


def _attachments(
    parse: Parse,
    mail: ParsedDocument,
    source: str,
    index: int,
    key: Key,
    limits: Limits,
    skip: Mapping[Key, str],
) -> list[Piece]:
    if not mail.attachments:
        return []
    depth = len(key) + 1
    pieces = []
    with tempfile.TemporaryDirectory(prefix="enclave-attachment-") as folder:
        for seq, attachment in enumerate(mail.attachments, 1):
            part_key = (*key, seq)
            part_source = f"{source}#{attachment.name}"
            data = attachment.data
            piece = Piece(
                part_source,
                IngestError(part_source),
                part_key,
                attachment.name,
                hashlib.sha256(data).hexdigest(),
                len(data),
            )
            pieces.append(piece)
            if part_key in skip:
                piece.result = IngestError(f"{part_source}: {skip[part_key]}")
            elif depth > limits.max_depth:
                piece.result = Unsupported(
                    f"{part_source}: not ingested: it is {depth} mails deep, and attachments of "
                    f"attached mails are followed {limits.max_depth} deep at most"
                )
            elif len(data) > limits.max_bytes:
                piece.result = IngestError(
                    f"{part_source}: {len(data) / 1e6:.1f} MB is over the limit of "
                    f"{limits.max_bytes / 1e6:.1f} MB (ingest.max_file_mb)"
                )
            else:
                _parse_attachment(
                    parse, piece, data, mail.title, Path(folder) / str(seq), index, limits, skip
                )
    return pieces


def _parse_attachment(
    parse: Parse,
    piece: Piece,
    data: bytes,
    mail_title: str,
    folder: Path,
    index: int,
    limits: Limits,
    skip: Mapping[Key, str],
) -> None:
    """Parse one attachment from a temporary file named as in the mail; messages name
    `<mail>#<name>`, never the temporary file."""
    from ingest.parsing import unsupported_reason

    temp = folder / piece.name
    try:
        folder.mkdir()
        temp.write_bytes(data)
    except OSError as exc:
        piece.result = IngestError(
            f"{piece.source}: cannot be written to a temporary file: {exc.strerror or exc}"
        )
        return
    try:
        reason = unsupported_reason(temp)
        if reason is not None:
            piece.result = Unsupported(f"{piece.source}: {reason}")
            return
        _notify(index, piece.key, piece.source)
        result = _parse_one(parse, temp, piece.source)
        if not isinstance(result, ParsedDocument):
            piece.result = result
            return
        title = f"{result.title} (attached to mail: {mail_title})"
        piece.result = dataclasses.replace(result, path=Path(piece.source), title=title, attachments=[])
        piece.parts = _attachments(parse, result, piece.source, index, piece.key, limits, skip)
    finally:
        temp.unlink(missing_ok=True)


def _parse_one(parse: Parse, path: Path, source: str) -> ParsedDocument | Exception:
    """`parse(path)`, or the exception it raised, made safe to send between processes and
    naming `source` where the message named `path`."""
    try:
        return parse(path)
    except EnclaveError as exc:
        if source == str(path):
            return exc
        message = str(exc).replace(str(path), source)
        try:
            return type(exc)(message)
        except Exception:  # an error class that wants more than a message
            return IngestError(message)
    except Exception as exc:  # a bug or a library failure on one file must not stop the run
        log.debug("parse of %s failed", source, exc_info=True)
        return IngestError(f"{source}: {type(exc).__name__}: {exc}")


# -- in the ingest process ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Running:
    key: Key
    source: str
    pid: int
    since: float  # time.monotonic() when the parser process started it


@dataclass
class _Slot:
    """One file of the run: its task in the current pool, or its result decided here."""

    index: int
    path: Path
    skip: dict[Key, str] = field(default_factory=dict)
    future: cf.Future[Piece] | None = None  # None: not (or no longer) submitted
    piece: Piece | None = None


class ParserPool:
    """`parse_tree` over many files in `processes` spawned parser processes, results in input
    order, each parse limited to `timeout_s` seconds (0: no limit).

    At most two tasks per process are in flight, so that a slow file holds back only a few
    finished ones. When a process dies on its own while several parses ran, which one killed
    it is not known: those parses run again one at a time until each has ended or crashed
    alone, so that no file is blamed for another's crash.
    """

    def __init__(
        self, parse: Parse, processes: int, guard: tuple[str, list[str]], limits: Limits, timeout_s: float
    ) -> None:
        self._parse = parse
        self._processes = max(1, processes)
        self._guard = guard
        self._limits = limits
        self._timeout_s = timeout_s
        self._poll_s = min(0.5, timeout_s / 4) if timeout_s > 0 else 0.5
        self._context = multiprocessing.get_context("spawn")  # torch and threads do not survive fork
        self._pool: cf.ProcessPoolExecutor | None = None
        # Pools given up on after a kill or crash: left to wind down meanwhile, waited for at the
        # end of the run, so no parser process outlives it.
        self._retired: list[cf.ProcessPoolExecutor] = []
        self._broken = False
        self._started: Any = None
        self._running: dict[int, _Running] = {}  # slot index -> the parse it runs now
        self._stopped: dict[int, _Running] = {}  # slot index -> the parse killed for time
        self._suspects: set[int] = set()  # slots that may have crashed a process: run alone

    def parse_all(self, paths: Sequence[Path]) -> Iterator[Piece]:
        slots = deque(_Slot(i, p) for i, p in enumerate(paths))  # not yet yielded, in order
        self._start()
        try:
            while slots:
                self._fill(slots)
                piece = self._result(slots)
                if piece is None:
                    continue  # the pool was started afresh, or the head waits its turn
                done = slots.popleft()
                self._running.pop(done.index, None)
                self._suspects.discard(done.index)
                yield piece
        finally:
            self._close(slots)

    def _start(self) -> None:
        self._started = self._context.SimpleQueue()
        self._broken = False
        self._running.clear()
        self._stopped.clear()
        mode, allowed = self._guard
        self._pool = cf.ProcessPoolExecutor(
            self._processes,
            mp_context=self._context,
            initializer=init_worker,
            initargs=(mode, allowed, self._started),
        )

    def _window(self, slots: deque[_Slot]) -> list[_Slot]:
        return list(itertools.islice(slots, self._processes * 2))

    def _fill(self, slots: deque[_Slot]) -> None:
        """Submit the earliest slots of the window that wait, up to what may be in flight."""
        window = self._window(slots)
        room = (1 if self._suspects else len(window)) - sum(1 for s in window if _in_flight(s))
        for slot in window:
            if room <= 0 or self._broken:
                return
            if slot.piece is None and slot.future is None:
                assert self._pool is not None
                try:
                    slot.future = self._pool.submit(
                        parse_tree, self._parse, slot.path, slot.index, self._limits, dict(slot.skip)
                    )
                except cf.process.BrokenProcessPool:
                    self._broken = True
                    return
                room -= 1

    def _result(self, slots: deque[_Slot]) -> Piece | None:
        """The head slot's piece, or None when the caller must fill and ask again."""
        slot = slots[0]
        while slot.piece is None:
            if self._broken:
                self._restart(slots)
                return None
            if slot.future is None:  # running alone waits for the suspect ahead of it
                others = [s.future for s in self._window(slots) if s.future is not None and _in_flight(s)]
                cf.wait(others, timeout=self._poll_s, return_when=cf.FIRST_COMPLETED)
                self._watch(slots)
                if not others or all(f.done() for f in others):
                    return None
                continue
            try:
                return slot.future.result(timeout=self._poll_s)
            except TimeoutError:
                self._watch(slots)
            except cf.process.BrokenProcessPool:
                self._broken = True
            except Exception as exc:  # the task could not be sent, or its result not returned
                return Piece(str(slot.path), IngestError(f"{slot.path}: {type(exc).__name__}: {exc}"))
        return slot.piece

    def _drain(self) -> None:
        while self._started is not None and not self._started.empty():
            index, key, source, pid, since = self._started.get()
            self._running[index] = _Running(tuple(key), str(source), int(pid), float(since))

    def _watch(self, slots: deque[_Slot]) -> None:
        """Kill the process of any parse that has run past the limit."""
        self._drain()
        if self._timeout_s <= 0:
            return
        now = time.monotonic()
        for slot in self._window(slots):
            running = self._running.get(slot.index)
            if not _in_flight(slot) or running is None or slot.index in self._stopped:
                continue
            if now - running.since > self._timeout_s:
                log.warning(
                    "%s: still parsing after %g s (ingest.parse_timeout_s): stopping its parser process %d",
                    running.source,
                    self._timeout_s,
                    running.pid,
                )
                self._stopped[slot.index] = running
                with contextlib.suppress(ProcessLookupError):  # it ended meanwhile
                    os.kill(running.pid, signal.SIGKILL)

    def _restart(self, slots: deque[_Slot]) -> None:
        """The pool broke (a process killed for time, or dead on its own): settle the parse that
        caused it, and start a fresh pool; every parse it lost is submitted again."""
        self._drain()
        assert self._pool is not None
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._retired.append(self._pool)
        lost = [s for s in self._window(slots) if s.future is not None and not _finished(s.future)]
        for slot in lost:
            slot.future = None
        limit = f"parsing took longer than the limit of {self._timeout_s:g} s (ingest.parse_timeout_s)"
        if self._stopped:
            for slot in lost:
                stopped = self._stopped.get(slot.index)
                if stopped is None:
                    continue
                if stopped.key:
                    slot.skip[stopped.key] = (
                        f"{limit}; its parser process was stopped and the mail parsed again"
                    )
                else:
                    reason = f"{slot.path}: {limit}; its parser process was stopped"
                    slot.piece = Piece(str(slot.path), IngestError(reason))
        elif lost:
            running = [s for s in lost if s.index in self._running]
            if len(running) == 1 or len(lost) == 1:
                culprit = running[0] if running else lost[0]
                self._suspects.discard(culprit.index)
                key = self._running[culprit.index].key if culprit.index in self._running else ()
                if key:
                    culprit.skip[key] = "the parser crashed on this attachment; the mail was parsed again"
                else:
                    reason = f"{culprit.path}: the parser crashed on this file"
                    culprit.piece = Piece(str(culprit.path), IngestError(reason))
            else:
                self._suspects.update(s.index for s in running or lost)
        self._start()

    def _close(self, slots: deque[_Slot]) -> None:
        if self._pool is None:
            return
        self._drain()
        for slot in self._window(slots):  # left early (an error in the caller): stop what still runs
            running = self._running.get(slot.index)
            if running is not None and _in_flight(slot):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(running.pid, signal.SIGKILL)
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._pool = None
        for pool in self._retired:
            pool.shutdown(wait=True)
        self._retired.clear()


def _in_flight(slot: _Slot) -> bool:
    return slot.future is not None and not slot.future.done()


def _finished(future: cf.Future[Piece] | None) -> bool:
    """Done with a result (not broken, not cancelled)."""
    return future is not None and future.done() and not future.cancelled() and future.exception() is None
