"""The admin channel: while `enclave serve` holds the embedded store, the CLI's commands that write
it (enclave/store_commands.py) are carried out by the server, over a unix socket that only the
server's own user and root can use. Without a server listening, the CLI runs them itself.

The server's end (`AdminChannel`) listens on <data_dir>/run/admin.sock, in a folder of mode 0700
with the socket 0600, and asks the kernel who each peer is (SO_PEERCRED): a uid other than its
own or root's is refused before a byte of the request is read. The protocol is one JSON object
per line, at most MAX_LINE bytes:

    request  {"protocol": 1, "command": "ingest", "args": {...}, "cwd": "/abs/folder"}
    events   {"event": "progress", "total": 12, "file": {...a file's outcome...}}
             {"event": "log", "level": 30, "logger": "ingest.pipeline", "message": "..."}
             {"event": "echo", "text": "...", "err": false}
    and last {"event": "done", "code": 0, "report": {...} | null}
          or {"event": "error", "code": 1, "message": "..."}

Only the commands of store_commands.COMMANDS run, each with exactly the arguments of its
dataclass, each of the type declared there; relative paths are taken from `cwd` and then go
through the same code, and checks, as on the command line. One command runs at a time; a second
caller is told which runs, for whom, since when. The design and its threat model:
docs/deploy.md ("One owner of the store") and docs/security.md ("A local process").
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import logging
import os
import socket
import stat
import struct
import sys
import threading
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from core.errors import AccessDenied, ConfigError, EnclaveError, IngestError
from core.settings import Settings
from enclave import store_commands
from enclave.store_commands import COMMANDS, Call, Caller, Console, Result, Stores, user_name

if typing.TYPE_CHECKING:
    from ingest.pipeline import FileOutcome

log = logging.getLogger(__name__)

SOCKET = Path("run") / "admin.sock"  # under the data folder
PROTOCOL = 1
MAX_LINE = 64 * 1024  # a request line, in bytes
MAX_TEXT = 4096  # one string argument (PATH_MAX)
MAX_ITEMS = 10_000  # one list argument
REQUEST_WAIT_S = 30.0  # for a connected peer to send its request
MAX_CONNECTIONS = 16  # open at once; more are refused
_SUN_PATH_MAX = 107  # bytes of a unix socket's path (sockaddr_un.sun_path, less its NUL)


def socket_path(settings: Settings) -> Path:
    return settings.data_dir / SOCKET


def peer_credentials(conn: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process at the other end, as the kernel recorded them at connect."""
    raw = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    return pid, uid, gid


# -- the request, checked against the allow-list ------------------------------------------------


