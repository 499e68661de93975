"""The sentence, table row or field in the passages that answers a question, and whether any does.

Sentences that merely resemble a question are not the ones that answer it: "How many weeks of
leave do I get?" is answered by the one sentence that holds a number of weeks, wherever the
question's words are. So each candidate (a sentence, a line of a table or form, split out of the
passages given to the answerer) is scored on three things:

- what the question asks for (`Expectation`): a number of some unit, an amount of money, a
  percentage, a date or time, a name, an e-mail address, or anything; a candidate that holds no
  value of that kind cannot be the answer;
- how many of the question's content words it holds, in itself or in the passage around it
  (`coverage`, the words weighted by how rare they are among the candidates);
- how close it is in meaning (embedding cosine).

A question is answerable when its best candidate holds a value of the kind asked for (when a kind
is asked for) and covers enough of the question; otherwise the answer is a refusal naming the
documents searched. The thresholds are calibrated on the tuning half of the question sets in
bench/grounding (never the held-out half): docs/benchmarks.md, "Grounding".
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal, Protocol

from assistant.support import STOPWORDS, content_terms
from core.types import Citation, Hit

Kind = Literal[
    "number", "money", "percent", "date", "when", "time", "frequency", "name", "email", "phone", "any"
]

# Calibrated on the tune split of bench/grounding (never the held-out one) at the point where at
# most 5% of answerable questions whose answer is in the passages are refused; docs/benchmarks.md.
MIN_COVERAGE = 0.0  # share of the question's (weighted) words a typed best candidate must hold
MIN_COVERAGE_UNTYPED = 0.1  # the same, when the question asks for no particular kind of value
MIN_COSINE = 0.4  # a typed candidate below this is about something else, whatever words it shares
MIN_COSINE_UNTYPED = 0.35  # the same for the best candidate when no kind of value is asked for
SUBJECT_SHARE = 0.6  # of the question's words its best document holds, a candidate's must hold
TYPED_RANK = 1  # the first candidate of the kind asked for must be among the best TYPED_RANK + 1
WEIGHT_COSINE = 1.0
WEIGHT_COVERAGE = 1.0
WEIGHT_TYPED = 0.5
WEIGHT_LABEL = 1.0  # a form field whose label the question names ("What destination...": "Destination: X")
MIN_LABEL_MATCH = 0.5  # share of a label's words the question must hold for the field to count
MAX_LABEL_WORDS = 5  # "Last Flight Review or Equivalent:" is a label; a longer lead-in is a sentence
SHOWN = 3  # candidates quoted in an extractive answer: the answer first, then its context
WEIGHT_OFF_SUBJECT = 0.5  # taken off a candidate from a document about another subject than the
# one the question names

_MONTHS = (
    "january february march april may june july august september october november december "
    "jan feb mar apr jun jul aug sep sept oct nov dec"
).split()
_NUMBER = re.compile(
    r"(?<![\w.])(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:st|nd|rd|th)?(?![\w])|\b(?:one|two|three|four|five|six|"
    r"seven|eight|nine|ten|eleven|twelve|fifteen|twenty|thirty|forty|fifty|sixty|ninety|hundred|thousand|"
    r"million|billion|first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|eleventh|twelfth)\b",
    re.IGNORECASE,
)
_MONEY = re.compile(
    r"[$€£¥]\s?\d|\b\d[\d,.]*\s?(?:thousand|million|billion|bn|m|k)?\s?"
    r"(?:usd|eur|gbp|hvd|dollars?|euros?|pounds?|cents?)\b|\b(?:usd|eur|gbp|hvd)\s?\d",
    re.IGNORECASE,
)
_PERCENT = re.compile(r"\d\s?(?:%|percent\b|per cent\b)", re.IGNORECASE)
_DATE = re.compile(
    r"\b\d{1,2}/\d{1,2}/\d{2,4}\b|\b\d{4}-\d{2}-\d{2}\b|\b(?:19|20)\d{2}\b|\b(?:"
    + "|".join(_MONTHS)
    + r")\b\.?",
    re.IGNORECASE,
)
_TIME = re.compile(
    r"\b\d{1,2}:\d{2}\b|\b\d{3,4}\s?(?:hours|hrs|utc|gmt|local|[ecmp][sd]t|akst|hst)\b|\b\d{1,2}\s?(?:a\.?m\.?|p\.?m\.?)",
    re.IGNORECASE,
)
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+")
_PHONE = re.compile(r"(?:\+|\()?\d[\d\s().-]{6,}\d|\bnone available\b|\bnot available\b", re.IGNORECASE)
# Two or more capitalised words in a row, or one after a title: a name of a person, company or place.
_NAME = re.compile(
    r"\b(?:[A-Z][\w'’.-]+|[A-Z]{2,})(?:\s+(?:of|and|de|van|von|&)?\s*(?:[A-Z][\w'’.-]+|[A-Z]{2,}))+"
)

# Units a "how many/how long/how far ..." question can name, by stem, with the words that express them.
_UNITS: dict[str, tuple[str, ...]] = {
    "week": ("week", "weeks", "wk", "wks"),
    "day": ("day", "days", "business day", "calendar day"),
    "hour": ("hour", "hours", "hr", "hrs", "h"),
    "minute": ("minute", "minutes", "min", "mins"),
    "month": ("month", "months"),
    "year": ("year", "years", "yr", "yrs"),
    "foot": ("foot", "feet", "ft", "'"),
    "mile": ("mile", "miles", "nm", "nautical mile", "nautical miles", "sm", "statute miles"),
    "metre": ("metre", "metres", "meter", "meters", "m"),
    "kilometre": ("kilometre", "kilometres", "kilometer", "kilometers", "km"),
    "knot": ("knot", "knots", "kt", "kts"),
    "inch": ("inch", "inches", "in", '"'),
    "mph": ("mph", "miles per hour", "mile per hour"),
    "kilogram": ("kilogram", "kilograms", "kg"),
    "tonne": ("tonne", "tonnes", "ton", "tons", "t"),
    "age": ("age",),
    "pound": ("pound", "pounds", "lb", "lbs"),
    "gallon": ("gallon", "gallons", "gal"),
    "character": ("character", "characters", "chars"),
    "night": ("night", "nights"),
    "degree": ("degree", "degrees", "°"),
}
_DURATION_UNITS = ("week", "day", "night", "hour", "minute", "month", "year")
_LENGTH_UNITS = ("foot", "mile", "metre", "kilometre", "inch")
# "How tall was the tree?" wants a length, "how old" an age: a model number is neither.
_DIMENSIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (r"\bhow far (?:ahead|in advance|before|back|beforehand)\b", _DURATION_UNITS),
    (r"\bhow (?:far|high|tall|wide|deep)\b", _LENGTH_UNITS),
    (r"\bhow fast\b", ("knot", "mph", "kilometre")),
    (r"\bhow heavy\b", ("pound", "kilogram", "tonne")),
    (r"\bhow old\b", ("year", "age")),
)
_FREQUENCY = re.compile(
    r"\b(?:daily|weekly|monthly|quarterly|yearly|annually|fortnightly|biweekly|bi-weekly|hourly|every|each|"
    r"once|twice|per (?:day|week|month|year|quarter|sprint)|a (?:day|week|month|year)|\d+ times)\b",
    re.IGNORECASE,
)
_NOT_UNITS = frozenset(
    "of the a an more times time total in did do does is are was were can will has have must should "
    "would could may might had been get need were there".split()
)
_LABEL = re.compile(r"^[A-Z][\w &/()'’.,-]{0,40}?:\s+(?=\S)")
_MONEY_NOUNS = frozenset({"money", "cash", "funding", "dollars", "euros"})
_RELATIVE = re.compile(
    r"\b(?:after|before|within|until|by the end of|no later than|prior to|upon|once|whenever|as soon as|"
    r"at the (?:start|end|beginning|close) of)\b",
    re.IGNORECASE,
)
_MONEY_WORDS = re.compile(
    r"\b(?:fee|fees|cost|costs|price|charge|charged|pay|paid|salary|allowance|fine|budget|spend|spent|"
    r"reimburse\w*|rate|tariff|dues|amount|discount|limit|expense|expenses)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Expectation:
    """What a question asks for: a kind of value, and for numbers the units that may express it."""

    kind: Kind
    units: tuple[str, ...] = ()

    def met_by(self, text: str, question: str = "") -> bool:
        """Whether `text` holds a value of this kind (with one of the units, when they are named).
        In a `Label: value` line only the value counts: a label is no name. Nor does a value the
        `question` itself gives: "the PA-28-140" holds a number, and is no answer to "how much
        altitude did the PA-28-140 lose?"."""
        if question:
            text = without_asked(text, question)
        label = _LABEL.match(text)
        if label and self.kind == "number" and self.units and _number_with_unit(text, self.units):
            return True  # "Age: 17": the label is the unit
        if label:
            text = text[label.end() :]
        match self.kind:
            case "any":
                return True
            case "money":  # a currency, or an amount written with cents (a tariff's 2380.00)
                return bool(_MONEY.search(text)) or bool(re.search(r"\b\d[\d,]*\.\d{2}\b", text))
            case "percent":
                return bool(_PERCENT.search(text))
            case "date":
                return bool(_DATE.search(text))
            case "time":
                return bool(_TIME.search(text)) or bool(_DATE.search(text))
            case "when":  # a date, a time, or a delay ("within 3 business days", "one year after")
                return (
                    bool(_DATE.search(text))
                    or bool(_TIME.search(text))
                    or _number_with_unit(text, _DURATION_UNITS)
                    or bool(_RELATIVE.search(text))
                )
            case "frequency":
                return bool(_FREQUENCY.search(text))
            case "email":
                return bool(_EMAIL.search(text))
            case "phone":
                return bool(_PHONE.search(text))
            case "name":
                return bool(_NAME.search(text))
        if not self.units:
            return bool(_NUMBER.search(text))
        return _number_with_unit(text, self.units)


