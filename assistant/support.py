"""Checks each sentence of a generated answer against the sources it cites.

A sentence is *supported* when most of its content words appear in its cited sources, or when
it is close in meaning (embedding cosine) to one of them; *weak* when neither holds; *uncited*
when it cites nothing. This measures grounding, not truth: it catches a citation to a source
about something else, or a sentence from the model's own knowledge with a citation attached, not
a sentence that misreads a source on its own topic (or reuses its words to say the opposite).

The thresholds come from `bench/citation_support.py` on SciFact's train split (claims against the
abstracts that back them, against the closest abstracts that do not, and against random ones),
at the operating point where 95% of correctly cited claims pass; docs/benchmarks.md has the
figures: on the test split 95% of cited claims pass and 93% of claims citing a random abstract
are flagged, while claims citing the nearest wrong abstract are mostly not (the limit above).

Small models cite poorly (SmolLM2-135M never writes `[n]`), so with `attribute=True` a sentence
that cites nothing is *attributed*: the supplied source that backs it best by the same two tests
becomes its citation, marked as Enclave's (`SentenceSupport.attributed`), not the model's. Every
supplied source is a candidate, all of them on the question's topic, so the attribution tests are
stricter than a citation's (ATTRIBUTE_*, chosen on the tune split of bench/grounding).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from core.types import SentenceSupport, SupportLevel

# Chosen on SciFact train (bench/citation_support.py, "lexical OR whole-chunk cosine" at 95% of
# cited claims passing). The lexical test only spares the embedding for near-verbatim sentences.
MIN_LEXICAL = 0.85
MIN_SEMANTIC = 0.30
# Without an embedder, the lexical test alone at the same operating point ("lexical only").
MIN_LEXICAL_ALONE = 0.10
# Attribution of a sentence that cites nothing to the supplied source backing it best. Every
# supplied passage is on the question's topic, so the cosine bar is above a citation's, and a
# source must hold every number the sentence states beyond the question's (SmolLM2 invents fees,
# limits and dates in sentences that restate the question: cosine 0.5-0.74 without the gate).
# Demo tune split, SmolLM2 (bench/attribution.py, 10 answers so far): cosine 0.35-0.60 all give
# 4/7 answerable refused (0 of the 2 holding the expected words), 2/3 unanswerable refused.
ATTRIBUTE_MIN_LEXICAL = 0.85
ATTRIBUTE_MIN_SEMANTIC = 0.45
ATTRIBUTE_MIN_LEXICAL_ALONE = 0.60

_MARKER = re.compile(r"\s*\[\d{1,3}\]")
_MARKER_N = re.compile(r"\[(\d{1,3})\]")
_WORD = re.compile(r"[^\W_]+(?:[.,'’][^\W_]+)*")
# A sentence ends at . ! or ? (then any closing quote/bracket and citation markers) before space.
_SENTENCE_END = re.compile(r"[.!?]+[\"'’”)\]]*(?:\s*\[\d{1,3}\])*(?=\s)")
# Markdown that opens a line (list bullet or number, heading, quote) is not part of a sentence.
_LINE_LEAD = re.compile(r"^\s*(?:(?:[-*+]|\d{1,3}[.)])\s+|#{1,6}\s+|>\s*)*")
# Statements that the sources do not hold the answer need no citation.
_NOT_IN_SOURCES = re.compile(
    r"\b(documents?|sources?|passages?|context)\b.{0,60}\b(do(es)?n['’]?t|do(es)? not|not)\b"
    r".{0,40}\b(answer|say|mention|contain|cover|include|provide|state|specify)",
    re.IGNORECASE,
)

STOPWORDS = frozenset(
    """a about above after again against all also am an and any are aren't as at be because been
    before being below between both but by can cannot could couldn't did didn't do does doesn't
    doing don't down during each either else etc ever every few for from further had hadn't has
    hasn't have haven't having he her here hers herself him himself his how however i if in into
    is isn't it it's its itself just let's may me might more most must mustn't my myself neither
    no nor not now of off on once one only or other ought our ours ourselves out over own per
    rather same shall shan't she should shouldn't so some such than that that's the their theirs
    them themselves then there there's these they they're this those though through thus to too
    under until up upon us very via was wasn't we we're were weren't what what's when where
    whether which while who whom whose why will with within without won't would wouldn't yes yet
    you your yours yourself yourselves according source sources document documents""".split()
)


class SentenceEmbedder(Protocol):
    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]: ...


def says_not_in_sources(text: str) -> bool:
    """Whether `text` says that the sources do not hold the answer (it needs no citation)."""
    return _NOT_IN_SOURCES.search(text) is not None


def numbers(text: str) -> set[str]:
    """The numbers `text` states, as written but for thousands separators ("10,000" is "10000")."""
    return {t.replace(",", "") for t in content_terms(text) if any(c.isdigit() for c in t)}


def stem(word: str) -> str:
    """A crude suffix stripper: enough for 'policies'/'policy', 'booked'/'booking'/'book'."""
    w = word.lower().replace("’", "'")
    if w.endswith("'s"):
        w = w[:-2]
    if len(w) > 4 and w.endswith("ies"):
        return w[:-3] + "y"
    for suffix, keep in (("ing", 4), ("ed", 4), ("es", 4), ("ly", 4)):
        if w.endswith(suffix) and len(w) - len(suffix) >= keep - 1 and not w.endswith("ss" + suffix):
            return w[: -len(suffix)]
    if len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "us", "is")):
        return w[:-1]
    return w


def content_terms(text: str) -> set[str]:
    """Stems of the words that carry content: no stop words, no single letters (digits stay)."""
    out = set()
    for match in _WORD.finditer(_MARKER.sub(" ", text)):
        word = match.group(0).lower().replace("’", "'")
        if word in STOPWORDS or (len(word) == 1 and not word.isdigit()):
            continue
        out.add(stem(word))
    return out


def lexical_support(sentence: str, sources: Sequence[str]) -> float:
    """Share of the sentence's content words found in the sources (1.0 when it has none)."""
    terms = content_terms(sentence)
    if not terms:
        return 1.0
    found = set().union(*(content_terms(s) for s in sources)) if sources else set()
    return len(terms & found) / len(terms)