def _shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def _text(where: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{where} must be a string, not {_shown(value)}")
    if len(value) > MAX_TEXT:
        raise ValueError(f"{where} is longer than {MAX_TEXT} characters")
    if "\x00" in value:
        raise ValueError(f"{where} holds a NUL character")
    return value


def _checked(where: str, kind: Any, value: Any) -> Any:
    """`value` if it is of the declared `kind` (the argument dataclass's annotation)."""
    if kind is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{where} must be true or false, not {_shown(value)}")
        return value
    if kind is str:
        return _text(where, value)
    if kind == (str | None):
        return None if value is None else _text(where, value)
    if kind == list[str]:
        if not isinstance(value, list):
            raise ValueError(f"{where} must be a list of strings, not {_shown(value)}")
        if len(value) > MAX_ITEMS:
            raise ValueError(f"{where} holds more than {MAX_ITEMS} items")
        return [_text(f"item {i} of {where}", item) for i, item in enumerate(value)]
    raise TypeError(f"{where}: the admin channel has no check for arguments of type {kind}")


def argument_types(command: str) -> dict[str, Any]:
    """The arguments `command` takes over the channel, each with its type."""
    kind = COMMANDS[command][0]
    hints = typing.get_type_hints(kind)
    return {f.name: hints[f.name] for f in dataclasses.fields(kind)}


def parse_request(line: bytes, caller: Caller) -> Call:
    """The request on `line`, checked against the allow-list; ValueError saying what is wrong."""
    try:
        data = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"the request is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"the request must be a JSON object, not {_shown(data)}")
    extra = sorted(set(data) - {"protocol", "command", "args", "cwd"})
    if extra:
        raise ValueError(f"unknown field {_shown(extra[0])} in the request")
    if data.get("protocol") != PROTOCOL:
        raise ValueError(
            f"the request speaks protocol {_shown(data.get('protocol'))}, this server {PROTOCOL}: "
            "run the `enclave` of the same installation as the server"
        )
    command = data.get("command")
    if not isinstance(command, str) or command not in COMMANDS:
        allowed = ", ".join(f"`enclave {c}`" for c in COMMANDS)
        raise ValueError(f"unknown command {_shown(command)}: the admin channel runs only {allowed}")
    cwd = _text("cwd", data.get("cwd"))
    if not os.path.isabs(cwd):
        raise ValueError(f"cwd must be an absolute path, not {_shown(cwd)}")
    args = data.get("args")
    if not isinstance(args, dict):
        raise ValueError(f"args of `enclave {command}` must be a JSON object, not {_shown(args)}")
    types_ = argument_types(command)
    extra = sorted(set(args) - set(types_))
    if extra:
        raise ValueError(f"`enclave {command}` takes no argument {_shown(extra[0])}")
    missing = [name for name in types_ if name not in args]
    if missing:
        raise ValueError(f"`enclave {command}` needs argument {_shown(missing[0])}")
    values = {
        name: _checked(f"argument {name!r} of `enclave {command}`", kind, args[name])
        for name, kind in types_.items()
    }
    return Call(command, COMMANDS[command][0](**values), Path(cwd), caller)


# -- the server's end ---------------------------------------------------------------------------


class Jobs:
    """The server's commands that write the store, one at a time: a second is refused at once,
    naming the first, as a second ingest on the command line is (ingest.pipeline.exclusive)."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self.current: tuple[Call, str] | None = None  # the command running, and since when

    @contextlib.contextmanager
    def turn(self, call: Call) -> Iterator[None]:
        since = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        with self._guard:
            if self.current is not None:
                running, started = self.current
                raise IngestError(
                    f"the web UI (pid {os.getpid()}) is already running {running.what} for "
                    f"{running.caller.describe()} since {started}; it runs one command that writes the "
                    "store at a time: try again when that one has finished"
                )
            self.current = (call, since)
        try:
            yield
        finally:
            with self._guard:
                self.current = None


class _Events:
    """A command's Console on the server: what it says goes to the caller as events."""

    def __init__(self, conn: socket.socket) -> None:
        self._conn = conn
        self._lock = threading.Lock()
        self.gone = False  # the caller went away (a send failed)
        self.files = self._file

    def send(self, event: dict[str, Any]) -> None:
        data = (json.dumps(event, ensure_ascii=False, default=str) + "\n").encode("utf-8")
        with self._lock:
            try:
                self._conn.sendall(data)
            except OSError:
                self.gone = True
                raise

    def echo(self, text: str, err: bool = False) -> None:
        self.send({"event": "echo", "text": text, "err": err})

    def _file(self, total: int, outcome: FileOutcome) -> None:
        self.send({"event": "progress", "total": total, "file": dataclasses.asdict(outcome)})

    def error(self, message: str, code: int) -> None:
        with contextlib.suppress(OSError):
            self.send({"event": "error", "code": code, "message": message})

    def refuse(self, message: str, code: int) -> None:
        """Say why, then read (a bounded amount of) what the peer still sends before closing:
        closed with unread input, the socket would be reset and the peer could lose the reason."""
        self.error(message, code)
        with contextlib.suppress(OSError):
            self._conn.shutdown(socket.SHUT_WR)
            self._conn.settimeout(2.0)
            left = 4 * MAX_LINE
            while left > 0 and (block := self._conn.recv(min(left, MAX_LINE))):
                left -= len(block)


class _ThreadLog(logging.Handler):
    """Warnings logged by the thread running a command go to its caller too, as the command
    line's own run would print them (the server's log keeps them as well)."""

    def __init__(self, events: _Events) -> None:
        super().__init__(logging.WARNING)
        self._events = events
        self._thread = threading.get_ident()

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread != self._thread or self._events.gone:
            return
        try:
            event = {"level": record.levelno, "logger": record.name, "message": record.getMessage()}
            self._events.send({"event": "log", **event})
        except Exception:  # a caller gone is noticed at the command's next output
            self.handleError(record)

    def handleError(self, record: logging.LogRecord) -> None:
        pass


@contextlib.contextmanager
def _warnings_to(events: _Events) -> Iterator[None]:
    handler = _ThreadLog(events)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)