_TOKEN = re.compile(r"[\w$€£][\w'’.,/&:-]*[\w%]|[\w$€£]")
_MASK = "\u2026"


def _token_key(token: str) -> str:
    return token.lower().replace("’", "'").removesuffix("'s")


def token_keys(text: str) -> set[str]:
    """`text`'s words and figures as names are compared ("GitHub's" and "github" alike)."""
    return {_token_key(t) for t in _TOKEN.findall(text)}


@lru_cache(maxsize=64)
def _question_keys(question: str) -> frozenset[str]:
    return frozenset(token_keys(question))  # once per question, not per candidate


@lru_cache(maxsize=64)
def _question_terms(question: str) -> frozenset[str]:
    return frozenset(content_terms(question))


def without_asked(text: str, question: str) -> str:
    """`text` with the names and figures that the question itself holds masked out: a value is an
    answer only when it is new. Only words with a digit or a capital are masked (a unit such as
    "hours" that the question names stays, so that "1364 hours" still reads as hours)."""
    asked = _question_keys(question)

    def mask(match: re.Match[str]) -> str:
        token = match.group(0)
        if (token[0].isupper() or any(ch.isdigit() for ch in token)) and _token_key(token) in asked:
            return _MASK
        return token

    return _TOKEN.sub(mask, text)


