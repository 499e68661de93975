"""The egress proof's flow (tests/e2e/test_egress.py) as one process, meant to run inside a network
namespace that has only loopback and under `strace -f`, so that every process it starts is traced:

    unshare --net -- strace STRACE_ARGS -o WORK/trace.log -- python -m tests.support.egress_flow WORK

(STRACE_ARGS from tests/support/syscall_trace.py, which reads the trace.)

It brings loopback up, starts real vLLM (.venv-vllm) on the tiny scripted model, runs
`enclave ingest`, `enclave users add`, `enclave serve` with the LLM set, signs in and asks in
headless Chromium, runs `enclave audit export`, and stops everything. Then comes a control: one
process tries two off-machine addresses on purpose (one refused by the guard, one let through to
the kernel), so the test can show that each witness sees an attempt when there is one. Everything
the test needs lands in WORK/result.json; the functions at the end read the witnesses' files.

The enclave processes run with the connect guard strict and tests/support/egress_witness on their
PYTHONPATH (a sitecustomize that records every socket attempt and the guard's refusals).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from tests.support.chromium import CHROMIUM, chromium_args
from tests.support.syscall_trace import is_loopback

WITNESS_SITE = Path(__file__).resolve().parent / "egress_witness"
ENCLAVE = str(Path(sys.executable).with_name("enclave"))
WAIT_MS = 120_000  # a ceiling for a slow, traced machine; every wait ends when the page is ready
PASSWORD = "egress test password"
DOCUMENT = "# Mission log\n\nThe mission lifted off from pad 39A in July, on schedule, with three crew.\n"
QUESTION = "When did the mission lift off?"
GUARD_LINE = "offline guard"
# The control's targets: TEST-NET-1 (RFC 5737), never a real host.
CONTROL_BLOCKED = ("192.0.2.1", 9)
CONTROL_UNGUARDED = ("192.0.2.2", 9)
CONTROL = f"""
import errno, socket, sys
from core.offline import configure_guard, install_guard
install_guard("strict")
sock = socket.socket()
try:
    sock.connect({CONTROL_BLOCKED!r})
except PermissionError:
    pass  # refused by the guard before any packet
else:
    sys.exit("the strict guard let {CONTROL_BLOCKED[0]} through")
configure_guard("off")
sock = socket.socket()
try:
    sock.connect({CONTROL_UNGUARDED!r})
except OSError as exc:
    if exc.errno != errno.ENETUNREACH:
        sys.exit(f"expected no route to {CONTROL_UNGUARDED[0]}, got {{exc!r}}")
else:
    sys.exit("{CONTROL_UNGUARDED[0]} was reachable: this namespace has a route out")
