"""A scripted OpenAI-compatible chat server on 127.0.0.1, for faults real vLLM cannot be made to
show on demand: a request left unanswered past the client's timeout, a stream that stalls or is
cut mid-way, an HTTP 500, and a reply whose text the test chooses (a citation to a source that was
never supplied). Everything else about the LLM path is tested against real vLLM serving the tiny
models of tests/support/tiny_model.py (tests/e2e/).

Each request to POST /v1/chat/completions takes the next step of the script (`push`), or replies
`default` when the script is empty; every request body is kept in `requests`. GET /v1/models lists
the one model, with a `max_model_len` as vLLM does.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Reply:
    """Streams the reasoning deltas (vLLM's `reasoning` field), then the content deltas."""

    tokens: tuple[str, ...]
    reasoning: tuple[str, ...] = ()
    finish: str = "stop"


@dataclass(frozen=True)
class Stall:
    """Sends nothing at all for `seconds` (the client should time out first), then a reply."""

    seconds: float
    then: Reply = field(default_factory=lambda: Reply(("Too late.",)))


@dataclass(frozen=True)
class StallMidStream:
    """Streams `tokens`, then sends nothing more for `seconds`, then ends the stream."""

    tokens: tuple[str, ...]
    seconds: float
    reasoning: tuple[str, ...] = ()


@dataclass(frozen=True)
class Cut:
    """Streams `tokens`, then drops the connection in the middle of the HTTP body."""

    tokens: tuple[str, ...]
    reasoning: tuple[str, ...] = ()


@dataclass(frozen=True)
class Fail:
    """Answers with an HTTP error and an OpenAI-style error body."""

    status: int = 500
    message: str = "internal error in the stub"


Step = Reply | Stall | StallMidStream | Cut | Fail


class ScriptedChatServer:
    def __init__(self, model: str = "stub-model", default: Reply | None = None) -> None:
        self.model = model
        self.default = default or Reply(("The stub answers [1].",))
        self.script: deque[Step] = deque()
        self.requests: list[dict[str, Any]] = []
        self.closing = threading.Event()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def push(self, *steps: Step) -> None:
        with self._lock:
            self.script.extend(steps)

    def next_step(self, body: dict[str, Any]) -> Step:
        with self._lock:
            self.requests.append(body)
            return self.script.popleft() if self.script else self.default

    def start(self) -> ScriptedChatServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.closing.set()  # wakes stalled handlers
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


@contextlib.contextmanager
def scripted_chat_server(model: str = "stub-model") -> Iterator[ScriptedChatServer]:
    server = ScriptedChatServer(model).start()
    try:
        yield server
    finally:
        server.stop()


def _handler(stub: ScriptedChatServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet test output
            pass

        def do_GET(self) -> None:
            # The model list, as vLLM serves it (the health check reads the model's name here).
            if self.path.rstrip("/") != "/v1/models":
                self._json(404, {"error": {"message": f"no route {self.path}"}})
                return
            entry = {"id": stub.model, "object": "model", "owned_by": "stub", "max_model_len": 4096}
            self._json(200, {"object": "list", "data": [entry]})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            if self.path.rstrip("/") != "/v1/chat/completions":
                self._json(404, {"error": {"message": f"no route {self.path}"}})
                return
            step = stub.next_step(body)
            if isinstance(step, Fail):
                self._json(step.status, {"error": {"message": step.message, "type": "server_error"}})
                return
            if isinstance(step, Stall):
                if stub.closing.wait(step.seconds):
                    return
                step = step.then
            self._stream(step)

        def _json(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> None:
            event = {
                "id": "chatcmpl-stub",
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": stub.model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            self._write(f"data: {json.dumps(event)}\n\n")

        def _write(self, text: str) -> None:
            data = text.encode()
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

        def _stream(self, step: Reply | StallMidStream | Cut) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self._chunk({"role": "assistant", "content": ""})
            for text in step.reasoning:
                self._chunk({"reasoning": text})
            for text in step.tokens:
                self._chunk({"content": text})
            if isinstance(step, Cut):
                # Mid-body, without the terminating chunk: the client sees a broken transfer.
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(2)
                return
            if isinstance(step, StallMidStream) and stub.closing.wait(step.seconds):
                return
            self._chunk({}, step.finish if isinstance(step, Reply) else "stop")
            self._write("data: [DONE]\n\n")
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

    return Handler
