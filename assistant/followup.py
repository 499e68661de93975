"""Follow-up questions made to stand alone for retrieval, and earlier turns cleaned of reasoning.

"And for part-timers?" finds nothing on its own: retrieval needs what it refers to. With an LLM
the model rewrites it (a short prompt; its reasoning is discarded); without one, or when the
model gives no usable query, a deterministic rule does:

    A follow-up needs context when it has at most RULE_SHORT content words, contains a referring
    word (REFERRING: it, they, this, those, there, ...) or opens like a continuation ("and",
    "what about", ...). Such a follow-up is searched as itself followed by the content words of
    the previous question's own stand-alone query (the rule applied to it in turn) that it does
    not already hold, in their order, at most RULE_MAX_TERMS of them. Any other follow-up is
    searched as asked.

Over-triggering only adds the previous topic's words to the query; under-triggering searches the
follow-up as asked, which is what happened before this module.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from assistant.prompts import defang
from assistant.support import STOPWORDS, content_terms, stem
from core.errors import EnclaveError

log = logging.getLogger(__name__)

RULE_SHORT = 4
RULE_MAX_TERMS = 12
REWRITE_TURNS = 3
REWRITE_ANSWER_CHARS = 400
MAX_QUERY_CHARS = 500

REFERRING = frozenset(
    """it its it's itself they them their theirs themselves he him his she her hers this these
    those that there same such former latter above aforementioned else""".split()
)
_CONTINUATION = re.compile(
    r"^\s*(and|or|but|also|so|then|what about|how about|and what about)\b", re.IGNORECASE
)
_WORDS = re.compile(r"[^\W_]+(?:[-'’][^\W_]+)*")
# Words of asking, not of the topic: never carried into a follow-up's query.
ASKING = frozenset("many much get gets got say says said tell please know need want".split())
_THINK_BLOCK = re.compile(r"<think>.*?</think>", re.DOTALL)
_MARKER = re.compile(r"\s*\[\d{1,3}\]")

RewriteMethod = Literal["as_asked", "rule", "llm"]

REWRITE_SYSTEM = """You turn the user's follow-up question into one stand-alone search query for \
the organisation's documents. Use the conversation only to resolve what the follow-up refers to \
(pronouns, left-out subjects). Reply with the query alone: no answer, no explanation, no quotes."""


class StreamingModel(Protocol):
    def stream(
        self, messages: Sequence[dict[str, str]], max_tokens: int | None = None
    ) -> Iterator[tuple[str, str]]: ...


@dataclass(frozen=True)
class Rewrite:
    """The query retrieval runs with, how it was made, and why when the LLM's was not used."""

    query: str
    method: RewriteMethod
    note: str = ""

    def record(self) -> dict[str, str]:
        out = {"query": self.query, "method": self.method}
        if self.note:
            out["note"] = self.note
        return out


def strip_reasoning(text: str) -> str:
    """An earlier answer without any reasoning: <think> blocks, text before a lone </think>, or an
    unclosed <think> to the end."""
    text = _THINK_BLOCK.sub("", text)
    if "</think>" in text:
        text = text.rsplit("</think>", 1)[1]
    if "<think>" in text:
        text = text.split("<think>", 1)[0]
    return text.strip()