def split_source_sentences(text: str) -> list[str]:
    """A source's sentences (and its lines: headings, table rows), each at least a few words."""
    out = []
    for line in text.splitlines():
        for start, end in _sentence_spans(line):
            sentence = line[start:end].strip()
            if len(content_terms(sentence)) >= 2:
                out.append(sentence)
    return out


def _sentence_spans(line: str) -> list[tuple[int, int]]:
    spans, start = [], 0
    for match in _SENTENCE_END.finditer(line):
        spans.append((start, match.end()))
        start = match.end()
    if line[start:].strip():
        spans.append((start, len(line)))
    return spans


def answer_sentences(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence of `text`, leading Markdown and whitespace left outside."""
    spans = []
    offset = 0
    for line in text.splitlines(keepends=True):
        body = line.rstrip("\r\n")
        lead = _LINE_LEAD.match(body)
        skip = lead.end() if lead else 0
        for start, end in _sentence_spans(body[skip:]):
            piece = body[skip + start : skip + end]
            stripped_left = len(piece) - len(piece.lstrip())
            stripped_right = len(piece) - len(piece.rstrip())
            a = offset + skip + start + stripped_left
            b = offset + skip + end - stripped_right
            if b > a:
                spans.append((a, b))
        offset += len(line)
    return spans


def _dot(a: Sequence[float], b: Sequence[float]) -> float:
    return sum(x * y for x, y in zip(a, b))


@dataclass
class SupportChecker:
    """Grades the sentences of an answer against the texts of the sources they cite.

    `embedder` (normalised embeddings: the retrieval model, already loaded) adds the semantic
    test, the cosine between the sentence and each whole source it cites; without it only the
    lexical one runs.
    """

    embedder: SentenceEmbedder | None = None
    min_lexical: float = MIN_LEXICAL
    min_semantic: float = MIN_SEMANTIC
    min_lexical_alone: float = MIN_LEXICAL_ALONE
    attribute_min_lexical: float = ATTRIBUTE_MIN_LEXICAL
    attribute_min_semantic: float = ATTRIBUTE_MIN_SEMANTIC
    attribute_min_lexical_alone: float = ATTRIBUTE_MIN_LEXICAL_ALONE

    def check(
        self, text: str, sources: Mapping[int, str], attribute: bool = False, question: str = ""
    ) -> list[SentenceSupport]:
        """One SentenceSupport per sentence of `text`; `sources` maps citation n to chunk text.
        With `attribute`, a sentence citing nothing gets the source that backs it best, if any:
        only a source holding every number the sentence states beyond those of `question`."""
        asked = numbers(question)
        graded: list[SentenceSupport] = []
        pending: list[tuple[int, int, str, tuple[int, ...], float]] = []
        unattributed: list[tuple[int, int, str, dict[int, float]]] = []
        for start, end in answer_sentences(text):
            sentence = text[start:end]
            cited = tuple(dict.fromkeys(int(n) for n in _MARKER_N.findall(sentence) if int(n) in sources))
            bare = _MARKER.sub("", sentence).strip()
            if not content_terms(bare):
                continue  # a marker alone, or punctuation: nothing to check
            level: SupportLevel
            if not cited and attribute and sources and not _NOT_IN_SOURCES.search(bare):
                # A number the model wrote that a source lacks is invented there (a fee, a limit,
                # a date): that source cannot back the sentence, however close the rest of it is.
                stated = numbers(bare) - asked
                lexical_by_n = {
                    n: lexical_support(bare, [t]) for n, t in sources.items() if stated <= numbers(t)
                }
                if not lexical_by_n:
                    graded.append(SentenceSupport(start, end, sentence, (), "uncited", 0.0))
                    continue
                best = max(lexical_by_n, key=lambda n: (lexical_by_n[n], -n))
                if self.embedder is not None and lexical_by_n[best] >= self.attribute_min_lexical:
                    graded.append(
                        SentenceSupport(
                            start,
                            end,
                            sentence,
                            (best,),
                            "supported",
                            round(lexical_by_n[best], 4),
                            attributed=True,
                        )
                    )
                else:
                    unattributed.append((start, end, bare, lexical_by_n))
                continue
            if not cited:
                level = "supported" if _NOT_IN_SOURCES.search(bare) else "uncited"
                graded.append(SentenceSupport(start, end, sentence, (), level))
                continue
            lexical = lexical_support(bare, [sources[n] for n in cited])
            if self.embedder is None:
                level = "supported" if lexical >= self.min_lexical_alone else "weak"
                graded.append(SentenceSupport(start, end, sentence, cited, level, round(lexical, 4)))
            elif lexical >= self.min_lexical:
                graded.append(SentenceSupport(start, end, sentence, cited, "supported", round(lexical, 4)))
            else:
                pending.append((start, end, bare, cited, lexical))
        graded.extend(self._semantic(text, sources, pending))
        graded.extend(self._attribute(text, sources, unattributed))
        return sorted(graded, key=lambda s: s.start)

    def _attribute(
        self,
        text: str,
        sources: Mapping[int, str],
        pending: Sequence[tuple[int, int, str, dict[int, float]]],
    ) -> list[SentenceSupport]:
        """Sentences the model did not cite, each given the supplied source closest in meaning,
        or left uncited (with its best scores, for the record) when none is close enough."""
        if not pending:
            return []
        out = []
        if self.embedder is None:
            for start, end, _, lexical_by_n in pending:
                best = max(lexical_by_n, key=lambda n: (lexical_by_n[n], -n))
                lexical = round(lexical_by_n[best], 4)
                if lexical >= self.attribute_min_lexical_alone:
                    out.append(
                        SentenceSupport(
                            start, end, text[start:end], (best,), "supported", lexical, attributed=True
                        )
                    )
                else:
                    out.append(SentenceSupport(start, end, text[start:end], (), "uncited", lexical))
            return out
        numbered = sorted({n for _, _, _, lexical_by_n in pending for n in lexical_by_n})
        vectors = self.embedder.embed_documents(
            [bare for _, _, bare, _ in pending] + [sources[n] for n in numbered]
        )
        source_vector = dict(zip(numbered, vectors[len(pending) :]))
        for (start, end, _, lexical_by_n), vector in zip(pending, vectors):
            cosine = {n: _dot(vector, source_vector[n]) for n in lexical_by_n}
            best = max(lexical_by_n, key=lambda n: (cosine[n], lexical_by_n[n], -n))
            scores = (round(lexical_by_n[best], 4), round(cosine[best], 4))
            if cosine[best] >= self.attribute_min_semantic:
                out.append(
                    SentenceSupport(
                        start, end, text[start:end], (best,), "supported", *scores, attributed=True
                    )
                )
            else:
                out.append(SentenceSupport(start, end, text[start:end], (), "uncited", *scores))
        return out

    def _semantic(
        self,
        text: str,
        sources: Mapping[int, str],
        pending: Sequence[tuple[int, int, str, tuple[int, ...], float]],
    ) -> list[SentenceSupport]:
        if not pending or self.embedder is None:
            return []
        # Only sentences the lexical test did not pass need embeddings, with the sources they cite.
        cited = sorted({n for p in pending for n in p[3]})
        vectors = self.embedder.embed_documents(
            [bare for _, _, bare, _, _ in pending] + [sources[n] for n in cited]
        )
        source_vector = dict(zip(cited, vectors[len(pending) :]))
        out = []
        for (start, end, _, numbers, lexical), vector in zip(pending, vectors):
            semantic = max(_dot(vector, source_vector[n]) for n in numbers)
            level: SupportLevel = "supported" if semantic >= self.min_semantic else "weak"
            out.append(
                SentenceSupport(
                    start, end, text[start:end], numbers, level, round(lexical, 4), round(semantic, 4)
                )
            )
        return out


__all__ = [
    "ATTRIBUTE_MIN_LEXICAL",
    "ATTRIBUTE_MIN_LEXICAL_ALONE",
    "ATTRIBUTE_MIN_SEMANTIC",
    "MIN_LEXICAL",
    "MIN_LEXICAL_ALONE",
    "MIN_SEMANTIC",
    "SupportChecker",
    "answer_sentences",
    "content_terms",
    "lexical_support",
    "numbers",
    "says_not_in_sources",
]
