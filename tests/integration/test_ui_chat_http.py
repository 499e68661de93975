"""The chat page's feedback and conversation history over real HTTP, on the real stack (the real
assistant, embedded Chroma, MiniLM, the audit log).

`Browser` drives the page the way its JavaScript does: it signs in, posts each event to
`/gradio_api/queue/join` under one session (so the page's gr.State lives on between events, as
in a browser tab) and reads the outcome from the `/gradio_api/queue/data` event stream. A thumb
is the Chatbot's `like` event, whose `gr.LikeData` only a browser sends (gradio_client cannot).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from audit import AuditLog, AuditRecord, RecordFilter
from core.settings import Settings, load_settings
from enclave import wiring
from tests.support.net import free_port
from tests.support.shown import shown_text
from ui import build_app, serve

pytestmark = pytest.mark.slow  # real servers

PASSWORD = "a long enough password"
PARKING_Q = "How much does a staff parking permit for the blue car park cost?"
CRANE_Q = "What is the capital budget for the new crane at berth 7?"
FOLLOW_UP = "And where is it?"
UNRELATED_Q = "Which recipe does the canteen use for chocolate soufflé?"


@dataclass
class Running:
    url: str
    settings: Settings
    audit: AuditLog


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory, embedder: Any) -> Iterator[Running]:
    root = tmp_path_factory.mktemp("ui-chat")
    (root / "public").mkdir()
    (root / "finance").mkdir()
    (root / "public" / "parking.md").write_text(
        "# Parking\n\nStaff permits for the blue car park cost 12 euros per month.\n\n"
        "The blue car park is next to the ferry terminal at gate 2.\n"
    )
    (root / "finance" / "crane.md").write_text(
        "# Crane budget\n\nThe capital budget for the new crane at berth 7 is 4.2 million euros.\n"
    )
    settings = load_settings(None, data_dir=root / "var")
    settings.ingest.parse_timeout_s = 0
    settings.ui.port = free_port()
    store = wiring.build_store(settings)
    pipeline = wiring.build_pipeline(settings, embedder=embedder, store=store)
    pipeline.run([root / "public"], ["public"])
    pipeline.run([root / "finance"], ["finance"])
    users = wiring.build_users(settings)
    users.add("alice", PASSWORD, "staff", ("public",))
    users.add("fiona", PASSWORD, "staff", ("finance", "public"))
    app = build_app(wiring.build_assistant(settings, embedder=embedder, store=store), users, settings)
    url = serve(app, settings, block=False)
    try:
        yield Running(url, settings, wiring.build_audit(settings))
    finally:
        app.close()


@dataclass
class Outcome:
    """What one event sent back: its outputs (None when it failed) and the toasts it raised."""

    data: list[Any] | None
    toasts: list[str] = field(default_factory=list)
    error: str | None = None


class Browser:
    """One signed-in browser tab on the app (see the module docstring)."""

    def __init__(self, url: str, user: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=120)
        signed_in = self.http.post("/login", data={"username": user, "password": PASSWORD})
        assert signed_in.status_code in (200, 303), signed_in.text  # 303: back to the page
        config = self.http.get("/config").json()
        self.config = config
        self.fn_ids = {d["api_name"]: d["id"] for d in config["dependencies"] if d.get("api_name")}
        self.session = uuid.uuid4().hex

    def close(self) -> None:
        self.http.close()

    def call(self, api_name: str, data: list[Any], event_data: Any = None) -> Outcome:
        joined = self.http.post(
            "/gradio_api/queue/join",
            json={
                "data": data,
                "fn_index": self.fn_ids[api_name],
                "session_hash": self.session,
                "event_data": event_data,
                "trigger_id": None,
            },
        )
        assert joined.is_success, joined.text
        event_id = joined.json()["event_id"]
        outcome = Outcome(None)
        with self.http.stream(
            "GET", "/gradio_api/queue/data", params={"session_hash": self.session}
        ) as stream:
            for line in stream.iter_lines():
                if not line.startswith("data:"):
                    continue
                message = json.loads(line[5:])
                if message.get("event_id") != event_id:
                    continue
                if message.get("msg") == "log":
                    outcome.toasts.append(str(message.get("log")))
                if message.get("msg") == "process_completed":
                    output = message.get("output") or {}
                    if message.get("success"):
                        outcome.data = output["data"]
                    else:
                        outcome.error = str(output.get("error"))
                    return outcome
        raise AssertionError(f"the event stream ended before {api_name} completed")

    # The page's events; each returns the outcome, the chat where it changes.

    def ask(self, question: str) -> Outcome:
        # The shown chat is the server's (the conversation's state), never an input.
        return self.call("chat", [question, None])

    def new_conversation(self) -> Outcome:
        return self.call("new_conversation", [])

    def open(self, conversation_id: str) -> Outcome:
        return self.call("open_conversation", [conversation_id])

    def thumb(self, index: int, liked: bool | str) -> Outcome:
        return self.call("rate", [None], event_data={"index": index, "value": [], "liked": liked})

    def comment(self, text: str) -> Outcome:
        return self.call("comment", [text, None])


@pytest.fixture
def browsers(running: Running) -> Iterator[Any]:
    opened: list[Browser] = []

    def open_as(user: str) -> Browser:
        browser = Browser(running.url, user)
        opened.append(browser)
        return browser

    yield open_as
    for browser in opened:
        browser.close()


def text_of(message: dict[str, Any]) -> str:
    return "\n".join(part["text"] for part in message["content"] if part.get("type") == "text")


def chat_of(outcome: Outcome) -> list[dict[str, Any]]:
    assert outcome.data is not None, outcome.error
    chat: list[dict[str, Any]] = outcome.data[1]
    return chat


def history_of(outcome: Outcome) -> list[tuple[str, str]]:
    """(label, conversation id) of the history list the event sent back."""
    assert outcome.data is not None, outcome.error
    update = outcome.data[2]
    return [(label, cid) for label, cid in update["choices"]]


def answer_index(chat: list[dict[str, Any]]) -> int:
    """Index of the newest answer message (not its sources list)."""
    return max(i for i, m in enumerate(chat) if m["role"] == "assistant" and not m.get("metadata"))


def answers_of(audit: AuditLog, user: str) -> list[AuditRecord]:
    return audit.select(
        RecordFilter.of(user=user, event=["answer", "answer_error"]), limit=None, oldest_first=True
    )


def audit_id_shown(message: dict[str, Any]) -> int:
    found = re.search(r"Audit record (\d+)", text_of(message))
    assert found, text_of(message)
    return int(found.group(1))


def test_answers_have_copy_and_thumb_buttons_and_enter_sends(browsers: Any) -> None:
    alice = browsers("alice")
    by_elem = {c["props"].get("elem_id"): c for c in alice.config["components"]}
    chatbot = by_elem["enclave-chat"]["props"]
    assert {"copy", "copy_all"} <= set(chatbot["buttons"]) and "share" not in chatbot["buttons"]
    assert chatbot["likeable"] is True and chatbot["feedback_options"] == ["Like", "Dislike"]
    # Enter in the question box (a one-line Textbox submits on Enter) runs the chat, as Send does.
    box, send = by_elem["enclave-question"]["id"], by_elem["enclave-send"]["id"]
    [chat] = [d for d in alice.config["dependencies"] if d.get("api_name") == "chat"]
    assert [box, "submit"] in chat["targets"] and [send, "click"] in chat["targets"]
    assert by_elem["enclave-question"]["props"]["lines"] == 1


# --- feedback -------------------------------------------------------------------------------------


def test_thumbs_down_and_comment_land_on_that_answer(running: Running, browsers: Any) -> None:
    alice = browsers("alice")
    first = chat_of(alice.ask(PARKING_Q))
    second = chat_of(alice.ask(UNRELATED_Q))  # nothing relevant: a "no answer" turn
    rated = answer_index(first)
    record_id = audit_id_shown(first[rated])
    assert answers_of(running.audit, "alice")[-2].id == record_id
    assert "do not answer this question" in text_of(second[answer_index(second)])

    down = alice.thumb(rated, False)
    assert down.data is not None, down.error
    box, note = down.data[0], down.data[1]
    assert box["visible"] is True and f"audit record {record_id}" in note
    [feedback] = running.audit.feedback_for(record_id)
    assert (feedback.user, feedback.rating, feedback.comment) == ("alice", "down", None)

    assert alice.comment("  The permit price for the red car park was what I needed.  ").data is not None
    latest = running.audit.latest_feedback([record_id])[record_id]
    assert (
        latest.rating == "down"
        and latest.comment == "The permit price for the red car park was what I needed."
    )
    assert len(running.audit.feedback_for(record_id)) == 2  # records are added, never changed

    # The sources message of the same turn rates the same answer (Gradio groups a turn's messages).
    assert alice.thumb(rated + 1, True).data is not None
    assert running.audit.latest_feedback([record_id])[record_id].rating == "up"
    # The other answer got nothing; a question is not an answer.
    assert running.audit.feedback_for(audit_id_shown(second[answer_index(second)])) == []
    before = running.audit.count(RecordFilter.of(event="feedback"))
    refused = alice.thumb(0, True)
    assert any("Only a finished answer can be rated" in t for t in refused.toasts)
    withdrawn = alice.thumb(rated, "")  # clicking a chosen thumb again un-chooses it
    assert any("cannot be taken back" in t for t in withdrawn.toasts)
    assert running.audit.count(RecordFilter.of(event="feedback")) == before
    assert running.audit.verify().ok


def test_a_comment_needs_a_rating_first(browsers: Any) -> None:
    alice = browsers("alice")
    outcome = alice.comment("Nice")
    assert any("Rate an answer" in t for t in outcome.toasts)


def test_nobody_can_rate_another_users_answer(running: Running, browsers: Any) -> None:
    alice = browsers("alice")
    chat_of(alice.ask(PARKING_Q))
    alices = answers_of(running.audit, "alice")[-1]
    fiona_api = Client(running.url, auth=("fiona", PASSWORD), verbose=False, analytics_enabled=False)
    with pytest.raises(AppError, match="another user"):
        fiona_api.predict(alices.id, "down", "not mine", api_name="/feedback")
    assert running.audit.feedback_for(alices.id) == []

    # Nor through the page: her conversation does not open for fiona, so its answers never get
    # into fiona's page to be rated.
    fiona = browsers("fiona")
    opened = fiona.open(alices.data["conversation_id"])
    # Refused by the history list itself (not one of fiona's choices), before our own check.
    assert opened.data is None and "not in the list of choices" in str(opened.error)
    assert any("Only a finished answer" in t for t in fiona.thumb(1, False).toasts)
    assert running.audit.feedback_for(alices.id) == []

    # Her own answer, through the API, she can rate.
    alice_api = Client(running.url, auth=("alice", PASSWORD), verbose=False, analytics_enabled=False)
    given = alice_api.predict(alices.id, "up", "", api_name="/feedback")
    assert given["record_id"] == alices.id and given["rating"] == "up" and given["comment"] is None
    assert running.audit.get(given["feedback_id"]).user == "alice"  # type: ignore[union-attr]


# --- conversations --------------------------------------------------------------------------------


def test_history_lists_own_conversations_and_reopened_ones_continue(running: Running, browsers: Any) -> None:
    alice = browsers("alice")
    alice.ask(PARKING_Q)
    after_follow_up = alice.ask(FOLLOW_UP)
    conversation_a = answers_of(running.audit, "alice")[-1].data["conversation_id"]
    assert answers_of(running.audit, "alice")[-2].data["conversation_id"] == conversation_a
    assert history_of(after_follow_up)[0][1] == conversation_a

    fresh = alice.new_conversation()
    assert chat_of(fresh) == []
    alice.ask(UNRELATED_Q)
    conversation_b = answers_of(running.audit, "alice")[-1].data["conversation_id"]
    assert conversation_b != conversation_a

    fiona = browsers("fiona")
    fiona.ask(CRANE_Q)
    fionas = answers_of(running.audit, "fiona")[-1].data["conversation_id"]

    # A new tab (or another app replica) lists the same, from the audit log.
    again = browsers("alice")
    listed = history_of(again.new_conversation())
    ids = [cid for _, cid in listed]
    assert ids[:2] == [conversation_b, conversation_a]  # most recently continued first
    assert fionas not in ids
    label_a = dict((cid, label) for label, cid in listed)[conversation_a]
    assert label_a.startswith("How much does a staff parking permit") and " UTC" in label_a
    assert history_of(fiona.new_conversation())[0][1] == fionas
    assert conversation_a not in [cid for _, cid in history_of(fiona.new_conversation())]

    reopened = chat_of(again.open(conversation_a))
    users = [shown_text(text_of(m)) for m in reopened if m["role"] == "user"]
    assert users == [PARKING_Q, FOLLOW_UP]
    answers = [text_of(m) for m in reopened if m["role"] == "assistant" and not m.get("metadata")]
    assert "12 euros" in answers[0] and "Audit record" in answers[0]
    sources = [m for m in reopened if (m.get("metadata") or {}).get("title", "").startswith("Sources")]
    assert sources and "parking.md" in text_of(sources[0])

    # Continued: the next answer joins conversation A and is asked with its earlier turns, so
    # the follow-up rule draws on them (it would search "where is it" alone without them).
    continued = again.ask("What about its opening hours?")
    record = answers_of(running.audit, "alice")[-1]
    assert record.data["conversation_id"] == conversation_a
    assert record.data["query"]["method"] == "rule" and "park" in record.data["query"]["query"]
    assert len([m for m in chat_of(continued) if m["role"] == "user"]) == 3

    # The reopened answers can be rated too.
    assert again.thumb(answer_index(reopened), False).data is not None
    first_answer = answers_of(running.audit, "alice")
    rated = [r for r in first_answer if r.data.get("conversation_id") == conversation_a][1]
    assert running.audit.latest_feedback([rated.id])[rated.id].rating == "down"


def test_new_conversation_starts_a_fresh_id_and_history(running: Running, browsers: Any) -> None:
    alice = browsers("alice")
    alice.ask(PARKING_Q)
    before = answers_of(running.audit, "alice")[-1]
    alice.new_conversation()
    alice.ask(FOLLOW_UP)
    after = answers_of(running.audit, "alice")[-1]
    assert after.data["conversation_id"] != before.data["conversation_id"]
    assert after.data["query"]["method"] != "rule"  # no earlier turn to draw on: asked as asked
