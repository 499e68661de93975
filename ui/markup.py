"""Text shown in the chat, made safe: document text is hostile input and is escaped here.

Gradio renders chat messages as Markdown and lets some HTML through its sanitiser, so text that
comes from documents (titles, sections, snippets, and answers quoted from them) must never reach
it raw. Plain functions of `core` types, no gradio: they are unit-testable on their own.
"""

from __future__ import annotations

import dataclasses
import html
import re
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import quote

from assistant.extractive import LABEL as EXTRACTIVE_TEXT_LABEL
from core.types import Answer, Citation, SentenceSupport

SNIPPET_CHARS = 320

# Every ASCII punctuation character may be backslash-escaped in CommonMark; these are the ones
# that can start Markdown structure (emphasis, links, images, code, tables, headings, autolinks,
# KaTeX). Escaping them keeps document text literal: no link, no image fetch, no formatting.
_MARKDOWN_PUNCTUATION = frozenset("\\`*_{}[]()#+-.!|~$:\"'=^")
_WHITESPACE = re.compile(r"\s+")
# `![alt](url)` or `![alt][ref]`: the browser would fetch the image without a click.
_IMAGE_OPENER = re.compile(r"!\[")
# Bidirectional embeddings, overrides and isolates: document text could make a file name or a
# sentence display in another order than it reads ("Trojan Source", `invoice\u202efdp.exe`).
# The plain marks (LRM, RLM) that right-to-left text needs stay.
_BIDI_CONTROLS = re.compile("[\u202a-\u202e\u2066-\u2069]")
# A link's target: inline `[text](url)`, or a reference definition `[ref]: url` opening a line.
# An answer quoting a document must not carry a live link (javascript:, or a look-alike site).
_LINK_TARGET = re.compile(r"\]\(")
_LINK_DEFINITION = re.compile(r"^( {0,3})\[(?=[^\]\n]*\]:)", re.MULTILINE)


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


def prose(text: str) -> str:
    """Model or extractive answer text: Markdown kept, HTML and images neutralised.

    Answers are meant to be read formatted (lists, emphasis), so only what could run code, fetch
    from elsewhere or lead there is escaped: every `<` (no tag, comment or autolink survives),
    the image opener `![` and link targets (`](`, `[ref]:`); and bidirectional controls are
    dropped. Citation markers like `[1]` stay as they are.
    """
    text = _BIDI_CONTROLS.sub("", text).replace("<", "&lt;")
    text = _LINK_DEFINITION.sub(r"\1\\[", _LINK_TARGET.sub(r"]\\(", text))
    return _IMAGE_OPENER.sub(r"!\\[", text)


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
    name = file_name(citation.source) if citation.source else ""
    if name and name != title:
        # The file's name, not its path on the server (the link opens it). A code span shows it
        # literally; only a backtick could end it early.
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


def marked_prose(text: str, support: Sequence[SentenceSupport]) -> str:
    """`prose(text)` with each weakly supported or uncited sentence wrapped in a titled <mark>."""
    out, at = [], 0
    for s in sorted(support, key=lambda s: s.start):
        if s.level not in MARKS or s.start < at or s.end > len(text):
            continue
        css, title = MARKS[s.level]
        out.append(prose(text[at : s.start]))
        out.append(f'<mark class="{css}" title="{html.escape(title)}">{prose(text[s.start : s.end])}</mark>')
        at = s.end
    out.append(prose(text[at:]))
    return "".join(out)


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
