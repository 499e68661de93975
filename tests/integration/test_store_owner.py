"""Embedded Chroma is safe for one process only: a second process reading its folder sees stale
vectors (each caches the HNSW index) and can damage it while the first writes. The running web UI
(`enclave serve`) therefore holds the embedded store for itself; an `enclave ingest` beside it is
refused with what to do instead, `enclave doctor` reports the holder rather than a fault, and the
web UI does not start beside a running ingest. Real processes of the real `enclave` command."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.net import free_port

pytestmark = pytest.mark.slow

ENCLAVE = str(Path(sys.executable).with_name("enclave"))


def enclave(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ENCLAVE, *args], env=env, capture_output=True, text=True, timeout=600)


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text)
    return folder


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"ENCLAVE_DATA_DIR": str(tmp_path / "var"), "ENCLAVE_NETWORK__GUARD": "strict"})
    env.pop("ENCLAVE_STORE__MODE", None)
    return env


@pytest.fixture
def serving(env: dict[str, str], tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    first = write(tmp_path / "first", "canteen.md", "# Canteen\n\nThe canteen serves soup on Mondays.\n")
    assert enclave(env, "ingest", str(first), "--groups", "staff").returncode == 0
    port = free_port()
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log:
        server = subprocess.Popen(
            [ENCLAVE, "serve", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and server.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=5):
                    break
            except OSError:
                time.sleep(1)
        assert server.poll() is None, log_path.read_text()[-3000:]
        yield server
    finally:
        if server.poll() is None:  # the first test stops it itself
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def test_the_web_ui_holds_the_embedded_store_and_an_ingest_beside_it_is_refused(
    env: dict[str, str], tmp_path: Path, serving: subprocess.Popen[bytes]
) -> None:
    second = write(tmp_path / "second", "parking.md", "# Parking\n\nVisitors park on level two.\n")
    before = json.loads(enclave(env, "docs", "list", "--json").stdout)

    refused = enclave(env, "ingest", str(second), "--groups", "staff")
    assert refused.returncode == 1
    message = refused.stderr
    assert f"in use by `enclave serve` (pid {serving.pid}" in message, message
    assert "admin page" in message and "store.mode: http" in message
    assert json.loads(enclave(env, "docs", "list", "--json").stdout) == before  # nothing changed

    # doctor reports who holds the store, and does not count it as a fault.
    doctor = enclave(env, "doctor", "--json")
    checks = {c["name"]: c for c in json.loads(doctor.stdout)["checks"]}
    assert checks["chroma"]["ok"], checks["chroma"]
    assert checks["chroma"]["figures"]["in_use_by"]["pid"] == serving.pid
    assert checks["lexical index"]["ok"], checks["lexical index"]

    # A second web UI on the same data folder is refused too.
    again = subprocess.run(
        [ENCLAVE, "serve", "--port", str(free_port())], env=env, capture_output=True, text=True, timeout=300
    )
    assert again.returncode == 1 and f"pid {serving.pid}" in again.stderr, again.stderr

    # Once the web UI has stopped, the same ingest goes through.
    os.killpg(serving.pid, signal.SIGTERM)
    serving.wait(timeout=60)
    done = enclave(env, "ingest", str(second), "--groups", "staff", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["counts"]["new"] == 1


def test_the_web_ui_does_not_start_beside_a_running_ingest(env: dict[str, str], tmp_path: Path) -> None:
    data = Path(env["ENCLAVE_DATA_DIR"])
    data.mkdir(parents=True)
    # The lock every ingest holds while it runs (ingest.pipeline.exclusive), held here as an
    # ingest in progress would hold it.
    with (data / "ingest.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        refused = subprocess.run(
            [ENCLAVE, "serve", "--port", str(free_port())],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert refused.returncode == 1
    assert "an ingest is running on the data folder" in refused.stderr, refused.stderr
