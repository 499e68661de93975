"""The LLM: a DeepSeek (or any) model served by vLLM's OpenAI-compatible API, via LangChain.

LangChain's ChatOpenAI drops vLLM's non-standard `reasoning` / `reasoning_content` deltas, so
`_ReasoningChatOpenAI` keeps them. When the server runs without a reasoning parser, the text up
to `</think>` is reasoning: `ThinkSplitter` holds it back so it never reaches the answer.
LangChain and openai types stay in this module.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any, Literal

from core.errors import LLMUnavailable

log = logging.getLogger(__name__)

DeltaKind = Literal["reasoning", "token", "finish"]
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"


def _chat_model_class() -> Any:
    from langchain_openai import ChatOpenAI

    class _ReasoningChatOpenAI(ChatOpenAI):
        def _convert_chunk_to_generation_chunk(
            self,
            chunk: dict[str, Any],
            default_chunk_class: type,
            base_generation_info: dict[str, Any] | None,
        ) -> Any:
            generation = super()._convert_chunk_to_generation_chunk(
                chunk, default_chunk_class, base_generation_info
            )
            choices = chunk.get("choices") or []
            if generation is not None and choices:
                delta = choices[0].get("delta") or {}
                reasoning = delta.get("reasoning") or delta.get("reasoning_content")
                if reasoning:
                    generation.message.additional_kwargs["reasoning"] = reasoning
            return generation

    return _ReasoningChatOpenAI


class ThinkSplitter:
    """Separates `<think>...</think>` reasoning from the answer in a stream of content deltas.

    DeepSeek-R1's chat template opens `<think>` in the prompt, so the output may hold only the
    closing tag. Content is therefore held until `</think>` appears (all before it is reasoning)
    or the stream ends (then all of it is the answer). Once the server has sent reasoning in its
    own field, it is splitting for us and content passes straight through.
    """

    def __init__(self) -> None:
        self.buffer = ""
        self.passthrough = False

    def server_splits(self) -> None:
        self.passthrough = True

    def feed(self, text: str) -> list[tuple[DeltaKind, str]]:
        if self.passthrough:
            return [("token", text)] if text else []
        self.buffer += text
        if THINK_CLOSE not in self.buffer:
            return []
        reasoning, _, answer = self.buffer.partition(THINK_CLOSE)
        self.passthrough = True
        self.buffer = ""
        out: list[tuple[DeltaKind, str]] = []
        reasoning = reasoning.replace(THINK_OPEN, "", 1).strip()
        if reasoning:
            out.append(("reasoning", reasoning))
        answer = answer.lstrip()
        if answer:
            out.append(("token", answer))
        return out

    def flush(self) -> list[tuple[DeltaKind, str]]:
        text, self.buffer = self.buffer, ""
        if self.passthrough or not text:
            return []
        if text.lstrip().startswith(THINK_OPEN):  # cut off inside its reasoning: no answer came
            return [("reasoning", text.replace(THINK_OPEN, "", 1).strip())]
        return [("token", text)]


class VllmChatModel:
    """Streams a chat completion as ("reasoning" | "token", text) deltas, then ("finish", reason)."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str = "EMPTY",
        timeout_s: float = 120.0,
        max_tokens: int = 1024,
        temperature: float = 0.2,
    ) -> None:
        self.base_url = base_url
        self.model = model
        self.timeout_s = timeout_s
        self.max_tokens = max_tokens
        self.temperature = temperature
        self._chat = _chat_model_class()(
            base_url=base_url,
            model=model,
            api_key=api_key,
            timeout=timeout_s,
            max_retries=0,  # a retry doubles the user's wait; the user can ask again
            max_tokens=max_tokens,
            temperature=temperature,
            streaming=True,
        )

    def _describe(self, exc: Exception, streaming: bool) -> str:
        """One line for the user: what failed, at which URL, and what to do."""
        import openai

        where = f"the language model at {self.base_url}"
        timed_out = isinstance(exc, openai.APITimeoutError) or "timeout" in type(exc).__name__.lower()
        if streaming:  # the answer had started: say it broke off, not that the server is down
            if timed_out:
                return f"{where} stopped sending the answer for {self.timeout_s:g} s; try again later"
            return f"{where} broke off the answer: {exc.__cause__ or exc}"
        if timed_out:
            return f"{where} did not answer within {self.timeout_s:g} s; try again later"
        if isinstance(exc, openai.APIConnectionError):
            return f"{where} is unavailable ({exc.__cause__ or exc}); ask an administrator to check the LLM service"
        if isinstance(exc, openai.APIStatusError):
            detail = exc.message
            if "context length" in detail.lower() or "maximum context" in detail.lower():
                return f"{where} refused the request: the question and its sources are longer than the model's context window ({detail})"
            return f"{where} answered HTTP {exc.status_code}: {detail}"
        return f"{where} failed: {type(exc).__name__}: {exc}"

    def stream(
        self, messages: Sequence[dict[str, str]], max_tokens: int | None = None
    ) -> Iterator[tuple[DeltaKind, str]]:
        """The answer's deltas; `max_tokens` overrides the configured limit for this request."""
        import openai

        splitter = ThinkSplitter()
        finish: str | None = None
        streaming = False
        options = {"max_tokens": max_tokens} if max_tokens is not None else {}
        try:
            for chunk in self._chat.stream(list(messages), **options):
                streaming = True
                reasoning = chunk.additional_kwargs.get("reasoning")
                if reasoning:
                    splitter.server_splits()
                    yield ("reasoning", str(reasoning))
                content = chunk.content if isinstance(chunk.content, str) else chunk.text
                if content:
                    yield from splitter.feed(content)
                reason = (chunk.response_metadata or {}).get("finish_reason")
                if reason:
                    finish = str(reason)
        except (openai.OpenAIError, OSError) as exc:
            log.warning("LLM request failed", exc_info=True)
            raise LLMUnavailable(self._describe(exc, streaming)) from exc
        except Exception as exc:  # transport errors raised mid-stream are not always wrapped by openai
            if type(exc).__module__.startswith(("httpx", "httpcore", "h11")):
                log.warning("LLM stream broke", exc_info=True)
                raise LLMUnavailable(self._describe(exc, streaming)) from exc
            raise
        if finish is None:
            # vLLM ends every stream with a finish reason; a stream without one was cut short.
            raise LLMUnavailable(
                f"the language model at {self.base_url} broke off the answer: the stream ended "
                "without a finish reason"
            )
        yield from splitter.flush()
        yield ("finish", finish)