def restates(text: str, question: str) -> bool:
    """Whether a candidate says nothing the question does not: its content words (its value's, for
    a `Label: value` line) are some of the question's, not all ("Aircraft: Cessna 152" for a
    question about the Cessna 152 accident). A line holding every one of them is what was
    searched for (a sentence pasted to find its source), not a part given back."""
    line = _LEAD.sub("", text)
    label = _LABEL.match(line)
    words = content_terms(line[label.end() :] if label else line)
    return bool(words) and words < _question_terms(question)


def _number_with_unit(text: str, units: Sequence[str]) -> bool:
    words = [w for unit in units for w in _UNITS.get(unit, (unit, unit.removesuffix("s")))]
    unit = "|".join(sorted((re.escape(w) for w in words), key=len, reverse=True))
    number = _NUMBER.pattern
    # "12 weeks", "12-week", "twelve (12) weeks", "3,078 feet long", "weeks: 12", "age 85"
    near = re.compile(
        rf"(?:{number})(?:\s*\(\d[\d,.]*\))?[\s-]*(?:[\w-]+\s+){{0,2}}?(?:{unit})\b|\b(?:{unit})\s*[:=]?\s*(?:{number})",
        re.IGNORECASE,
    )
    return bool(near.search(text))


_HOW_MANY = re.compile(
    r"\bhow\s+(?:many|much)\s+(?:more\s+|fewer\s+|less\s+)?([a-z-]+)(?:\s+([a-z-]+))?(?:\s+([a-z-]+))?",
    re.IGNORECASE,
)


