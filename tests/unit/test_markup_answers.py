"""Answers are shown formatted, yet a hostile document cannot plant a link, image or tag in them.

An answer (the model's Markdown, or passages an extractive answer quotes) goes through
ui.markup.prose: markdown-it renders it, nh3 keeps an allow-list, and Gradio's Markdown reads the
result as one raw HTML block. Document text in the sources list (titles, snippets) is escaped
character by character instead. Each fixture is a way a link or tag could get through.
"""

from __future__ import annotations

from html.parser import HTMLParser

import pytest
from markdown_it import MarkdownIt

from core.types import Answer, Citation
from ui.markup import PROSE_CLASS, answer_markdown, citation_markdown, prose

EVIL = "evil.example"
HOSTILE = {
    "bare www. URL in a quote": "> Quoted policy: log in at www.evil.example/login first [1].",
    "bare https URL in a nested list": "- item\n  - nested https://evil.example/b here\n    - deeper http://evil.example/c",
    "definition in a quote": "> [phish]: https://evil.example/a\n> Use [phish] to claim it [1].",
    "definition after a list": "- pay via [portal][d]\n- or [d]\n\n[d]: https://evil.example/d 'Payroll'",
    "definition of a citation marker": "Staff get 25 days [1].\n\n[1]: https://evil.example/cite",
    "autolinks": "Go to <https://evil.example/e> or write to <payroll@evil.example>.",
    "inline links": "[click](javascript:alert(1)) [data](data:text/html;base64,PHNjcmlwdD4=) "
    "[plain](https://evil.example/f 'title') [rel](files/../../etc/passwd)",
    "images": "![pixel](https://evil.example/p.png) ![ref][img] ![inline *alt*](data:image/png;base64,AAAA)"
    "\n\n[img]: https://evil.example/q.png",
    "raw HTML": '<a href="https://evil.example/g">x</a> <img src=x onerror=alert(1)> '
    "<script>alert(1)</script> <iframe src=https://evil.example/h></iframe> "
    '<svg onload=alert(1)></svg> <mark class="enclave-weak" title="forged">m</mark>',
    "HTML block": '<div onclick="alert(1)">\n<a href="https://evil.example/i">block</a>\n</div>',
    "entities": "&lt;a href=x&gt; &#60;img src=x onerror=alert(2)&#62; &#x3C;script> &#106;avascript:x",
    "blank lines in a fenced code block": "```\ncode\n\n[x](https://evil.example/j)\n\n   \nwww.evil.example\n```\n"
    "after the code [1]",
    "indented code with a blank line": "text\n\n    [x](https://evil.example/k)\n\n    <https://evil.example/l>",
    "table": "| a | b |\n|---|---|\n| [x](https://evil.example/m) | <https://evil.example/n> |",
    "emphasis around a link": "**[bold](https://evil.example/o)** _www.evil.example_",
}
# What prose() may emit: markdown-it's structure and emphasis, the marks, the wrapper.
ALLOWED = {
    "div": {"class"},
    **{tag: set() for tag in "p br em strong s code pre blockquote ul li hr h1 h2 h3 h4 h5 h6".split()},
    **{tag: set() for tag in "table thead tbody tr th td".split()},
    "ol": {"start"},
    "mark": {"class", "title"},
}


class Elements(HTMLParser):
    """Every start tag with its attributes, as a browser's parser would see them."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def read_as_gradio_does(message: str) -> list[str]:
    """The block tokens a CommonMark reader that lets HTML through (as Gradio's does) sees."""
    return [t.type for t in MarkdownIt("commonmark").parse(message) if t.level == 0]


@pytest.mark.parametrize("text", HOSTILE.values(), ids=HOSTILE.keys())
def test_no_link_image_or_foreign_tag_survives_in_an_answer(text: str) -> None:
    shown = prose(text)
    found = Elements(shown)
    for tag, attrs in found.tags:
        assert tag in ALLOWED, (tag, shown)
        assert set(attrs) <= ALLOWED[tag], (tag, attrs, shown)
        assert not any(EVIL in (value or "") for value in attrs.values()), shown
    # A mark keeps only our own classes and titles: a document cannot forge one.
    assert not [attrs for tag, attrs in found.tags if tag == "mark"], shown
    # Gradio's Markdown reads all of it as one HTML block, so nothing in it becomes a Markdown
    # link or a bare-URL autolink on the client either.
    assert read_as_gradio_does(shown) == ["html_block"], shown
    assert shown.startswith(f'<div class="{PROSE_CLASS}">') and shown.endswith("</div>")


def test_a_foreign_link_leaves_its_words_in_sight() -> None:
    visible = "".join(Elements(prose(HOSTILE["inline links"] + "\n\n" + HOSTILE["raw HTML"])).text)
    assert "click" in visible and "plain" in visible  # the link's words, not its target
    assert "https://evil.example/f" not in visible and "javascript:" not in visible and "data:" not in visible
    assert '<a href="https://evil.example/g">x</a>' in visible  # typed HTML is shown as text
    quoted = "".join(Elements(prose(HOSTILE["bare www. URL in a quote"])).text)
    assert "www.evil.example/login" in quoted  # shown, not clickable
    planted = "".join(Elements(prose(HOSTILE["definition of a citation marker"])).text)
    assert "[1]" in planted and "[1]: https://evil.example/cite" in planted  # the marker stays a marker


def test_answers_keep_their_formatting_and_citation_markers() -> None:
    text = "## Leave\n\nStaff get **25 days** [1], part-time staff *pro rata* [2].\n\n1. Ask\n2. Wait\n\n> Quoted [3]."
    shown = prose(text)
    assert (
        "<h2>Leave</h2>" in shown
        and "<strong>25 days</strong> [1]" in shown
        and "<em>pro rata</em> [2]" in shown
    )
    assert "<ol>\n<li>Ask</li>" in shown and "<blockquote>\n<p>Quoted [3].</p>" in shown
    assert prose("") == "" and prose("  \n") == ""


def test_control_characters_and_placeholders_are_taken_out() -> None:
    shown = prose("A ticket costs 7 euros \u202eoruo 7\u202c and \ue000marks\ue002 stay ours.")
    assert "\u202e" not in shown and "\u202c" not in shown and "<mark" not in shown
    assert "\ue000" not in shown and "\ue002" not in shown


def test_the_answer_message_frames_the_html_block_with_markdown() -> None:
    shown = answer_markdown(Answer("q", HOSTILE["definition in a quote"], "llm", audit_id=4))
    assert read_as_gradio_does(shown) == ["html_block", "paragraph_open", "paragraph_close"]
    assert shown.endswith("\n\n*Audit record 4*")


@pytest.mark.parametrize("text", HOSTILE.values(), ids=HOSTILE.keys())
def test_document_text_in_a_source_is_literal(text: str) -> None:
    citation = Citation(n=1, chunk_id="d1:0001", doc_id="d1", source="/srv/a.md", title=text,
                        section=text, page=2, snippet=text)  # fmt: skip
    shown = citation_markdown(citation)
    rendered = MarkdownIt("commonmark").enable(["table", "strikethrough"]).render(shown)
    tags = Elements(rendered).tags
    assert [attrs.get("href") for tag, attrs in tags if tag == "a"] == ["files/d1#page=2"], rendered
    assert not [tag for tag, _ in tags if tag not in {"p", "strong", "a", "code"}], rendered
    # Nothing left for a GFM autolinker (Gradio's Markdown is one) to pick up: `https\://`,
    # `www\.evil`, `payroll@evil\.example` do not match its patterns.
    for bare in ("http://", "https://", "www.", "@evil.example"):
        assert bare not in shown, (bare, shown)
