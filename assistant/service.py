"""The Assistant: one question in, a grounded, cited, audited answer out (streamed or whole).

The CLI and the web UI both use it, so both get the same retrieval, rules and audit trail.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

from assistant.citations import citations_for, resolve
from assistant.extractive import ExtractiveAnswerer
from assistant.llm import DeltaKind
from assistant.prompts import build_messages
from assistant.retrieval import Retriever
from core.errors import AuditIntegrityError, EnclaveError
from core.types import Answer, Hit, Principal, StreamEvent

log = logging.getLogger(__name__)

NO_ANSWER = (
    "The documents you have access to do not answer this question. "
    "Try other words, or ask someone with access to the relevant documents."
)
MAX_QUESTION_CHARS = 4000


class ChatModel(Protocol):
    model: str
    max_tokens: int
    temperature: float

    def stream(self, messages: Sequence[dict[str, str]]) -> Iterator[tuple[DeltaKind, str]]: ...


class AuditSink(Protocol):
    def append(
        self, event: str, user: str, question: str = "", error: str | None = None, data: Any = None
    ) -> Any: ...


class Assistant:
    def __init__(
        self,
        retriever: Retriever,
        audit: AuditSink,
        llm: ChatModel | None,
        extractive: ExtractiveAnswerer,
        org_name: str = "Enclave",
    ) -> None:
        self.retriever = retriever
        self.audit = audit
        self.llm = llm
        self.extractive = extractive
        self.org_name = org_name

    def ask(self, principal: Principal, question: str, history: Sequence[tuple[str, str]] = ()) -> Answer:
        answer: Answer | None = None
        for event in self.stream(principal, question, history):
            if event.kind == "done":
                answer = event.answer
        assert answer is not None  # stream always ends with "done" or raises
        return answer

    def stream(
        self, principal: Principal, question: str, history: Sequence[tuple[str, str]] = ()
    ) -> Iterator[StreamEvent]:
        started = time.perf_counter()
        question = question.strip()
        if not question:
            raise EnclaveError("the question is empty: type a question first")
        if len(question) > MAX_QUESTION_CHARS:
            raise EnclaveError(
                f"the question is {len(question)} characters long; the limit is {MAX_QUESTION_CHARS}"
            )
        answer = Answer(question=question, text="", mode="no_answer", model=self._model_name())
        searched: list[Hit] = []
        messages: list[dict[str, str]] = []
        try:
            relevant, searched = self.retriever.retrieve(principal, question)
            supplied = citations_for(relevant)
            answer.hits = relevant
            yield StreamEvent("sources", citations=tuple(supplied))
            if not relevant:
                answer.text = NO_ANSWER
            elif self.llm is None:
                answer.mode = "extractive"
                answer.text = self.extractive.answer(question, relevant, supplied)
                answer.citations = [c for c in supplied if f"[{c.n}]" in answer.text]
            else:
                answer.mode = "llm"
                messages = build_messages(
                    self.org_name, question, supplied, [h.chunk.text for h in relevant], history
                )
                raw: list[str] = []
                reasoning: list[str] = []
                for kind, text in self.llm.stream(messages):
                    if kind == "reasoning":
                        reasoning.append(text)
                        yield StreamEvent("reasoning", text=text)
                    elif kind == "token":
                        raw.append(text)
                        yield StreamEvent("token", text=text)
                    else:
                        answer.finish_reason = text
                answer.reasoning = "".join(reasoning)
                answer.text, answer.citations, unknown = resolve("".join(raw), supplied)
                if unknown:
                    log.info("removed citations to sources not supplied: %s", unknown)
                answer.text = answer.text.strip()
                if not answer.text:
                    answer.text = "The language model returned no answer. Please try again."
                if answer.finish_reason == "length":
                    answer.text += (
                        f"\n\n(The answer was cut off at the limit of {self.llm.max_tokens} tokens.)"
                    )
        except EnclaveError as exc:
            answer.mode = "error"
            answer.error = str(exc)
            answer.latency_ms = (time.perf_counter() - started) * 1000
            self._record(principal, answer, searched, messages)
            raise
        answer.latency_ms = (time.perf_counter() - started) * 1000
        self._record(principal, answer, searched, messages)
        yield StreamEvent("done", answer=answer)

    def _model_name(self) -> str:
        return self.llm.model if self.llm else f"extractive/{self.retriever.embedder.model_id}"

    def _record(self, principal: Principal, answer: Answer, searched: list[Hit], messages: list[dict[str, str]]) -> None:
        relevant_ids = {h.chunk.chunk_id for h in answer.hits}
        data = {
            "mode": answer.mode,
            "groups": list(principal.groups),
            "role": principal.role,
            "model": answer.model,
            "settings": {
                "top_k": self.retriever.top_k,
                "min_score": self.retriever.min_score,
                "embedding_model": self.retriever.embedder.model_id,
                **(
                    {"max_tokens": self.llm.max_tokens, "temperature": self.llm.temperature}
                    if self.llm
                    else {}
                ),
            },
            "retrieved": [
                {
                    "chunk_id": h.chunk.chunk_id,
                    "doc_id": h.chunk.doc_id,
                    "source": h.chunk.source,
                    "page": h.chunk.page,
                    "score": round(h.score, 6),
                    "sha256": h.chunk.content_hash,
                    "used": h.chunk.chunk_id in relevant_ids,
                }
                for h in searched
            ],
            "prompt": messages,
            "answer": answer.text,
            "reasoning": answer.reasoning,
            "finish_reason": answer.finish_reason,
            "citations": [
                {"n": c.n, "chunk_id": c.chunk_id, "source": c.source, "page": c.page} for c in answer.citations
            ],
            "latency_ms": round(answer.latency_ms, 1),
        }
        event = "answer_error" if answer.error else "answer"
        try:
            record = self.audit.append(event, principal.name, answer.question, answer.error, data)
        except AuditIntegrityError:
            raise
        except Exception as exc:
            raise AuditIntegrityError(f"the answer could not be written to the audit log: {exc}") from exc
        answer.audit_id = getattr(record, "id", None)


__all__ = ["NO_ANSWER", "Assistant"]