def expectation(question: str) -> Expectation:
    """What kind of value `question` asks for (`any` when it asks for none in particular)."""
    q = " ".join(question.lower().split())
    if re.search(r"\b(?:e-?mail address|email)\b", q) and re.match(r"(?:what|which)\b", q):
        return Expectation("email")
    if re.search(r"\b(?:telephone|phone|fax)(?: number)?\b", q) and re.match(r"(?:what|which)\b", q):
        return Expectation("phone")
    if re.search(r"\b(?:what|which) (?:percentage|percent|share|proportion)\b|\bhow many percent\b", q):
        return Expectation("percent")
    if re.match(r"(?:on )?(?:what date|which date|by what date)\b", q):
        return Expectation("date")
    # "When ...", or after a lead-in: "According to the policy, when did ...?"
    if re.search(r"(?:^|, )(?:when|by when|what day|which day)\b", q):
        return Expectation("when")
    if re.search(r"\b(?:what|which) (?:year|month)\b|\bin what year\b", q):
        return Expectation("date")
    if re.search(r"\b(?:what|which) time\b|\bat what time\b", q):
        return Expectation("time")
    found = _HOW_MANY.search(q)
    if found:
        # "how many total flight hours": a unit may come third; a noun that is no unit only in
        # the first two ("how many vendor quotes do ...").
        words = [n for n in found.groups() if n and n not in _NOT_UNITS]
        nouns = [n for n in found.groups()[:2] if n and n not in _NOT_UNITS]
        units = tuple(
            u for u, unit_words in _UNITS.items() if any(n in unit_words or n.rstrip("s") == u for n in words)
        )
        if "much" in found.group(0) and not units:
            money = any(_MONEY_WORDS.fullmatch(n) or n in _MONEY_NOUNS for n in nouns)
            if money or re.search(
                r"\bhow much (?:does|do|did|will|would|is|are|was)\b.*\b(?:cost|charge|pay|paid|owe)\b", q
            ):
                return Expectation("money")
            return Expectation("number")
        if not units and nouns:
            units = (nouns[-1],)  # "how many vendor quotes": a number of quotes, not any number
        return Expectation("number", units)
    if re.search(r"\bhow long\b.*\bbe\??$", q):  # "How long does my password have to be?": a size
        return Expectation("number")
    if re.search(r"\bhow (?:long|soon)\b", q):
        if re.search(r"\b(?:runway|strip|road|cable|vessel|ship|boat|fence|wall|bridge|rope|line)\b", q):
            return Expectation("number", _LENGTH_UNITS)
        return Expectation("number", _DURATION_UNITS)
    for pattern, units in _DIMENSIONS:
        if re.search(pattern, q):
            return Expectation("number", units)
    if re.search(r"\bhow (?:big|large)\b", q):
        return Expectation("number")
    if re.search(r"\bhow often\b|\b(?:what|which) (?:frequency|interval)\b", q):
        return Expectation("frequency")
    if re.search(r"\b(?:response|processing|waiting|turnaround|notice) (?:time|period)\b", q) and re.match(
        r"(?:what|which)\b", q
    ):
        return Expectation("number", _DURATION_UNITS)
    if re.search(r"\bnames?\b", q) and re.match(r"(?:what|which)\b", q):
        return Expectation("name")
    if re.search(
        r"\b(?:what|which) (?:is |was |are |were )?(?:the |a |an )?(?:[\w-]+ ){0,3}?"
        r"(?:fee|cost|price|charge|salary|fine|allowance|tariff|budget|subsidy|stipend|reimbursement)s?\b",
        q,
    ):
        return Expectation("money")
    if re.search(
        r"\b(?:what|which) (?:is |was |are |were )?(?:the )?(?:maximum|minimum|max|min|total|average|"
        r"number|amount|limit|rate|count|size|length|duration|height|weight|speed|distance|altitude|"
        r"elevation|capacity|scale)\b",
        q,
    ):
        return Expectation("number")
    if re.match(r"(?:who|whom|whose)\b", q) or re.search(
        r"\b(?:which|what) (?:company|companies|person|firm|agency|organi[sz]ation|manufacturer|"
        r"contractor|supplier|vendor|airline|operator|state|country|city|airport|law|laws|act)\b",
        q,
    ):
        return Expectation("name")
    return Expectation("any")


