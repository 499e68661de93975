"""While `enclave serve` holds the embedded store, the command line's `enclave ingest` and
`enclave docs remove|reindex` are carried out by the web UI over its admin channel (a unix socket
under the data folder that only the web UI's user and root may use): same progress, exit codes
and --json reports as the command line's own run, staff answered while an ingest runs, other
uids and malformed requests refused. Without a web UI the command line runs them itself.

Real processes throughout: `enclave serve`, the `enclave` command, questions over HTTP."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import sqlite3
import stat
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from gradio_client import Client

from core.errors import AccessDenied
from core.settings import Settings
from core.users import UserStore
from enclave import admin_channel
from enclave.store_commands import RemoveArgs
from tests.support.web_ui import ENCLAVE, WebUI, enclave, web_ui

pytestmark = pytest.mark.slow

PASSWORD = "a long enough password"
THROWAWAY_UID = 54321  # no user has it


@dataclass
class Site:
    root: Path
    env: dict[str, str]
    web: WebUI

    @property
    def data(self) -> Path:
        return Path(self.env["ENCLAVE_DATA_DIR"])

    @property
    def socket(self) -> Path:
        return self.data / "run" / "admin.sock"

    def folder(self, name: str, files: dict[str, str | bytes]) -> Path:
        folder = self.root / name
        folder.mkdir()
        for file, content in files.items():
            target = folder / file
            if isinstance(content, bytes):
                target.write_bytes(content)
            else:
                target.write_text(content, encoding="utf-8")
        return folder

    def ask(self, question: str) -> dict[str, Any]:
        client = Client(self.web.url, auth=("ann", PASSWORD), verbose=False, analytics_enabled=False)
        answer: dict[str, Any] = client.predict(question, api_name="/ask")
        return answer

    def docs(self) -> dict[str, dict[str, Any]]:
        listed = enclave(self.env, "docs", "list", "--json")
        assert listed.returncode == 0, listed.stderr
        return {Path(d["paths"][0]).name: d for d in json.loads(listed.stdout) if d["paths"]}


def environment(data: Path, models_cache: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENCLAVE_")}
    env.update(
        {
            "ENCLAVE_DATA_DIR": str(data),
            "ENCLAVE_NETWORK__GUARD": "strict",
            "ENCLAVE_EMBEDDING__CACHE_DIR": str(models_cache),  # the run's onnx-int8 export
        }
    )
    return env


@pytest.fixture(scope="module")
def site(models_cache: Path) -> Iterator[Site]:
    """A data folder with one document (the canteen, for staff) and one staff user, ann, and the
    web UI running on it with the default settings (parsing in parser processes). In a folder of
    its own that another uid may pass through (pytest's are closed to others), so that the uid
    test's refusals come from the channel's own folder and socket."""
    root = Path(tempfile.mkdtemp(prefix="enclave-channel-"))
    root.chmod(0o711)
    try:
        env = environment(root / "var", models_cache)
        first = root / "first"
        first.mkdir()
        (first / "canteen.md").write_text(
            "# Canteen\n\nThe canteen serves soup on Mondays.\n", encoding="utf-8"
        )
        done = enclave(env, "ingest", str(first), "--groups", "staff")
        assert done.returncode == 0, done.stderr
        UserStore(root / "var" / "users.json").add("ann", PASSWORD, "staff", ("staff",))
        with web_ui(env, root / "serve.log") as web:
            yield Site(root, env, web)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def cited(answer: dict[str, Any]) -> set[str]:
    return {Path(c["source"]).name for c in answer["citations"]}


def without_timing(text: str) -> str:
    return re.sub(r"; \d+\.\d s$", "; N s", text, flags=re.MULTILINE)


def comparable(report: dict[str, Any]) -> dict[str, Any]:
    """A report without what differs by run: its duration, who started it, its audit record."""
    assert set(report["started_by"]) == {"user", "uid", "pid", "via"}, report["started_by"]
    return {k: v for k, v in report.items() if k not in ("seconds", "started_by", "audit_id")}


def test_an_ingest_beside_the_web_ui_is_carried_out_by_it(site: Site) -> None:
    folder = site.folder("parking", {"parking.md": "# Parking\n\nVisitors park on level two.\n"})
    done = enclave(site.env, "ingest", str(folder), "--groups", "staff")
    assert done.returncode == 0, done.stderr
    # Progress as the command line's own run prints it (stderr is no terminal: one line a file).
    assert f"INFO ingest.pipeline: [1/1] new {folder / 'parking.md'}" in done.stderr, done.stderr
    assert done.stdout.startswith("files: 1 new, 0 changed"), done.stdout
    assert "`enclave ingest` for root (uid 0, pid " in site.web.log()

    assert site.docs()["parking.md"]["groups"] == ["staff"]
    assert "parking.md" in cited(site.ask("Where do visitors park?"))
    # The admin page's last report says who started it, and how.
    last = json.loads((site.data / "reports" / "last-ingest.json").read_text())
    assert last["started_by"]["via"] == "admin channel" and last["started_by"]["uid"] == 0
    assert last["started_by"]["pid"] != site.web.pid


def test_reports_exit_codes_and_failures_are_those_of_the_command_line_run(
    site: Site, tmp_path: Path, models_cache: Path
) -> None:
    folder = site.folder(
        "mixed",
        {"rota.md": "# Rota\n\nThe night shift starts at 22:00.\n", "broken.pdf": b"%PDF-1.4 not a real pdf"},
    )
    alone = environment(tmp_path / "var", models_cache)  # a data folder no web UI runs on
    runs: dict[str, list[subprocess.CompletedProcess[str]]] = {}
    for name, env in (("through the web UI", site.env), ("in-process", alone)):
        first = enclave(env, "ingest", str(folder), "--groups", "staff")
        again = enclave(
            env, "ingest", str(folder), "--groups", "staff", "--json", "--report", str(tmp_path / name)
        )
        runs[name] = [first, again]
    served, local = runs["through the web UI"], runs["in-process"]

    for a, b in zip(served, local):
        assert a.returncode == b.returncode == 1, (a.stderr, b.stderr)  # a file failed
    assert without_timing(served[0].stdout) == without_timing(local[0].stdout)
    failed = [line for line in served[0].stderr.splitlines() if line.startswith("failed: ")]
    assert failed and failed == [line for line in local[0].stderr.splitlines() if line.startswith("failed: ")]
    assert f"WARNING ingest.pipeline: {folder / 'broken.pdf'}: " in served[0].stderr, served[0].stderr

    report, report_here = json.loads(served[1].stdout), json.loads(local[1].stdout)
    assert comparable(report) == comparable(report_here)
    assert report["counts"] == {**report["counts"], "unchanged": 1, "failed": 1}
    assert (
        report["started_by"]["via"] == "admin channel" and report_here["started_by"]["via"] == "command line"
    )
    # --report FILE is written by the command, as the report it printed.
    assert json.loads((tmp_path / "through the web UI").read_text()) == report


def test_docs_remove_and_reindex_are_carried_out_by_the_web_ui(site: Site) -> None:
    folder = site.folder("leave", {"leave.md": "# Leave\n\nStaff get 27 days of annual leave.\n"})
    assert enclave(site.env, "ingest", str(folder), "--groups", "staff").returncode == 0
    doc_id = site.docs()["leave.md"]["doc_id"]

    reindexed = enclave(site.env, "docs", "reindex", str(folder / "leave.md"), "--json")
    assert reindexed.returncode == 0, reindexed.stderr
    (report,) = json.loads(reindexed.stdout)
    assert report["groups"] == ["staff"] and report["counts"]["changed"] == 1
    assert report["started_by"]["via"] == "admin channel"
    lexical = enclave(site.env, "docs", "reindex", "--lexical")
    assert lexical.returncode == 0, lexical.stderr
    assert lexical.stdout == "lexical index in step with Chroma: 0 chunks copied or removed\n"

    # A path relative to the caller's folder, as on the command line.
    removed = enclave(site.env, "docs", "remove", "leave/leave.md", cwd=site.root)
    assert removed.returncode == 0, removed.stderr
    assert removed.stdout.startswith(f"removed {doc_id} (1 chunks) held by 1 file(s) (audit record ")
    assert "leave.md" not in site.docs()
    assert "leave.md" not in cited(site.ask("How many days of annual leave do staff get?"))

    unknown = enclave(site.env, "docs", "remove", "no-such-document")
    assert unknown.returncode == 1
    assert (
        unknown.stderr == "error: no document with id or path 'no-such-document': see `enclave docs list`\n"
    )


def test_staff_get_answers_while_an_ingest_runs(site: Site) -> None:
    """The ingest is held inside a store write: the lexical index's write lock is taken here
    first, so the ingest stores its batch in Chroma and then waits for the lock (SQLite waits
    up to 60 s). Meanwhile a question is answered, from both indexes, and the ingest is still
    running; a second caller is told it runs."""
    folder = site.folder(
        "handbook",
        {
            "heating.md": "# Heating\n\nThe heating comes on in October.\n",
            "bikes.md": "# Bikes\n\nBikes are kept in the basement shed.\n",
            "keys.md": "# Keys\n\nLost keys are replaced by reception.\n",
        },
    )
    lexical = sqlite3.connect(site.data / "lexical.sqlite3", isolation_level=None)
    lexical.execute("BEGIN IMMEDIATE")
    ingest = subprocess.Popen(
        [ENCLAVE, "ingest", str(site.root / "first"), str(folder), "--groups", "staff"],
        env=site.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert ingest.stderr is not None
        said = []  # up to its first file's progress: the canteen, walked first and unchanged
        while not said or not (said[-1] == "" or " unchanged " in said[-1]):
            said.append(ingest.stderr.readline())
        assert said[-1], "".join(said)

        answer = site.ask("What does the canteen serve on Mondays?")
        assert "soup" in answer["answer"] and "canteen.md" in cited(answer), answer
        assert ingest.poll() is None, "the ingest ended before the answer came"

        busy = enclave(site.env, "docs", "remove", str(site.root / "first" / "canteen.md"))
        assert busy.returncode == 1
        assert f"is already running `enclave ingest` for root (uid 0, pid {ingest.pid}) since " in busy.stderr
    finally:
        lexical.execute("ROLLBACK")
        lexical.close()
        out, err = ingest.communicate(timeout=600)
    assert ingest.returncode == 0, err
    assert "files: 3 new, 0 changed, 0 linked, 1 unchanged" in out, out
    assert "canteen.md" in site.docs()  # the busy remove removed nothing
    assert "bikes.md" in cited(site.ask("Where are bikes kept?"))


def exchange(path: Path, payload: bytes) -> list[dict[str, Any]]:
    """Send `payload` on the channel as it is; the events the web UI answers with."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(120)
        conn.connect(str(path))
        conn.sendall(payload)
        conn.shutdown(socket.SHUT_WR)
        with conn.makefile("rb") as stream:
            return [json.loads(line) for line in stream.read().splitlines() if line]


def request(command: Any, args: Any, **fields: Any) -> bytes:
    body = {"protocol": 1, "command": command, "args": args, "cwd": "/", **fields}
    return json.dumps(body).encode() + b"\n"


INGEST_ARGS = {
    "paths": ["/nonexistent"],
    "groups": "staff",
    "acl": None,
    "prune": False,
    "dry_run": False,
    "force": False,
    "as_json": False,
}


REFUSALS = [
    (b"ingest everything please\n", "the request is not valid JSON"),
    (b'["ingest"]\n', "the request must be a JSON object"),
    (request("users add", {}), 'unknown command "users add": the admin channel runs only `enclave ingest`'),
    (request("ingest", INGEST_ARGS, protocol=99), "the request speaks protocol 99, this server 1"),
    (request("ingest", INGEST_ARGS, user="root"), 'unknown field "user" in the request'),
    (request("ingest", {**INGEST_ARGS, "report_file": "/etc/x"}), 'takes no argument "report_file"'),
    (request("ingest", {k: v for k, v in INGEST_ARGS.items() if k != "paths"}), 'needs argument "paths"'),
    (
        request("ingest", {**INGEST_ARGS, "prune": "yes"}),
        "argument 'prune' of `enclave ingest` must be true or false",
    ),
    (
        request("ingest", {**INGEST_ARGS, "paths": "/srv"}),
        "argument 'paths' of `enclave ingest` must be a list",
    ),
    (
        request("docs remove", {"ref": "a\u0000b"}),
        "argument 'ref' of `enclave docs remove` holds a NUL character",
    ),
    (request("docs remove", {"ref": "x"}, cwd="relative/folder"), "cwd must be an absolute path"),
    (b"x" * (admin_channel.MAX_LINE + 10), f"the request is longer than {admin_channel.MAX_LINE} bytes"),
]


@pytest.mark.parametrize(("payload", "said"), REFUSALS, ids=[said[:40] for _, said in REFUSALS])
def test_a_malformed_or_unknown_request_is_refused_naming_what_is_wrong(
    site: Site, payload: bytes, said: str
) -> None:
    before = site.docs()
    events = exchange(site.socket, payload)
    assert len(events) == 1 and events[0]["event"] == "error", events
    assert events[0]["code"] == 2 and events[0]["message"].startswith("refused: ")
    assert said in events[0]["message"], events[0]["message"]
    assert site.docs() == before


class Silent:
    """A Console that keeps nothing (the refusal comes before anything is said)."""

    files = None

    def echo(self, text: str, err: bool = False) -> None:
        pass


def as_another_uid(action: Callable[[], str]) -> str:
    """What `action` returns when run by a process of THROWAWAY_UID (and no groups): a forked
    child of this root test that drops to it."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: only syscalls and the already imported modules, then _exit
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(THROWAWAY_UID)
            os.setuid(THROWAWAY_UID)
            said = action()
        except BaseException as exc:
            said = f"raised {type(exc).__name__}: {exc}"
        data = said.encode()
        while data:
            data = data[os.write(write, data) :]
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        said = pipe.read().decode()
    os.waitpid(pid, 0)
    return said


@pytest.mark.skipif(os.geteuid() != 0, reason="becoming another uid needs root")
def test_only_the_web_uis_user_and_root_may_use_the_channel(site: Site) -> None:
    folder = site.socket.parent
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700 and folder.stat().st_uid == os.getuid()
    assert stat.S_ISSOCK(site.socket.stat().st_mode) and stat.S_IMODE(site.socket.stat().st_mode) == 0o600
    before = site.docs()
    canteen = str(site.root / "first" / "canteen.md")
    removal = request("docs remove", {"ref": canteen})

    def connect() -> str:
        try:
            return json.dumps(exchange(site.socket, removal))
        except OSError as exc:
            return f"connect: {exc.strerror}"

    def command_line() -> str:
        settings = Settings(data_dir=site.data)
        try:
            admin_channel.call(settings, "docs remove", RemoveArgs(canteen), Silent())
        except AccessDenied as exc:
            return str(exc)
        return "not refused"

    # The folder (0700) and the socket (0600) keep another user out, and the command says why.
    assert as_another_uid(connect) == "connect: Permission denied"
    refused = as_another_uid(command_line)
    assert "its admin channel" in refused and "is open only to the user it runs as, and root" in refused, (
        refused
    )

    # With the permissions opened up (a mistake), the web UI still refuses the uid the kernel names.
    folder.chmod(0o711)
    site.socket.chmod(0o666)
    try:
        events = json.loads(as_another_uid(connect))
    finally:
        folder.chmod(0o700)
        site.socket.chmod(0o600)
    assert len(events) == 1 and events[0]["event"] == "error" and events[0]["code"] == 1, events
    assert events[0]["message"] == (
        f"refused: uid {THROWAWAY_UID} (uid-{THROWAWAY_UID}) may not use the admin channel: only the "
        "user the web UI runs as, root (uid 0), may"
    )
    assert f"admin channel: refused uid {THROWAWAY_UID}" in site.web.log()
    assert site.docs() == before


def test_without_a_web_ui_the_command_line_runs_it_itself(tmp_path: Path, models_cache: Path) -> None:
    env = environment(tmp_path / "var", models_cache)
    # The socket a killed web UI left behind: nobody listens on it.
    stale = tmp_path / "var" / "run" / "admin.sock"
    stale.parent.mkdir(parents=True, mode=0o700)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as left:
        left.bind(str(stale))
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "canteen.md").write_text("# Canteen\n\nSoup on Mondays.\n", encoding="utf-8")

    done = enclave(env, "ingest", str(folder), "--groups", "staff", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["counts"]["new"] == 1
    assert report["started_by"]["via"] == "command line" and report["started_by"]["uid"] == os.getuid()
