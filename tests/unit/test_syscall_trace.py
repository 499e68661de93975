"""The egress proof's strace reader (tests/support/syscall_trace.py) on lines in the shapes strace 6
writes them: calls split between threads, threads and processes told apart, programs followed
through fork and execve, and every address family classified."""

from __future__ import annotations

from pathlib import Path

from tests.support.syscall_trace import is_loopback, read_trace

TRACE = """\
100 execve("/usr/bin/python3", ["python3", "-m", "driver"], 0x7ffd /* 20 vars */) = 0
100 clone3({flags=CLONE_VM|CLONE_FS|CLONE_THREAD|CLONE_SETTLS, child_tid=0x1, stack_size=0x7fff80} <unfinished ...>
101 connect(3, {sa_family=AF_INET, sin_port=htons(8000), sin_addr=inet_addr("127.0.0.1")}, 16) = 0
100 <... clone3 resumed> => {parent_tid=[101]}, 88) = 101
100 vfork( <unfinished ...>
200 execve("/usr/lib/chromium/chromium", ["/usr/lib/chromium/chromium", "--headless"], 0x7ffd /* 9 vars */) = 0
100 <... vfork resumed>)              = 200
200 clone(child_stack=NULL, flags=CLONE_CHILD_CLEARTID|CLONE_CHILD_SETTID|SIGCHLD, child_tidptr=0x1) = 300
300 execve("/proc/self/exe", ["/proc/self/exe", "--type=utility", "--utility-sub-type=network"], 0x1 /* 3 vars */) = 0
300 clone3({flags=CLONE_VM|CLONE_THREAD, child_tid=0x1} => {parent_tid=[301]}, 88) = 301
301 connect(24, {sa_family=AF_INET6, sin6_port=htons(443), sin6_flowinfo=htonl(0), inet_pton(AF_INET6, \
"2001:4860:4860::8888", &sin6_addr), sin6_scope_id=0}, 28 <unfinished ...>
300 sendto(5, "x"..., 64, MSG_NOSIGNAL, NULL, 0) = 64
301 <... connect resumed>)            = -1 ENETUNREACH (Network is unreachable)
200 clone(child_stack=NULL, flags=CLONE_CHILD_CLEARTID|SIGCHLD, child_tidptr=0x1) = 400
400 connect(7, {sa_family=AF_INET, sin_port=htons(53), sin_addr=inet_addr("127.0.0.53")}, 16) = -1 ECONNREFUSED
400 sendmsg(8, {msg_name={sa_family=AF_INET, sin_port=htons(5353), sin_addr=inet_addr("224.0.0.251")}, \
msg_namelen=16, msg_iov=[...], msg_iovlen=1}, 0) = -1 ENETUNREACH (Network is unreachable)
400 sendto(9, ""..., 12, 0, {sa_family=AF_NETLINK, nl_pid=0, nl_groups=00000000}, 12) = 12
100 connect(4, {sa_family=AF_UNIX, sun_path="/var/run/nscd/socket"}, 110) = -1 ENOENT (No such file)
100 connect(6, {sa_family=AF_INET6, sin6_port=htons(80), sin6_flowinfo=htonl(0), inet_pton(AF_INET6, \
"::ffff:127.0.0.1", &sin6_addr), sin6_scope_id=0}, 28 <unfinished ...>
"""


def test_every_address_is_found_with_the_program_that_named_it(tmp_path: Path) -> None:
    path = tmp_path / "trace.log"
    path.write_text(TRACE.replace("\\\n", ""))
    trace = read_trace(path)
    found = [
        (a.pid, a.program, a.syscall, a.family, a.host, a.port, a.result, a.local) for a in trace.attempts
    ]
    chromium = "/usr/lib/chromium/chromium --headless"
    assert found == [
        # A thread's call, listed before the clone that made the thread returned: still the driver's.
        (100, "/usr/bin/python3 -m driver", "connect", "AF_INET", "127.0.0.1", 8000, "0", True),
        # Chromium's helper runs /proc/self/exe: named by the executable; the call split in two.
        (
            300, "/usr/lib/chromium/chromium --type=utility --utility-sub-type=network", "connect", "AF_INET6",
            "2001:4860:4860::8888", 443, "-1 ENETUNREACH (Network is unreachable)", False,
        ),
        # A forked child without exec runs its parent's program; a loopback name server is outside.
        (400, chromium, "connect", "AF_INET", "127.0.0.53", 53, "-1 ECONNREFUSED", False),
        (400, chromium, "sendmsg", "AF_INET", "224.0.0.251", 5353, "-1 ENETUNREACH (Network is unreachable)", False),
        (400, chromium, "sendto", "AF_NETLINK", None, None, "12", True),
        (100, "/usr/bin/python3 -m driver", "connect", "AF_UNIX", None, None, "-1 ENOENT (No such file)", True),
        # Never returned (the process was killed): kept, with its address.
        (100, "/usr/bin/python3 -m driver", "connect", "AF_INET6", "::ffff:127.0.0.1", 80, "", True),
    ]  # fmt: skip
    assert [a.describe() for a in trace.outside()] == [
        "/usr/lib/chromium/chromium --type=utility --utility-sub-type=network [300] connect "
        "2001:4860:4860::8888:443 = -1 ENETUNREACH (Network is unreachable)",
        f"{chromium} [400] connect 127.0.0.53:53 = -1 ECONNREFUSED",
        f"{chromium} [400] sendmsg 224.0.0.251:5353 = -1 ENETUNREACH (Network is unreachable)",
    ]
    assert trace.programs[100] == "/usr/bin/python3 -m driver" and trace.programs[400] == chromium


def test_loopback_is_loopback_in_every_spelling_and_nothing_else_is() -> None:
    assert all(map(is_loopback, ["127.0.0.1", "127.5.6.7", "::1", "[::1]", "localhost", "::ffff:127.0.0.1"]))
    assert not any(
        map(is_loopback, ["10.0.0.1", "192.0.2.1", "::", "0.0.0.0", "example.com", "::ffff:10.0.0.1"])
    )
