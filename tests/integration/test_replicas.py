"""Two app replicas as real OS processes (`enclave serve` on two ports) sharing one Chroma server
(`chroma run`), one PostgreSQL audit log and one data folder (users, session key, sign-in store,
lexical index). The corpus is ingested once through the CLI; questions go alternately to both;
both give the same answers and citations, each answer is one record in the one audit chain, the
chain verifies, and a session cookie from one replica is honoured by the other."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from gradio_client import Client

from audit.log import AuditRecord
from core.settings import Settings, load_settings
from core.users import UserStore
from enclave import wiring
from tests.support.chroma_server import free_port
from ui.sessions import COOKIE

pytestmark = pytest.mark.slow  # real servers and processes

ENCLAVE = str(Path(sys.executable).with_name("enclave"))
PASSWORD = "a long enough password"
START_TIMEOUT_S = 180.0
QUESTIONS = [
    ("alice", "How much does a staff parking permit cost?"),
    ("fiona", "What is the capital budget for the new crane?"),
    ("alice", "What is the capital budget for the new crane?"),
    ("fiona", "When does the canteen serve lentil soup?"),
]


@dataclass
class Replica:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]


@dataclass
class Cluster:
    env: dict[str, str]
    replicas: list[Replica]

    def enclave(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [ENCLAVE, *args],
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    def audit_records(self) -> list[AuditRecord]:
        """Every record of the shared PostgreSQL log, oldest first (read as a replica would)."""
        overrides = {k: v for k, v in self.env.items() if k.startswith("ENCLAVE_")}
        with _environment(overrides):
            settings = load_settings(None)
        log = wiring.build_audit(settings)
        try:
            return list(reversed(log.last(10_000)))
        finally:
            log.close()


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    before = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in before.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=20)


def wait_until_serving(replica: Replica) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if replica.process.poll() is not None:
            raise AssertionError(f"replica on {replica.url} exited:\n{replica.log_tail()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{replica.url}login", timeout=2).status_code == 200:
                return
        time.sleep(0.5)
    raise AssertionError(
        f"replica on {replica.url} did not answer within {START_TIMEOUT_S:.0f} s:\n{replica.log_tail()}"
    )


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, chroma_server: Any, postgres_server: Any, models_cache: Path
) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("replicas")
    files = {
        "public/parking.md": "# Parking\n\nStaff permits for the blue car park cost 12 euros per month.\n",
        "public/canteen.md": "# Canteen\n\nThe canteen serves lentil soup on Tuesdays and closes at 14:00.\n",
        "finance/crane.md": "# Crane budget\n\nThe capital budget for the new crane at berth 7 is 4.2 million euros.\n",
    }
    for name, text in files.items():
        (root / "docs" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "docs" / name).write_text(text, encoding="utf-8")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("ENCLAVE_")},
        "ENCLAVE_DATA_DIR": str(root / "var"),
        "ENCLAVE_STORE__MODE": "http",
        "ENCLAVE_STORE__HOST": chroma_server.host,
        "ENCLAVE_STORE__PORT": str(chroma_server.port),
        "ENCLAVE_STORE__COLLECTION_PREFIX": chroma_server.fresh_prefix(),
        "ENCLAVE_AUDIT__BACKEND": "postgres",
        "ENCLAVE_AUDIT__DSN": postgres_server.fresh_dsn(),
        "ENCLAVE_INGEST__PARSE_TIMEOUT_S": "0",
        "ENCLAVE_EMBEDDING__CACHE_DIR": str(models_cache),  # the run's onnx-int8 export
    }
    (root / "acl.yaml").write_text("docs/public: [public]\ndocs/finance: [finance]\n", encoding="utf-8")
    cluster = Cluster(env, [])
    done = cluster.enclave("ingest", str(root / "docs"), "--acl", str(root / "acl.yaml"))  # once, for both
    assert done.returncode == 0, done.stderr
    users = UserStore(Settings(data_dir=root / "var").users_path)  # the one users file both replicas read
    users.add("alice", PASSWORD, "staff", ("public",))
    users.add("fiona", PASSWORD, "staff", ("finance", "public"))
    try:
        for i in range(2):
            port = free_port()
            log_path = root / f"replica-{i}.log"
            with log_path.open("wb") as log:
                process = subprocess.Popen(
                    [ENCLAVE, "serve", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL, start_new_session=True,
                )  # fmt: skip
            cluster.replicas.append(Replica(f"http://127.0.0.1:{port}/", process, log_path))
        for replica in cluster.replicas:
            wait_until_serving(replica)
        yield cluster
    finally:
        for replica in cluster.replicas:
            stop(replica.process)


def ask(client: Client, question: str) -> dict[str, Any]:
    result: dict[str, Any] = client.predict(question, api_name="/ask")
    return result


def comparable(answer: dict[str, Any]) -> dict[str, Any]:
    """An answer without what differs by request (its audit record, its conversation)."""
    return {k: v for k, v in answer.items() if k not in ("audit_id", "conversation_id")}


def test_replicas_give_the_same_answers_into_one_audit_chain(cluster: Cluster) -> None:
    a, b = cluster.replicas
    clients = {
        (url, user): Client(url, auth=(user, PASSWORD), verbose=False, analytics_enabled=False)
        for url in (a.url, b.url)
        for user in ("alice", "fiona")
    }
    answers: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    ids: list[int] = []
    for round_ in range(2):  # alternate replicas question by question, the other way round the second time
        for i, (user, question) in enumerate(QUESTIONS):
            url = (a.url, b.url)[(i + round_) % 2]
            answer = ask(clients[(url, user)], question)
            answers.setdefault((user, question), {})[url] = answer
            ids.append(int(answer["audit_id"]))

    for (user, question), by_replica in answers.items():
        from_a, from_b = comparable(by_replica[a.url]), comparable(by_replica[b.url])
        assert from_a == from_b, f"{user} asked {question!r}: the replicas answered differently"
    found = {key: by_replica[a.url] for key, by_replica in answers.items()}
    for key, expected, source in [
        (("alice", QUESTIONS[0][1]), "12 euros", "parking.md"),
        (("fiona", QUESTIONS[1][1]), "4.2 million", "crane.md"),
        (("fiona", QUESTIONS[3][1]), "lentil soup", "canteen.md"),
    ]:
        assert expected in found[key]["answer"], found[key]
        assert any(c["source"].endswith(source) for c in found[key]["citations"]), found[key]
    not_for_alice = found[("alice", QUESTIONS[2][1])]  # finance's document: not alice's to read
    assert "4.2 million" not in not_for_alice["answer"]
    assert all(not c["source"].endswith("crane.md") for c in not_for_alice["citations"])

    records = cluster.audit_records()
    answered = [r for r in records if r.event == "answer"]
    assert sorted(r.id for r in answered) == sorted(ids), "not exactly one audit record per request"
    by_id = {r.id: r for r in answered}
    for n, (user, question) in enumerate(QUESTIONS * 2):
        assert (by_id[ids[n]].user, by_id[ids[n]].question) == (user, question)
    assert [r.id for r in records] == list(range(records[0].id, records[0].id + len(records))), (
        "gaps in the chain"
    )
    signed_in = sorted(r.user for r in records if r.event == "sign_in")  # one per client, on either replica
    assert signed_in == ["alice", "alice", "fiona", "fiona"]

    verified = cluster.enclave("audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert f"audit log intact: {len(records)} records verified" in verified.stdout


def test_a_session_from_one_replica_is_honoured_by_the_other(cluster: Cluster) -> None:
    a, b = cluster.replicas
    with httpx.Client(base_url=a.url) as http:
        signed_in = http.post("/login", data={"username": "fiona", "password": PASSWORD})
    assert signed_in.status_code == 200, signed_in.text
    cookie = signed_in.cookies[COOKIE]

    with httpx.Client(base_url=b.url) as http:
        assert http.get("/", headers={"accept": "text/html"}).status_code == 303  # B: no cookie, sign in
        page = http.get("/", headers={"accept": "text/html"}, cookies={COOKIE: cookie})
    assert page.status_code == 200, "replica B refused replica A's session"

    on_b = Client(b.url, headers={"Cookie": f"{COOKIE}={cookie}"}, verbose=False, analytics_enabled=False)
    answer = ask(on_b, "What is the capital budget for the new crane?")
    assert "4.2 million" in answer["answer"]  # fiona's groups, from A's sign-in
    record = next(r for r in cluster.audit_records() if r.id == answer["audit_id"])
    assert record.user == "fiona"

    with httpx.Client(base_url=b.url, cookies={COOKIE: cookie}) as http:  # signing out on B ends it on A too
        assert http.post("/logout").status_code in (200, 303)
    with httpx.Client(base_url=a.url) as http:
        after = http.get("/", headers={"accept": "text/html"}, cookies={COOKIE: cookie})
    assert after.status_code == 303, "a session signed out on B still works on A"


def test_a_due_sync_runs_on_exactly_one_replica(cluster: Cluster) -> None:
    """Both replicas' schedulers find a new source due at the same time (the test holds the source's
    lock until each says so), then race for it: one syncs it, the other sees it synced; one audit
    record, one run in the source's state (issue 17)."""
    import fcntl

    data = Path(cluster.env["ENCLAVE_DATA_DIR"])
    folder = data.parent / "rotas"
    folder.mkdir()
    (folder / "night.md").write_text("# Night rota\n\nThe night rota changes on Sundays.\n", encoding="utf-8")
    lock_path = data / "sources" / "rotas" / "sync.lock"
    lock_path.parent.mkdir(parents=True)
    waiting = "source rotas is due, but another sync of it or another ingest"
    with lock_path.open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        added = cluster.enclave(
            "sources", "add", "rotas", "--location", str(folder), "--groups", "rota-test", "--schedule", "1h"
        )
        assert added.returncode == 0, added.stderr
        deadline = time.monotonic() + START_TIMEOUT_S
        while not all(waiting in r.log_path.read_text(errors="replace") for r in cluster.replicas):
            assert time.monotonic() < deadline, [r.log_tail() for r in cluster.replicas]
            time.sleep(0.5)
    # Released: both try again within seconds; each ends having synced it or having seen it synced.
    outcomes = ("source rotas: synced (", "source rotas: synced by another process")
    deadline = time.monotonic() + START_TIMEOUT_S
    while not all(
        any(o in r.log_path.read_text(errors="replace") for o in outcomes) for r in cluster.replicas
    ):
        assert time.monotonic() < deadline, [r.log_tail() for r in cluster.replicas]
        time.sleep(0.5)
    ran = [r for r in cluster.replicas if outcomes[0] in r.log_path.read_text(errors="replace")]
    assert len(ran) == 1, [r.log_tail() for r in cluster.replicas]

    synced = [r for r in cluster.audit_records() if r.event == "source_sync" and r.data["source"] == "rotas"]
    assert len(synced) == 1 and synced[0].user == "schedule" and synced[0].error is None
    assert [row["path"] for row in synced[0].data["added"]] == ["night.md"]
    state = json.loads((data / "sources" / "rotas" / "status.json").read_text())
    assert state["last"]["result"] == "ok" and state["running"] is None
    assert state["last"]["pid"] == ran[0].process.pid
    verified = cluster.enclave("audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