# -- candidates ------------------------------------------------------------------------------------

# A sentence ends at . ! or ? before a capital, a digit or an opening quote, but not after an
# initial ("Claire L. Koch") or a common abbreviation.
_SENTENCE_END = re.compile(
    r"(?<!\b[A-Z]\.)(?<!\bMr\.)(?<!\bMs\.)(?<!\bDr\.)(?<!\bNo\.)(?<!\bSt\.)(?<!\bvs\.)(?<!\be\.g\.)(?<!\bi\.e\.)"
    r"(?<=[.!?])[\"'’”)\]]*\s+(?=[A-Z0-9\"'(“‘*])"
)
_LEAD = re.compile(r"^\s*(?:(?:[-*+•]|\d{1,3}[.)])\s+|#{1,6}\s+|>\s*)+")
MIN_CANDIDATE_WORDS = 2


@dataclass(frozen=True)
class Candidate:
    """A sentence, or a line of a table or form, in passage `n` (its citation number)."""

    n: int
    passage: int  # index of the passage among those given
    position: int  # order within the passage
    text: str


def candidates(hits: Sequence[Hit], citations: Sequence[Citation]) -> list[Candidate]:
    """The sentences and lines of the passages, in order, without their headings repeated."""
    out: list[Candidate] = []
    seen: set[str] = set()
    for index, (hit, citation) in enumerate(zip(hits, citations, strict=False)):
        chunk = hit.chunk
        skip = {" ".join(chunk.section.split()).lower(), " ".join(chunk.title.split()).lower()}
        position = 0
        for line in chunk.text.splitlines():
            line = _LEAD.sub("", line).strip()
            for piece in _SENTENCE_END.split(line):
                piece = piece.strip()
                key = " ".join(piece.split()).lower()
                if len(piece.split()) < MIN_CANDIDATE_WORDS or key in skip or key in seen:
                    continue  # overlapping chunks repeat sentences: each is a candidate once
                seen.add(key)
                out.append(Candidate(citation.n, index, position, piece))
                position += 1
    return out


# -- scoring -----------------------------------------------------------------------------------------


class SentenceEmbedder(Protocol):
    def embed_query(self, text: str) -> list[float]: ...
    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]: ...


