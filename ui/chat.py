"""The chat page: a question box, answers streamed with their sources, and the `/ask` API.

No `from __future__ import annotations` here: `gr.api` reads the return annotation of `ask`
from its signature unevaluated, and needs a real type there, not a string.
"""

import html
import logging
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import gradio as gr

from assistant.questions import clean_question
from assistant.service import too_long
from audit import AuditLog, AuditRecord
from audit.log import MAX_COMMENT_CHARS
from core.errors import AccessDenied, AuditIntegrityError, EnclaveError
from core.settings import HISTORY_TURNS_MAX, UISettings
from core.types import Answer, AnswerMode, Citation, SentenceSupport, StreamEvent
from ui import markup
from ui.accounts import Accounts
from ui.login import principal_of
from ui.sessions import QuestionLimit

log = logging.getLogger(__name__)

# Answers run in worker threads; the LLM server batches concurrent requests, so several may run
# at once (ui.concurrent_answers). One group for chat and /ask, so scripts cannot starve staff of
# answer slots.
ANSWER_GROUP = "answer"

INTERNAL_ERROR = "Something went wrong while answering; the details are in the server log."
NO_ANSWER_ERROR = "The assistant stopped without giving an answer; the details are in the server log."
NOTHING_TO_ASK = "The question holds no visible text: type a question first."
REFUSED_EVENT = "question_refused"  # too long, or over the user's question limit (audited)

ChatMessages = list[dict[str, Any]]
Pairs = list[tuple[str, str]]

HISTORY_SHOWN = 50  # conversations listed in the sidebar, the most recently continued first
TITLE_CHARS = 60
RATING_OF_LIKE = {True: "up", False: "down"}  # gr.LikeData.liked for the thumbs
RATING_WORDS = {"up": "thumbs up", "down": "thumbs down"}
NOT_RATEABLE = "Only a finished answer can be rated; this message has no audit record."
RATE_FIRST = "Rate an answer with thumbs up or down first; the comment goes with that rating."
# Gradio opens the sidebar at start, and on a phone (768 px or narrower) it covers the whole
# page: close it there, in the browser, before anyone has to look for the chat behind it.
CLOSE_SIDEBAR_ON_PHONES = """() => {
  if (!window.matchMedia("(max-width: 768px)").matches) return;
  const sidebar = document.querySelector("#enclave-history.open");
  sidebar?.querySelector(".toggle-button")?.click();
}"""
UNRATED = (
    "Ratings are kept on the audit record and cannot be taken back; give the other thumb to change yours."
)


def new_conversation_id() -> str:
    return uuid.uuid4().hex


