"""Load: N simulated users against the real app and the real vLLM, then the same load on vLLM alone.

    .venv/bin/python bench/load.py [--users 50] [--duration 120] [--answers 32[,8,...]]
        [--concurrent-events 8] [--queue-max-size 512] [--vllm-max-num-seqs 32]
        [--work-dir DIR] [--output FILE] [--quick]

Everything runs on 127.0.0.1. The LLM is real vLLM (CPU build, from .venv-vllm) serving the tiny
scripted model the tests build (tests/support/tiny_model.py: a DeepSeek-R1-style reasoning model
whose greedy output is a fixed ~30-token reasoning and answer, whatever the prompt), so the
figures measure Enclave and the serving path, not a real model's speed. The app is `enclave
serve` in its own process, on a data folder holding the bundled demo corpus (`enclave demo
--no-serve`, incremental: kept in --work-dir between runs) and N staff users of group `public`.

Each simulated user signs in (POST /login, the session cookie), then at least once and until the
time is up (counted from the start, sign-ins included; requests under way are finished): opens
a fresh page session, asks one of QUESTIONS through the chat event exactly as the page's
JavaScript does (POST /gradio_api/queue/join, then the /gradio_api/queue/data event stream),
reads the answer to its last token, and gives it a thumb (the Chatbot's like event, which writes
a feedback record). Times are taken in the client: time to first token is the first streamed
update that shows answer text (reasoning is hidden by default, so the first answer token after
it); time to last token is the event's completion. For every --answers value the app is
restarted with `ui.concurrent_answers` set to it, and one app phase runs.

Then the direct phase: the same number of concurrent clients for the same time send vLLM the very
prompts the app sent (read back from the audit records, `prompt`, with the same max_tokens and
temperature), streaming; its first token is the first answer (content) delta. Overhead = app
minus direct, at the same percentile; the ratio is app / direct.

Checks, each reported, and the exit status 1 if any fails: no request failed; every request
shows an audit record id and that record is an `answer` of that user for that question, none
shared; the answer records written during the phase are exactly those requests; every thumb
is one `feedback` record on its answer; `enclave audit verify` passes on the whole log.
Timings are never asserted by tests; they are recorded here (bench/results/load-*.json).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make the project importable
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import psutil  # noqa: E402

from bench.machine import loadavg, machine  # noqa: E402

RESULTS = ROOT / "bench" / "results"
ENCLAVE = Path(sys.executable).with_name("enclave")
PASSWORD = "load-bench-password-2026"
BUSY_LOADAVG = 1.5
REQUEST_TIMEOUT_S = 600.0
START_TIMEOUT_S = 180.0
MAX_TOKENS = 256
# Answerable from the demo corpus's public documents, so each one goes to the LLM.
QUESTIONS = (
    "What are the opening hours of the Pass Office?",
    "When is the staff canteen open?",
    "How far ahead must a berth application be submitted?",
    "What does a late cancellation of a berth booking cost?",
    "What is the speed limit on quay aprons?",
    "Who leads the Harbourview Port Authority?",
    "What are the core hours for staff on flexible working?",
    "Which public holidays close Harbour House in 2026?",
)
PACKAGES = ("gradio", "fastapi", "uvicorn", "httpx", "chromadb", "torch", "sentence-transformers")


# -- figures ----------------------------------------------------------------------------------------


def percentiles(values: Sequence[float]) -> dict[str, float | None]:
    """p50/p95/p99 (inclusive method: with few samples p99 is near the maximum), in seconds."""
    if not values:
        return {"p50": None, "p95": None, "p99": None, "n": 0}  # type: ignore[dict-item]
    if len(values) == 1:
        v = round(values[0], 4)
        return {"p50": v, "p95": v, "p99": v, "n": 1}
    q = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50": round(q[49], 4), "p95": round(q[94], 4), "p99": round(q[98], 4), "n": len(values)}


def machine_with_vllm() -> dict[str, Any]:
    """The machine, and the vLLM version of the server venv."""
    info = machine(PACKAGES)
    versions = info["versions"]
    vllm_python = ROOT / ".venv-vllm" / "bin" / "python"
    if vllm_python.exists():
        found = subprocess.run(
            [str(vllm_python), "-c", "from importlib.metadata import version; print(version('vllm'))"],
            capture_output=True,
            text=True,
            check=False,
        )
        versions["vllm"] = found.stdout.strip() or None
    return info


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its descendants so far."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            t = proc.cpu_times()
            total += t.user + t.system
    return total


def rss_mib(pid: int) -> float:
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += proc.memory_info().rss
    return round(total / 2**20, 1)


# -- one request --------------------------------------------------------------------------------


@dataclass
class Request:
    user: str
    question: str
    started: float  # monotonic, client side
    queued_s: float | None = None  # until the queue started the event (process_starts)
    first_token_s: float | None = None
    last_token_s: float | None = None
    audit_id: int | None = None
    feedback_s: float | None = None
    feedback_ok: bool = False
    error: str | None = None
    warnings: list[str] = field(default_factory=list)


def apply_diff(value: Any, diff: Any) -> Any:
    """Gradio streams a generator's later outputs as edit lists against the previous ones."""
    from gradio_client.utils import apply_diff as _apply

    return _apply(value, diff)