@dataclass(frozen=True)
class Scored:
    candidate: Candidate
    cosine: float
    coverage: float  # weighted share of the question's content words it holds (with its neighbours)
    typed: bool  # holds a value of the kind the question asks for
    label: float  # share of its field label's words the question names (label_match)
    score: float
    restates: bool = False  # says nothing the question does not (see `restates`)
    on_subject: bool = True  # from a document about what the question is about (see `_on_subject`)

    @property
    def adds(self) -> bool:
        """Whether it can answer at all: on the question's subject, and more than its words."""
        return self.on_subject and not self.restates

    @property
    def covers(self) -> float:
        """How much of the question it answers to: its words, or the field it is."""
        return max(self.coverage, self.label)


@dataclass(frozen=True)
class Finding:
    """What the passages hold for a question: the candidates best first, and the verdict."""

    expected: Expectation
    ranked: list[Scored]
    answerable: bool
    reason: str  # why not, when not answerable

    @property
    def best(self) -> Scored | None:
        return self.ranked[0] if self.ranked else None


class EvidenceFinder:
    """Finds the candidates that answer a question, and judges whether any does."""

    def __init__(
        self,
        embedder: SentenceEmbedder,
        *,
        min_coverage: float = MIN_COVERAGE,
        min_coverage_untyped: float = MIN_COVERAGE_UNTYPED,
        min_cosine: float = MIN_COSINE,
        min_cosine_untyped: float = MIN_COSINE_UNTYPED,
    ) -> None:
        self.embedder = embedder
        self.min_coverage = min_coverage
        self.min_coverage_untyped = min_coverage_untyped
        self.min_cosine = min_cosine
        self.min_cosine_untyped = min_cosine_untyped

    def find(
        self, question: str, hits: Sequence[Hit], citations: Sequence[Citation], search_query: str = ""
    ) -> Finding:
        """Judge the passages for `question` as the user asked it (what kind of answer it wants);
        `search_query` is the follow-up rewritten to stand alone, whose words and meaning count too."""
        expected = expectation(question)
        found = candidates(hits, citations)
        if not found:
            return Finding(expected, [], False, "no passage holds a sentence to quote")
        asked = question if not search_query or search_query == question else f"{question} {search_query}"
        terms = _weighted_terms(asked, [c.text for c in found])
        asked_terms = content_terms(asked)
        numbers = _years(question)
        queries = [self.embedder.embed_query(question)]
        if search_query and search_query != question:
            queries.append(self.embedder.embed_query(search_query))
        vectors = self.embedder.embed_documents([c.text for c in found])
        by_passage: dict[int, list[int]] = {}
        for i, c in enumerate(found):
            by_passage.setdefault(c.passage, []).append(i)
        held = [content_terms(c.text) for c in found]
        on_subject = _on_subject(terms, hits, found, held, question)
        # Only a question that names its subject marks a candidate off it for the ranking and
        # the verdict; its typed value and field label count for nothing off the subject anyway.
        names = question_names(question)
        named = len(names) >= MIN_NAMES
        name_terms = content_terms(" ".join(names))
        ranked = []
        for i, c in enumerate(found):
            cosine = max(sum(a * b for a, b in zip(q, vectors[i], strict=True)) for q in queries)
            # The words the question shares with this candidate and its neighbours: a table row
            # under its header, a value under its label, a sentence after the one naming the subject.
            near = set(held[i])
            siblings = by_passage[c.passage]
            at = siblings.index(i)
            for j in siblings[max(0, at - 1) : at + 2]:
                near |= held[j]
            own = _coverage(terms, held[i])
            coverage = max(own, 0.5 * own + 0.5 * _coverage(terms, near))
            # What the user asked, not a model's rewrite of it, says what a line merely gives back:
            # a rewrite may hold any words (a scripted model's holds the passage's own).
            typed = expected.kind != "any" and expected.met_by(c.text, question)
            label = label_match(asked_terms, c.text, name_terms)
            repeated = restates(c.text, question)
            if repeated:  # the question's own words, given back: no answer, whatever its label
                typed, label = False, 0.0
            if not on_subject[i]:  # another aircraft's altimeter setting answers nothing about this one
                typed, label = False, 0.0
            if typed and numbers and not all(y in " ".join(found[j].text for j in siblings) for y in numbers):
                typed = False  # "the maximum salary in 2023": a passage without 2023 does not give it
            score = (
                WEIGHT_COSINE * cosine
                + WEIGHT_COVERAGE * coverage
                + (WEIGHT_TYPED if typed else 0.0)
                + WEIGHT_LABEL * label
                - (WEIGHT_OFF_SUBJECT if named and not on_subject[i] else 0.0)
            )
            ranked.append(
                Scored(c, cosine, coverage, typed, label, score, repeated, on_subject[i] or not named)
            )
        # A line that only gives back the question's words comes after every line that adds to them.
        ranked.sort(key=lambda s: (not s.restates, s.score), reverse=True)
        return Finding(expected, ranked, *self._verdict(expected, ranked))

    def _verdict(self, expected: Expectation, ranked: list[Scored]) -> tuple[bool, str]:
        if expected.kind == "any":
            # The question's own words given back, or a line about another subject, answer
            # nothing: judge the best that can answer.
            best = next((s for s in ranked if s.adds), None)
            if best is None:
                return False, "no passage states it"
            if best.covers >= self.min_coverage_untyped and (
                best.cosine >= self.min_cosine_untyped or best.label
            ):
                return True, ""
            return False, "no passage states it"
        typed = [(rank, s) for rank, s in enumerate(ranked) if s.typed]
        if not typed:
            return False, f"no passage gives a {_kind_words(expected)}"
        rank, best = typed[0]
        # A field the question names may be short and far from it in meaning: "Destination: Volcan".
        if (
            rank <= TYPED_RANK
            and best.covers >= self.min_coverage
            and (best.cosine >= self.min_cosine or best.label)
        ):
            return True, ""
        return False, f"no passage gives a {_kind_words(expected)} for what was asked"


