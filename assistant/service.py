"""The Assistant: one question in, a grounded, cited, audited answer out (streamed or whole).

The CLI and the web UI both use it, so both get the same retrieval, rules and audit trail:
question held to its length limit and cleaned of control and invisible characters
(assistant/questions.py) → the newest `history_turns` earlier turns → follow-up rewritten to
stand alone → retrieval → prompt fitted to the context window → the model's answer streamed →
citations resolved against the supplied sources and checked for support → one audit record
(`answer`, or `answer_error` holding what had streamed before the failure).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

from assistant.budget import ContextBudget, FittedPrompt
from assistant.citations import Locate, citations_for, resolve
from assistant.evidence import Finding
from assistant.extractive import ExtractiveAnswerer
from assistant.followup import QueryRewriter, Rewrite, clean_history
from assistant.llm import DeltaKind
from assistant.prompts import build_messages
from assistant.questions import CleanQuestion, clean_question
from assistant.retrieval import Retriever
from assistant.support import SupportChecker, says_not_in_sources
from core.errors import AuditIntegrityError, ConfigError, EnclaveError
from core.types import Answer, Citation, Hit, Principal, SentenceSupport, StreamEvent

log = logging.getLogger(__name__)

NO_ANSWER = (
    "The documents you have access to do not answer this question. "
    "Try other words, or ask someone with access to the relevant documents."
)
# What the asker is told when the audit log cannot take the answer's record; the details
# (which log, and why) go to the server log, not to staff.
WITHHELD = (
    "The answer was withheld: it could not be written to the audit log, and no answer is given "
    "without its record. Try again later, and tell your administrator if this persists."
)
MAX_QUESTION_CHARS = 4000  # ui.max_question_chars by default
HISTORY_TURNS = 6  # llm.history_turns by default


def too_long(chars: int, limit: int) -> str:
    """The refusal of a question of `chars` characters, for every entry point alike."""
    return (
        f"the question is {chars} characters long; the limit is {limit} (ui.max_question_chars): "
        "shorten it, or ask it in parts"
    )


class ChatModel(Protocol):
    model: str
    max_tokens: int
    temperature: float

    def stream(
        self, messages: Sequence[dict[str, str]], max_tokens: int | None = None
    ) -> Iterator[tuple[DeltaKind, str]]: ...


class AuditSink(Protocol):
    def append(
        self, event: str, user: str, question: str = "", error: str | None = None, data: Any = None
    ) -> Any: ...

    def check_writable(self) -> None: ...


class Assistant:
    """Answers for a principal. With `llm`, a `budget` is required: prompts are fitted to it.

    A question longer than `max_question_chars` is refused; a follow-up is asked with at most
    the `history_turns` newest earlier turns of its conversation.
    """

    def __init__(
        self,
        retriever: Retriever,
        audit: AuditSink,
        llm: ChatModel | None,
        extractive: ExtractiveAnswerer,
        org_name: str = "Enclave",
        budget: ContextBudget | None = None,
        rewriter: QueryRewriter | None = None,
        support: SupportChecker | None = None,
        max_question_chars: int = MAX_QUESTION_CHARS,
        history_turns: int = HISTORY_TURNS,
        refuse_unanswered: bool = True,
        locate: Locate | None = None,
    ) -> None:
        if llm is not None and budget is None:
            raise ConfigError(
                "an LLM needs a context budget: build the Assistant with budget=ContextBudget(...)"
            )
        self.retriever = retriever
        self.audit = audit
        self.llm = llm
        self.extractive = extractive
        self.org_name = org_name
        self.budget = budget
        self.rewriter = rewriter or QueryRewriter(None)
        self.support = support or SupportChecker(None)
        self.max_question_chars = max_question_chars
        self.history_turns = history_turns
        # Refuse, in both modes, when no passage gives what the question asks (assistant.evidence).
        self.refuse_unanswered = refuse_unanswered
        # Where a document lives for its users (a synced share, site or mailbox), for citations
        # and the audit record; the source path stays the ingested file's.
        self.locate = locate

    def ask(
        self,
        principal: Principal,
        question: str,
        history: Sequence[tuple[str, str]] = (),
        conversation_id: str | None = None,
    ) -> Answer:
        answer: Answer | None = None
        for event in self.stream(principal, question, history, conversation_id):
            if event.kind == "done":
                answer = event.answer
        assert answer is not None  # stream always ends with "done" or raises
        return answer

    def stream(
        self,
        principal: Principal,
        question: str,
        history: Sequence[tuple[str, str]] = (),
        conversation_id: str | None = None,
    ) -> Iterator[StreamEvent]:
        """Answer `question`, `history` being the earlier (question, answer) turns of its
        conversation. `conversation_id` (the UI's, for its history list) goes on the record."""
        started = time.perf_counter()
        typed = len(question.strip())  # before cleaning: a huge question is refused at once
        if typed > self.max_question_chars:
            raise EnclaveError(too_long(typed, self.max_question_chars))
        cleaned = clean_question(question)
        question = cleaned.text
        if not question:
            raise EnclaveError("the question is empty: type a question first")
        # Before anything is searched or streamed: an answer that cannot be logged is not begun.
        self._check_audit(principal)
        answer = Answer(question=question, text="", mode="no_answer", model=self._model_name())
        trace = _Trace()
        trace.cleaned = cleaned
        # However long the conversation, only its newest turns go on (the rule rewriter walks
        # back through earlier questions, the prompt holds them all).
        recent = list(history)[-self.history_turns :] if self.history_turns else []
        trace.history = (len(recent), len(history))
        try:
            turns = clean_history(recent)  # earlier reasoning never goes back to a model
            trace.rewrite = self.rewriter.rewrite(question, turns)
            answer.search_query = trace.rewrite.query
            relevant, trace.searched = self.retriever.retrieve(principal, trace.rewrite.query)
            supplied = citations_for(relevant, self.locate)
            if relevant:
                # Which sentence answers, and whether any does: the same judgement for both modes.
                trace.finding = self.extractive.find(question, relevant, supplied, trace.rewrite.query)
            if not relevant:
                answer.text = not_stated(trace.searched, "")
                yield StreamEvent("sources")
            elif self.refuse_unanswered and trace.finding is not None and not trace.finding.answerable:
                answer.text = not_stated(relevant, trace.finding.reason)
                yield StreamEvent("sources")
            elif self.llm is None:
                assert trace.finding is not None
                answer.mode = "extractive"
                answer.hits = relevant
                yield StreamEvent("sources", citations=tuple(supplied))
                answer.text = self.extractive.compose(trace.finding)
                answer.citations = [c for c in supplied if f"[{c.n}]" in answer.text]
                if not answer.text:  # nothing to quote: a refusal, never an empty answer
                    answer.mode, answer.hits = "no_answer", []
                    answer.text = not_stated(relevant, trace.finding.reason)
            else:
                answer.mode = "llm"
                yield from self._generate(answer, trace, question, turns, relevant, supplied)
        except EnclaveError as exc:
            answer.mode = "error"
            answer.error = str(exc)
            if trace.raw or trace.reasoning:
                answer.text = "".join(trace.raw)  # what had streamed when it failed, for the record
                answer.reasoning = "".join(trace.reasoning)
            answer.latency_ms = (time.perf_counter() - started) * 1000
            self._record(principal, answer, trace, conversation_id)
            raise
        answer.latency_ms = (time.perf_counter() - started) * 1000
        self._record(principal, answer, trace, conversation_id)
        yield StreamEvent("done", answer=answer)

    def _generate(
        self,
        answer: Answer,
        trace: _Trace,
        question: str,
        turns: list[tuple[str, str]],
        relevant: list[Hit],
        supplied: list[Citation],
    ) -> Iterator[StreamEvent]:
        assert self.llm is not None and self.budget is not None
        texts = [h.chunk.text for h in relevant]

        def build(k: int, h: int) -> list[dict[str, str]]:
            return build_messages(self.org_name, question, supplied[:k], texts[:k], turns[len(turns) - h :])

        trace.fitted = self.budget.fit(build, supplied, len(turns))
        kept = trace.fitted.sources_kept
        supplied, answer.hits = supplied[:kept], relevant[:kept]
        trace.messages = trace.fitted.messages
        yield StreamEvent("sources", citations=tuple(supplied))
        for kind, text in self.llm.stream(trace.messages):
            if kind == "reasoning":
                trace.reasoning.append(text)
                yield StreamEvent("reasoning", text=text)
            elif kind == "token":
                trace.raw.append(text)
                yield StreamEvent("token", text=text)
            else:
                answer.finish_reason = text
        answer.reasoning = "".join(trace.reasoning)
        text, answer.citations, trace.removed = resolve("".join(trace.raw), supplied)
        if trace.removed:
            log.info("removed citations to sources not supplied: %s", trace.removed)
        answer.text = text.strip()
        if not answer.text:
            answer.text = "The language model returned no answer. Please try again."
        else:
            # Sentences the model did not cite get the supplied source that backs them, if any.
            by_n = {c.n: h.chunk.text for c, h in zip(supplied, answer.hits)}
            answer.support = self.support.check(answer.text, by_n, attribute=True, question=question)
            backing = {n for s in answer.support if s.level == "supported" for n in s.cited}
            answer.citations = [c for c in supplied if c.n in backing or c in answer.citations]
            refusal = unsupported_refusal(answer.support, answer.hits)
            if refusal is not None:
                trace.withheld = {"answer": answer.text, "support": answer.support}
                answer.mode, answer.text, answer.support, answer.citations = "no_answer", refusal, [], []
                return
        if answer.finish_reason == "length":
            answer.text += f"\n\n(The answer was cut off at the limit of {self.llm.max_tokens} tokens.)"

    def _model_name(self) -> str:
        return self.llm.model if self.llm else f"extractive/{self.retriever.embedder.model_id}"

    def _record(
        self, principal: Principal, answer: Answer, trace: _Trace, conversation_id: str | None
    ) -> None:
        used_ids = {h.chunk.chunk_id for h in answer.hits}
        dropped_ids = {d["chunk_id"] for d in trace.fitted.dropped} if trace.fitted else set()
        data = {
            "mode": answer.mode,
            "groups": list(principal.groups),
            "role": principal.role,
            "model": answer.model,
            "settings": {
                "top_k": self.retriever.top_k,
                "min_score": self.retriever.min_score,
                "embedding_model": self.retriever.embedder.model_id,
                "retrieval_mode": self.retriever.mode,
                "candidates": self.retriever.candidates,
                "dense_weight": self.retriever.dense_weight,
                "reranker": self.retriever.reranker.model_id if self.retriever.reranker else None,
                **(
                    {"max_tokens": self.llm.max_tokens, "temperature": self.llm.temperature}
                    if self.llm
                    else {}
                ),
            },
            "query": trace.rewrite.record() if trace.rewrite else None,
            "retrieved": [
                {
                    "chunk_id": h.chunk.chunk_id,
                    "doc_id": h.chunk.doc_id,
                    "source": h.chunk.source,
                    "location": self.locate(h.chunk.source) if self.locate is not None else None,
                    "page": h.chunk.page,
                    "score": round(h.score, 6),
                    "sha256": h.chunk.content_hash,
                    "used": h.chunk.chunk_id in used_ids,
                    **({"dropped_for_context": True} if h.chunk.chunk_id in dropped_ids else {}),
                }
                for h in trace.searched
            ],
            "context": trace.fitted.record() if trace.fitted else None,
            "prompt": trace.messages,
            "answer": answer.text,
            "reasoning": answer.reasoning,
            "finish_reason": answer.finish_reason,
            # Title and section too, so a reopened conversation can list its sources again.
            "citations": [
                {
                    "n": c.n,
                    "chunk_id": c.chunk_id,
                    "doc_id": c.doc_id,
                    "source": c.source,
                    "location": c.location,
                    "page": c.page,
                    "title": c.title,
                    "section": c.section,
                }
                for c in answer.citations
            ],
            "citations_removed": trace.removed,
            **({"evidence": evidence_record(trace.finding)} if trace.finding is not None else {}),
            "support": support_record(answer.support),
            "weakly_supported": [s.text for s in answer.support if s.level != "supported"],
            # Sources Enclave attributed to sentences the model did not cite (not the model's).
            "attributed": sorted({n for s in answer.support if s.attributed for n in s.cited}),
            **(
                {
                    "withheld": {
                        "answer": trace.withheld["answer"],
                        "support": support_record(trace.withheld["support"]),
                    }
                }
                if trace.withheld
                else {}
            ),
            "latency_ms": round(answer.latency_ms, 1),
            "history_turns": trace.history[0],
            **(
                {"history_left_out": trace.history[1] - trace.history[0]}
                if trace.history[1] > trace.history[0]
                else {}
            ),
            **(
                {"question_cleaned": trace.cleaned.record()}
                if trace.cleaned and trace.cleaned.changed
                else {}
            ),
            **({"conversation_id": conversation_id} if conversation_id else {}),
        }
        event = "answer_error" if answer.error else "answer"
        try:
            record = self.audit.append(event, principal.name, answer.question, answer.error, data)
        except Exception as exc:
            log.error(
                "answer for %s withheld: its audit record could not be written: %s", principal.name, exc
            )
            raise AuditIntegrityError(WITHHELD) from exc
        answer.audit_id = getattr(record, "id", None)

    def _check_audit(self, principal: Principal) -> None:
        try:
            self.audit.check_writable()
        except Exception as exc:
            log.error("question by %s refused: the audit log cannot be written: %s", principal.name, exc)
            raise AuditIntegrityError(WITHHELD) from exc


def support_record(support: Sequence[SentenceSupport]) -> list[dict[str, Any]]:
    """Sentence support as the audit record keeps it (offsets into the recorded answer)."""
    return [
        {
            "start": s.start,
            "end": s.end,
            "cited": list(s.cited),
            "level": s.level,
            "lexical": s.lexical,
            "semantic": s.semantic,
            **({"attributed": True} if s.attributed else {}),
        }
        for s in support
    ]


def unsupported_refusal(support: Sequence[SentenceSupport], hits: Sequence[Hit]) -> str | None:
    """The refusal that replaces a generated answer no passage backs (the model's words go to
    the audit record only), or None to keep it. Refused: an answer whose sentences are all
    uncited (no citation of the model's and none attributed), or that only says the sources do
    not answer. An answer whose citations are all weak is kept, its sentences marked: the model
    named its sources, and a reader can check them."""
    backed = [s for s in support if s.level == "supported"]
    if any(not says_not_in_sources(s.text) for s in backed) or any(s.level == "weak" for s in support):
        return None
    searched = searched_titles(hits)
    if backed:
        return f"The documents searched ({searched}) do not answer this question."
    return (
        f"No answer is given: the language model's answer is not backed by the documents searched "
        f"({searched}); none of its sentences is supported by their passages."
    )


def evidence_record(finding: Finding) -> dict[str, Any]:
    """What the audit record keeps of the evidence judgement: the kind of answer asked for, the
    verdict and its reason, and the best candidate's source and scores."""
    best = finding.best
    return {
        "expected": finding.expected.kind,
        "answerable": finding.answerable,
        **({"reason": finding.reason} if finding.reason else {}),
        **(
            {
                "best": {
                    "n": best.candidate.n,
                    "cosine": round(best.cosine, 4),
                    "coverage": round(best.coverage, 4),
                    "typed": best.typed,
                }
            }
            if best is not None
            else {}
        ),
    }


def searched_titles(hits: Sequence[Hit]) -> str:
    """The documents of `hits`, by title, for a refusal to name ("A; B; C and 4 more")."""
    titles = list(dict.fromkeys(h.chunk.title or h.chunk.source for h in hits))
    return "; ".join(titles[:5]) + (f" and {len(titles) - 5} more" if len(titles) > 5 else "")


def not_stated(hits: Sequence[Hit], reason: str) -> str:
    """The refusal of a question no passage answers, naming the documents searched and why."""
    if not hits:
        return NO_ANSWER
    why = f": {reason}" if reason else ""
    return (
        f"The documents you have access to do not answer this question{why}. Searched: {searched_titles(hits)}. "
        "Try other words, or ask someone with access to the relevant documents."
    )


class _Trace:
    """What one answer went through, kept for its audit record (also when it fails midway)."""

    def __init__(self) -> None:
        self.rewrite: Rewrite | None = None
        self.searched: list[Hit] = []
        self.fitted: FittedPrompt | None = None
        self.messages: list[dict[str, str]] = []
        self.raw: list[str] = []
        self.reasoning: list[str] = []
        self.removed: list[int] = []
        self.cleaned: CleanQuestion | None = None
        self.finding: Finding | None = None
        self.history: tuple[int, int] = (0, 0)  # earlier turns used, and given
        # A generated answer replaced by a refusal: its text and support, for the record.
        self.withheld: dict[str, Any] | None = None


__all__ = ["HISTORY_TURNS", "MAX_QUESTION_CHARS", "NO_ANSWER", "WITHHELD", "Assistant", "too_long"]