@dataclass
class Conversation:
    """One browser session's conversation, kept in a gr.State (server-side, per session).

    `pairs` are the (question, answer) turns the assistant gets as history, kept apart from the
    chat messages so reasoning and source lists never leak into it; `audit_ids` maps the index
    of each chat message of an answer to that answer's audit record (what a thumb rates);
    `rated` is the last rating given here, which a comment is added to. Only the newest
    HISTORY_TURNS_MAX pairs are kept: the assistant uses fewer (llm.history_turns), and a very
    long conversation must not grow the session without bound.
    """

    id: str = field(default_factory=new_conversation_id)
    pairs: Pairs = field(default_factory=list)
    # What the chat shows: kept here, on the server, and only ever sent to the browser. It is no
    # event input, so no client can hand the server a history (with file references) to render.
    shown: ChatMessages = field(default_factory=list)
    audit_ids: dict[int, int] = field(default_factory=dict)
    rated: tuple[int, str] | None = None

    def remember(self, question: str, answer: str) -> None:
        self.pairs.append((question, answer))
        del self.pairs[:-HISTORY_TURNS_MAX]

    def add_turn(self, start: int, messages: ChatMessages, audit_id: int | None) -> None:
        """Map the answer messages of a turn (the chat from index `start`) to its record."""
        if audit_id is None:
            return
        for offset, message in enumerate(messages):
            if message.get("role") == "assistant":
                self.audit_ids[start + offset] = audit_id


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
    # The answer could not be written to the audit log: what had streamed is taken back off the
    # page (never left there unlogged) and only the reason is shown.
    withheld: bool = False
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
        if self.withheld:
            out.append({"role": "assistant", "content": markup.error_markdown(self.error or "")})
            return out
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

    def __init__(
        self,
        assistant: Any,
        users: Accounts,
        settings: UISettings,
        *,
        audit: AuditLog,
        limit: QuestionLimit | None = None,
    ) -> None:
        self.assistant = assistant
        self.users = users
        self.settings = settings
        self.limit = limit  # questions per user and window; None: no limit
        # Feedback goes on, and the conversation history comes from, the audit log: no second
        # store that could disagree with it, and nothing held by one app replica.
        self.audit = audit

    def build(self) -> None:
        org = markup.literal(self.settings.org_name)
        with gr.Row(equal_height=True):
            # Columns with minimum widths (Markdown ignores its own) make the row wrap on a phone
            # instead of breaking the title's words apart.
            with gr.Column(min_width=280):
                if self.settings.logo_path is not None:
                    logo = markup.logo(self.settings.org_name, True)
                    title = f"{logo}{html.escape(self.settings.org_name)} document assistant"
                    gr.HTML(f"<h2 style='margin:0'>{title}</h2>", elem_id="enclave-title")
                else:
                    gr.Markdown(f"## {org} document assistant", elem_id="enclave-title")
            with gr.Column(min_width=200):
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
                max_length=self.settings.max_question_chars,
                scale=8,
                autofocus=True,
                elem_id="enclave-question",
            )
            self.send = gr.Button("Send", variant="primary", scale=1, min_width=90, elem_id="enclave-send")
        with gr.Group(visible=False, elem_id="enclave-feedback") as self.feedback_box:
            self.feedback_note = gr.Markdown()
            with gr.Row(equal_height=True):
                self.comment = gr.Textbox(
                    show_label=False,
                    placeholder="What was good or wrong about this answer? (optional, Enter sends)",
                    lines=1,
                    max_lines=4,
                    max_length=MAX_COMMENT_CHARS,
                    scale=8,
                    elem_id="enclave-comment",
                )
                self.send_comment = gr.Button("Send comment", scale=1, min_width=90)
        with gr.Sidebar(label="Conversations", elem_id="enclave-history"):
            self.new = gr.Button("New conversation", variant="secondary", elem_id="enclave-new")
            self.history = gr.Radio(
                label="Your conversations",
                info="Kept in the audit log; a retention purge removes old ones.",
                choices=[],
                elem_id="enclave-history-list",
            )
        # None until the first question or opened conversation: a State's default value is
        # copied into every session, and each needs its own conversation id.
        self.convo = gr.State(None)

    def register_events(self, app: gr.Blocks) -> None:
        chat = gr.on(
            triggers=[self.question.submit, self.send.click],
            fn=self.respond,
            inputs=[self.question, self.convo],
            outputs=[self.question, self.chatbot, self.history, self.feedback_box, self.convo],
            api_name="chat",
            # Callable by clients under its name, kept out of the API page: its inputs are the
            # chat widget's; scripts use /ask.
            api_visibility="undocumented",
            concurrency_limit=self.settings.concurrent_answers,
            concurrency_id=ANSWER_GROUP,
            show_progress="minimal",
        )
        conversation_outputs = [self.question, self.chatbot, self.history, self.feedback_box, self.convo]
        self.new.click(
            self.new_conversation,
            inputs=None,
            outputs=conversation_outputs,
            cancels=[chat],
            api_name="new_conversation",
            api_visibility="undocumented",
        )
        self.history.input(
            self.open_conversation,
            inputs=[self.history],
            outputs=conversation_outputs,
            cancels=[chat],
            api_name="open_conversation",
            api_visibility="undocumented",
        )
        self.chatbot.clear(
            self.new_conversation,
            inputs=None,
            outputs=conversation_outputs,
            api_name="clear_conversation",
            api_visibility="private",
        )
        self.chatbot.like(
            self.rate,
            inputs=[self.convo],
            outputs=[self.feedback_box, self.feedback_note, self.comment, self.convo],
            api_name="rate",
            api_visibility="undocumented",
        )
        gr.on(
            triggers=[self.comment.submit, self.send_comment.click],
            fn=self.add_comment,
            inputs=[self.comment, self.convo],
            outputs=[self.feedback_box, self.comment],
            api_name="comment",
            api_visibility="undocumented",
        )
        gr.api(
            self.ask,
            api_name="ask",
            concurrency_limit=self.settings.concurrent_answers,
            concurrency_id=ANSWER_GROUP,
        )
        gr.api(self.feedback, api_name="feedback")
        app.load(
            self.whoami_markdown,
            inputs=None,
            outputs=self.whoami,
            api_name="whoami",
            api_visibility="private",
        )
        app.load(
            self.history_list,
            inputs=None,
            outputs=self.history,
            api_name="conversations",
            api_visibility="private",
        )
        app.load(None, inputs=None, outputs=None, js=CLOSE_SIDEBAR_ON_PHONES, api_visibility="private")

    # -- conversations ------------------------------------------------------------------------

    def new_conversation(self, request: gr.Request) -> tuple[Any, ...]:
        # Unlock the box too: this cancels a streaming answer before it could unlock it itself.
        return (
            gr.update(value="", interactive=True),
            [],
            self.history_list(request),
            gr.update(visible=False),
            Conversation(),
        )

    def history_list(self, request: gr.Request, current: str | None = None) -> Any:
        """The signed-in user's own conversations, most recently continued first."""
        try:
            principal = principal_of(request, self.users)
            found = self.audit.conversations(principal.name, limit=HISTORY_SHOWN)
        except EnclaveError as exc:
            log.warning("history of %s not shown: %s", _name(request), exc)
            return gr.update(choices=[], value=None)
        choices = [(conversation_label(c.title, c.started), c.id) for c in found]
        shown = current if current in {c.id for c in found} else None
        return gr.update(choices=choices, value=shown)

    def open_conversation(self, conversation_id: str | None, request: gr.Request) -> tuple[Any, ...]:
        """Show a conversation of the signed-in user again, and continue it."""
        unlocked = gr.update(value="", interactive=True)
        try:
            principal = principal_of(request, self.users)
            records = self.audit.conversation(principal.name, conversation_id or "")
        except EnclaveError as exc:
            gr.Warning(markup.toast(str(exc)))
            return unlocked, [], gr.skip(), gr.update(visible=False), Conversation()
        if not records:
            # Someone else's id, or purged meanwhile: the same answer for both.
            gr.Warning(markup.toast(f"There is no conversation {conversation_id!r} of yours to open."))
            return unlocked, gr.skip(), self.history_list(request), gr.update(visible=False), gr.skip()
        convo = Conversation(id=str(conversation_id))
        chat: ChatMessages = []
        for record in records:
            turn = turn_of(record, self.settings.show_reasoning)
            messages = turn.messages()
            convo.add_turn(len(chat), messages, record.id)
            chat.extend(messages)
            answer = turn.answer
            if record.event == "answer" and answer is not None and answer.mode != "error":
                convo.remember(record.question, answer.text)
        convo.shown = chat
        return unlocked, chat, gr.skip(), gr.update(visible=False), convo

    # -- feedback -------------------------------------------------------------------------------

    def rate(self, convo: Conversation | None, liked: gr.LikeData, request: gr.Request) -> tuple[Any, ...]:
        """A thumb on an answer: a feedback record at once, then an optional comment."""
        hidden = gr.update(visible=False)
        convo = convo or Conversation()
        index = liked.index if isinstance(liked.index, int) else liked.index[0]
        record_id = convo.audit_ids.get(index)
        rating = RATING_OF_LIKE.get(liked.liked) if isinstance(liked.liked, bool) else None
        if record_id is None:
            gr.Warning(NOT_RATEABLE)
            return hidden, gr.skip(), gr.skip(), convo
        if rating is None:
            gr.Info(UNRATED)
            return hidden, gr.skip(), gr.skip(), convo
        try:
            self._give_feedback(request, record_id, rating, None)
        except (EnclaveError, ValueError) as exc:
            gr.Warning(markup.toast(str(exc)))
            return hidden, gr.skip(), gr.skip(), convo
        convo.rated = (record_id, rating)
        note = (
            f"Your {RATING_WORDS[rating]} on the answer (audit record {record_id}) is recorded. "
            + ("What was wrong with it?" if rating == "down" else "Anything to add?")
            + " A comment is optional."
        )
        return gr.update(visible=True), note, gr.update(value=""), convo

    def add_comment(self, text: str, convo: Conversation | None, request: gr.Request) -> tuple[Any, ...]:
        """The comment goes on a new feedback record with the same rating (the newest counts)."""
        comment = (text or "").strip()
        if convo is None or convo.rated is None:
            gr.Warning(RATE_FIRST)
            return gr.update(visible=False), gr.skip()
        if not comment:
            return gr.update(visible=False), ""  # nothing to add: the rating stands alone
        record_id, rating = convo.rated
        try:
            self._give_feedback(request, record_id, rating, comment)
        except (EnclaveError, ValueError) as exc:
            gr.Warning(markup.toast(str(exc)))
            return gr.skip(), gr.skip()
        gr.Info("Thank you: your comment is recorded with your rating.")
        return gr.update(visible=False), ""

    def feedback(self, record_id: int, rating: str, comment: str, request: gr.Request) -> dict[str, Any]:
        """Rate your own answer `record_id` (the `audit_id` that /ask returned): `rating` is "up"
        or "down", `comment` optional (empty for none). Returns {feedback_id, record_id, rating,
        comment}."""
        try:
            record = self._give_feedback(request, record_id, rating, comment or None)
        except (EnclaveError, ValueError) as exc:
            raise gr.Error(markup.toast(str(exc)), print_exception=False) from exc
        return {"feedback_id": record.id, **record.data}

    def _give_feedback(
        self, request: gr.Request, record_id: int, rating: str, comment: str | None
    ) -> AuditRecord:
        principal = principal_of(request, self.users)
        if self.limit is not None:  # a script cannot grow the audit log with feedback
            self.limit.take_feedback(principal.name, time.time())
        try:
            # AuditLog.feedback refuses another user's record (AccessDenied), under its write lock.
            return self.audit.feedback(principal.name, record_id, rating, comment)
        except AccessDenied as exc:
            log.warning("feedback by %s refused: %s", principal.name, exc)
            raise

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
        self, text: str, convo: Conversation | None, request: gr.Request
    ) -> Iterator[tuple[Any, ...]]:
        """Stream the answer to `text` into the chat; the conversation so far is its history."""
        typed = (text or "").strip()
        convo = convo or Conversation()
        chat = list(convo.shown)
        if not typed:
            yield gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
            return
        refused = self.refusal(typed, request)
        if refused is not None:
            # Nothing is asked and nothing typed is lost: the question stays in the box.
            gr.Warning(markup.toast(refused))
            yield gr.update(value=text, interactive=True), gr.skip(), gr.skip(), gr.skip(), gr.skip()
            return
        # Shown as the assistant will ask it; the assistant cleans `typed` again and records
        # what it took out.
        question = clean_question(typed).text
        turn = Turn(question, self.settings.show_reasoning)
        # The box is emptied and locked while the answer streams: a second question sent now
        # would race this one for the same history.
        busy = gr.update(value="", interactive=False)
        hidden = gr.update(visible=False)
        yield busy, chat + turn.messages(), gr.skip(), hidden, convo
        try:
            principal = principal_of(request, self.users)
            events = self.assistant.stream(
                principal, typed, history=tuple(convo.pairs), conversation_id=convo.id
            )
            for event in events:
                turn.apply(event)
                if event.kind == "reasoning" and not self.settings.show_reasoning:
                    continue  # nothing visible changed; do not send it to the browser at all
                yield busy, chat + turn.messages(), gr.skip(), hidden, convo
        except EnclaveError as exc:
            log.warning("question by %s failed: %s", _name(request), exc, exc_info=True)
            turn.error = str(exc)
            turn.withheld = isinstance(exc, AuditIntegrityError)
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
                convo.remember(question, turn.answer.text)
        if turn.error:
            gr.Warning(markup.toast(turn.error))
        messages = turn.messages()
        convo.add_turn(len(chat), messages, turn.answer.audit_id if turn.answer else None)
        convo.shown = chat + messages
        history = self.history_list(request, current=convo.id)
        yield gr.update(value="", interactive=True), chat + messages, history, hidden, convo

    def refusal(self, typed: str, request: gr.Request) -> str | None:
        """Why the question `typed` is not asked at all, or None: too long (ui.max_question_chars),
        nothing left once invisible characters are taken out, or over the user's question limit.
        Checked before any search or model call; a refusal of the first two kinds costs the
        user nothing, and a refused question is not counted."""
        try:
            name = principal_of(request, self.users).name
        except EnclaveError:
            return None  # the answer path reports it, as for any question
        limit = self.settings.max_question_chars
        if len(typed) > limit:
            self._refused(name, "", {"reason": "too long", "chars": len(typed), "limit": limit})
            return _sentence(too_long(len(typed), limit))
        question = clean_question(typed).text
        if not question:
            return NOTHING_TO_ASK
        if self.limit is None:
            return None
        now = time.time()
        wait = self.limit.take(name, now)
        if wait is None:
            return None
        if self.limit.first_refusal(name, now):
            window = self.limit.window_s / 60
            self._refused(
                name,
                question,
                {"reason": "rate limited", "limit": self.limit.limit, "window_minutes": window},
            )
        log.warning("question by %s refused: over the question limit", name)
        return self.limit.message(wait)

    def _refused(self, name: str, question: str, data: dict[str, Any]) -> None:
        try:
            self.audit.append(REFUSED_EVENT, name, question, data=data)
        except Exception:
            log.exception("could not write the %s event for %r to the audit log", REFUSED_EVENT, name)

    def ask(self, question: str, request: gr.Request) -> dict[str, Any]:
        """Answer one question for the signed-in user, without conversation history.

        Returns {answer, mode, citations: [{n, source, page, title, section, chunk_id}],
        audit_id, error}. `error` is set when the answer itself failed (mode "error"); a request
        that cannot be served at all (not signed in, LLM down, ...) is an error response.
        """
        text = (question or "").strip()
        if not text:
            raise gr.Error("The question is empty: pass the text of the question to ask.")
        refused = self.refusal(text, request)
        if refused is not None:
            raise gr.Error(markup.toast(refused), print_exception=False)
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


