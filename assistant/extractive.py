"""The answerer used when no LLM is configured: the sentence, row or field that answers, quoted
first with its citation, then the best of the rest for context.

It never composes new text, so it cannot invent: each line is a sentence from a source. Which
ones, and whether any answers at all, is assistant.evidence's call: a question none answers is a
refusal (the Assistant's), never an empty answer.
"""

from __future__ import annotations

from collections.abc import Sequence

from assistant.evidence import SHOWN, EvidenceFinder, Finding, SentenceEmbedder
from core.types import Citation, Hit

LABEL = "Extractive answer (no language model is configured): the passages that best match your question."


class ExtractiveAnswerer:
    def __init__(self, embedder: SentenceEmbedder, max_sentences: int = SHOWN) -> None:
        self.finder = EvidenceFinder(embedder)
        self.max_sentences = max_sentences

    def find(
        self, question: str, hits: Sequence[Hit], citations: Sequence[Citation], search_query: str = ""
    ) -> Finding:
        return self.finder.find(question, hits, citations, search_query)

    def compose(self, finding: Finding) -> str:
        """The quoted answer: the best candidate first, then the next best; "" when there is none."""
        chosen = finding.ranked[: self.max_sentences]
        if not chosen:
            return ""
        lines = [f"> {s.candidate.text} [{s.candidate.n}]" for s in chosen]
        return LABEL + "\n\n" + "\n>\n".join(lines)
