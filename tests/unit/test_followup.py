"""Follow-ups made to stand alone by the deterministic rule; earlier reasoning stripped."""

from __future__ import annotations

from assistant.followup import QueryRewriter, clean_history, needs_context, rule_query, strip_reasoning


def test_reasoning_is_stripped_from_earlier_answers_in_every_form() -> None:
    assert strip_reasoning("<think>secret plan</think>\n\nYou get 25 days [1].") == "You get 25 days [1]."
    # DeepSeek-R1's template opens <think> in the prompt: the output holds only the closing tag.
    assert strip_reasoning("secret plan\n</think>\n\nYou get 25 days [1].") == "You get 25 days [1]."
    assert strip_reasoning("A [1]. <think>unfinished thought") == "A [1]."
    assert strip_reasoning("<think>a</think>B<think>c</think>D") == "BD"
    assert clean_history([("Q?", "<think>hm</think>A.")]) == [("Q?", "A.")]


def test_short_or_referring_follow_ups_need_context_others_do_not() -> None:
    assert needs_context("And for part-timers?")
    assert needs_context("How long does it last?")
    assert needs_context("What about contractors who work remotely from abroad in summer?")
    assert not needs_context("How many days of annual leave do full-time staff get each year?")


def test_rule_appends_the_previous_questions_key_words() -> None:
    earlier = ["How many days of annual leave do full-time staff get?"]
    assert rule_query("And part-timers?", earlier) == "And part-timers? days annual leave full-time staff"
    # A self-contained follow-up is searched as asked.
    standalone = "What is the procedure for booking a berth for a cargo vessel?"
    assert rule_query(standalone, earlier) == standalone


def test_rule_follows_a_chain_of_follow_ups_and_skips_words_already_there() -> None:
    earlier = ["What does the travel policy say about rail tickets?", "And for flights?"]
    query = rule_query("Is it the same for taxis?", earlier)
    assert query.startswith("Is it the same for taxis? ")
    added = query.removeprefix("Is it the same for taxis? ").split()
    assert added == ["flights", "travel", "policy", "rail", "tickets"]


def test_rewriter_without_llm_reports_its_method() -> None:
    rewriter = QueryRewriter(None)
    assert rewriter.rewrite("How much leave?", []).method == "as_asked"
    rewrite = rewriter.rewrite("And for part-timers?", [("How much annual leave?", "25 days [1].")])
    assert (rewrite.method, rewrite.query) == ("rule", "And for part-timers? annual leave")
    assert rewrite.record() == {"query": "And for part-timers? annual leave", "method": "rule"}
