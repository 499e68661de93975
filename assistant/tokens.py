"""Prompt tokens counted with the served model's own tokenizer, and the model's context window.

Two counters, each exact for the served model:
- `VllmTokenizeCounter`: vLLM's `/tokenize` endpoint, given the chat messages, applies the chat
  template the server itself uses. Each count is a request that renders and tokenizes the whole
  prompt in the server, so the last `CACHED_COUNTS` counts are kept, by the exact messages: the
  same question over the same sources (many staff asking one thing) is not counted again;
- `TokenizerFileCounter`: the model folder's `tokenizer.json` (the `tokenizers` package) and the
  chat template of its `tokenizer_config.json` (or `chat_template.jinja`), rendered with Jinja
  the way transformers does.
Nothing is fetched: no tiktoken, no tokenizer from a hub. httpx types stay in this module.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from core.errors import ConfigError, LLMUnavailable

log = logging.getLogger(__name__)

Messages = Sequence[dict[str, str]]
CACHED_COUNTS = 4096  # prompts whose count VllmTokenizeCounter keeps (a key and an int each)


class TokenCounter(Protocol):
    description: str

    def count(self, messages: Messages) -> int:
        """Tokens of the prompt these chat messages make, generation prompt included."""
        ...


def root_url(base_url: str) -> str:
    """The server root of an OpenAI-compatible base URL (`/tokenize` is not under `/v1`)."""
    url = base_url.rstrip("/")
    return url[: -len("/v1")] if url.endswith("/v1") else url


def _http(api_key: str, timeout_s: float) -> Any:
    import httpx

    headers = {"Authorization": f"Bearer {api_key}"} if api_key and api_key != "EMPTY" else {}
    # trust_env=False: no proxy from the environment; the LLM is reached directly.
    return httpx.Client(timeout=timeout_s, headers=headers, trust_env=False)


def _request(method: str, url: str, api_key: str, timeout_s: float, body: Any = None) -> Any:
    import httpx

    try:
        with _http(api_key, timeout_s) as client:
            response = client.request(method, url, json=body)
    except httpx.TimeoutException as exc:
        raise LLMUnavailable(
            f"the language model at {url} did not answer within {timeout_s:g} s; try again later"
        ) from exc
    except httpx.HTTPError as exc:
        # Worded as the chat request's own failure is (assistant.llm): the same outage, whichever
        # request of an answer meets it first.
        raise LLMUnavailable(
            f"the language model at {url} is unavailable ({exc}); ask an administrator to check the LLM service"
        ) from exc
    if response.status_code != 200:
        raise LLMUnavailable(
            f"the language model at {url} answered HTTP {response.status_code}: {response.text[:300]}"
        )
    try:
        return response.json()
    except ValueError as exc:
        raise LLMUnavailable(f"the language model at {url} did not answer with JSON") from exc


class VllmTokenizeCounter:
    """Counts with vLLM's `/tokenize` endpoint: the server's own tokenizer and chat template."""

    def __init__(self, base_url: str, model: str, api_key: str = "EMPTY", timeout_s: float = 30.0) -> None:
        self.url = f"{root_url(base_url)}/tokenize"
        self.model = model
        self.api_key = api_key
        self.timeout_s = timeout_s
        self.description = f"vLLM {self.url}"
        self._counted: OrderedDict[str, int] = OrderedDict()
        self._lock = threading.Lock()

    def count(self, messages: Messages) -> int:
        body = {"model": self.model, "messages": list(messages), "add_generation_prompt": True}
        key = hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
        with self._lock:
            if key in self._counted:
                self._counted.move_to_end(key)
                return self._counted[key]
        data = _request("POST", self.url, self.api_key, self.timeout_s, body)
        if not isinstance(data, dict) or not isinstance(data.get("count"), int):
            raise LLMUnavailable(f"{self.url} did not return a token count; is this a vLLM server?")
        with self._lock:
            self._counted[key] = int(data["count"])
            while len(self._counted) > CACHED_COUNTS:
                self._counted.popitem(last=False)
        return int(data["count"])


def served_context_window(base_url: str, model: str, api_key: str = "EMPTY", timeout_s: float = 30.0) -> int:
    """`max_model_len` of `model` as vLLM's /v1/models lists it."""
    url = f"{base_url.rstrip('/')}/models"
    data = _request("GET", url, api_key, timeout_s)
    for entry in data.get("data", []) if isinstance(data, dict) else []:
        if isinstance(entry, dict) and entry.get("id") == model:
            window = entry.get("max_model_len")
            if isinstance(window, int) and window > 0:
                return window
            raise ConfigError(
                f"{url} lists model {model!r} without max_model_len (not vLLM?): set llm.context_window"
            )
    raise ConfigError(f"{url} does not list model {model!r}: check llm.model")


