"""Tables as text that keeps rows with their header: one row a line, cells joined by " | ".

A table longer than one chunk is cut into groups of whole rows, and every group starts with the
header row again, so that a chunk retrieved on its own still says what its columns are.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence

from ingest.document import Section

CELL_SEPARATOR = " | "
_DELIMITERS = ",;\t|"


def row_line(cells: Iterable[object]) -> str:
    """One table row as a line; whitespace inside a cell collapses to single spaces, and empty
    cells at the end of the row (a ragged row, a spreadsheet's padding) are left out."""
    texts = [" ".join(str(cell).split()) for cell in cells]
    while texts and not texts[-1]:
        texts.pop()
    return CELL_SEPARATOR.join(texts)


def row_groups(rows: Sequence[str], max_chars: int) -> list[str]:
    """`rows[0]` is the header; the other rows in order, cut into groups of at most `max_chars`
    (a group always holds at least one row), each group's text starting with the header line."""
    if len(rows) <= 1:
        return ["\n".join(rows)] if rows else []
    header, body = rows[0], rows[1:]
    groups: list[str] = []
    current: list[str] = []
    size = len(header)
    for row in body:
        if current and size + 1 + len(row) > max_chars:
            groups.append("\n".join([header, *current]))
            current, size = [], len(header)
        current.append(row)
        size += 1 + len(row)
    if current:
        groups.append("\n".join([header, *current]))
    return groups


def table_sections(rows: Sequence[str], heading: str, page: int | None, max_chars: int) -> list[Section]:
    """Sections of `rows` (header first), each at most `max_chars` where rows allow.

    One-cell rows above the first row of several cells ("Stanley Cups" above "Team | Location")
    are the table's caption: they become the heading, and the header row stays first.
    """
    first = next((i for i, row in enumerate(rows) if CELL_SEPARATOR in row), 0)
    if first:
        heading = " ".join(rows[:first])
        rows = rows[first:]
    return [Section(text=text, heading=heading, page=page) for text in row_groups(rows, max_chars)]


def delimited_rows(text: str, delimiter: str | None) -> list[str]:
    """The non-empty rows of CSV/TSV text as lines; `delimiter` None: sniffed among , ; tab |."""
    if delimiter is None:
        delimiter = _sniff_delimiter(text)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    return [line for line in (row_line(cells) for cells in reader) if line]


def _sniff_delimiter(text: str) -> str:
    sample = "\n".join(text[:65536].splitlines()[:50])
    try:
        return csv.Sniffer().sniff(sample, delimiters=_DELIMITERS).delimiter
    except csv.Error:
        pass
    # The Sniffer gives up on one-column files and on quoted fields with delimiters inside:
    # take the candidate that splits the first line into the most cells.
    first = sample.split("\n", 1)[0]
    counts = {d: len(next(csv.reader([first], delimiter=d), [])) for d in _DELIMITERS}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] > 1 else ","
