"""The context budget with the tokenizer-file counter, on the tiny model's own tokenizer files
(the same files the e2e tests serve with vLLM; there its /tokenize gives the same counts)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
from tokenizers import Tokenizer

from assistant.budget import ContextBudget
from assistant.prompts import build_messages
from assistant.tokens import TokenizerFileCounter
from core.errors import ConfigError, EnclaveError
from core.types import Citation
from tests.support.tiny_model import BOS, build_tiny_model


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "scripted", "scripted")


def cite(n: int) -> Citation:
    return Citation(n, f"c{n}", f"d{n}", f"/docs/{n}.md", f"Doc {n}", "", None, "")


CITATIONS = [cite(n) for n in range(1, 5)]
TEXTS = [
    f"Source {n} says: " + "the harbour master books berths for vessels in July. " * 12 for n in range(1, 5)
]
HISTORY = [
    ("What are berths?", "Berths are places for vessels [1]."),
    ("Who books them?", "The harbour master [1]."),
]


def builder(history: list[tuple[str, str]]):  # type: ignore[no-untyped-def]
    def build(k: int, h: int) -> list[dict[str, str]]:
        return build_messages(
            "Port", "Who books berths?", CITATIONS[:k], TEXTS[:k], history[len(history) - h :]
        )

    return build


def test_counts_the_rendered_chat_template_with_the_models_tokenizer(model_dir: Path) -> None:
    counter = TokenizerFileCounter(model_dir)
    messages = [{"role": "system", "content": "Rules."}, {"role": "user", "content": "Hello"}]
    rendered = counter.render(messages)
    assert rendered.startswith(BOS + "Rules.<｜User｜>Hello") and rendered.endswith(
        "<｜Assistant｜><think>\n"
    )
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    assert counter.count(messages) == len(tokenizer.encode(rendered, add_special_tokens=False).ids)
    assert counter.count(messages) < counter.count([*messages, {"role": "assistant", "content": "Hi there"}])


def test_everything_fits_in_a_large_window(model_dir: Path) -> None:
    fitted = ContextBudget(TokenizerFileCounter(model_dir), 256, context_window=100_000).fit(
        builder(HISTORY), CITATIONS, len(HISTORY)
    )
    assert (fitted.sources_kept, fitted.turns_kept, fitted.dropped) == (4, 2, [])
    assert fitted.prompt_tokens == TokenizerFileCounter(model_dir).count(fitted.messages)


def test_sources_are_dropped_lowest_rank_first_until_the_answer_has_room(model_dir: Path) -> None:
    counter = TokenizerFileCounter(model_dir)
    build = builder(HISTORY)
    two_sources = counter.count(build(2, 2))
    window = two_sources + 300  # room for the prompt with two sources and a 300-token answer
    fitted = ContextBudget(counter, 300, context_window=window).fit(build, CITATIONS, len(HISTORY))
    assert fitted.sources_kept == 2 and fitted.turns_kept == 2
    assert [d["n"] for d in fitted.dropped] == [4, 3]
    assert all(d["tokens"] > 100 for d in fitted.dropped)
    assert fitted.prompt_tokens == two_sources <= window - 300
    record = fitted.record()
    assert record["prompt_budget"] == window - 300 and record["sources_dropped"][0]["chunk_id"] == "c4"
    assert record["counted_by"].startswith("tokenizer files in") and record["context_window"] == window


class Counting:
    """The real tokenizer-file counter, counting its calls: each is a /tokenize request with vLLM."""

    def __init__(self, counter: TokenizerFileCounter) -> None:
        self.counter, self.calls, self.description = counter, 0, counter.description

    def count(self, messages: list[dict[str, str]]) -> int:
        self.calls += 1
        return self.counter.count(messages)


def test_counts_per_answer_do_not_grow_with_the_sources_dropped(model_dir: Path) -> None:
    counter = TokenizerFileCounter(model_dir)
    citations = [cite(n) for n in range(1, 9)]
    texts = [
        f"Source {n} says: " + "the harbour master books berths for vessels in July. " * 12
        for n in range(1, 9)
    ]

    def build(k: int, h: int) -> list[dict[str, str]]:
        return build_messages("Port", "Who books berths?", citations[:k], texts[:k])

    each = {k: counter.count(build(k, 0)) for k in range(1, 9)}
    each[9] = each[8] + 1
    # The budget anywhere from exactly the prompt that fits to one token under the next.
    for keep, where in itertools.product(range(1, 9), ("exactly", "between", "just under")):
        budget = {"exactly": each[keep], "between": (each[keep] + each[keep + 1]) // 2}.get(
            where, each[keep + 1] - 1
        )
        counting = Counting(counter)
        fitted = ContextBudget(counting, 300, context_window=budget + 300).fit(build, citations, 0)
        assert fitted.sources_kept == keep and fitted.prompt_tokens == each[keep]  # exact, the most that fit
        assert fitted.record()["prompt_tokens_all_sources"] == each[8]
        # The full prompt; when it is over, the prompt that fits and the one with a source more
        # (that is the full one when one source is dropped). It was one per source dropped, plus one.
        assert counting.calls == (1 if keep == 8 else 2 if keep == 7 else 3), (keep, where, counting.calls)
        if fitted.dropped:  # the source at the boundary: the difference of two exact counts
            assert fitted.dropped[-1]["tokens"] == each[keep + 1] - each[keep]


def test_then_the_oldest_turns_go_and_then_it_says_the_question_cannot_fit(model_dir: Path) -> None:
    counter = TokenizerFileCounter(model_dir)
    build = builder(HISTORY)
    one_turn = counter.count(build(1, 1))
    fitted = ContextBudget(counter, 300, context_window=one_turn + 300).fit(build, CITATIONS, 2)
    assert (fitted.sources_kept, fitted.turns_kept, fitted.turns_dropped) == (1, 1, 1)
    assert fitted.messages[1]["content"] == "Who books them?"  # the most recent turn stays

    too_small = counter.count(build(1, 0)) - 1 + 300
    with pytest.raises(EnclaveError, match=r"most relevant source take \d+ tokens, more than the \d+"):
        ContextBudget(counter, 300, context_window=too_small).fit(build, CITATIONS, 2)


def test_window_from_the_server_is_asked_once(model_dir: Path) -> None:
    asked: list[int] = []

    def lookup() -> int:
        asked.append(1)
        return 100_000

    budget = ContextBudget(TokenizerFileCounter(model_dir), 256, window_lookup=lookup, window_source="vLLM")
    budget.fit(builder([]), CITATIONS, 0)
    budget.fit(builder([]), CITATIONS, 0)
    assert len(asked) == 1 and budget.fit(builder([]), CITATIONS, 0).window_from == "vLLM"


def test_bad_configuration_is_named(model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no tokenizer\.json"):
        TokenizerFileCounter(tmp_path)
    (tmp_path / "tokenizer.json").write_bytes((model_dir / "tokenizer.json").read_bytes())
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"bos_token": BOS}))
    with pytest.raises(ConfigError, match="no chat template"):
        TokenizerFileCounter(tmp_path)
    (tmp_path / "chat_template.jinja").write_text(
        "{{ bos_token }}{% for m in messages %}{{ m['content'] }}{% endfor %}"
    )
    assert TokenizerFileCounter(tmp_path).render([{"role": "user", "content": "x"}]) == BOS + "x"
    with pytest.raises(ConfigError, match="max_tokens"):
        ContextBudget(TokenizerFileCounter(tmp_path), 4096, context_window=4096)