"""

SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1


# -- the namespace -----------------------------------------------------------------------------


def loopback_up() -> None:
    """`ip link set lo up`, without needing iproute2: a new network namespace starts with lo down."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        ifreq = fcntl.ioctl(sock, SIOCGIFFLAGS, struct.pack("16sh14x", b"lo", 0))
        flags = struct.unpack_from("16sh", ifreq)[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sh14x", b"lo", flags | IFF_UP))


def interfaces() -> list[str]:
    """The namespace's own interfaces (/proc/net follows the reader's namespace; /sys/class/net
    shows the namespace /sys was mounted in)."""
    lines = Path("/proc/net/dev").read_text().splitlines()[2:]
    return sorted(line.split(":", 1)[0].strip() for line in lines)


def no_route_counts() -> dict[str, int]:
    """The kernel's count of packets and connects refused for want of a route, IPv4 and IPv6; in a
    loopback-only namespace, every attempt at another address that reaches the kernel adds one."""
    snmp = Path("/proc/net/snmp").read_text().splitlines()
    rows = [line.split() for line in snmp if line.startswith("Ip:")]
    ipv4 = int(rows[1][rows[0].index("OutNoRoutes")])
    ipv6 = next(
        int(line.split()[1]) for line in Path("/proc/net/snmp6").read_text().splitlines()
        if line.startswith("Ip6OutNoRoutes")
    )  # fmt: skip
    return {"ipv4": ipv4, "ipv6": ipv6}


# -- the flow ----------------------------------------------------------------------------------


def enclave_env(work: Path, llm: Any | None) -> dict[str, str]:
    # A clean environment, as an operator's shell would give: the CLI sets the offline switches itself.
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env.update(
        {
            "ENCLAVE_DATA_DIR": str(work / "var"),
            "ENCLAVE_NETWORK__GUARD": "strict",
            "PYTHONPATH": str(WITNESS_SITE),
            "EGRESS_WITNESS_DIR": str(work / "witness"),
        }
    )
    if "ENCLAVE_EMBEDDING__CACHE_DIR" in os.environ:  # under pytest: the run's onnx-int8 export
        env["ENCLAVE_EMBEDDING__CACHE_DIR"] = os.environ["ENCLAVE_EMBEDDING__CACHE_DIR"]
    if llm is not None:
        env.update({"ENCLAVE_LLM__BASE_URL": llm.base_url, "ENCLAVE_LLM__MODEL": llm.model})
    return env


def record(proc: subprocess.Popen[str], output: str) -> dict[str, Any]:
    """What the test needs of a finished command: its pid names its witness files."""
    return {"pid": proc.pid, "returncode": proc.returncode, "output": output[-4000:]}


def run_enclave(env: dict[str, str], work: Path, *args: str, stdin: str | None = None) -> dict[str, Any]:
    proc = subprocess.Popen(
        [ENCLAVE, *args], env=env, cwd=work, text=True, stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    output, _ = proc.communicate(stdin, timeout=600)
    return record(proc, output)


def wait_for(url: str, proc: subprocess.Popen[Any], log: Path, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: the server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(
                urllib.request.Request(url, headers={"accept": "text/html"}), timeout=5
            ):
                return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"{url} did not answer within {timeout_s:g} s:\n{log.read_text()[-3000:]}")


def ask_in_browser(url: str, work: Path) -> dict[str, Any]:
    """Sign in as alice on the login page, ask with Enter, wait for the finished answer."""
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=WAIT_MS)
    args = chromium_args(work)
    requests: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=args)
        try:
            context = browser.new_context()
            context.set_default_timeout(WAIT_MS)
            context.on("request", lambda request: requests.append(request.url))
            context.on("page", lambda page: page.on("websocket", lambda ws: requests.append(ws.url)))
            page = context.new_page()
            page.goto(url)
            expect(page).to_have_url(re.compile(r"/login\?next="))
            page.get_by_label("User name").fill("alice")
            page.get_by_label("Password").fill(PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            expect(page).to_have_url(url)
            whoami = page.locator("#enclave-whoami")
            expect(whoami).to_contain_text("Signed in as alice")
            box = page.locator("#enclave-question textarea")
            box.fill(QUESTION)
            box.press("Enter")
            answer = page.locator("#enclave-chat [data-testid=bot]").filter(has_text="Audit record")
            expect(answer).to_be_visible()
            expect(box).to_be_editable()  # unlocked again once the answer is complete
            text = answer.inner_text()
            signed_in = whoami.inner_text()
            title = page.title()
            context.close()
        finally:
            browser.close()
    return {"title": title, "whoami": signed_in, "answer": text, "requests": requests}


def stop_server(proc: subprocess.Popen[Any]) -> str:
    """Ctrl+C, as an operator stops `enclave serve`: it exits cleanly, so its guard report is written."""
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=60)
        return "SIGINT"
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return "SIGKILL"


