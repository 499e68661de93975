"""The egress proof's witness inside each Python process of the flow (tests/e2e/test_egress.py puts
this folder on PYTHONPATH): every socket connect, send-to and name lookup is written down the moment
it is attempted, before Enclave's offline guard (an audit hook added later) refuses or allows it;
at exit, what the guard itself says it refused is written too.

One file per process under $EGRESS_WITNESS_DIR: <pid>.jsonl (the attempts) and <pid>.guard.json.
"""

from __future__ import annotations

import atexit
import json
import os
import sys
from typing import Any

_DIR = os.environ.get("EGRESS_WITNESS_DIR")
# Python's audit events for reaching another host, and for asking which address a name has.
_EVENTS = frozenset(
    {
        "socket.connect",
        "socket.sendto",
        "socket.sendmsg",
        "socket.getaddrinfo",
        "socket.gethostbyname",
        "socket.gethostbyaddr",
        "socket.getnameinfo",
    }
)


def _write(name: str, text: str) -> None:
    # Opened per write, by pid at that moment: a forked child writes a file of its own.
    fd = os.open(os.path.join(_DIR or ".", name), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, text.encode("utf-8", "replace"))
    finally:
        os.close(fd)


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if value is None or isinstance(value, (str, int, float)):
        return value
    return repr(value)


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if event not in _EVENTS:
        return
    if event in ("socket.connect", "socket.sendto", "socket.sendmsg"):
        sock, target = args[0], args[-1]
        record = {"event": event, "family": int(getattr(sock, "family", -1)), "target": _plain(target)}
    else:
        record = {"event": event, "family": None, "target": _plain(args[0] if len(args) == 1 else args[:2])}
    record["argv"] = list(getattr(sys, "argv", []))[:3]
    _write(f"{os.getpid()}.jsonl", json.dumps(record) + "\n")


def _guard_report() -> None:
    offline = sys.modules.get("core.offline")
    if offline is None:
        return  # this process never loaded Enclave's guard (a multiprocessing helper, say)
    report = {
        "pid": os.getpid(),
        "argv": list(sys.argv),
        "mode": offline.guard_mode(),
        "blocked": offline.blocked_attempts(),
    }
    _write(f"{os.getpid()}.guard.json", json.dumps(report))


if _DIR:
    sys.addaudithook(_hook)
    atexit.register(_guard_report)
