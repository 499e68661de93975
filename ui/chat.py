"""The chat page: a question box, answers streamed with their sources, and the `/ask` API.

No `from __future__ import annotations` here: `gr.api` reads the return annotation of `ask`
from its signature unevaluated, and needs a real type there, not a string.
"""

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import gradio as gr

from core.errors import EnclaveError
from core.settings import UISettings
from core.types import Answer, Citation, StreamEvent
from core.users import UserStore
from ui import markup
from ui.login import principal_of

log = logging.getLogger(__name__)

# Answers run in worker threads; the LLM server batches concurrent requests, so several may run
# at once. One group for chat and /ask, so scripts cannot starve staff of answer slots.
CONCURRENT_ANSWERS = 8
ANSWER_GROUP = "answer"

INTERNAL_ERROR = "Something went wrong while answering; the details are in the server log."
NO_ANSWER_ERROR = "The assistant stopped without giving an answer; the details are in the server log."

ChatMessages = list[dict[str, Any]]
Pairs = list[tuple[str, str]]


@dataclass
class Turn:
    """One question and its answer as it streams in, rendered as chat messages."""

    question: str
    show_reasoning: bool
    reasoning: str = ""
    text: str = ""
    citations: tuple[Citation, ...] = ()
    answer: Answer | None = None
    error: str | None = None
    started: float = field(default_factory=time.monotonic)
    reasoning_s: float | None = None

    def apply(self, event: StreamEvent) -> None:
        match event.kind:
            case "sources":
                self.citations = tuple(event.citations)
            case "reasoning":
                self.reasoning += event.text
            case "token":
                self._end_reasoning()
                self.text += event.text
            case "done":
                self._end_reasoning()
                self.answer = event.answer

    def _end_reasoning(self) -> None:
        if self.reasoning and self.reasoning_s is None:
            self.reasoning_s = time.monotonic() - self.started

    @property
    def finished(self) -> bool:
        return self.answer is not None or self.error is not None

    def messages(self) -> ChatMessages:
        """The user's question, then reasoning (if shown), the answer and its sources."""
        out: ChatMessages = [{"role": "user", "content": markup.prose(self.question)}]
        if self.show_reasoning and self.reasoning:
            # A message with a metadata title is a collapsible "thought" in Gradio's Chatbot;
            # status "done" makes it start closed, so reasoning never crowds the answer.
            meta: dict[str, Any] = {"title": "Reasoning", "status": "done"}
            if self.reasoning_s is not None:
                meta["duration"] = round(self.reasoning_s, 1)
            elif not self.finished:
                meta["log"] = "thinking…"
            out.append({"role": "assistant", "content": markup.prose(self.reasoning), "metadata": meta})
        body = markup.answer_markdown(self.answer) if self.answer else markup.prose(self.text)
        if self.error:
            note = "\n\n*(answer incomplete)*\n\n" if body else ""
            body = f"{body}{note}{markup.error_markdown(self.error)}"
        if body:
            out.append({"role": "assistant", "content": body})
        citations = self.shown_citations()
        if citations:
            # No status: the sources panel starts open, under the answer, and can be folded.
            out.append(
                {
                    "role": "assistant",
                    "content": markup.sources_markdown(citations),
                    "metadata": {"title": f"Sources ({len(citations)})"},
                }
            )
        return out

    def shown_citations(self) -> tuple[Citation, ...]:
        if self.answer is None:
            return () if self.error else self.citations
        if self.answer.mode in ("llm", "extractive"):
            return tuple(self.answer.citations)
        return ()  # no_answer and error: nothing was drawn from the passages