def _on_subject(
    terms: dict[str, float],
    hits: Sequence[Hit],
    found: Sequence[Candidate],
    held: Sequence[set[str]],
    question: str = "",
) -> list[bool]:
    """Per candidate: whether its document, as far as the passages show it (their text and title),
    is about what the question is about. A question names what it is about ("the Cessna 152
    accident at Venice, Florida"); a value from a document about something else is no answer to
    it, however well it fits. A document is off the subject when it holds less than SUBJECT_SHARE
    of the (weighted) question words that the best-matching document holds and, where the
    question gives MIN_NAMES or more names and figures (`question_names`), less than
    SUBJECT_SHARE of the share of them that the document holding most holds too (a handbook's
    page may spell out the acronym that the question uses)."""
    names = question_names(question)
    words: dict[str, set[str]] = {}
    named: dict[str, set[str]] = {}
    for c, h in zip(found, held, strict=True):
        chunk = hits[c.passage].chunk
        words.setdefault(chunk.doc_id, content_terms(chunk.title)).update(h)
        named.setdefault(chunk.doc_id, set()).update(token_keys(chunk.title + "\n" + c.text) & names)
    by_words = _near_best({doc: _coverage(terms, held_words) for doc, held_words in words.items()})
    if len(names) >= MIN_NAMES:
        by_names = _near_best({doc: len(held_names) / len(names) for doc, held_names in named.items()})
        on = {doc: by_words[doc] or by_names[doc] for doc in words}
    else:
        on = by_words
    return [on[hits[c.passage].chunk.doc_id] for c in found]


def _near_best(share: dict[str, float]) -> dict[str, bool]:
    best = max(share.values(), default=0.0)
    return {doc: value >= SUBJECT_SHARE * best for doc, value in share.items()}


MIN_NAMES = 2  # names and figures a question must give to name its subject by them