def _sentence(message: str) -> str:
    return message[:1].upper() + message[1:] + "."


def conversation_label(title: str, started: str) -> str:
    """A history entry: the first question on one line, and the day and time it was asked."""
    when = f"{started[:10]} {started[11:16]} UTC" if len(started) >= 16 else started
    return f"{markup.one_line(title, TITLE_CHARS)} · {when}"


def turn_of(record: AuditRecord, show_reasoning: bool) -> Turn:
    """An answer record shown as the turn it was: question, answer, reasoning, sources.

    Sources are listed with what the record keeps (title, section, file, page), without the
    passage text, which the log holds only as a hash.
    """
    data = record.data
    text = str(data.get("answer") or "")
    mode: AnswerMode = "error"
    if record.event == "answer" and data.get("mode") in ("llm", "extractive", "no_answer"):
        mode = data["mode"]
    error = record.error
    answer = Answer(
        question=record.question,
        text=text,
        mode=mode,
        citations=_citations(data.get("citations")),
        reasoning=str(data.get("reasoning") or ""),
        model=str(data.get("model") or ""),
        error=error if mode == "error" else None,
        audit_id=record.id,
        support=_support(data.get("support"), text),
    )
    if mode == "error" and not answer.error:
        answer.error = "the answer failed"
    turn = Turn(record.question, show_reasoning, reasoning=answer.reasoning, text=text, answer=answer)
    turn.citations = tuple(answer.citations)
    return turn


