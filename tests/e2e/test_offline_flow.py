"""The real `enclave` command in fresh processes, under the offline guard in strict mode:
ingest, ask, and a page load of the web UI make no attempt to reach any non-loopback host."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.support.net import free_port

pytestmark = pytest.mark.slow

ENCLAVE = str(Path(sys.executable).with_name("enclave"))
DEMO = Path(__file__).resolve().parents[2] / "enclave" / "demo_corpus"
GUARD_LINE = "offline guard"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    # A clean environment: none of the offline switches pre-set, so the CLI must set them itself.
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env.update({"ENCLAVE_DATA_DIR": str(tmp_path / "var"), "ENCLAVE_NETWORK__GUARD": "strict"})
    # The test run's onnx-int8 export (tests/conftest.py), not one of its own.
    env["ENCLAVE_EMBEDDING__CACHE_DIR"] = os.environ["ENCLAVE_EMBEDDING__CACHE_DIR"]
    return env


def enclave(env: dict[str, str], *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ENCLAVE, *args], env=env, input=stdin, capture_output=True, text=True, timeout=600)


PAGE = {"accept": "text/html"}  # as a browser asks, so sign-in answers with pages, not JSON


# Where the network-namespace proofs must run (CI sets REQUIRE_NETNS=1), they cover all of this
# and more: tests/e2e/test_egress.py (ingest, an answer, a page load and an export, every
# process watched by strace) and tests/integration/test_bundle.py (ingest and an extractive
# `enclave ask`, in a fresh venv with no route out). This test is the check for machines where
# namespaces cannot be made.
@pytest.mark.skipif(
    os.environ.get("REQUIRE_NETNS") == "1",
    reason="covered by test_egress.py and test_bundle.py inside a loopback-only network namespace",
)
def test_ingest_ask_and_page_load_stay_on_loopback(env: dict[str, str], tmp_path: Path) -> None:
    ingest = enclave(env, "ingest", str(DEMO / "public"), "--groups", "public", "--json")
    assert ingest.returncode == 0, ingest.stderr
    assert json.loads(ingest.stdout)["counts"]["new"] >= 5
    assert GUARD_LINE not in ingest.stderr

    added = enclave(
        env, "users", "add", "alice", "--groups", "public", "--password-stdin", stdin="alice-pass-1\n"
    )
    assert added.returncode == 0, added.stderr
    ask = enclave(env, "ask", "How far ahead must a berth be booked?", "--user", "alice", "--json")
    assert ask.returncode == 0, ask.stderr
    answer = json.loads(ask.stdout)
    assert answer["mode"] == "extractive" and answer["citations"]
    assert GUARD_LINE not in ask.stderr

    port = free_port()
    log = (tmp_path / "serve.log").open("w+")
    server = subprocess.Popen(
        [ENCLAVE, "serve", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        html = ""
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and server.poll() is None:
            try:  # the login page first: it answers without a session
                with urllib.request.urlopen(
                    urllib.request.Request(f"{base}/login", headers=PAGE), timeout=5
                ) as resp:
                    html = resp.read().decode("utf-8", "replace")
                    break
            except OSError:
                time.sleep(1)
        assert html, f"server did not come up: {(tmp_path / 'serve.log').read_text()[-3000:]}"
        form = urllib.parse.urlencode({"username": "alice", "password": "alice-pass-1"}).encode()
        with urllib.request.urlopen(urllib.request.Request(f"{base}/login", data=form), timeout=30) as resp:
            cookie = resp.headers["set-cookie"].split(";", 1)[0]
        chat = urllib.request.Request(f"{base}/", headers={**PAGE, "cookie": cookie})
        with urllib.request.urlopen(chat, timeout=30) as resp:  # the chat page, signed in
            page = resp.read().decode("utf-8", "replace")
        assert "gradio" in page.lower()
        html += page
        outside = {
            u
            for u in re.findall(r"https?://[^\s\"'<>)]+", html)
            if not re.match(r"https?://(127\.0\.0\.1|localhost)[:/]", u)
        }
        # Links inside inline licence comments or docs are text, not requests; anything the page
        # would load (src=, href= of stylesheets, @import, url()) must be local.
        loaded = re.findall(r"(?:src|href)=[\"'](https?://[^\"']+)", html) + re.findall(
            r"@import\s+url\([\"']?(https?://[^\"')]+)", html
        )
        assert not [u for u in loaded if u in outside], loaded
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
    log.seek(0)
    assert GUARD_LINE not in log.read()
