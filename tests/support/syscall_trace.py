"""Reads `strace -f` output for the egress proof (tests/e2e/test_egress.py): every socket address
that any traced process named in connect, sendto, sendmsg or sendmmsg, with the program that made
the call (followed through clone and execve), so that an attempt to reach another host cannot hide
in a thread, a child process or a library that bypasses Python.

strace is run with `-f -qq --seccomp-bpf -e signal=none -s 256 -e trace=` + TRACED_SYSCALLS.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

NETWORK_SYSCALLS = ("connect", "sendto", "sendmsg", "sendmmsg")
TRACED_SYSCALLS = ",".join((*NETWORK_SYSCALLS, "execve", "clone", "clone3", "fork", "vfork"))
STRACE_ARGS = [
    "-f",
    "-qq",
    "--seccomp-bpf",
    "-e",
    "signal=none",
    "-s",
    "256",
    "-e",
    f"trace={TRACED_SYSCALLS}",
]

LOCAL_FAMILIES = frozenset({"AF_UNIX", "AF_NETLINK", "AF_UNSPEC"})  # never leave the machine
_LINE = re.compile(r"^(\d+)\s+(.*)$")
_CALL = re.compile(r"^(\w+)\(")
_RESUMED = re.compile(r"^<\.\.\. (\w+) resumed>(.*)$")
_RESULT = re.compile(r"\)\s+=\s+(-?\d+|\?)([^=]*)$")
_SOCKADDR = re.compile(r"\{sa_family=(AF_\w+)([^{}]*)\}")
_IPV4 = re.compile(r'inet_addr\("([^"]+)"\)')
_IPV6 = re.compile(r'inet_pton\(AF_INET6, "([^"]+)"')
_PORT = re.compile(r"sin6?_port=htons\((\d+)\)")
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')


def is_loopback(host: str) -> bool:
    host = host.strip("[]").split("%")[0].lower()
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return bool(address.is_loopback or (mapped is not None and mapped.is_loopback))


@dataclass(frozen=True)
class Attempt:
    pid: int  # the process (thread group) that made the call
    tid: int
    program: str  # the executable and first arguments of the process the thread belongs to
    syscall: str
    family: str
    host: str | None  # AF_INET / AF_INET6 only
    port: int | None
    result: str  # "0", "-1 ENETUNREACH (...)", "?" (never returned), "" (unknown)
    raw: str

    @property
    def local(self) -> bool:
        """Stays on this machine: a local socket family, or loopback other than a name server
        (a query to a loopback resolver is still a lookup of some other host's name)."""
        if self.family in LOCAL_FAMILIES:
            return True
        loopback = self.host is not None and is_loopback(self.host)
        return self.family in ("AF_INET", "AF_INET6") and loopback and self.port != 53

    def describe(self) -> str:
        where = f"{self.host}:{self.port}" if self.host is not None else self.family
        return f"{self.program} [{self.pid}] {self.syscall} {where} = {self.result}"


@dataclass
class Trace:
    attempts: list[Attempt] = field(default_factory=list)
    programs: dict[int, str] = field(default_factory=dict)  # process id -> program

    def outside(self) -> list[Attempt]:
        return [a for a in self.attempts if not a.local]


def _calls(lines: Iterable[str]) -> list[tuple[int, str]]:
    """(tid, whole call text) in order of completion; a call split by another thread's output
    (`<unfinished ...>` then `<... name resumed>`) is put back together, and one that never
    returned (its thread killed) is kept with what it had."""
    pending: dict[int, str] = {}
    calls: list[tuple[int, str]] = []
    for line in lines:
        match = _LINE.match(line.rstrip("\n"))
        if match is None:
            continue
        tid, text = int(match.group(1)), match.group(2)
        resumed = _RESUMED.match(text)
        if resumed is not None:
            calls.append((tid, pending.pop(tid, f"{resumed.group(1)}(") + resumed.group(2)))
        elif text.endswith("<unfinished ...>"):
            pending[tid] = text[: -len("<unfinished ...>")].rstrip()
        else:
            calls.append((tid, text))
    calls.extend(pending.items())
    return calls


def _program(text: str) -> str | None:
    """The path and first two arguments of an execve (strace prints the environment as a count)."""
    strings = _QUOTED.findall(text)
    return " ".join([strings[0], *strings[2:4]]) if strings else None


def read_trace(path: Path) -> Trace:
    calls = _calls(path.read_text(errors="replace").splitlines())
    # Pass 1: which process each thread belongs to, and what each process runs.
    process: dict[int, int] = {}
    programs: dict[int, str] = {}
    parent_of: dict[int, int] = {}
    for tid, text in calls:
        process.setdefault(tid, tid)
        name = _CALL.match(text)
        result = _RESULT.search(text)
        if name is None or result is None:
            continue
        if name.group(1) in ("clone", "clone3", "fork", "vfork") and result.group(1).isdigit():
            child = int(result.group(1))
            thread = "CLONE_THREAD" in text
            process[child] = process[tid] if thread else child
            if not thread:
                parent_of[child] = process[tid]
        elif name.group(1) == "execve" and result.group(1) == "0":
            program = _program(text)
            if program:
                programs[process[tid]] = program

    def program_of(pid: int) -> str:
        seen = set()
        while pid not in programs and pid in parent_of and pid not in seen:
            seen.add(pid)  # a fork without exec runs its parent's program
            pid = parent_of[pid]
        program = programs.get(pid, "?")
        if program.startswith("/proc/self/exe") and pid in parent_of:
            # Chromium starts its helpers by executing itself again: name the executable.
            program = program_of(parent_of[pid]).split(" ", 1)[0] + program[len("/proc/self/exe") :]
        return program

    # Pass 2: the socket addresses.
    trace = Trace(programs={pid: program_of(pid) for pid in set(process.values())})
    for tid, text in calls:
        name = _CALL.match(text)
        if name is None or name.group(1) not in NETWORK_SYSCALLS:
            continue
        result = _RESULT.search(text)
        outcome = (result.group(1) + result.group(2)).strip() if result else ""
        for family, fields in _SOCKADDR.findall(text):
            host = None
            if family == "AF_INET":
                found = _IPV4.search(fields)
                host = found.group(1) if found else None
            elif family == "AF_INET6":
                found = _IPV6.search(fields)
                host = found.group(1) if found else None
            port = _PORT.search(fields)
            trace.attempts.append(
                Attempt(
                    process.get(tid, tid), tid, program_of(process.get(tid, tid)), name.group(1), family, host,
                    int(port.group(1)) if port else None, outcome, text[:300],
                )
            )  # fmt: skip
    return trace
