"""Questions as typed, made fit to search, prompt and log: invisible and control characters out,
composed to NFC, and an account of what was taken out for the audit record.

Removed: control characters other than newline and tab (NUL included: PostgreSQL text cannot
hold it), lone surrogates (not UTF-8: the audit log refuses them), and format characters, among
them the bidirectional overrides, embeddings and isolates that make text display in another
order than it is read ("Trojan Source"), zero-width spaces and joiners used to split words past a
filter, the BOM, and the Unicode tag characters that smuggle text a reader cannot see. The zero
width (non-)joiner stays: Persian, the Indic scripts and emoji sequences need it. Variation
selectors other than the emoji/text ones (U+FE0E, U+FE0F) go too: runs of them can carry hidden
data and they change no word.

NFC, not NFKC: a question typed on a keyboard that sends decomposed accents is stored and
searched as the same text as its precomposed form, while NFKC would rewrite what the user typed
(`m²` to `m2`, `ﬁ` to `fi`). Homoglyphs (a Cyrillic `а` for a Latin `a`) are not folded: they
only change what a question matches, never which groups' documents it may reach.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

KEPT_CONTROLS = frozenset("\n\t")
KEPT_FORMAT = frozenset("\u200c\u200d")  # zero width non-joiner, zero width joiner
# Hangul fillers and the combining grapheme joiner: no Cf category, but shown as nothing.
INVISIBLE = frozenset("\u034f\u115f\u1160\u3164\uffa0")


def _removed(char: str) -> bool:
    category = unicodedata.category(char)
    if category == "Cc":
        return char not in KEPT_CONTROLS
    if category in ("Cf", "Cs"):
        return char not in KEPT_FORMAT
    point = ord(char)
    if 0xFE00 <= point <= 0xFE0D or 0xE0100 <= point <= 0xE01EF:  # variation selectors
        return True
    return char in INVISIBLE


MAX_LABELS = 32  # distinct entries in the account; the rest are counted together


def _label(char: str) -> str:
    """One entry of the account: a code point with its name, or a whole class that has many."""
    point = ord(char)
    if 0xD800 <= point <= 0xDFFF:
        return "lone surrogate (U+D800-U+DFFF)"
    if 0xE0000 <= point <= 0xE007F:
        return "tag character (U+E0000-U+E007F)"
    if 0xFE00 <= point <= 0xFE0D or 0xE0100 <= point <= 0xE01EF:
        return "variation selector"
    name = unicodedata.name(char, "")
    return f"U+{point:04X} {name}" if name else f"U+{point:04X}"


@dataclass(frozen=True)
class CleanQuestion:
    """The question to search, prompt with and log, and what was changed to make it."""

    text: str
    removed: dict[str, int] = field(default_factory=dict)  # "U+202E RIGHT-TO-LEFT OVERRIDE": count
    composed: bool = False  # NFC changed it
    typed_chars: int = 0  # length of the question as it came, surrounding whitespace aside

    @property
    def changed(self) -> bool:
        return bool(self.removed) or self.composed

    def record(self) -> dict[str, Any]:
        """For the audit record (only when `changed`): what was taken out, never the characters."""
        return {
            "removed": dict(sorted(self.removed.items())),
            "nfc": self.composed,
            "typed_chars": self.typed_chars,
        }


def clean_question(raw: str) -> CleanQuestion:
    """`raw` without control, format and invisible characters (a space for those that are
    whitespace), line ends as "\\n", in NFC, stripped."""
    text = raw.replace("\r\n", "\n").replace("\r", "\n")
    removed: Counter[str] = Counter()
    kept = []
    for char in text:
        if _removed(char):
            label = _label(char)
            removed[label if label in removed or len(removed) < MAX_LABELS else "other"] += 1
            if char.isspace():
                kept.append(" ")  # a vertical tab or form feed still parts two words
        else:
            kept.append(char)
    joined = "".join(kept)
    composed = unicodedata.normalize("NFC", joined)
    return CleanQuestion(composed.strip(), dict(removed), composed != joined, len(raw.strip()))


__all__ = ["CleanQuestion", "clean_question"]