def _private_folder(folder: Path) -> None:
    """`folder` made, or found, as a folder of this user's with mode 0700."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = os.lstat(folder)
    if not stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"{folder} must be a folder (the admin channel's socket goes there): remove it")
    if st.st_uid != os.getuid():
        raise ConfigError(
            f"{folder} belongs to uid {st.st_uid}, not to {user_name(os.getuid())} (uid {os.getuid()}) that "
            "runs the web UI: remove it (it holds only the admin channel's socket) and start again"
        )
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(folder, 0o700)


class AdminChannel:
    """The server's end of the channel. `open()` it once the process holds the store; it runs
    the commands on `stores` (the store and embedder the chat uses) until `close()`."""

    def __init__(self, settings: Settings, stores: Stores, jobs: Jobs | None = None) -> None:
        self.settings = settings
        self.stores = stores
        self.path = socket_path(settings)
        self.jobs = jobs if jobs is not None else Jobs()  # shared with the scheduler and admin page
        self._listener: socket.socket | None = None
        self._inode: int | None = None
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)

    def open(self) -> bool:
        """Listen; False (and a warning) when the socket's path is too long for a unix socket."""
        if len(os.fsencode(self.path)) > _SUN_PATH_MAX:
            log.warning(
                "admin channel not opened: its socket path %s is longer than %d bytes (a unix socket's "
                "limit); with a shorter data folder, `enclave ingest` and `docs remove|reindex` run through "
                "the web UI, here they are refused while it runs",
                self.path,
                _SUN_PATH_MAX,
            )
            return False
        _private_folder(self.path.parent)
        # Whatever is there is left by a server that stopped without closing: this process
        # holds the store, so no other server can be listening on it.
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(str(self.path))
            os.chmod(self.path, 0o600)  # the folder (0700) already keeps others out; both, to be sure
            listener.listen(MAX_CONNECTIONS)
        except OSError:
            listener.close()
            raise
        self._listener = listener
        self._inode = os.stat(self.path).st_ino
        threading.Thread(target=self._accept, name="admin-channel", daemon=True).start()
        log.info("admin channel on %s (for uid %d and root)", self.path, os.getuid())
        return True

    def close(self) -> None:
        listener, self._listener = self._listener, None
        if listener is None:
            return
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() of the listening thread
        listener.close()
        with contextlib.suppress(OSError):
            if os.stat(self.path).st_ino == self._inode:
                self.path.unlink()

    def _accept(self) -> None:
        while (listener := self._listener) is not None:
            try:
                conn, _ = listener.accept()
            except OSError:
                if self._listener is None:
                    return  # closed
                log.warning("admin channel: accept failed", exc_info=True)
                continue
            if not self._slots.acquire(blocking=False):
                with conn:
                    _Events(conn).error(f"refused: {MAX_CONNECTIONS} connections are open already", 1)
                continue
            threading.Thread(target=self._serve, args=(conn,), name="admin-channel-call", daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            with conn:
                self._handle(conn, _Events(conn))
        except Exception:
            log.exception("admin channel: a call failed")
        finally:
            self._slots.release()

    def _handle(self, conn: socket.socket, events: _Events) -> None:
        pid, uid, _ = peer_credentials(conn)
        own = os.getuid()
        if uid not in (own, 0):
            log.warning(
                "admin channel: refused uid %d (%s, pid %d): not uid %d nor root",
                uid,
                user_name(uid),
                pid,
                own,
            )
            who = f"the user the web UI runs as, {user_name(own)} (uid {own})" + (", and root" if own else "")
            events.refuse(
                f"refused: uid {uid} ({user_name(uid)}) may not use the admin channel: only {who}, may", 1
            )
            return
        caller = Caller(user_name(uid), uid, pid, "admin channel")
        try:
            call = parse_request(_read_line(conn), caller)
        except ValueError as exc:
            log.warning("admin channel: refused a request of %s: %s", caller.describe(), exc)
            events.refuse(f"refused: {exc}", 2)
            return
        except OSError as exc:  # the peer sent nothing in time, or went away
            log.warning("admin channel: no request from %s: %s", caller.describe(), exc)
            events.refuse(f"refused: no request within {REQUEST_WAIT_S:.0f} s", 2)
            return
        conn.settimeout(None)  # a command may run for hours; its output is sent as it comes
        log.info("admin channel: `enclave %s` for %s", call.command, caller.describe())
        try:
            with self.jobs.turn(call), _warnings_to(events):
                result = store_commands.run(self.stores, call, events)
        except Exception as exc:
            if events.gone:
                log.warning(
                    "admin channel: %s went away; `enclave %s` stopped (the next ingest rolls back what it left "
                    "unfinished)",
                    caller.describe(),
                    call.command,
                )
            elif isinstance(exc, EnclaveError):
                events.error(str(exc), 1)
            else:
                log.exception("admin channel: `enclave %s` for %s failed", call.command, caller.describe())
                events.error(
                    f"the web UI failed running `enclave {call.command}`: {type(exc).__name__}: {exc} "
                    "(the traceback is in its log)",
                    1,
                )
            return
        with contextlib.suppress(OSError):
            events.send({"event": "done", "code": result.code, "report": result.report})
        log.info(
            "admin channel: `enclave %s` for %s ended with exit code %d",
            call.command,
            caller.describe(),
            result.code,
        )


def _read_line(conn: socket.socket) -> bytes:
    """The request: bytes up to the first newline, at most MAX_LINE of them."""
    conn.settimeout(REQUEST_WAIT_S)
    received = bytearray()
    while b"\n" not in received:
        if len(received) > MAX_LINE:
            break
        block = conn.recv(MAX_LINE + 1)
        if not block:
            raise ValueError("the request ended before its newline")
        received += block
    line = bytes(received).split(b"\n", 1)[0]
    if len(line) > MAX_LINE:
        raise ValueError(f"the request is longer than {MAX_LINE} bytes")
    return line


# -- the CLI's end ------------------------------------------------------------------------------


def call(settings: Settings, command: str, args: Any, console: Console) -> Result | None:
    """Have the running web UI carry out `command` with `args`, replaying what it says on
    `console` (and its progress on stderr); None when no web UI listens on this data folder
    (no socket, or one left by a server that stopped), so the caller runs it itself."""
    path = socket_path(settings)
    if settings.store.mode != "embedded" or len(os.fsencode(path)) > _SUN_PATH_MAX:
        return None
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(str(path))
    except (FileNotFoundError, NotADirectoryError, ConnectionRefusedError):
        conn.close()
        return None
    except PermissionError as exc:
        conn.close()
        raise AccessDenied(
            f"the web UI runs on this data folder and carries out `enclave {command}`, but its admin "
            f"channel {path} is open only to the user it runs as, and root ({exc.strerror}): run the "
            "command as that user (systemd: deploy/systemd/enclave-admin.sh), or as root"
        ) from exc
    with conn:
        server = peer_credentials(conn)[0]
        log.info("`enclave %s` is carried out by the web UI (pid %d) over %s", command, server, path)
        request = {
            "protocol": PROTOCOL,
            "command": command,
            "args": dataclasses.asdict(args),
            "cwd": str(Path.cwd()),
        }
        conn.sendall((json.dumps(request, ensure_ascii=False) + "\n").encode("utf-8"))
        with conn.makefile("rb") as stream:
            return _replay(stream, command, server, console)


def _replay(stream: IO[bytes], command: str, server: int, console: Console) -> Result:
    """Show the server's events as the command's own run would, up to its result."""
    display: Any = None
    try:
        for raw in stream:
            event = json.loads(raw.decode("utf-8"))
            kind = event.get("event")
            if kind == "progress":
                if display is None:
                    from ingest.pipeline import FileOutcome, ProgressDisplay

                    display = ProgressDisplay(int(event["total"]), sys.stderr)
                display.update(FileOutcome(**event["file"]))
                continue
            if kind == "log":
                logging.getLogger(str(event["logger"])).log(int(event["level"]), "%s", event["message"])
                continue
            if display is not None:  # the run ended: its display closes before what follows
                display.close()
                display = None
            if kind == "echo":
                console.echo(str(event["text"]), err=bool(event["err"]))
            elif kind == "done":
                return Result(int(event["code"]), event.get("report"))
            elif kind == "error":
                console.echo(f"error: {event['message']}", err=True)
                return Result(int(event["code"]))
    finally:
        if display is not None:
            display.close()
    console.echo(
        f"error: the web UI (pid {server}) closed its admin channel before `enclave {command}` finished "
        "(it may have been stopped: see its log); the next ingest rolls back whatever was left unfinished",
        err=True,
    )
    return Result(1)


__all__ = [
    "SOCKET",
    "AdminChannel",
    "Jobs",
    "argument_types",
    "call",
    "parse_request",
    "peer_credentials",
    "socket_path",
]