def clean_history(history: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """(question, answer) turns with the answers' reasoning removed: it is never sent back."""
    return [(str(q), strip_reasoning(str(a))) for q, a in history]


def needs_context(question: str) -> bool:
    words = [w.lower().replace("’", "'") for w in _WORDS.findall(question)]
    return (
        len(content_terms(question)) <= RULE_SHORT
        or any(w in REFERRING for w in words)
        or bool(_CONTINUATION.match(question))
    )


def _key_words(text: str) -> list[str]:
    """Content words of `text` in order, first occurrence of each stem, citation markers dropped."""
    seen: set[str] = set()
    out = []
    for word in _WORDS.findall(_MARKER.sub(" ", text)):
        lower = word.lower().replace("’", "'")
        if (
            lower in STOPWORDS
            or lower in REFERRING
            or lower in ASKING
            or (len(lower) == 1 and not lower.isdigit())
        ):
            continue
        key = stem(lower)
        if key not in seen:
            seen.add(key)
            out.append(word)
    return out


def rule_query(question: str, earlier_questions: Sequence[str]) -> str:
    """The deterministic stand-alone query (see the module docstring)."""
    if not earlier_questions or not needs_context(question):
        return question
    previous = rule_query(earlier_questions[-1], earlier_questions[:-1])
    have = {stem(w.lower()) for w in _key_words(question)}
    added = [w for w in _key_words(previous) if stem(w.lower()) not in have][:RULE_MAX_TERMS]
    return f"{question} {' '.join(added)}" if added else question


def rewrite_messages(question: str, history: Sequence[tuple[str, str]]) -> list[dict[str, str]]:
    turns = []
    for q, a in history[-REWRITE_TURNS:]:
        answer = _MARKER.sub("", a)
        if len(answer) > REWRITE_ANSWER_CHARS:
            answer = answer[:REWRITE_ANSWER_CHARS].rsplit(" ", 1)[0] + " …"
        turns.append(f"User: {defang(q)}\nAssistant: {defang(answer)}")
    conversation = "\n\n".join(turns)
    return [
        {"role": "system", "content": REWRITE_SYSTEM},
        {
            "role": "user",
            "content": f"Conversation so far:\n\n{conversation}\n\nFollow-up question: {defang(question)}\n\n"
            "Stand-alone search query:",
        },
    ]


def _parse_query(text: str) -> str:
    for line in strip_reasoning(text).splitlines():
        line = _MARKER.sub("", line).strip().strip("\"'“”‘’`*").strip()
        line = re.sub(r"^(stand-alone )?(search )?query:\s*", "", line, flags=re.IGNORECASE).strip()
        if line:
            return line[:MAX_QUERY_CHARS]
    return ""


class QueryRewriter:
    """Makes follow-ups stand alone: with `llm` when given, else (or when it fails) by the rule."""

    def __init__(self, llm: StreamingModel | None = None, max_tokens: int = 512) -> None:
        self.llm = llm
        self.max_tokens = max_tokens

    def rewrite(self, question: str, history: Sequence[tuple[str, str]]) -> Rewrite:
        """`history` must already be cleaned of reasoning (clean_history)."""
        if not history:
            return Rewrite(question, "as_asked")
        earlier = [q for q, _ in history]
        if self.llm is None:
            query = rule_query(question, earlier)
            return Rewrite(query, "rule") if query != question else Rewrite(question, "as_asked")
        note = self._ask_model(question, history)
        if isinstance(note, Rewrite):
            return note
        log.warning("follow-up rewrite by the model failed (%s); using the rule", note)
        return Rewrite(rule_query(question, earlier), "rule", note)

    def _ask_model(self, question: str, history: Sequence[tuple[str, str]]) -> Rewrite | str:
        assert self.llm is not None
        tokens: list[str] = []
        finish = ""
        try:
            for kind, text in self.llm.stream(
                rewrite_messages(question, history), max_tokens=self.max_tokens
            ):
                if kind == "token":
                    tokens.append(text)  # reasoning deltas are dropped: only the query is kept
                elif kind == "finish":
                    finish = text
        except EnclaveError as exc:
            return f"the model could not rewrite the follow-up: {exc}"
        query = _parse_query("".join(tokens))
        if not query:
            why = (
                f"it was cut off at {self.max_tokens} tokens" if finish == "length" else "its reply was empty"
            )
            return f"the model gave no stand-alone query ({why})"
        return Rewrite(query, "llm")


__all__ = ["QueryRewriter", "Rewrite", "clean_history", "needs_context", "rule_query", "strip_reasoning"]
