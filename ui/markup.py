"""Text shown in the chat, made safe: document and model text is hostile input, made inert here.

Gradio renders chat messages as Markdown and lets some HTML through its sanitiser, so text that
comes from documents (titles, sections, snippets) reaches it escaped, character by character, and
answers (Markdown meant to be read formatted) reach it as HTML that markdown-it-py rendered and nh3
cleaned against an allow-list: no link, image or tag of theirs survives. Plain functions of `core`
types, no gradio: they are unit-testable on their own. docs/security.md has the threat model.
"""

from __future__ import annotations

import dataclasses
import html
import re
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import quote

import nh3
from markdown_it import MarkdownIt
from markdown_it.renderer import RendererHTML
from markdown_it.token import Token
from markdown_it.utils import EnvType, OptionsDict

from assistant.extractive import LABEL as EXTRACTIVE_TEXT_LABEL
from core.types import Answer, Citation, SentenceSupport

SNIPPET_CHARS = 320

# Every ASCII punctuation character may be backslash-escaped in CommonMark; these are the ones
# that can start Markdown structure (emphasis, links, images, code, tables, headings, autolinks,
# KaTeX). Escaping them keeps document text literal: no link, no image fetch, no formatting.
_MARKDOWN_PUNCTUATION = frozenset("\\`*_{}[]()#+-.!|~$:\"'=^")
_WHITESPACE = re.compile(r"\s+")
# Bidirectional embeddings, overrides and isolates: document text could make a file name or a
# sentence display in another order than it reads ("Trojan Source", `invoice\u202efdp.exe`).
# The plain marks (LRM, RLM) that right-to-left text needs stay.
_BIDI_CONTROLS = re.compile("[\u202a-\u202e\u2066-\u2069]")


# Where the app serves the organisation's logo (ui.logo_path); relative, so that a page served
# under a sub-path behind a proxy still finds it.
LOGO_ROUTE = "branding/logo"


def logo(org_name: str, configured: bool) -> str:
    """The logo's <img> for a page header, or "" when no logo is configured."""
    if not configured:
        return ""
    alt = html.escape(f"{org_name} logo", quote=True)
    return (
        f'<img class="enclave-logo" src="{LOGO_ROUTE}" alt="{alt}" '
        'style="height:40px;width:auto;vertical-align:middle;margin-right:.5rem">'
    )


def literal(text: str) -> str:
    """Document text as inert Markdown: HTML escaped, Markdown punctuation backslash-escaped,
    bidirectional controls dropped."""
    out = []
    for char in _BIDI_CONTROLS.sub("", text):
        if char == "&":
            out.append("&amp;")
        elif char == "<":
            out.append("&lt;")
        elif char == ">":
            out.append("&gt;")
        elif char in _MARKDOWN_PUNCTUATION:
            out.append("\\" + char)
        else:
            out.append(char)
    return "".join(out)


def one_line(text: str, limit: int | None = None) -> str:
    """Whitespace collapsed (so no line can open a Markdown block), cut at `limit` characters."""
    flat = _WHITESPACE.sub(" ", _BIDI_CONTROLS.sub("", text)).strip()
    if limit is not None and len(flat) > limit:
        flat = flat[: limit - 1].rstrip() + "…"
    return flat


class _InertLinksRenderer(RendererHTML):
    """markdown-it's HTML renderer, except that a link renders as its text alone and an image as
    its alt text: an answer has no links of its own, so every one came from a document."""

    def link_open(self, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType) -> str:
        return ""

    def link_close(self, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType) -> str:
        return ""

    def image(self, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType) -> str:
        return html.escape(self.renderInlineAsText(tokens[idx].children or [], options, env), quote=False)


# CommonMark with GitHub's tables and strikethrough, as answers are written; raw HTML is text
# (html: False), bare URLs stay text (no linkify), a single newline breaks the line as Gradio's own
# Markdown does. Link reference definitions are text too: one planted by a document stays in
# sight, and cannot turn the citation markers `[1]` into links (losing their brackets).
_MARKDOWN = (
    MarkdownIt(
        "commonmark", {"html": False, "linkify": False, "breaks": True}, renderer_cls=_InertLinksRenderer
    )
    .enable(["table", "strikethrough"])
    .disable("reference")
)
# Every link is parsed as one (javascript: and data: too, which markdown-it would otherwise leave
# as literal text), so that every link shows as its words alone, whatever its target.
_MARKDOWN.validateLink = lambda url: True  # type: ignore[method-assign]