def text_of(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    parts = content if isinstance(content, list) else []
    return "\n".join(str(p.get("text", "")) for p in parts if isinstance(p, dict) and p.get("type") == "text")


def answer_message(chat: Any) -> tuple[int, str] | None:
    """(index, text) of the answer body (an assistant message without a title) in a chat."""
    if not isinstance(chat, list):
        return None
    found = None
    for i, message in enumerate(chat):
        if isinstance(message, dict) and message.get("role") == "assistant" and not message.get("metadata"):
            found = (i, text_of(message))
    return found


def audit_id_shown(text: str) -> int | None:
    import re

    match = re.search(r"Audit record (\d+)", text)
    return int(match.group(1)) if match else None


class Page:
    """One page session of a signed-in user: events go through Gradio's queue as the browser's."""

    def __init__(self, http: httpx.AsyncClient, fn_ids: dict[str, int]) -> None:
        self.http = http
        self.fn_ids = fn_ids
        self.session = uuid.uuid4().hex

    async def event(
        self, api_name: str, data: list[Any], event_data: Any = None, on_message: Any = None
    ) -> tuple[bool, Any, list[str]]:
        """(success, final output data or error, warning toasts) of one event."""
        joined = await self.http.post(
            "/gradio_api/queue/join",
            json={
                "data": data,
                "fn_index": self.fn_ids[api_name],
                "session_hash": self.session,
                "event_data": event_data,
                "trigger_id": None,
            },
        )
        if not joined.is_success:
            return False, f"join {joined.status_code}: {joined.text[:200]}", []
        event_id = joined.json()["event_id"]
        toasts: list[str] = []
        async with self.http.stream(
            "GET", "/gradio_api/queue/data", params={"session_hash": self.session}
        ) as stream:
            if not stream.is_success:
                return False, f"stream {stream.status_code}", toasts
            async for line in stream.aiter_lines():
                if not line.startswith("data:"):
                    continue
                message = json.loads(line[5:])
                if message.get("event_id") != event_id:
                    continue
                kind = message.get("msg")
                if kind == "log" and message.get("level") in ("warning", "error"):
                    toasts.append(str(message.get("log")))
                if on_message is not None:
                    on_message(message)
                if kind == "process_completed":
                    output = message.get("output") or {}
                    if message.get("success"):
                        return True, output.get("data"), toasts
                    return False, str(output.get("error") or output)[:300], toasts
        return False, "the event stream ended before the event completed", toasts


async def one_question(http: httpx.AsyncClient, fn_ids: dict[str, int], user: str, question: str) -> Request:
    """Ask in a fresh page session, read to the last token, then thumb the answer."""
    page = Page(http, fn_ids)
    req = Request(user, question, time.monotonic())
    chat: Any = None  # None until the first streamed update, which carries whole values

    def watch(message: dict[str, Any]) -> None:
        nonlocal chat
        now = time.monotonic() - req.started
        kind = message.get("msg")
        if kind == "process_starts" and req.queued_s is None:
            req.queued_s = now
        if kind != "process_generating" or req.first_token_s is not None:
            return
        data = (message.get("output") or {}).get("data") or []
        if len(data) < 2:
            return
        # Later updates of a streaming event are edit lists against the previous values.
        chat = data[1] if chat is None else apply_diff(chat, data[1])
        found = answer_message(chat)
        if found and found[1].strip():
            req.first_token_s = now

    try:
        ok, data, toasts = await page.event("chat", [question, [], None], on_message=watch)
        req.warnings = toasts
        if not ok:
            req.error = f"chat: {data}"
            return req
        req.last_token_s = time.monotonic() - req.started
        final = data[1] if isinstance(data, list) and len(data) > 1 else None
        found = answer_message(final)
        if found is None:
            req.error = "chat: no answer message in the final chat"
            return req
        index, text = found
        req.audit_id = audit_id_shown(text)
        if req.first_token_s is None:  # the whole answer came in one update
            req.first_token_s = req.last_token_s
        if toasts:
            req.error = "chat warning: " + "; ".join(toasts)[:300]
            return req
        if req.audit_id is None:
            req.error = "chat: the answer shows no audit record"
            return req
        started = time.monotonic()
        ok, data, toasts = await page.event(
            "rate", [None], event_data={"index": index, "value": [], "liked": True}
        )
        req.feedback_s = time.monotonic() - started
        req.feedback_ok = ok and not toasts
        if not req.feedback_ok:
            req.error = f"feedback: {data if not ok else '; '.join(toasts)}"[:300]
    except (httpx.HTTPError, OSError, ValueError, KeyError) as exc:
        req.error = f"{type(exc).__name__}: {exc}"[:300]
    return req


# -- the app phase ------------------------------------------------------------------------------------


@dataclass
class SimUser:
    name: str
    signed_in_s: float | None = None
    error: str | None = None
    requests: list[Request] = field(default_factory=list)


async def run_user(
    url: str, user: SimUser, deadline: float, fn_ids: dict[str, int], offset: int, at_least: int = 0
) -> None:
    limits = httpx.Limits(max_connections=4, max_keepalive_connections=4)
    timeout = httpx.Timeout(REQUEST_TIMEOUT_S, connect=30.0)
    async with httpx.AsyncClient(base_url=url, timeout=timeout, limits=limits) as http:
        started = time.monotonic()
        try:
            signed = await http.post("/login", data={"username": user.name, "password": PASSWORD})
        except httpx.HTTPError as exc:
            user.error = f"sign-in: {type(exc).__name__}: {exc}"
            return
        if signed.status_code != 200 or "enclave_session" not in http.cookies:
            user.error = f"sign-in: HTTP {signed.status_code} {signed.text[:200]}"
            return
        user.signed_in_s = time.monotonic() - started
        i = offset
        while time.monotonic() < deadline or len(user.requests) < at_least:
            question = QUESTIONS[i % len(QUESTIONS)]
            i += 1
            user.requests.append(await one_question(http, fn_ids, user.name, question))


async def app_phase(
    url: str, users: list[str], duration: float, at_least: int = 0
) -> tuple[list[SimUser], float]:
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        signed = await http.post("/login", data={"username": users[0], "password": PASSWORD})
        signed.raise_for_status()
        config = (await http.get("/config")).json()
    fn_ids = {d["api_name"]: d["id"] for d in config["dependencies"] if d.get("api_name")}
    sims = [SimUser(name) for name in users]
    started = time.monotonic()
    deadline = started + duration
    await asyncio.gather(*(run_user(url, s, deadline, fn_ids, i, at_least) for i, s in enumerate(sims)))
    return sims, time.monotonic() - started


# -- the direct phase ---------------------------------------------------------------------------------


@dataclass
class DirectRequest:
    started: float
    first_token_s: float | None = None
    first_any_s: float | None = None  # first delta of any kind (reasoning included)
    last_token_s: float | None = None
    error: str | None = None


async def direct_one(http: httpx.AsyncClient, model: str, body: dict[str, Any]) -> DirectRequest:
    req = DirectRequest(time.monotonic())
    payload = {**body, "model": model, "stream": True}
    try:
        async with http.stream("POST", "/chat/completions", json=payload) as stream:
            if not stream.is_success:
                await stream.aread()
                req.error = f"HTTP {stream.status_code}: {stream.text[:200]}"
                return req
            async for line in stream.aiter_lines():
                if not line.startswith("data:"):
                    continue
                chunk = line[5:].strip()
                if chunk == "[DONE]":
                    break
                delta = (json.loads(chunk).get("choices") or [{}])[0].get("delta") or {}
                now = time.monotonic() - req.started
                if req.first_any_s is None and (
                    delta.get("reasoning") or delta.get("reasoning_content") or delta.get("content")
                ):
                    req.first_any_s = now
                if req.first_token_s is None and delta.get("content"):
                    req.first_token_s = now
        req.last_token_s = time.monotonic() - req.started
        if req.first_token_s is None:
            req.error = "no answer token streamed"
    except (httpx.HTTPError, OSError, ValueError) as exc:
        req.error = f"{type(exc).__name__}: {exc}"[:300]
    return req


async def direct_phase(
    base_url: str, model: str, bodies: list[dict[str, Any]], clients: int, duration: float
) -> tuple[list[DirectRequest], float]:
    done: list[DirectRequest] = []
    timeout = httpx.Timeout(REQUEST_TIMEOUT_S, connect=30.0)

    async def client(offset: int) -> None:
        async with httpx.AsyncClient(base_url=base_url, timeout=timeout) as http:
            i = offset
            while time.monotonic() < deadline:
                done.append(await direct_one(http, model, bodies[i % len(bodies)]))
                i += clients

    started = time.monotonic()
    deadline = started + duration
    await asyncio.gather(*(client(i) for i in range(clients)))
    return done, time.monotonic() - started


# -- the stack ------------------------------------------------------------------------------------------


def app_env(
    data_dir: Path, vllm_url: str, model: str, port: int, answers: int, args: argparse.Namespace
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENCLAVE_")}
    env.update(
        {
            "ENCLAVE_DATA_DIR": str(data_dir),
            "ENCLAVE_LLM__BASE_URL": vllm_url,
            "ENCLAVE_LLM__MODEL": model,
            # The tiny model's window is 2,048 tokens; the default 1,024 kept for the answer would
            # leave too little for the sources. Its scripted answer is ~30 tokens.
            "ENCLAVE_LLM__MAX_TOKENS": str(MAX_TOKENS),
            "ENCLAVE_UI__HOST": "127.0.0.1",
            "ENCLAVE_UI__PORT": str(port),
            "ENCLAVE_UI__CONCURRENT_ANSWERS": str(answers),
            "ENCLAVE_UI__CONCURRENT_EVENTS": str(args.concurrent_events),
            "ENCLAVE_UI__QUEUE_MAX_SIZE": str(args.queue_max_size),
            # Each simulated user asks again as soon as an answer ends, faster than a person: the
            # per-user question limit (ui.question_limit) would refuse them; throughput is measured.
            "ENCLAVE_UI__QUESTION_LIMIT": "0",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
        }
    )
    return env


def prepare_data(data_dir: Path, users: int) -> list[str]:
    """The demo corpus ingested (incremental) and `users` staff users of group public."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENCLAVE_")}
    env["ENCLAVE_DATA_DIR"] = str(data_dir)
    started = time.monotonic()
    done = subprocess.run(
        [str(ENCLAVE), "demo", "--no-serve"], env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(
            f"`enclave demo --no-serve` failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
        )
    print(f"demo corpus ready in {data_dir} ({time.monotonic() - started:.1f} s)", flush=True)
    from core.users import UserStore

    store = UserStore(data_dir / "users.json")
    names = [f"load{i:03d}" for i in range(users)]
    for name in names:
        if store.get(name) is None:
            store.add(name, PASSWORD, "staff", ("public",))
    return names


@contextlib.contextmanager
def running_app(data_dir: Path, env: dict[str, str], port: int, log_path: Path) -> Any:
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [str(ENCLAVE), "serve"], env=env, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                tail = log_path.read_text(errors="replace")[-3000:]
                raise SystemExit(f"`enclave serve` exited with {proc.returncode}:\n{tail}")
            try:
                if httpx.get(f"{url}/login", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(
                    f"`enclave serve` did not answer within {START_TIMEOUT_S:.0f} s; log {log_path}"
                )
            time.sleep(0.5)
        yield proc, url
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 15)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, 9)
                proc.wait(timeout=20)


# -- checks -----------------------------------------------------------------------------------------


def check_audit(data_dir: Path, sims: list[SimUser], first_new_id: int) -> dict[str, Any]:
    """Every request has exactly one audit record (and one feedback record); nothing else was written."""
    from audit import AuditLog, RecordFilter

    audit = AuditLog(data_dir / "audit.sqlite3")
    requests = [r for s in sims for r in s.requests]
    names = {s.name for s in sims}
    written = [
        r
        for r in audit.select(
            RecordFilter.of(event=["answer", "answer_error"]), limit=None, oldest_first=True
        )
        if r.id >= first_new_id and r.user in names
    ]
    by_id = {r.id: r for r in written}
    shown = [r.audit_id for r in requests if r.audit_id is not None]
    problems: list[str] = []
    if len(shown) != len(set(shown)):
        problems.append(f"{len(shown) - len(set(shown))} audit ids shown to more than one request")
    missing_id = [r for r in requests if r.audit_id is None]
    if missing_id:
        problems.append(f"{len(missing_id)} requests show no audit id")
    for r in requests:
        if r.audit_id is None:
            continue
        record = by_id.get(r.audit_id)
        if record is None:
            problems.append(
                f"request of {r.user} shows audit id {r.audit_id}, which is no answer record of the phase"
            )
        elif (record.user, record.question) != (r.user, r.question):
            problems.append(
                f"audit record {r.audit_id} is {record.user}/{record.question!r}, not {r.user}/{r.question!r}"
            )
    extra = sorted(set(by_id) - set(shown))
    if extra:
        problems.append(f"{len(extra)} answer records belong to no request: {extra[:10]}")
    feedback = audit.all_feedback(shown)
    thumbed = [r for r in requests if r.feedback_ok]
    bad_feedback = [r.audit_id for r in thumbed if len(feedback.get(r.audit_id or -1, [])) != 1]
    if bad_feedback:
        problems.append(
            f"{len(bad_feedback)} answers without exactly one feedback record: {bad_feedback[:10]}"
        )
    modes: dict[str, int] = {}
    for record in written:
        mode = str(record.data.get("mode"))
        modes[mode] = modes.get(mode, 0) + 1
    verify = subprocess.run(
        [str(ENCLAVE), "audit", "verify"],
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("ENCLAVE_")},
            "ENCLAVE_DATA_DIR": str(data_dir),
        },
        capture_output=True,
        text=True,
        check=False,
    )
    return {
        "requests": len(requests),
        "answer_records": len(written),
        "feedback_records": sum(len(v) for v in feedback.values()),
        "modes": modes,
        "one_record_per_request": not problems,
        "problems": problems[:20],
        "chain_verified": verify.returncode == 0,
        "verify_output": (verify.stdout + verify.stderr).strip()[-500:],
    }


def prompts_of(data_dir: Path, ids: list[int]) -> list[dict[str, Any]]:
    """The chat requests the app sent vLLM for these answers (their audit records keep them)."""
    from audit import AuditLog

    audit = AuditLog(data_dir / "audit.sqlite3")
    bodies = []
    for record_id in ids:
        record = audit.get(record_id)
        if record is None or not record.data.get("prompt"):
            continue
        s = record.data.get("settings") or {}
        bodies.append(
            {
                "messages": record.data["prompt"],
                "max_tokens": s.get("max_tokens", 1024),
                "temperature": s.get("temperature", 0.2),
            }
        )
    return bodies


def last_audit_id(data_dir: Path) -> int:
    from audit import AuditLog, RecordFilter

    newest = AuditLog(data_dir / "audit.sqlite3").select(RecordFilter.of(), limit=1)
    return newest[0].id if newest else 0


# -- one run ------------------------------------------------------------------------------------------


def summarise_app(sims: list[SimUser], wall: float) -> dict[str, Any]:
    requests = [r for s in sims for r in s.requests]
    good = [r for r in requests if r.error is None]
    errors: dict[str, int] = {}
    for r in requests:
        if r.error:
            key = r.error[:120]
            errors[key] = errors.get(key, 0) + 1
    for s in sims:
        if s.error:
            errors[s.error[:120]] = errors.get(s.error[:120], 0) + 1
    return {
        "users": len(sims),
        "users_signed_in": sum(1 for s in sims if s.signed_in_s is not None),
        "wall_s": round(wall, 2),
        "requests": len(requests),
        "completed": len(good),
        "errors": len(requests) - len(good) + sum(1 for s in sims if s.error),
        "error_kinds": errors,
        "answers_per_s": round(len(good) / wall, 3) if wall else None,
        "sign_in_s": percentiles([s.signed_in_s for s in sims if s.signed_in_s is not None]),
        "queued_s": percentiles([r.queued_s for r in good if r.queued_s is not None]),
        "first_token_s": percentiles([r.first_token_s for r in good if r.first_token_s is not None]),
        "last_token_s": percentiles([r.last_token_s for r in good if r.last_token_s is not None]),
        "feedback_s": percentiles([r.feedback_s for r in good if r.feedback_s is not None]),
    }


def summarise_direct(done: list[DirectRequest], wall: float, clients: int) -> dict[str, Any]:
    good = [r for r in done if r.error is None]
    errors: dict[str, int] = {}
    for r in done:
        if r.error:
            errors[r.error[:120]] = errors.get(r.error[:120], 0) + 1
    return {
        "clients": clients,
        "wall_s": round(wall, 2),
        "requests": len(done),
        "completed": len(good),
        "errors": len(done) - len(good),
        "error_kinds": errors,
        "answers_per_s": round(len(good) / wall, 3) if wall else None,
        "first_any_token_s": percentiles([r.first_any_s for r in good if r.first_any_s is not None]),
        "first_token_s": percentiles([r.first_token_s for r in good if r.first_token_s is not None]),
        "last_token_s": percentiles([r.last_token_s for r in good if r.last_token_s is not None]),
    }


def overhead(app: dict[str, Any], direct: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for metric in ("first_token_s", "last_token_s"):
        for p in ("p50", "p95", "p99"):
            a, d = app[metric][p], direct[metric][p]
            if a is None or d is None:
                continue
            out[f"{metric}_{p}"] = {
                "app_minus_vllm_s": round(a - d, 4),
                "app_over_vllm": round(a / d, 2) if d else None,
            }
    if app.get("answers_per_s") and direct.get("answers_per_s"):
        out["throughput_app_over_vllm"] = round(app["answers_per_s"] / direct["answers_per_s"], 2)
    return out


def fmt(v: float | None, digits: int = 3) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


def table(result: dict[str, Any]) -> str:
    """Markdown: each app phase beside the direct vLLM phase of the same run."""
    direct = result["direct"]
    lines = []
    phases = result["app_phases"]
    # Overhead against the phase that queued least: the one with the most answers at once.
    widest = max(phases, key=lambda p: p["concurrent_answers"])
    at = f" (app at {widest['concurrent_answers']})" if len(phases) > 1 else ""
    head = [
        "metric",
        *[f"app, {p['concurrent_answers']} answers at once" for p in phases],
        "vLLM direct",
        f"overhead{at}: app − vLLM",
        f"ratio{at}: app / vLLM",
    ]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "---|" * len(head))

    def row(name: str, values: list[str], d: str, over: str, ratio: str) -> None:
        lines.append("| " + " | ".join([name, *values, d, over, ratio]) + " |")

    row(
        "requests completed",
        [str(p["summary"]["completed"]) for p in phases],
        str(direct["completed"]),
        "",
        "",
    )
    row("errors", [str(p["summary"]["errors"]) for p in phases], str(direct["errors"]), "", "")
    row(
        "answers/s",
        [fmt(p["summary"]["answers_per_s"], 2) for p in phases],
        fmt(direct["answers_per_s"], 2),
        "",
        fmt((widest["overhead"].get("throughput_app_over_vllm")), 2) + "x",
    )
    for metric, label in (("first_token_s", "time to first token"), ("last_token_s", "time to last token")):
        for p in ("p50", "p95", "p99"):
            o = widest["overhead"].get(f"{metric}_{p}", {})
            row(
                f"{label} {p}, s",
                [fmt(ph["summary"][metric][p]) for ph in phases],
                fmt(direct[metric][p]),
                fmt(o.get("app_minus_vllm_s")),
                fmt(o.get("app_over_vllm"), 2) + "x" if o.get("app_over_vllm") is not None else "—",
            )
    row(
        "queue wait p50 / p95, s",
        [
            f"{fmt(ph['summary']['queued_s']['p50'])} / {fmt(ph['summary']['queued_s']['p95'])}"
            for ph in phases
        ],
        "",
        "",
        "",
    )
    row(
        "thumb (feedback) p50 / p95, s",
        [
            f"{fmt(ph['summary']['feedback_s']['p50'])} / {fmt(ph['summary']['feedback_s']['p95'])}"
            for ph in phases
        ],
        "",
        "",
        "",
    )
    row(
        "sign-in p50 / p95, s",
        [
            f"{fmt(ph['summary']['sign_in_s']['p50'])} / {fmt(ph['summary']['sign_in_s']['p95'])}"
            for ph in phases
        ],
        "",
        "",
        "",
    )
    row("app CPU s per answer", [fmt(ph["cpu"]["app_s_per_answer"]) for ph in phases], "", "", "")
    row(
        "vLLM CPU s per answer",
        [fmt(ph["cpu"]["vllm_s_per_answer"]) for ph in phases],
        fmt(direct.get("vllm_cpu_s_per_answer")),
        "",
        "",
    )
    row("app RSS at the end, MiB", [fmt(ph["cpu"]["app_rss_mib"], 0) for ph in phases], "", "", "")
    row(
        "every request one audit record; chain verifies",
        [
            ("yes" if ph["audit"]["one_record_per_request"] else "NO")
            + "; "
            + ("yes" if ph["audit"]["chain_verified"] else "NO")
            for ph in phases
        ],
        "",
        "",
        "",
    )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from tests.support.tiny_model import CONTEXT_LENGTH, build_tiny_model
    from tests.support.vllm_server import running_vllm, vllm_command

    if vllm_command() is None:
        raise SystemExit("vLLM's CPU venv .venv-vllm is missing: run `make vllm-venv` first")
    started = dt.datetime.now(dt.UTC)
    load_start = loadavg()
    info = machine_with_vllm()
    print(
        f"{info['cpu_model']}, {info['cores']} cores, {info['ram_gib']} GiB; load average {load_start}",
        flush=True,
    )
    if load_start > BUSY_LOADAVG:
        print(
            f"WARNING: load average {load_start} > {BUSY_LOADAVG}: other work shares the CPU, the figures are unreliable",
            flush=True,
        )

    keep = args.work_dir is not None
    work = (
        args.work_dir or Path(tempfile.mkdtemp(prefix="enclave-bench-load-"))
    ).resolve()  # vLLM runs elsewhere
    work.mkdir(parents=True, exist_ok=True)
    loads = [load_start]
    try:
        model_dir = work / "model-scripted"
        if not (model_dir / "config.json").exists():
            build_tiny_model(model_dir, "scripted")
        data_dir = work / "data"
        users = prepare_data(data_dir, args.users)
        logs = work / "logs"
        logs.mkdir(exist_ok=True)
        extra = ("--max-num-seqs", str(args.vllm_max_num_seqs), "--kv-cache-memory-bytes", str(512 * 2**20))
        with running_vllm(model_dir, "tiny-scripted", logs / "vllm.log", CONTEXT_LENGTH, extra) as vllm:
            phases = []
            all_ids: list[int] = []
            for answers in args.answers:
                port = free_port()
                env = app_env(data_dir, vllm.base_url, vllm.model, port, answers, args)
                with running_app(data_dir, env, port, logs / f"app-{answers}.log") as (proc, url):
                    # One answer first: the app loads the embedder and opens its stores lazily.
                    warm, _ = asyncio.run(app_phase(url, users[:1], 0, at_least=1))
                    if any(r.error for s in warm for r in s.requests) or any(s.error for s in warm):
                        raise SystemExit(f"the warm-up question failed: {[asdict(s) for s in warm]}")
                    first_new = last_audit_id(data_dir) + 1
                    cpu_app, cpu_vllm = cpu_seconds(proc.pid), cpu_seconds(vllm.pid)
                    loads.append(loadavg())
                    print(
                        f"app phase: {len(users)} users, {args.duration:g} s, concurrent_answers={answers}",
                        flush=True,
                    )
                    # Every user asks at least once, however long the sign-ins took.
                    sims, wall = asyncio.run(app_phase(url, users, args.duration, at_least=1))
                    loads.append(loadavg())
                    cpu_app, cpu_vllm = cpu_seconds(proc.pid) - cpu_app, cpu_seconds(vllm.pid) - cpu_vllm
                    app_rss = rss_mib(proc.pid)
                summary = summarise_app(sims, wall)
                audit = check_audit(data_dir, sims, first_new)
                done = max(summary["completed"], 1)
                ids = [
                    r.audit_id for s in sims for r in s.requests if r.audit_id is not None and r.error is None
                ]
                all_ids += ids
                phases.append(
                    {
                        "concurrent_answers": answers,
                        "summary": summary,
                        "audit": audit,
                        "cpu": {
                            "app_s": round(cpu_app, 2),
                            "vllm_s": round(cpu_vllm, 2),
                            "app_s_per_answer": round(cpu_app / done, 4),
                            "vllm_s_per_answer": round(cpu_vllm / done, 4),
                            "app_rss_mib": app_rss,
                        },
                    }
                )
                print(
                    json.dumps(
                        {
                            k: summary[k]
                            for k in ("completed", "errors", "answers_per_s", "first_token_s", "last_token_s")
                        }
                    ),
                    flush=True,
                )
            bodies = prompts_of(data_dir, all_ids[: max(64, len(args.answers) * 8)])
            if not bodies:
                raise SystemExit("no prompt was recorded by the app phase: nothing to send vLLM directly")
            print(
                f"direct phase: {len(users)} clients, {args.duration:g} s, {len(bodies)} recorded prompts",
                flush=True,
            )
            cpu_before = cpu_seconds(vllm.pid)
            loads.append(loadavg())
            direct_done, direct_wall = asyncio.run(
                direct_phase(vllm.base_url, vllm.model, bodies, len(users), args.duration)
            )
            loads.append(loadavg())
            direct = summarise_direct(direct_done, direct_wall, len(users))
            direct["vllm_cpu_s_per_answer"] = round(
                (cpu_seconds(vllm.pid) - cpu_before) / max(direct["completed"], 1), 4
            )
            vllm_info = {
                "startup_s": round(vllm.startup_s, 1),
                "peak_rss_mib": round(vllm.peak_rss_mib(), 1),
                "max_num_seqs": args.vllm_max_num_seqs,
            }
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    for phase in phases:
        phase["overhead"] = overhead(phase["summary"], direct)

    finished = dt.datetime.now(dt.UTC)
    loads.append(loadavg())
    busy = max(loads)
    checks = {
        "no_errors": all(p["summary"]["errors"] == 0 for p in phases) and direct["errors"] == 0,
        "one_audit_record_per_request": all(p["audit"]["one_record_per_request"] for p in phases),
        "chain_verified": all(p["audit"]["chain_verified"] for p in phases),
    }
    result = {
        "benchmark": "load",
        "command": "python bench/load.py " + " ".join(args.argv),
        "started_utc": started.isoformat(timespec="seconds"),
        "finished_utc": finished.isoformat(timespec="seconds"),
        "machine": info,
        "loadavg": {"samples": loads, "max_seen": busy, "reliable": busy <= BUSY_LOADAVG},
        "settings": {
            "users": args.users,
            "duration_s": args.duration,
            "concurrent_answers": args.answers,
            "concurrent_events": args.concurrent_events,
            "queue_max_size": args.queue_max_size,
            "questions": list(QUESTIONS),
            "model": "tiny scripted Qwen2 (tests/support/tiny_model.py), vLLM CPU",
        },
        "vllm": vllm_info,
        "app_phases": phases,
        "direct": direct,
        "checks": checks,
    }
    result["markdown"] = table(result)
    print("\n" + result["markdown"] + "\n", flush=True)
    for name, ok in checks.items():
        print(f"check {name}: {'PASS' if ok else 'FAIL'}", flush=True)
    for phase in phases:
        for problem in phase["audit"]["problems"]:
            print(f"  audit ({phase['concurrent_answers']} answers): {problem}", flush=True)
        for kind, n in phase["summary"]["error_kinds"].items():
            print(f"  error x{n}: {kind}", flush=True)
    if busy > BUSY_LOADAVG:
        print(
            f"WARNING: load average reached {busy} (> {BUSY_LOADAVG}): other work shared the CPU; the timings are unreliable",
            flush=True,
        )
    out = args.output or RESULTS / f"load-{started:%Y-%m-%d}{'-quick' if args.quick else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(f"results: {out}", flush=True)
    return 0 if all(checks.values()) else 1


def _ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give whole numbers separated by commas") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give at least one number, each 1 or more")
    return values


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    from core.settings import UISettings

    fields = UISettings.model_fields
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--users", type=int, default=50, help="simulated users, all at once (default 50)")
    ap.add_argument(
        "--duration", type=float, default=120.0, help="seconds each phase starts new requests (default 120)"
    )
    ap.add_argument(
        "--answers",
        type=_ints,
        default=[fields["concurrent_answers"].default],
        help="ui.concurrent_answers for the app, or several separated by commas, one app phase each "
        f"(default: the settings default, {fields['concurrent_answers'].default})",
    )
    ap.add_argument(
        "--concurrent-events",
        type=int,
        default=fields["concurrent_events"].default,
        help="ui.concurrent_events",
    )
    ap.add_argument(
        "--queue-max-size", type=int, default=fields["queue_max_size"].default, help="ui.queue_max_size"
    )
    ap.add_argument("--vllm-max-num-seqs", type=int, default=32, help="vLLM's --max-num-seqs (default 32)")
    ap.add_argument(
        "--work-dir", type=Path, help="keep the model, the ingested demo corpus and the logs here (reused)"
    )
    ap.add_argument(
        "--output", type=Path, help="result JSON (default bench/results/load-<UTC date>[-quick].json)"
    )
    ap.add_argument("--quick", action="store_true", help="a smoke run: 5 users for 30 s")
    args = ap.parse_args(argv)
    if args.quick:
        args.users = min(args.users, 5)
        args.duration = min(args.duration, 30.0)
    if args.users < 1 or args.duration <= 0:
        ap.error("--users must be 1 or more and --duration above 0")
    args.argv = list(sys.argv[1:] if argv is None else argv)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
