"""Egress proof: the whole flow (ingest, an answer from real vLLM asked in headless Chromium,
audit export) run inside a network namespace that has only loopback, with the connect guard
strict, makes no attempt to reach any other address.

The flow is one driver process (tests/support/egress_flow.py) under `unshare --net` and
`strace -f`. Three witnesses, each shown able to see an attempt by a control at the end:
- strace: every connect/sendto/sendmsg/sendmmsg of every process (Enclave, vLLM and its engine,
  Chromium and its helpers, Playwright's driver), attributed to its program;
- inside each Enclave process, an audit hook added before the guard's: every socket connect and
  name lookup as it is attempted, including those the guard refuses before any system call; and
  the guard's own list of refusals, written at exit;
- the kernel: the namespace's count of sends and connects refused for want of a route.

Needs root (or unprivileged user namespaces), strace, vLLM's venv and Chromium: without them the
test skips, or fails when REQUIRE_NETNS=1, REQUIRE_VLLM=1 or REQUIRE_BROWSER=1 (CI).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.support.egress_flow import (
    CHROMIUM,
    CONTROL_BLOCKED,
    CONTROL_UNGUARDED,
    GUARD_LINE,
    QUESTION,
    guard_reports,
    witness_attempts,
    witness_is_local,
)
from tests.support.syscall_trace import STRACE_ARGS, Attempt, read_trace
from tests.support.tiny_model import SCRIPTED_ANSWER
from tests.support.vllm_server import MISSING_VENV, vllm_command

pytestmark = [pytest.mark.slow, pytest.mark.vllm, pytest.mark.browser]

ROOT = Path(__file__).resolve().parents[2]
FLOW_TIMEOUT_S = 1200
# Chromium's resolver checks whether the machine has an IPv6 route before each lookup (cached for
# a second), IP literals such as 127.0.0.1 included, by connect()ing a UDP socket to Google's
# public DNS address; no switch turns it off (net/dns/host_resolver_manager.cc,
# StartIPv6ReachabilityCheck). A UDP connect() only looks up a route and sends nothing; here there
# is none. These probes are told apart exactly, and the kernel must count no more than them.
CHROMIUM_IPV6_PROBE = ("2001:4860:4860::8888", 443)


def _require(variable: str, reason: str) -> None:
    if os.environ.get(variable) == "1":
        pytest.fail(f"{variable}=1 but {reason}")
    pytest.skip(reason)


def _namespace_command() -> list[str]:
    """`unshare --net` (with a user namespace when not root), checked to work here."""
    unshare, strace = shutil.which("unshare"), shutil.which("strace")
    if strace is None or unshare is None:
        _require("REQUIRE_NETNS", "strace or unshare is missing: apt-get install strace util-linux")
    command = [str(unshare), "--net"] + ([] if os.geteuid() == 0 else ["--map-root-user"])
    probe = subprocess.run([*command, "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        _require(
            "REQUIRE_NETNS", f"cannot make a network namespace ({' '.join(command)}): {probe.stderr.strip()}"
        )
    return [*command, "--", str(strace), *STRACE_ARGS]


def _check_prerequisites() -> list[str]:
    if vllm_command() is None:
        _require("REQUIRE_VLLM", MISSING_VENV)
    if not Path(CHROMIUM).exists():
        _require(
            "REQUIRE_BROWSER", f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)"
        )
    return _namespace_command()


def is_chromium_ipv6_probe(attempt: Attempt) -> bool:
    return (
        attempt.program.startswith("/usr/lib/chromium/")
        and attempt.syscall == "connect"
        and (attempt.host, attempt.port) == CHROMIUM_IPV6_PROBE
        and attempt.result.startswith("-1 ENETUNREACH")
    )


def test_full_flow_in_a_loopback_only_namespace_reaches_no_other_address(tmp_path: Path) -> None:
    prefix = _check_prerequisites()
    work = tmp_path / "flow"
    work.mkdir()
    trace_path, log_path = work / "trace.log", work / "driver.log"
    started = time.monotonic()
    with log_path.open("w") as log:
        done = subprocess.run(
            [*prefix, "-o", str(trace_path), "--", sys.executable, "-m", "tests.support.egress_flow", str(work)],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, timeout=FLOW_TIMEOUT_S,
        )  # fmt: skip
    elapsed = time.monotonic() - started
    assert done.returncode == 0, log_path.read_text()[-6000:]
    result: dict[str, Any] = json.loads((work / "result.json").read_text())
    commands = result["commands"]
    for name in ("ingest", "users", "export"):
        assert commands[name]["returncode"] == 0, (name, commands[name]["output"])
    assert result["interfaces"] == ["lo"]  # the namespace: loopback and nothing else

    # The answer came from vLLM, was shown in the browser, and is in the export.
    records = [json.loads(line) for line in (work / "audit.jsonl").read_text().splitlines()]
    answers = [r for r in records if r["event"] == "answer"]
    assert len(answers) == 1, records
    answer = answers[0]
    assert (answer["user"], answer["question"]) == ("alice", QUESTION)
    assert (
        answer["data"]["mode"] == "llm"
        and answer["data"]["model"] == result["vllm"]["model"] == "tiny-scripted"
    )
    assert answer["data"]["answer"] == SCRIPTED_ANSWER  # what only the tiny model's script says
    assert [c["source"].endswith("mission.md") for c in answer["data"]["citations"]] == [True]
    unhashed = {k: v for k, v in answer.items() if k != "hash"}
    canonical = json.dumps(unhashed, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert hashlib.sha256(canonical.encode()).hexdigest() == answer["hash"]
    browser = result["browser"]
    assert "Signed in as alice" in browser["whoami"] and "Enclave" in browser["title"]
    assert "The mission lifted off in July" in browser["answer"]
    assert f"Audit record {answer['id']}" in browser["answer"]
    page_hosts = {urlsplit(url).hostname for url in browser["requests"]}
    assert browser["requests"] and page_hosts <= {"127.0.0.1"}, page_hosts

    # Witness 1, Enclave's guard: strict in every command, and it refused nothing.
    reports = guard_reports(work / "witness")
    serve = commands["serve"]
    assert serve["stopped_by"] == "SIGINT", serve["output"]  # a clean exit writes its report
    for name in ("ingest", "users", "serve", "export"):
        report = reports.get(commands[name]["pid"])
        assert report is not None, f"{name} wrote no guard report"
        assert (report["mode"], report["blocked"]) == ("strict", []), (name, report)
        assert GUARD_LINE not in commands[name]["output"], commands[name]["output"]
    control_pid = result["control"]["pid"]
    others = [r for pid, r in reports.items() if pid != control_pid]  # e.g. ingest's parser worker
    assert [
        (r["argv"], r["mode"], r["blocked"]) for r in others if (r["mode"], r["blocked"]) != ("strict", [])
    ] == []

    # Witness 2, the audit hook in every Enclave process: only loopback, and it was listening.
    witnessed = witness_attempts(work / "witness")
    vllm_port = urlsplit(result["vllm"]["base_url"]).port
    assert any(
        r["event"] == "socket.connect" and r["target"] == ["127.0.0.1", vllm_port]
        for r in witnessed[serve["pid"]]
    ), witnessed.get(serve["pid"])
    foreign = {
        pid: [r for r in rs if not witness_is_local(r)] for pid, rs in witnessed.items() if pid != control_pid
    }
    assert {pid: rs for pid, rs in foreign.items() if rs} == {}

    # Witness 3, strace over every process: no address but loopback and local sockets.
    trace = read_trace(trace_path)
    flow = [a for a in trace.attempts if a.pid != control_pid]
    outside = [a for a in flow if not a.local]
    probes = [a for a in outside if is_chromium_ipv6_probe(a)]
    assert [a.describe() for a in outside if a not in probes] == []
    # ... and it saw the processes that talk: the app asking vLLM, Chromium loading the app.
    assert any(a.program.endswith("enclave serve --port") and a.port == vllm_port and a.local for a in flow)
    app_port = urlsplit(browser["requests"][0]).port
    assert any(a.program.startswith("/usr/lib/chromium/") and a.port == app_port and a.local for a in flow)

    # The kernel agrees: no IPv4 attempt found no route, and the IPv6 ones were Chromium's probes.
    before, after = result["no_routes_before"], result["no_routes_after_flow"]
    assert after["ipv4"] - before["ipv4"] == 0
    assert after["ipv6"] - before["ipv6"] == len(probes)

    # The control: each witness sees an attempt when there is one.
    control = result["control"]
    assert control["returncode"] == 0, control["output"]
    assert GUARD_LINE in control["output"]  # the guard says what it refused...
    refused = "{}:{}".format(*CONTROL_BLOCKED)
    assert reports[control_pid]["blocked"] == [refused]  # ...and lists it
    hooked = [r["target"] for r in witnessed[control_pid] if r["event"] == "socket.connect"]
    assert hooked == [list(CONTROL_BLOCKED), list(CONTROL_UNGUARDED)]  # the hook sees both
    traced = [(a.host, a.port) for a in trace.attempts if a.pid == control_pid and not a.local]
    assert traced == [CONTROL_UNGUARDED]  # the refused one never became a system call
    assert result["no_routes_after_control"]["ipv4"] - after["ipv4"] == 1  # the kernel counts it

    loopback = sum(1 for a in flow if a.host is not None and a.local)
    print(
        f"\negress proof: {elapsed:.0f} s in all (flow {result['flow_s']} s); {len(trace.programs)} "
        f"processes traced; {len(flow)} socket addresses named, {loopback} of them loopback IP, the "
        f"rest local sockets but for {len(probes)} Chromium IPv6 route probes; guard refusals: 0"
    )