# Sentences of a generated answer that its citations do not back are wrapped in <mark> (shown
# highlighted by the browser's own style, kept by Gradio's sanitiser with class and title).
MARKS = {
    "weak": (
        "enclave-weak",
        "Weakly supported: the cited source shares little with this sentence. Check it against the source.",
    ),
    "uncited": (
        "enclave-uncited",
        "No citation: this sentence cites no source. Check it against the sources.",
    ),
}
MARKED_NOTE = "*Highlighted sentences are weakly supported by the sources they cite, or cite none.*"
ATTRIBUTED_NOTE = (
    "*The model cited no source for some sentences: Enclave matched them to the listed sources "
    "that back them ({numbers}). Check them against the sources.*"
)

# What an answer may be shown with, checked by nh3 (Ammonia) on markdown-it's output: structure
# and emphasis, no link, image, media, form or style; a <mark> only with one of MARKS' classes and
# titles. markdown-it never emits anything else; this is the allow-list that makes it certain.
_PROSE_TAGS = set(
    "p br em strong s code pre blockquote ul ol li hr h1 h2 h3 h4 h5 h6 table thead tbody tr th td mark".split()
)
_PROSE_CLEANER = nh3.Cleaner(
    tags=_PROSE_TAGS,
    attributes={"ol": {"start"}},
    tag_attribute_values={
        "mark": {"class": {css for css, _ in MARKS.values()}, "title": {title for _, title in MARKS.values()}}
    },
    link_rel=None,
    url_schemes=set(),
)
# Private-use characters that stand for the start of a marked sentence (one per level) and its
# end while the answer is parsed; taken out of the text first, so a document cannot place them.
_MARK_OPEN = {"weak": "\ue000", "uncited": "\ue001"}
_MARK_CLOSE = "\ue002"
_SENTINELS = re.compile("[\ue000-\ue002]")
_SENTINEL_OR_TAG = re.compile("([\ue000-\ue002]|<[^>]*>)")
# Markers that open a block at a line's start: a mark's sentinel goes after them, not before,
# or the list item, quote or heading would become a plain paragraph.
_BLOCK_MARKERS = re.compile(r"(?:[ \t]*(?:[-*+]|\d{1,9}[.)]|>|#{1,6})(?=[ \t]|$)[ \t]*)+")
# A blank line would end the HTML block Gradio's Markdown reads the answer as, and what follows it
# would be read as Markdown; only a code block can hold one, and `&#10;` is the same newline there.
_BLANK_LINE_START = re.compile(r"\n(?=[ \t]*\n)")
PROSE_CLASS = "enclave-prose"


def _answer_html(source: str) -> str:
    """Markdown (with mark sentinels) as allow-listed HTML, in one block Gradio passes through.

    A <mark> wraps runs of text only: it ends before any tag inside the sentence (emphasis, a list
    item) and opens again before the sentence's next text, so marks never straddle elements."""
    rendered = _MARKDOWN.render(source)
    out, level, open_ = [], "", False
    for piece in _SENTINEL_OR_TAG.split(rendered):
        if piece in _MARK_OPEN.values():
            level = next(name for name, char in _MARK_OPEN.items() if char == piece)
        elif piece == _MARK_CLOSE:
            out.append("</mark>" if open_ else "")
            level, open_ = "", False
        elif piece.startswith("<"):
            out.append("</mark>" + piece if open_ else piece)
            open_ = False
        else:
            if level and not open_ and piece.strip():
                css, title = MARKS[level]
                out.append(f'<mark class="{css}" title="{html.escape(title)}">')
                open_ = True
            out.append(piece)
    body = _PROSE_CLEANER.clean("".join(out)).strip()
    if not body:
        return ""
    return f'<div class="{PROSE_CLASS}">{_BLANK_LINE_START.sub("&#10;", body)}</div>'


def _prose_source(text: str) -> str:
    return _SENTINELS.sub("", _BIDI_CONTROLS.sub("", text))


def prose(text: str) -> str:
    """Model or extractive answer text (or a question): its Markdown rendered to HTML, and nothing
    in it that could run code, fetch from elsewhere or lead there.

    A link shows as its text, an image as its alt text, a URL (bare, `<autolink>`, or a link
    definition's) as plain text; raw HTML is shown as text. Citation markers like `[1]` stay.
    """
    return _answer_html(_prose_source(text))


def marked_prose(text: str, support: Sequence[SentenceSupport]) -> str:
    """`prose(text)` with each weakly supported or uncited sentence wrapped in a titled <mark>."""
    clean, out, at = _prose_source, [], 0
    for s in sorted(support, key=lambda s: s.start):
        if s.level not in _MARK_OPEN or s.start < at or s.end > len(text):
            continue
        sentence = text[s.start : s.end]
        line_start = s.start == 0 or text[s.start - 1] == "\n"
        lead = _BLOCK_MARKERS.match(sentence) if line_start else None
        cut = lead.end() if lead else 0
        out += [
            clean(text[at : s.start] + sentence[:cut]),
            _MARK_OPEN[s.level],
            clean(sentence[cut:]),
            _MARK_CLOSE,
        ]
        at = s.end
    out.append(clean(text[at:]))
    return _answer_html("".join(out))