def _special(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("content", ""))
    return "" if value is None else str(value)


class TokenizerFileCounter:
    """Counts with the tokenizer files of a local model folder (the folder vLLM serves)."""

    def __init__(self, folder: Path) -> None:
        from tokenizers import Tokenizer

        self.folder = Path(folder)
        tokenizer_file = self.folder / "tokenizer.json"
        if not tokenizer_file.is_file():
            raise ConfigError(
                f"llm.tokenizer_path {self.folder} has no tokenizer.json: point it at the served model's folder"
            )
        try:
            self.tokenizer = Tokenizer.from_file(str(tokenizer_file))
        except Exception as exc:  # the tokenizers library raises a bare Exception on bad files
            raise ConfigError(f"{tokenizer_file} could not be read as a tokenizer: {exc}") from exc
        config = self._json("tokenizer_config.json")
        specials = self._json("special_tokens_map.json")
        self.specials = {
            name: _special(config.get(name, specials.get(name)))
            for name in ("bos_token", "eos_token", "pad_token", "unk_token")
        }
        self.template = self._compile(self._chat_template(config))
        self.description = f"tokenizer files in {self.folder}"

    def _json(self, name: str) -> dict[str, Any]:
        path = self.folder / name
        if not path.is_file():
            return {}
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{path} is not readable JSON: {exc}") from exc
        return data if isinstance(data, dict) else {}

    def _chat_template(self, config: dict[str, Any]) -> str:
        template = config.get("chat_template")
        if isinstance(template, list):  # named templates: the default one
            named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
            template = named.get("default")
        if not template and (self.folder / "chat_template.jinja").is_file():
            template = (self.folder / "chat_template.jinja").read_text(encoding="utf-8")
        if not isinstance(template, str) or not template:
            raise ConfigError(
                f"llm.tokenizer_path {self.folder} has no chat template (tokenizer_config.json "
                "chat_template or chat_template.jinja): prompts cannot be counted as the server builds them"
            )
        return template

    @staticmethod
    def _compile(template: str) -> Any:
        from jinja2 import TemplateError
        from jinja2.ext import loopcontrols
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        def raise_exception(message: str) -> None:
            raise TemplateError(message)

        def tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None, **_: Any) -> str:
            return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent)

        # As transformers renders chat templates: same options, filters and globals.
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
        env.filters["tojson"] = tojson
        env.globals["raise_exception"] = raise_exception
        env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
        try:
            return env.from_string(template)
        except TemplateError as exc:
            raise ConfigError(f"the chat template could not be compiled: {exc}") from exc

    def render(self, messages: Messages) -> str:
        return str(self.template.render(messages=list(messages), add_generation_prompt=True, **self.specials))

    def count(self, messages: Messages) -> int:
        # The template writes the special tokens itself, as vLLM's chat endpoint assumes.
        return len(self.tokenizer.encode(self.render(messages), add_special_tokens=False).ids)


__all__ = [
    "TokenCounter",
    "TokenizerFileCounter",
    "VllmTokenizeCounter",
    "root_url",
    "served_context_window",
]
