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
    """One table row as a line; whitespace inside a cell collapses to single spaces."""
    return CELL_SEPARATOR.join(" ".join(str(cell).split()) for cell in cells)


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
    return [Section(text=text, heading=heading, page=page) for text in row_groups(rows, max_chars)]


def delimited_rows(text: str, delimiter: str | None) -> list[str]:
    """The non-empty rows of CSV/TSV text as lines; `delimiter` None: sniffed among , ; tab |."""
    if delimiter is None:
        delimiter = _sniff_delimiter(text)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    rows = []
    for cells in reader:
        # Trailing empty cells (a ragged row, a spreadsheet's export padding) carry nothing.
        while cells and not cells[-1].strip():
            cells.pop()
        if any(cell.strip() for cell in cells):
            rows.append(row_line(cells))
    return rows


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
