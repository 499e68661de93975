"""The context budget: the prompt must leave room in the model's context window for the answer.

The prompt is counted whole with the served model's tokenizer (assistant/tokens.py). When it is
over `context window - max_tokens`, the lowest-ranked sources are dropped, down to the best one;
then the oldest earlier turns; if the question and its best source still do not fit, the answer
fails with a message saying by how much.

Every count is of a whole prompt, so the fit is exact; but with vLLM counting, each is a request
to the server. So the number of sources is not found by dropping one at a time and counting
again: the full prompt's count, scaled by the characters each source adds, guesses it, and exact
counts then confirm that many sources fit and one more would not (stepping from the guess until
they do). An answer that fits whole costs one count; one that drops sources usually three (two
if it drops one), however many it drops. A dropped source is recorded with its token count where two
confirmed counts differ by it alone, the others dropped together with `tokens` None; the prompt with
every source is recorded (`prompt_tokens_all_sources`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from assistant.tokens import Messages, TokenCounter
from core.errors import ConfigError, EnclaveError
from core.types import Citation

log = logging.getLogger(__name__)

# build(k, h): the messages with the k best sources and the h most recent earlier turns.
PromptBuilder = Callable[[int, int], list[dict[str, str]]]


@dataclass
class FittedPrompt:
    """The messages that fit, and the account of how they were made to fit."""

    messages: list[dict[str, str]]
    sources_kept: int
    turns_kept: int
    prompt_tokens: int
    context_window: int
    window_from: str
    max_tokens: int
    counted_by: str
    dropped: list[dict[str, Any]] = field(default_factory=list)
    turns_dropped: int = 0
    all_sources_tokens: int | None = None

    def record(self) -> dict[str, Any]:
        return {
            "context_window": self.context_window,
            "context_window_from": self.window_from,
            "max_tokens": self.max_tokens,
            "prompt_budget": self.context_window - self.max_tokens,
            "prompt_tokens": self.prompt_tokens,
            "prompt_tokens_all_sources": self.all_sources_tokens,
            "counted_by": self.counted_by,
            "sources_kept": self.sources_kept,
            "sources_dropped": self.dropped,
            "turns_dropped": self.turns_dropped,
        }


class ContextBudget:
    """Fits prompts into `context_window` (or the server's, asked once via `window_lookup`)."""

    def __init__(
        self,
        counter: TokenCounter,
        max_tokens: int,
        context_window: int | None = None,
        window_lookup: Callable[[], int] | None = None,
        window_source: str = "the LLM server",
    ) -> None:
        if context_window is None and window_lookup is None:
            raise ConfigError("the context window is unknown: set llm.context_window")
        self.counter = counter
        self.max_tokens = max_tokens
        self._window = context_window
        self._lookup = window_lookup
        self._window_from = "settings (llm.context_window)" if context_window else window_source
        if context_window is not None:
            self._check(context_window)

    def _check(self, window: int) -> None:
        if window <= self.max_tokens:
            raise ConfigError(
                f"llm.max_tokens ({self.max_tokens}) leaves no room for a prompt in the model's "
                f"context window of {window} tokens: lower llm.max_tokens"
            )

    def context_window(self) -> int:
        if self._window is None:
            assert self._lookup is not None
            window = self._lookup()
            self._check(window)
            self._window = window  # asked once: a restart of vLLM with another length needs ours too
        return self._window

    def fit(self, build: PromptBuilder, citations: Sequence[Citation], turns: int) -> FittedPrompt:
        """Messages with as many sources (best first) and recent turns as fit, at least one source."""
        window = self.context_window()
        budget = window - self.max_tokens
        k, h = len(citations), turns
        counted = {k: self._count(build(k, h))}  # exact counts of the prompt with k sources
        full = counted[k]
        if full > budget and k > 1:
            k = self._most_sources(build, h, budget, counted)
        tokens = counted[k]
        while tokens > budget:  # the best source alone is over: the oldest turns go
            if h > 0:
                h -= 1
                tokens = self._count(build(k, h))
            else:
                raise EnclaveError(
                    f"the question and its most relevant source take {tokens} tokens, more than the "
                    f"{budget} the model's context window of {window} tokens leaves beside "
                    f"{self.max_tokens} for the answer: ask a shorter question, or lower llm.max_tokens"
                )
        dropped: list[dict[str, Any]] = []
        for n in range(len(citations) - 1, k - 1, -1):  # lowest rank first
            c = citations[n]
            alone = counted[n + 1] - counted[n] if n in counted and n + 1 in counted else None
            dropped.append(
                {"n": c.n, "chunk_id": c.chunk_id, "source": c.source, "page": c.page, "tokens": alone}
            )
        if dropped or h < turns:
            log.info(
                "context budget %d of %d: dropped sources %s and %d earlier turns",
                tokens, budget, [d["n"] for d in dropped], turns - h,
            )  # fmt: skip
        return FittedPrompt(
            messages=build(k, h),
            sources_kept=k,
            turns_kept=h,
            prompt_tokens=tokens,
            context_window=window,
            window_from=self._window_from,
            max_tokens=self.max_tokens,
            counted_by=self.counter.description,
            dropped=dropped,
            turns_dropped=turns - h,
            all_sources_tokens=full,
        )

    def _most_sources(self, build: PromptBuilder, h: int, budget: int, counted: dict[int, int]) -> int:
        """The most sources, fewer than all, whose prompt fits `budget` (1 if even one does not),
        by exact counts, until the prompt with n sources fits and the one with n + 1 does not.
        Which prompts to count is guessed from the characters each source adds: at first scaled
        from the full prompt's count, and one source more than that (the rules and the question
        take fewer tokens a character than sources do, so the scaling guesses low); then on the
        line through the nearest counts either side of the budget (or the two nearest over it)."""
        sizes = [len(json.dumps(build(n, h), ensure_ascii=False)) for n in range(max(counted) + 1)]
        while True:
            lo = max((n for n, t in counted.items() if t <= budget), default=0)  # 0: none known to fit
            over = sorted(n for n, t in counted.items() if t > budget)
            hi = over[0]
            if hi - lo <= 1:
                return max(lo, 1)
            if lo == 0 and len(over) == 1:  # the full prompt's count alone
                rate, base = counted[hi] / sizes[hi], 0.0
                below = [n for n in range(1, hi) if base + rate * sizes[n] <= budget]
                n = min(below[-1] + 1, hi - 1) if below else 1
            else:
                a, b = (lo, hi) if lo else (hi, over[1])
                rate = (counted[b] - counted[a]) / (sizes[b] - sizes[a])
                base = counted[a] - rate * sizes[a]
                below = [n for n in range(lo + 1, hi) if base + rate * sizes[n] <= budget]
                n = below[-1] if below else lo + 1
            counted[n] = self._count(build(n, h))

    def _count(self, messages: Messages) -> int:
        return self.counter.count(messages)


__all__ = ["ContextBudget", "FittedPrompt", "PromptBuilder"]