class ChatPage:
    """The staff chat page, kotaemon-style: `build()` lays it out, `register_events()` wires it."""

    def __init__(self, assistant: Any, users: UserStore, settings: UISettings) -> None:
        self.assistant = assistant
        self.users = users
        self.settings = settings

    def build(self) -> None:
        org = markup.literal(self.settings.org_name)
        with gr.Row(equal_height=True):
            gr.Markdown(f"## {org} document assistant", elem_id="enclave-title")
            self.whoami = gr.Markdown(elem_id="enclave-whoami")
            gr.Button("Sign out", link="/logout", size="sm", scale=0, min_width=100)
        self.chatbot = gr.Chatbot(
            label="Conversation",
            elem_id="enclave-chat",
            height="65vh",
            placeholder=f"Ask a question about the documents of {org} you may read.",
            buttons=["copy", "copy_all"],  # no "share": it posts to Hugging Face
            latex_delimiters=[],  # `$$` in a document must stay text
            sanitize_html=True,
            allow_tags=False,
            group_consecutive_messages=True,
        )
        with gr.Row(equal_height=True):
            self.question = gr.Textbox(
                show_label=False,
                placeholder="Type a question and press Enter",
                lines=1,
                max_lines=6,
                scale=8,
                autofocus=True,
                elem_id="enclave-question",
            )
            self.send = gr.Button("Send", variant="primary", scale=1, min_width=90)
        self.new = gr.Button("New conversation", size="sm")
        # (question, answer) pairs of this browser session: what the assistant gets as history,
        # kept apart from the chat messages so reasoning and source lists never leak into it.
        self.pairs = gr.State([])

    def register_events(self, app: gr.Blocks) -> None:
        chat = gr.on(
            triggers=[self.question.submit, self.send.click],
            fn=self.respond,
            inputs=[self.question, self.chatbot, self.pairs],
            outputs=[self.question, self.chatbot, self.pairs],
            api_name="chat",
            # Callable by clients under its name, kept out of the API page: its inputs are the
            # chat widget's; scripts use /ask.
            api_visibility="undocumented",
            concurrency_limit=CONCURRENT_ANSWERS,
            concurrency_id=ANSWER_GROUP,
            show_progress="minimal",
        )
        self.new.click(
            self.new_conversation,
            inputs=None,
            outputs=[self.question, self.chatbot, self.pairs],
            cancels=[chat],
            api_visibility="private",
            queue=False,
        )
        self.chatbot.clear(lambda: [], inputs=None, outputs=self.pairs, api_visibility="private")
        gr.api(
            self.ask,
            api_name="ask",
            concurrency_limit=CONCURRENT_ANSWERS,
            concurrency_id=ANSWER_GROUP,
        )
        app.load(self.whoami_markdown, inputs=None, outputs=self.whoami, api_visibility="private")

    @staticmethod
    def new_conversation() -> tuple[Any, ChatMessages, Pairs]:
        # Unlock the box too: this cancels a streaming answer before it could unlock it itself.
        return gr.update(value="", interactive=True), [], []

    def whoami_markdown(self, request: gr.Request) -> str:
        try:
            principal = principal_of(request, self.users)
        except EnclaveError as exc:
            return markup.error_markdown(str(exc))
        groups = ", ".join(principal.groups) or "none"
        return (
            f"Signed in as **{markup.literal(principal.name)}** · {principal.role} · "
            f"groups: {markup.literal(groups)}"
        )

    def respond(
        self, text: str, chat: ChatMessages | None, pairs: Pairs | None, request: gr.Request
    ) -> Iterator[tuple[Any, ChatMessages, Pairs]]:
        """Stream the answer to `text` into the chat; the conversation so far is its history."""
        question = (text or "").strip()
        chat = list(chat or [])
        pairs = list(pairs or [])
        if not question:
            yield gr.skip(), gr.skip(), gr.skip()
            return
        turn = Turn(question, self.settings.show_reasoning)
        # The box is emptied and locked while the answer streams: a second question sent now
        # would race this one for the same history.
        busy = gr.update(value="", interactive=False)
        yield busy, chat + turn.messages(), pairs
        try:
            principal = principal_of(request, self.users)
            for event in self.assistant.stream(principal, question, history=tuple(pairs)):
                turn.apply(event)
                if event.kind == "reasoning" and not self.settings.show_reasoning:
                    continue  # nothing visible changed; do not send it to the browser at all
                yield busy, chat + turn.messages(), pairs
        except EnclaveError as exc:
            log.warning("question by %s failed: %s", _name(request), exc, exc_info=True)
            turn.error = str(exc)
        except Exception:
            log.exception("question by %s failed unexpectedly", _name(request))
            turn.error = INTERNAL_ERROR
        else:
            if turn.answer is None:
                log.error("assistant stream for %s ended without a done event", _name(request))
                turn.error = NO_ANSWER_ERROR
            elif turn.answer.mode == "error":
                gr.Warning(markup.toast(turn.answer.error or "The answer failed."))
            else:
                pairs.append((question, turn.answer.text))
        if turn.error:
            gr.Warning(markup.toast(turn.error))
        yield gr.update(value="", interactive=True), chat + turn.messages(), pairs

    def ask(self, question: str, request: gr.Request) -> dict[str, Any]:
        """Answer one question for the signed-in user, without conversation history.

        Returns {answer, mode, citations: [{n, source, page, title, section, chunk_id}],
        audit_id, error}. `error` is set when the answer itself failed (mode "error"); a request
        that cannot be served at all (not signed in, LLM down, ...) is an error response.
        """
        text = (question or "").strip()
        if not text:
            raise gr.Error("The question is empty: pass the text of the question to ask.")
        answer: Answer | None = None
        try:
            principal = principal_of(request, self.users)
            for event in self.assistant.stream(principal, text, history=()):
                if event.kind == "done":
                    answer = event.answer
        except EnclaveError as exc:
            log.warning("API question by %s failed: %s", _name(request), exc, exc_info=True)
            raise gr.Error(markup.toast(str(exc)), print_exception=False) from exc
        except Exception as exc:
            log.exception("API question by %s failed unexpectedly", _name(request))
            raise gr.Error(INTERNAL_ERROR, print_exception=False) from exc
        if answer is None:
            log.error("assistant stream for %s ended without a done event", _name(request))
            raise gr.Error(NO_ANSWER_ERROR, print_exception=False)
        return markup.answer_record(answer)


def _name(request: gr.Request | None) -> str:
    return str(getattr(request, "username", None) or "an unknown user")
