"""The staff web UI over real HTTP: a real Gradio server on 127.0.0.1, driven with httpx and
gradio_client. tests/conftest.py has switched telemetry off and the offline guard to strict before
gradio is imported; `nothing_left_loopback` below also catches refusals inside server threads.

The assistant is `ScriptedAssistant` below, a stand-in for assistant.Assistant; the UI depends
only on its `stream` method, so switching to the real one is a change of fixture.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import gradio as gr
import httpx
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from core.errors import LLMUnavailable
from core.offline import blocked_attempts, guard_mode, install_guard
from core.settings import Settings
from core.types import Answer, Citation, Principal, StreamEvent
from core.users import UserStore
from tests.support.net import free_port
from tests.support.shown import shown_text
from ui import build_app, serve

pytestmark = pytest.mark.slow  # real servers

ORG = "Globex <R&D>"
PASSWORD = "correct horse battery"
HOSTILE_SNIPPET = (
    "Staff get 25 days of leave.<script>alert('snippet')</script>"
    "<img src=x onerror=alert(1)> ![pixel](https://tracker.example/p.png)"
)
REASONING = ["The leave policy ", "says 25 days."]
TOKENS = ["You get ", "25 days ", "of leave [1]."]
ANSWER_TEXT = "".join(TOKENS)
OUTAGE = "The language model at http://127.0.0.1:8001/v1 did not answer within 120 s; try again later."

CITATION = Citation(
    n=1,
    chunk_id="leave-policy:0003",
    doc_id="leave-policy",
    source="hr/leave-policy.pdf",
    title="Leave <b>policy</b>",
    section="2. Annual leave",
    page=3,
    snippet=HOSTILE_SNIPPET,
)


@dataclass(frozen=True)
class Call:
    principal: Principal
    question: str
    history: tuple[tuple[str, str], ...]


class ScriptedAssistant:
    """Scripted stand-in for assistant.Assistant (not ready yet): replays fixed events.

    Questions mentioning "outage" raise LLMUnavailable, "broken" ends in a mode-"error" answer,
    "extractive" gives an extractive answer; anything else streams reasoning, then tokens.
    Every call is recorded so tests can check the principal and history the UI passed.
    """

    def __init__(self) -> None:
        self.calls: list[Call] = []

    def stream(
        self,
        principal: Principal,
        question: str,
        history: Sequence[tuple[str, str]] = (),
        conversation_id: str | None = None,
    ) -> Iterator[StreamEvent]:
        self.calls.append(Call(principal, question, tuple(tuple(p) for p in history)))
        if "outage" in question:
            raise LLMUnavailable(OUTAGE)
        yield StreamEvent("sources", citations=(CITATION,))
        if "broken" in question:
            yield StreamEvent(
                "done", answer=Answer(question, "", "error", error="vLLM answered 500", audit_id=9)
            )
            return
        if "extractive" in question:
            text = "Staff get 25 days of leave.<img src=x onerror=alert(1)> ![p](https://tracker.example/q.png) [1]"
            yield StreamEvent("token", text=text)
            yield StreamEvent("done", answer=Answer(question, text, "extractive", [CITATION], audit_id=8))
            return
        for delta in REASONING:
            yield StreamEvent("reasoning", text=delta)
        for delta in TOKENS:
            yield StreamEvent("token", text=delta)
        answer = Answer(question, ANSWER_TEXT, "llm", [CITATION], reasoning="".join(REASONING), audit_id=7)
        yield StreamEvent("done", answer=answer)


@dataclass
class Served:
    url: str
    app: gr.Blocks
    assistant: ScriptedAssistant
    users: UserStore

    def client(self, name: str = "alice", password: str = PASSWORD) -> Client:
        return Client(self.url, auth=(name, password), verbose=False, analytics_enabled=False)


@pytest.fixture(autouse=True)
def nothing_left_loopback() -> Iterator[None]:
    # The guard raises in the thread that tried to connect; a server or client thread would
    # swallow that, so the record of refused targets is what fails the test.
    install_guard("strict")  # already so (tests/conftest.py); stated here because it is the point
    assert guard_mode() == "strict"
    before = len(blocked_attempts())
    yield
    assert blocked_attempts()[before:] == []


def launch(folder: Path, *, show_reasoning: bool) -> Iterator[Served]:
    settings = Settings(data_dir=folder)
    settings.ui.host = "127.0.0.1"
    settings.ui.port = free_port()
    settings.ui.org_name = ORG
    settings.ui.show_reasoning = show_reasoning
    users = UserStore(settings.users_path)
    users.add("alice", PASSWORD, "staff", ("finance", "public"))
    users.add("bob", PASSWORD, "auditor", ("public",))
    users.add("carol", PASSWORD, "staff", ("public",))
    assistant = ScriptedAssistant()
    app = build_app(assistant, users, settings)
    url = serve(app, settings, block=False)
    try:
        yield Served(url, app, assistant, users)
    finally:
        app.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    yield from launch(tmp_path_factory.mktemp("ui"), show_reasoning=False)


@pytest.fixture(scope="module")
def served_with_reasoning(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    yield from launch(tmp_path_factory.mktemp("ui-reasoning"), show_reasoning=True)


# --- helpers ---------------------------------------------------------------------------------

_URL = re.compile(r"https?://[^\s\"'<>()\\]+")
_META = re.compile(r"<meta\b[^>]*>", re.IGNORECASE | re.DOTALL)
_CONFIG = re.compile(r"window\.gradio_config = (.*?);</script>", re.DOTALL)


def outside_urls(text: str) -> list[str]:
    hosts_ok = {"127.0.0.1", "localhost", "::1"}
    return [u for u in _URL.findall(text) if urlparse(u).hostname not in hosts_ok]


def page_config(page: str) -> dict[str, Any]:
    match = _CONFIG.search(page)
    assert match, "no window.gradio_config in the page"
    return dict(json.loads(match.group(1)))


def text_of(message: dict[str, Any]) -> str:
    return "\n".join(part["text"] for part in message["content"] if part.get("type") == "text")


def chat(client: Client, question: str) -> tuple[list[Any], list[dict[str, Any]]]:
    """Ask through the chat endpoint; return every streamed output and the final chat."""
    job = client.submit(question, api_name="/chat")
    final = job.result()
    return job.outputs(), final[1]


# --- sign-in -----------------------------------------------------------------------------------


def test_login_page_shows_org_name_and_references_nothing_outside(served: Served) -> None:
    with httpx.Client(base_url=served.url, headers={"accept": "text/html"}) as http:
        redirect = http.get("/")
        assert redirect.status_code == 303 and redirect.headers["location"] == "/login?next=%2F"
        login_page = http.get("/login")
        assert login_page.status_code == 200
        # Our own page: the org name escaped, no script, nothing fetched from elsewhere.
        assert "Globex &lt;R&amp;D&gt;" in login_page.text and "<R&D>" not in login_page.text
        assert "<script" not in login_page.text.lower()
        assert "default-src 'none'" in login_page.headers["content-security-policy"]

        signed_in = http.post("/login", data={"username": "alice", "password": PASSWORD, "next": "/"})
        assert signed_in.status_code == 303 and signed_in.headers["location"] == "/"
        app_page = http.get("/")
        theme_css = http.get("/theme.css")

    assert outside_urls(login_page.text) == []
    # Gradio's page template carries link-preview tags (og:image on raw.githubusercontent.com,
    # og:url gradio.app) that browsers never fetch; anything else outside is a failure.
    for tag in _META.findall(app_page.text):
        if outside_urls(tag):
            assert re.search(r"(property=\"og:|name=\"twitter:)", tag), tag
    assert outside_urls(_META.sub("", app_page.text)) == []
    assert page_config(app_page.text)["stylesheets"] == []  # a GoogleFont theme would list CSS here
    assert theme_css.status_code == 200
    font_urls = re.findall(r"url\(['\"]?([^'\")]+)", theme_css.text)
    assert font_urls and all(u.startswith(("static/fonts/", "data:")) for u in font_urls)


def test_requests_without_a_signed_in_user_are_refused(served: Served) -> None:
    calls_before = len(served.assistant.calls)
    with httpx.Client(base_url=served.url) as http:
        assert http.post("/gradio_api/call/ask", json={"data": ["hello"]}).status_code == 401
        assert http.get("/config").status_code == 401
        assert http.get("/theme.css").status_code == 401
        wrong = http.post("/login", data={"username": "alice", "password": "not-the-password"})
        unknown = http.post("/login", data={"username": "mallory", "password": PASSWORD})
        assert wrong.status_code == unknown.status_code == 401
        assert wrong.json() == unknown.json() == {"detail": "Wrong user name or password."}
    with pytest.raises(ValueError, match=r"login|credentials"):
        Client(served.url, verbose=False, analytics_enabled=False)
    with pytest.raises(ValueError, match="login"):
        served.client("alice", "not-the-password")
    assert len(served.assistant.calls) == calls_before


def test_account_removed_after_sign_in_is_refused(served: Served) -> None:
    client = served.client("carol")
    raw = json.loads(served.users.path.read_text(encoding="utf-8"))
    del raw["users"]["carol"]
    served.users.path.write_text(json.dumps(raw), encoding="utf-8")
    calls_before = len(served.assistant.calls)
    # Refused at the boundary, before any handler runs: the account is checked on every request.
    for call in (lambda: client.predict("how much leave?", api_name="/ask"), lambda: chat(client, "leave?")):
        with pytest.raises(httpx.HTTPStatusError) as refused:
            call()
        assert refused.value.response.status_code == 401
        assert "no longer exists" in refused.value.response.json()["detail"]
    assert len(served.assistant.calls) == calls_before


# --- the /ask API -------------------------------------------------------------------------------


def test_ask_answers_with_citations_for_the_signed_in_user(served: Served) -> None:
    result = served.client("alice").predict("How much leave do I get?", api_name="/ask")
    assert result == {
        "answer": ANSWER_TEXT,
        "mode": "llm",
        "citations": [
            {
                "n": 1,
                "source": "hr/leave-policy.pdf",
                "location": None,
                "page": 3,
                "title": "Leave <b>policy</b>",
                "section": "2. Annual leave",
                "chunk_id": "leave-policy:0003",
            }
        ],
        "audit_id": 7,
        "error": None,
    }
    call = served.assistant.calls[-1]
    assert call == Call(Principal("alice", "staff", ("finance", "public")), "How much leave do I get?", ())

    served.client("bob").predict("How much leave do I get?", api_name="/ask")
    assert served.assistant.calls[-1].principal == Principal("bob", "auditor", ("public",))


def test_ask_reports_failed_answers_and_errors(served: Served) -> None:
    client = served.client()
    broken = client.predict("broken question", api_name="/ask")
    assert broken["mode"] == "error" and broken["error"] == "vLLM answered 500"
    with pytest.raises(AppError, match="did not answer within 120 s"):
        client.predict("outage question", api_name="/ask")
    with pytest.raises(AppError, match="empty"):
        client.predict("   ", api_name="/ask")


def test_only_ask_and_feedback_are_documented(served: Served) -> None:
    api = served.client().view_api(print_info=False, return_format="dict")
    assert isinstance(api, dict)
    assert list(api["named_endpoints"]) == ["/ask", "/feedback"]
    assert api["unnamed_endpoints"] == {}


# --- the chat endpoint ---------------------------------------------------------------------------


def test_chat_streams_answer_and_sources_with_document_html_escaped(served: Served) -> None:
    outputs, final = chat(served.client(), "How much leave do I get?")

    user, answer, sources = final
    assert user["role"] == "user" and shown_text(text_of(user)) == "How much leave do I get?"
    assert answer["role"] == "assistant" and not answer.get("metadata")
    assert shown_text(text_of(answer)).startswith(ANSWER_TEXT) and "Audit record 7" in text_of(answer)
    assert sources["metadata"]["title"] == "Sources (1)"
    listing = text_of(sources)
    assert "Leave &lt;b&gt;policy&lt;/b&gt;" in listing
    assert "p. 3" in listing and "2\\. Annual leave" in listing and "`leave-policy.pdf`" in listing
    assert "hr/leave-policy.pdf" not in listing  # the file's name, never its path on the server
    assert "&lt;script&gt;alert" in listing and "&lt;img src\\=x onerror" in listing

    everything = json.dumps(outputs)
    assert "<script" not in everything and "<img" not in everything and "<b>" not in everything
    assert "![" not in everything  # an image in Markdown would be fetched without a click
    # Streamed: partial answers were sent before the whole one.
    partial = [
        shown_text(text_of(m)).strip()
        for out in outputs
        for m in out[1]
        if m["role"] == "assistant" and not m.get("metadata")
    ]
    assert "You get" in partial and "You get 25 days" in partial
    # Reasoning is off in these settings: it never reaches the browser.
    assert "leave policy says" not in everything.lower() and "Reasoning" not in everything


def test_chat_history_is_previous_question_answer_pairs(served: Served) -> None:
    client = served.client()
    chat(client, "How much leave do I get?")
    chat(client, "And in my first year?")
    assert served.assistant.calls[-2].history == ()
    assert served.assistant.calls[-1].history == (("How much leave do I get?", ANSWER_TEXT),)

    chat(served.client(), "A new session?")  # another browser session starts a new conversation
    assert served.assistant.calls[-1].history == ()


def test_reasoning_is_a_collapsed_message_apart_from_the_answer(
    served_with_reasoning: Served,
) -> None:
    client = served_with_reasoning.client()
    _, final = chat(client, "How much leave do I get?")
    _, reasoning, answer, sources = final
    assert reasoning["metadata"]["title"] == "Reasoning"
    assert reasoning["metadata"]["status"] == "done"  # Gradio shows "done" thoughts closed
    assert shown_text(text_of(reasoning)) == "".join(REASONING)
    assert "leave policy" not in text_of(answer)
    assert sources["metadata"]["title"] == "Sources (1)"

    chat(client, "And in my first year?")
    assert served_with_reasoning.assistant.calls[-1].history == (("How much leave do I get?", ANSWER_TEXT),)


def test_extractive_answers_are_labelled(served: Served) -> None:
    _, final = chat(served.client(), "extractive please")
    answer = text_of(final[1])
    assert answer.startswith("**Extractive answer**") and "no language model" in answer
    assert "Staff get 25 days of leave" in answer
    # Quoted document text in the answer itself: no tag, no image survives.
    assert "<img src=x onerror=alert(1)>" in shown_text(answer) and "<img" not in answer
    assert "![" not in answer and "tracker.example" not in answer  # the image shows its alt text only


def test_errors_are_chat_messages_not_tracebacks(served: Served) -> None:
    client = served.client()
    job = client.submit("outage question", api_name="/chat")
    box, final = job.result()[:2]
    last = text_of(final[-1])
    assert "did not answer within 120 s" in last and last.startswith("**Error:**")
    assert "Traceback" not in json.dumps(job.outputs())
    assert box["interactive"] is True  # the question box is usable again

    _, final = chat(client, "broken question")
    assert "The answer failed" in text_of(final[-1]) and "vLLM answered 500" in text_of(final[-1])
    # The chat shown is the whole conversation (kept on the server); this turn is the question
    # and the error, with no sources listed for a failed answer.
    assert final[-2]["role"] == "user" and "broken question" in text_of(final[-2])

    chat(client, "follow-up")
    assert served.assistant.calls[-1].history == ()  # failed turns are not history
