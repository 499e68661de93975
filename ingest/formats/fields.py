"""Form fields and printed lines: which short texts are labels ("Registration:"), fields
("Seats: 4") or cells of one printed line, so that parsing keeps them with their values instead
of taking each for a heading of its own (NTSB report forms print two columns of label/value
pairs, and pdfminer gives every label and value as an element of its own)."""

from __future__ import annotations

import re

Box = tuple[float, float, float, float]  # left, top, right, bottom, in PDF points, y downwards

# A label: a few words ending in a colon ("Date & Time:", "Certified Max Gross Wt.:").
_LABEL_WORDS = 8
_LABEL_CHARS = 60
# A field: a label and its value in one text ("Other Aircraft Rating(s): None").
_FIELD = re.compile(r"^(?P<label>[^:\n]{1,60}):\s+\S")
# ...unless the label is how a heading numbers its part ("Chapter 2: Scope", "Step 1: Plan").
_NUMBERED = re.compile(
    r"^(chapter|section|part|step|appendix|annex|article|phase|stage|module|unit|lesson|figure|"
    r"table|exhibit|schedule|attachment)\s+[\w.]+$",
    re.IGNORECASE,
)
# Two elements are on one printed line when their tops are this close (points).
SAME_LINE = 2.0


def is_label(text: str) -> bool:
    """A short one-line text ending in a colon: the label of the value that follows it."""
    text = text.strip()
    return (
        text.endswith(":")
        and "\n" not in text
        and len(text) <= _LABEL_CHARS
        and len(text.split()) <= _LABEL_WORDS
    )


def is_field(text: str) -> bool:
    """A short one-line `Label: value` text, which is a form's field and not a heading."""
    text = text.strip()
    match = _FIELD.match(text)
    if match is None or "\n" in text or len(text.split()) > 12:
        return False
    label = match.group("label").strip()
    return len(label.split()) <= _LABEL_WORDS - 2 and not _NUMBERED.match(label)


def same_line(before: Box, after: Box) -> bool:
    """Whether `after` is printed on the line of `before`, to its right."""
    return abs(before[1] - after[1]) <= SAME_LINE and after[0] >= before[2] - 1.0
