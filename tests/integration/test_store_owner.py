"""Embedded Chroma is safe for one process only: a second process reading its folder sees stale
vectors (each caches the HNSW index) and can damage it while the first writes. The running web UI
(`enclave serve`) therefore holds the embedded store for itself: the command line's commands that
write it are handed to the web UI (tests/integration/test_admin_channel.py), one that reads it
(`enclave ask`) is refused with what to do instead, `enclave doctor` reports the holder rather
than a fault, and the web UI does not start beside a running ingest. Real processes of the real
`enclave` command."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.users import UserStore
from tests.support.net import free_port
from tests.support.web_ui import ENCLAVE, WebUI, enclave, web_ui

pytestmark = pytest.mark.slow


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
def serving(env: dict[str, str], tmp_path: Path) -> Iterator[WebUI]:
    first = write(tmp_path / "first", "canteen.md", "# Canteen\n\nThe canteen serves soup on Mondays.\n")
    assert enclave(env, "ingest", str(first), "--groups", "staff").returncode == 0
    with web_ui(env, tmp_path / "serve.log") as served:
        yield served


def test_the_web_ui_holds_the_embedded_store_and_an_ask_beside_it_is_refused(
    env: dict[str, str], tmp_path: Path, serving: WebUI
) -> None:
    UserStore(Path(env["ENCLAVE_DATA_DIR"]) / "users.json").add(
        "ann", "a long enough password", "staff", ("staff",)
    )
    before = json.loads(enclave(env, "docs", "list", "--json").stdout)

    refused = enclave(env, "ask", "What does the canteen serve on Mondays?", "--user", "ann")
    assert refused.returncode == 1
    message = refused.stderr
    assert f"in use by `enclave serve` (pid {serving.pid}" in message, message
    # What to do instead names only what exists: the web UI carries out the writing commands.
    assert "admin page" not in message
    assert "it carries out `enclave ingest` and `enclave docs remove|reindex`" in message, message
    assert "store.mode: http" in message
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

    # Once the web UI has stopped, the ask reads the store itself.
    serving.stop()
    done = enclave(env, "ask", "What does the canteen serve on Mondays?", "--user", "ann", "--json")
    assert done.returncode == 0, done.stderr
    assert any(c["title"] == "Canteen" for c in json.loads(done.stdout)["citations"])


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


# -- command-line commands beside each other: readers share, a writer is alone ----------------------

HOLD = """
import sys
from pathlib import Path
from vectorstore.chroma import store_session
with store_session(Path(sys.argv[1]), sys.argv[2], write=sys.argv[3] == "write"):
    print("held", flush=True)
    sys.stdin.read()
"""


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[Any]:
    """Start another process that holds the embedded store at `chroma` (as an `enclave ask` or an
    `enclave ingest` holds it while it runs) until the test lets it go."""
    started: list[subprocess.Popen[str]] = []

    def hold(chroma: Path, role: str, write: bool) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-c", HOLD, str(chroma), role, "write" if write else "read"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[2],
        )  # fmt: skip
        started.append(proc)
        assert proc.stdout is not None and proc.stdout.readline() == "held\n"
        return proc

    yield hold
    for proc in started:
        proc.kill()
        proc.wait()


def release(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.close()
    assert proc.wait(timeout=30) == 0


def test_command_line_readers_share_the_store_and_a_writer_is_alone(tmp_path: Path, holder: Any) -> None:
    from vectorstore.chroma import StoreInUse, store_session

    chroma = tmp_path / "var" / "chroma"
    reader = holder(chroma, "enclave ask", write=False)
    with store_session(chroma, "enclave ask", write=False):  # readers side by side
        pass
    with (
        pytest.raises(StoreInUse) as refused,
        store_session(chroma, "enclave ingest", True, readers_wait_s=1),
    ):
        pytest.fail("a writer got the store while another process read it")
    assert "is being read by another Enclave command" in str(refused.value)
    release(reader)

    writer = holder(chroma, "enclave ingest", write=True)
    for write in (False, True):
        with pytest.raises(StoreInUse) as refused, store_session(chroma, "enclave ask", write):
            pytest.fail("the store was had beside a writer")
        message = str(refused.value)
        assert f"in use by `enclave ingest` (pid {writer.pid}, since " in message, message
        assert "Try again when it has finished" in message and "store.mode: http" in message
    release(writer)
    with store_session(chroma, "enclave ingest", write=True):  # free again
        pass


def test_an_ask_beside_a_command_line_ingest_is_refused_and_an_ingest_waits_for_an_ask(
    env: dict[str, str], tmp_path: Path, holder: Any
) -> None:
    docs = write(tmp_path / "docs", "canteen.md", "# Canteen\n\nThe canteen serves soup on Mondays.\n")
    assert enclave(env, "ingest", str(docs), "--groups", "staff").returncode == 0
    chroma = Path(env["ENCLAVE_DATA_DIR"]) / "chroma"
    # The ingest held the store exclusively: only an exclusive holder writes itself into the file.
    owner = json.loads((chroma.parent / "chroma.owner.lock").read_text())
    assert owner["role"] == "enclave ingest" and owner["pid"] != os.getpid()
    added = subprocess.run(
        [ENCLAVE, "users", "add", "ann", "--groups", "staff", "--password-stdin"],
        env=env, input="correct horse battery\n", capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr

    # An ask while an ingest writes the store is refused, naming the ingest.
    writer = holder(chroma, "enclave ingest", write=True)
    refused = enclave(env, "ask", "What does the canteen serve on Mondays?", "--user", "ann")
    assert refused.returncode == 1
    assert f"in use by `enclave ingest` (pid {writer.pid}" in refused.stderr, refused.stderr
    release(writer)

    # An ingest that starts while an ask reads waits for it, then runs.
    reader = holder(chroma, "enclave ask", write=False)
    more = write(tmp_path / "more", "parking.md", "# Parking\n\nVisitors park on level two.\n")
    ingest = subprocess.Popen(
        [ENCLAVE, "ingest", str(more), "--groups", "staff", "--json"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert ingest.stderr is not None
        said = []  # its log, up to the line that says it waits ('' if it ended instead)
        while not said or not (said[-1] == "" or "waiting up to 30 s for other Enclave commands" in said[-1]):
            said.append(ingest.stderr.readline())
        assert said[-1], "".join(said)
        assert ingest.poll() is None
        release(reader)
        out, err = ingest.communicate(timeout=300)
    finally:
        if ingest.poll() is None:
            ingest.kill()
    assert ingest.returncode == 0, err
    assert json.loads(out)["counts"]["new"] == 1
    answered = enclave(env, "ask", "Where do visitors park?", "--user", "ann", "--json")
    assert answered.returncode == 0, answered.stderr
    assert any(c["title"] == "Parking" for c in json.loads(answered.stdout)["citations"])