def question_names(question: str) -> set[str]:
    """The names and figures a question gives: its words with a capital (but the first) or a digit
    ("Tallahassee", "PA-22-150", "2007", "GitHub's")."""
    tokens = _TOKEN.findall(question)
    return {
        _token_key(t)
        for i, t in enumerate(tokens)
        if any(ch.isdigit() for ch in t)
        or (i > 0 and t[0].isupper() and len(t) > 1 and _token_key(t) not in STOPWORDS)
    }


def _years(question: str) -> set[str]:
    """The years a question asks about ("in 2023", "for 2026"), not those of a date naming an event."""
    return set(re.findall(r"\b(?:in|for|during)\s+((?:19|20)\d{2})\b(?!\s*[,/-]?\s*\d)", question))


def _kind_words(expected: Expectation) -> str:
    if expected.kind == "number" and expected.units:
        return "number of " + " or ".join(u + "s" for u in expected.units[:3])
    return {
        "number": "number",
        "money": "sum of money",
        "percent": "percentage",
        "date": "date",
        "when": "date or time",
        "time": "time",
        "frequency": "frequency",
        "name": "name",
        "email": "e-mail address",
        "phone": "telephone number",
    }.get(expected.kind, "statement")


def _weighted_terms(question: str, texts: Sequence[str]) -> dict[str, float]:
    """The question's content words, each weighted by how rare it is among the candidates (a word
    every candidate holds, such as the subject of the whole document, says little)."""
    terms = content_terms(question) - _QUESTION_WORDS
    if not terms:
        return {}
    held = [content_terms(t) for t in texts]
    total = len(held) or 1
    return {t: math.log(1 + total / (1 + sum(t in h for h in held))) for t in terms}


@dataclass(frozen=True)
class Terms:
    """A question's content words, weighted by how rare they are among some texts."""

    weights: dict[str, float]

    def coverage(self, text: str) -> float:
        return _coverage(self.weights, content_terms(text))


# How a question asks for a field that a form names otherwise ("How old was the pilot?": "Age: 17").
_FIELD_WORDS = {
    "old": "age",
    "own": "owner",
    "owned": "owner",
    "operat": "operator",
    "depart": "departure",
    "leave": "departure",
    "left": "departure",
    "tall": "height",
    "high": "height",
    "fast": "speed",
    "heavy": "weight",
    "long": "length",
    "wide": "width",
}


def label_match(asked: set[str], line: str, names: AbstractSet[str] = frozenset()) -> float:
    """The share of a `Label: value` line's label words that the question holds (`asked`, its
    content terms) when it names all of them, or at least two and MIN_LABEL_MATCH of them; else
    0 (and when the line is no field): a form's answer is the field the question names, whatever
    else the form's narrative shares with it. A label made only of the names the question gives
    (`names`, content terms: "GitHub does not: ..." for a question about GitHub) is no field
    the question asks for."""
    line = _LEAD.sub("", line)  # "- Destination: Volcan", a list of fields
    match = _LABEL.match(line)
    if not match:
        return 0.0
    label = line[: match.end()]
    words = content_terms(label)
    if not words or len(label.split()) > MAX_LABEL_WORDS or words <= names:
        return 0.0  # "You can use Sick Leave for: ..." is a sentence, not a field
    asked = asked | {label for word, label in _FIELD_WORDS.items() if word in asked}
    named = len(words & asked)
    if named == len(words) or (named >= 2 and named / len(words) >= MIN_LABEL_MATCH):
        return named / len(words)
    return 0.0  # "Accident Number" is not what "the accident" asks for


def line_terms(question: str, texts: Sequence[str]) -> Terms:
    """The question's words weighted over `texts` (the chunks of one document, say)."""
    return Terms(_weighted_terms(question, texts))


def _coverage(terms: dict[str, float], held: set[str]) -> float:
    total = sum(terms.values())
    if not total:
        return 0.0
    return sum(w for t, w in terms.items() if t in held) / total


# Words that frame a question rather than say what it is about.
_QUESTION_WORDS = frozenset(
    "many much long far wide high tall old soon often get give take need ask tell say list name "
    "accord report policy mean happen kind type".split()
)
