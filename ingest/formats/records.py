"""JSON and NDJSON as readable "key: value" lines.

Nested keys are joined with dots and list positions written as [i] ("address.lines[0]: ...").
A top-level object gives one section per top-level key, headed by it; a top-level list and NDJSON
give one block per record, with paths relative to the record, records separated by a blank
line and grouped into sections of about one chunk, never cutting a record.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from ingest.document import Section


class RecordsError(ValueError):
    """The text is not valid JSON (or one NDJSON line is not); the message says where."""


def load_json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise RecordsError(f"is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from exc
    except RecursionError as exc:
        raise RecordsError("is not readable JSON: nested too deeply") from exc


def load_ndjson(text: str) -> list[Any]:
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise RecordsError(f"line {number} is not valid JSON: {exc.msg} at column {exc.colno}") from exc
        except RecursionError as exc:
            raise RecordsError(f"line {number} is not readable JSON: nested too deeply") from exc
    return records


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value).strip()


def flatten(value: Any, path: str = "") -> Iterator[str]:
    """ "path: value" lines for every non-empty leaf of `value`, in document order."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from flatten(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from flatten(item, f"{path}[{index}]")
    else:
        text = _scalar(value)
        if text:
            yield f"{path}: {text}" if path else text


def sections(value: Any, max_chars: int) -> list[Section]:
    """Sections for a parsed JSON document (an NDJSON file is passed as the list of its records)."""
    out: list[Section] = []
    if isinstance(value, dict):
        for key, item in value.items():
            lines = list(flatten(item, str(key)))
            if lines:
                out.append(Section(text="\n".join(lines), heading=str(key), page=None))
        return out
    records = value if isinstance(value, list) else [value]
    blocks = ["\n".join(lines) for lines in (list(flatten(r)) for r in records) if lines]
    current: list[str] = []
    size = 0
    for block in blocks:
        if current and size + 2 + len(block) > max_chars:
            out.append(Section(text="\n\n".join(current), heading="", page=None))
            current, size = [], 0
        current.append(block)
        size += 2 + len(block)
    if current:
        out.append(Section(text="\n\n".join(current), heading="", page=None))
    return out
