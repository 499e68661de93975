"""Weakly supported and uncited sentences are marked in the rendered answer, and only those."""

from __future__ import annotations

from core.types import Answer, SentenceSupport
from ui.markup import MARKED_NOTE, answer_markdown, marked_prose

TEXT = "Staff get 25 days [1]. Parking is free <b>always</b> [1]. Most firms give more."


def graded() -> list[SentenceSupport]:
    first, second, third = TEXT.index("Staff"), TEXT.index("Parking"), TEXT.index("Most")
    return [
        SentenceSupport(first, second - 1, TEXT[first : second - 1], (1,), "supported", 1.0),
        SentenceSupport(second, third - 1, TEXT[second : third - 1], (1,), "weak", 0.2, 0.31),
        SentenceSupport(third, len(TEXT), TEXT[third:], (), "uncited"),
    ]


def test_weak_and_uncited_sentences_are_wrapped_in_titled_marks() -> None:
    shown = marked_prose(TEXT, graded())
    assert shown == (
        '<div class="enclave-prose"><p>Staff get 25 days [1]. '
        '<mark class="enclave-weak" title="Weakly supported: the cited source shares little with this '
        'sentence. Check it against the source.">Parking is free &lt;b&gt;always&lt;/b&gt; [1].</mark> '
        '<mark class="enclave-uncited" title="No citation: this sentence cites no source. Check it against '
        'the sources.">Most firms give more.</mark></p></div>'
    )


def test_the_answer_carries_a_note_only_when_something_is_marked() -> None:
    marked = answer_markdown(Answer("q", TEXT, "llm", support=graded(), audit_id=3))
    assert MARKED_NOTE in marked and "*Audit record 3*" in marked
    clean = answer_markdown(Answer("q", TEXT, "llm", support=graded()[:1]))
    assert "<mark" not in clean and MARKED_NOTE not in clean
    assert clean == (
        '<div class="enclave-prose"><p>Staff get 25 days [1]. Parking is free &lt;b&gt;always&lt;/b&gt; [1]. '
        "Most firms give more.</p></div>"
    )


def test_a_mark_wraps_text_only_and_keeps_the_blocks_and_emphasis_it_spans() -> None:
    weak = 'class="enclave-weak" title="Weakly supported: the cited source shares little with this sentence. Check it against the source."'
    text = "Intro.\n\n- **Bold** claim\n- next item. Fine."
    span = SentenceSupport(text.index("- **"), text.index(" Fine"), "", (1,), "weak")
    assert marked_prose(text, [span]) == (
        '<div class="enclave-prose"><p>Intro.</p>\n<ul>\n'
        f"<li><strong><mark {weak}>Bold</mark></strong><mark {weak}> claim</mark></li>\n"
        f"<li><mark {weak}>next item.</mark> Fine.</li>\n</ul></div>"
    )  # the list stays a list: the mark opens after its bullet, and ends before each tag


def test_spans_that_do_not_fit_the_text_are_ignored() -> None:
    stale = [SentenceSupport(5, 500, "x", (), "weak")]
    assert marked_prose("short text", stale) == '<div class="enclave-prose"><p>short text</p></div>'


def test_an_extractive_answer_is_labelled_once() -> None:
    from assistant.extractive import LABEL
    from ui.markup import EXTRACTIVE_LABEL

    text = f"{LABEL}\n\n> Staff get 25 days of annual leave. [1]"
    shown = answer_markdown(Answer("How much leave?", text, "extractive", audit_id=3))
    assert shown.startswith(EXTRACTIVE_LABEL)
    assert "no language model is configured): the passages" not in shown  # the assistant's own label
    assert shown.count("25 days of annual leave") == 1 and "*Audit record 3*" in shown


def test_a_source_shows_its_file_name_never_its_server_path() -> None:
    from core.types import Citation
    from ui.markup import citation_markdown

    citation = Citation(
        n=1,
        source="/srv/shares/hr/leave `policy`.md",
        title="Leave",
        page=None,
        section="",
        snippet="25 days.",
        chunk_id="d1-0",
        doc_id="d1",
    )
    shown = citation_markdown(citation)
    assert "/srv/shares" not in shown and "`leave 'policy'.md`" in shown and "files/d1" in shown


def test_sources_enclave_attributed_are_named_as_its_own() -> None:
    text = "Staff get 25 days of leave."
    support = [SentenceSupport(0, len(text), text, (2,), "supported", 0.9, 0.8, attributed=True)]
    shown = answer_markdown(Answer("q", text, "llm", support=support))
    assert "Enclave matched them to the listed sources that back them ([2])" in shown
    plain = answer_markdown(
        Answer("q", text, "llm", support=[SentenceSupport(0, len(text), text, (2,), "supported")])
    )
    assert "Enclave matched" not in plain
