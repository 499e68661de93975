"""Reasoning is kept apart from the answer, with or without the server's reasoning parser."""

from __future__ import annotations

from assistant.citations import resolve
from assistant.llm import ThinkSplitter
from core.types import Citation


def run(chunks: list[str]) -> tuple[str, str]:
    s = ThinkSplitter()
    out = [d for c in chunks for d in s.feed(c)] + s.flush()
    return "".join(t for k, t in out if k == "reasoning"), "".join(t for k, t in out if k == "token")


def test_closing_tag_only_as_deepseek_r1_emits() -> None:
    reasoning, answer = run(["The user asks", " about X.", "</th", "ink>\n\nX is 5 [1]."])
    assert reasoning == "The user asks about X."
    assert answer == "X is 5 [1]."


def test_full_think_block() -> None:
    assert run(["<think>hmm</think>", "Answer."]) == ("hmm", "Answer.")


def test_no_reasoning_at_all_is_all_answer() -> None:
    assert run(["Plain ", "answer."]) == ("", "Plain answer.")


def test_cut_off_inside_reasoning_gives_no_answer() -> None:
    assert run(["<think>still thinking"]) == ("still thinking", "")


def test_server_split_passes_content_through() -> None:
    s = ThinkSplitter()
    s.server_splits()
    assert s.feed("a</think>b") == [("token", "a</think>b")]


def _c(n: int) -> Citation:
    return Citation(n, f"c{n}", "d", "/x", "T", "", None, "")


def test_citations_to_unknown_sources_are_removed() -> None:
    text, cited, unknown = resolve("A [1]. B [7]. C [2][1].", [_c(1), _c(2), _c(3)])
    assert text == "A [1]. B . C [2][1]."
    assert [c.n for c in cited] == [1, 2]
    assert unknown == [7]