def page_label(page: int | None) -> str:
    return f"p. {page}" if page is not None else ""


def file_url(citation: Citation) -> str:
    """The link that opens a cited document's original (ui.server's /files route checks the
    user's groups). Relative, so it holds behind a proxy that serves the UI under a sub-path; the
    page goes in the fragment, which PDF viewers open at."""
    url = f"files/{quote(citation.doc_id, safe='')}"
    return f"{url}#page={citation.page}" if citation.page is not None else url


def file_name(source: str) -> str:
    """A source's file name without the folders it lies in on the server: `leave.md`, or
    `mail.eml#form.pdf` for a mail attachment (folders of either separator style dropped)."""
    head, sep, rest = source.partition("#")
    return head.replace("\\", "/").rsplit("/", 1)[-1] + sep + rest


def citation_markdown(citation: Citation) -> str:
    """One source: number, title, page, section, file, a link to open it, then the snippet."""
    title = citation.title or citation.source or citation.doc_id
    parts = [f"**\\[{citation.n}\\] {literal(one_line(title))}**"]
    if citation.page is not None:
        parts.append(page_label(citation.page))
    if citation.section:
        parts.append(literal(one_line(citation.section)))
    if citation.location:
        # Where staff find it themselves (the share, site or mailbox it was synced from), in full.
        parts.append("`" + one_line(citation.location).replace("`", "'") + "`")
    elif name := file_name(citation.source) if citation.source else "":
        if name != title:
            # The file's name, not its path on the server (the link opens it). A code span shows
            # it literally; only a backtick could end it early.
            parts.append("`" + one_line(name).replace("`", "'") + "`")
    if citation.doc_id:
        parts.append(f"[open the file]({file_url(citation)})")
    head = " · ".join(parts)
    snippet = one_line(citation.snippet, SNIPPET_CHARS)
    return f"{head}\n\n{literal(snippet)}" if snippet else head


def sources_markdown(citations: Sequence[Citation]) -> str:
    return "\n\n---\n\n".join(citation_markdown(c) for c in citations)


EXTRACTIVE_LABEL = (
    "**Extractive answer** · passages quoted from the documents; "
    "no language model is configured, nothing below was generated."
)


def answer_markdown(answer: Answer) -> str:
    """The final answer as shown: a mode label where it matters, the text, its audit record."""
    lines = []
    text, support = answer.text, list(answer.support)
    if answer.mode == "extractive":
        lines.append(EXTRACTIVE_LABEL)
        # The assistant's own label (for the CLI and the API) would say the same thing twice.
        if text.startswith(EXTRACTIVE_TEXT_LABEL):
            rest = text[len(EXTRACTIVE_TEXT_LABEL) :].lstrip()
            cut = len(text) - len(rest)
            text = rest
            support = [
                dataclasses.replace(s, start=s.start - cut, end=s.end - cut)
                for s in support
                if s.start >= cut
            ]
    if answer.mode == "error":
        detail = answer.error or answer.text or "no detail was given"
        lines.append(f"**The answer failed:** {literal(one_line(detail))}")
    elif text:
        lines.append(marked_prose(text, support))
        if any(s.level in MARKS for s in support):
            lines.append(MARKED_NOTE)
        attributed = sorted({n for s in support if s.attributed for n in s.cited})
        if attributed:
            lines.append(ATTRIBUTED_NOTE.format(numbers=", ".join(f"[{n}]" for n in attributed)))
    if answer.audit_id is not None:
        lines.append(f"*Audit record {answer.audit_id}*")
    return "\n\n".join(lines)


def toast(message: str) -> str:
    """Text for gr.Error / gr.Warning, which render their message as HTML."""
    return html.escape(one_line(message), quote=False)


def error_markdown(message: str) -> str:
    return f"**Error:** {literal(one_line(message))}"


def citation_record(citation: Citation) -> dict[str, Any]:
    """A citation as the `/ask` API returns it (raw text: callers escape for their own output)."""
    return {
        "n": citation.n,
        "source": citation.source,
        "location": citation.location,
        "page": citation.page,
        "title": citation.title,
        "section": citation.section,
        "chunk_id": citation.chunk_id,
    }


def answer_record(answer: Answer) -> dict[str, Any]:
    """An Answer as the `/ask` API returns it: JSON-able, no library types."""
    return {
        "answer": answer.text,
        "mode": answer.mode,
        "citations": citation_records(answer.citations),
        "audit_id": answer.audit_id,
        "error": answer.error,
    }


def citation_records(citations: Iterable[Citation]) -> list[dict[str, Any]]:
    return [citation_record(c) for c in citations]