def _citations(items: object) -> list[Citation]:
    out: list[Citation] = []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict) or not isinstance(item.get("n"), int):
            continue
        page = item.get("page")
        out.append(
            Citation(
                n=item["n"],
                chunk_id=str(item.get("chunk_id") or ""),
                doc_id=str(item.get("doc_id") or ""),
                source=str(item.get("source") or ""),
                title=str(item.get("title") or ""),
                section=str(item.get("section") or ""),
                page=page if isinstance(page, int) else None,
                snippet="",
                location=item["location"] if isinstance(item.get("location"), str) else None,
            )
        )
    return out


def _support(items: object, text: str) -> list[SentenceSupport]:
    out: list[SentenceSupport] = []
    for item in items if isinstance(items, list) else []:
        try:
            start, end = int(item["start"]), int(item["end"])
            out.append(
                SentenceSupport(
                    start,
                    end,
                    text[start:end],
                    tuple(item.get("cited") or ()),
                    item["level"],
                    item.get("lexical"),
                    item.get("semantic"),
                    bool(item.get("attributed")),
                )
            )
        except (KeyError, TypeError, ValueError):
            continue  # an older or odd record: shown without marks rather than not at all
    return out


def _name(request: gr.Request | None) -> str:
    return str(getattr(request, "username", None) or "an unknown user")