def run_flow(work: Path) -> dict[str, Any]:
    from tests.support.tiny_model import CONTEXT_LENGTH, build_tiny_model
    from tests.support.vllm_server import free_port, running_vllm

    for folder in ("witness", "docs", "logs"):
        (work / folder).mkdir(parents=True, exist_ok=True)
    (work / "docs" / "mission.md").write_text(DOCUMENT)
    result: dict[str, Any] = {
        "interfaces": interfaces(),
        "no_routes_before": no_route_counts(),
        "commands": {},
    }
    commands: dict[str, Any] = result["commands"]
    model = build_tiny_model(work / "model", "scripted")

    # vLLM's start is the longest wait of the flow: ingest, the user and the web UI's start (which
    # needs vLLM's address, not vLLM) all run meanwhile. The UI starts once ingest is done, so
    # that it opens the store ingest wrote.
    with (work / "logs" / "ingest.err").open("w") as errors:
        ingest = subprocess.Popen(
            [ENCLAVE, "ingest", str(work / "docs"), "--groups", "public", "--json"], env=enclave_env(work, None),
            cwd=work, text=True, stdout=subprocess.PIPE, stderr=errors,
        )  # fmt: skip
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    serve_log = work / "logs" / "serve.log"
    llm = SimpleNamespace(base_url="", model="tiny-scripted")
    servers: list[subprocess.Popen[bytes]] = []

    def meanwhile(base_url: str) -> None:
        llm.base_url = base_url
        out, _ = ingest.communicate(timeout=600)
        commands["ingest"] = record(ingest, out + (work / "logs" / "ingest.err").read_text())
        env = enclave_env(work, llm)
        add_user = ("users", "add", "alice", "--groups", "public", "--password-stdin")
        commands["users"] = run_enclave(env, work, *add_user, stdin=PASSWORD + "\n")
        with serve_log.open("w") as log:
            serve = [ENCLAVE, "serve", "--port", str(port)]
            servers.append(subprocess.Popen(serve, env=env, cwd=work, stdout=log, stderr=subprocess.STDOUT))

    stopped_by = None
    try:
        with running_vllm(
            model, llm.model, work / "logs" / "vllm.log", CONTEXT_LENGTH, while_loading=meanwhile
        ) as served:
            result["vllm"] = {"pid": served.pid, "base_url": served.base_url, "model": served.model}
            [server] = servers
            try:
                wait_for(url + "login", server, serve_log)
                result["browser"] = ask_in_browser(url, work)
                export = ("audit", "export", "--format", "jsonl", "--out", str(work / "audit.jsonl"))
                commands["export"] = run_enclave(enclave_env(work, llm), work, *export)
            finally:
                stopped_by = stop_server(server)
    finally:
        if stopped_by is None:  # vLLM never got ready: the UI must not outlive the flow
            for started in servers:
                stop_server(started)
    commands["serve"] = {
        "pid": server.pid, "returncode": server.returncode, "stopped_by": stopped_by,
        "output": serve_log.read_text()[-4000:],
    }  # fmt: skip
    result["no_routes_after_flow"] = no_route_counts()

    control = subprocess.Popen(
        [sys.executable, "-c", CONTROL], env=enclave_env(work, None), cwd=work, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    output, _ = control.communicate(timeout=120)
    result["control"] = record(control, output)
    result["no_routes_after_control"] = no_route_counts()
    return result


def main() -> None:
    work = Path(sys.argv[1])
    loopback_up()
    started = time.monotonic()
    result = run_flow(work)
    result["flow_s"] = round(time.monotonic() - started, 1)
    (work / "result.json").write_text(json.dumps(result, indent=2))


# -- reading the Python witness (used by the test, outside the namespace) -------------------------


def witness_attempts(witness: Path) -> dict[int, list[dict[str, Any]]]:
    """The sitecustomize witness's records, per process."""
    out: dict[int, list[dict[str, Any]]] = {}
    for path in sorted(witness.glob("*.jsonl")):
        out[int(path.name.split(".")[0])] = [json.loads(line) for line in path.read_text().splitlines()]
    return out


def witness_is_local(record: dict[str, Any]) -> bool:
    """A recorded socket event that stays on the machine: a loopback or local-socket target, or a
    lookup of a loopback name (lookups of other names would ask a name server)."""
    target = record["target"]
    if record["event"] in ("socket.connect", "socket.sendto", "socket.sendmsg"):
        if record["family"] in (socket.AF_UNIX, socket.AF_NETLINK) or target is None:
            return True  # a path, the kernel, or a send on a socket whose connect was recorded
        return isinstance(target, list) and bool(target) and is_loopback(str(target[0]))
    host = target[0] if isinstance(target, list) else target
    return host is None or is_loopback(str(host))


def guard_reports(witness: Path) -> dict[int, dict[str, Any]]:
    return {int(p.name.split(".")[0]): json.loads(p.read_text()) for p in witness.glob("*.guard.json")}


if __name__ == "__main__":
    main()
