"""Numbered sources and the `[n]` markers that refer to them."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from core.types import Citation, Hit

_MARKER = re.compile(r"\[(\d{1,3})\]")
SNIPPET_CHARS = 300


Locate = Callable[[str], str | None]
"""Where the document of a chunk's `source` lives for its users, or None (the composition root
gives one that knows the synced sources)."""


def citations_for(hits: Sequence[Hit], locate: Locate | None = None) -> list[Citation]:
    """Number the hits 1..n in rank order, each with its location where `locate` gives one."""
    out = []
    for n, hit in enumerate(hits, start=1):
        c = hit.chunk
        snippet = c.text if len(c.text) <= SNIPPET_CHARS else c.text[:SNIPPET_CHARS].rsplit(" ", 1)[0] + " …"
        location = locate(c.source) if locate is not None else None
        out.append(Citation(n, c.chunk_id, c.doc_id, c.source, c.title, c.section, c.page, snippet, location))
    return out


def resolve(text: str, supplied: Sequence[Citation]) -> tuple[str, list[Citation], list[int]]:
    """(text without markers to unknown sources, cited sources in order of n, unknown numbers)."""
    by_n = {c.n: c for c in supplied}
    cited: set[int] = set()
    unknown: list[int] = []

    def keep(match: re.Match[str]) -> str:
        n = int(match.group(1))
        if n in by_n:
            cited.add(n)
            return match.group(0)
        unknown.append(n)
        return ""

    cleaned = _MARKER.sub(keep, text)
    return cleaned, [by_n[n] for n in sorted(cited)], unknown
