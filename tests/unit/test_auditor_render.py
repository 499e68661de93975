"""How the auditor page renders one record: known keys in sections, anything else as JSON, any
shape tolerated, every piece of text escaped (record_html is a pure function: no server)."""

from __future__ import annotations

import html
import re
from typing import Any

import pytest

from audit import AuditRecord, Feedback
from ui.auditor import esc, record_html, table_rows

HOSTILE = "<script>alert(1)</script> {{#each x}} ${alert(2)} `tick` &amp;"


def record(
    data: dict[str, Any], event: str = "answer", question: str = "Q?", error: str | None = None
) -> AuditRecord:
    return AuditRecord(
        7, "2025-01-31T09:15:02.123456+00:00", event, "alice", question, error, data, "0" * 64, "f" * 64
    )


def visible_text(page: str) -> str:
    """What a browser shows: tags gone, entities decoded."""
    return html.unescape(re.sub(r"<[^>]+>", " ", page))


def test_esc_leaves_no_markup_or_template_syntax() -> None:
    out = esc(HOSTILE)
    assert "<" not in out and ">" not in out
    assert "{" not in out and "}" not in out and "$" not in out and "`" not in out
    assert "&amp;amp;" in out  # an entity in the text stays text


def test_unknown_keys_and_odd_shapes_are_shown_as_json_not_dropped() -> None:
    data = {
        "answer": {"not": "a string"},
        "retrieved": "not a list",
        "prompt": "one string prompt",
        "support": [{"start": "x", "level": "weak"}],
        "citations": [1, 2],
        "query": None,
        "brand_new": {"dropped_sources": [{"chunk_id": "c9", "why": HOSTILE}]},
        "context": {"tokens": 812, "dropped": ["c9"]},
    }
    page = record_html(record(data))
    text = visible_text(page)
    for expected in (
        '"not": "a string"',
        "not a list",
        "one string prompt",
        "weak",
        "brand_new",
        "dropped_sources",
        "812",
    ):
        assert expected in text, expected
    assert "<script" not in page and "{{" not in page and "${" not in page


def test_an_answer_record_has_its_sections_in_order() -> None:
    answer = "You get 25 days [1]. Maybe more."
    data = {
        "mode": "llm",
        "model": "m",
        "query": {"question": "first year?", "query": "leave first year"},
        "retrieved": [
            {"source": "hr/leave.pdf", "page": 3, "score": 0.81234, "sha256": "a" * 64, "used": True}
        ],
        "prompt": [{"role": "system", "content": "sys"}, {"role": "user", "content": "usr"}],
        "reasoning": "thinking",
        "answer": answer,
        "support": [{"start": 21, "end": len(answer), "cited": [], "level": "uncited"}],
        "citations": [{"n": 1, "source": "hr/leave.pdf", "page": 3, "chunk_id": "c1"}],
    }
    feedback = [
        Feedback(8, "2025-01-31T10:00:00+00:00", "alice", 7, "up", None),
        Feedback(9, "2025-01-31T11:00:00+00:00", "alice", 7, "down", "wrong"),
    ]
    page = record_html(record(data), feedback)
    order = [
        "Question",
        "Search query",
        "Retrieved passages",
        "Prompt (2 messages)",
        "Reasoning",
        "Answer",
        "Support of each sentence",
        "Citations",
        "Feedback",
    ]
    positions = [page.index(title) for title in order]
    assert positions == sorted(positions)
    assert "a" * 64 in page and "0.8123" in page
    assert "Maybe more." in visible_text(page.split("Support of each sentence")[1])  # the sentence itself
    assert "newest (last) feedback is the one in force" in page and "wrong" in page
    assert "Other data" not in page  # every key had a section


@pytest.mark.parametrize(
    ("event", "data", "expected"),
    [
        ("checkpoint", {"purged_through": 40, "anchor_hash": "b" * 64}, "purged_through"),
        ("feedback", {"record_id": 3, "rating": "down", "comment": HOSTILE}, "record_id"),
        ("access_denied", {"page": "audit", "action": "search"}, "search"),
    ],
)
def test_other_events_show_their_data(event: str, data: dict[str, Any], expected: str) -> None:
    page = record_html(record(data, event=event, question=""))
    assert expected in page and "<script" not in page
    assert "Feedback</h4>" not in page  # only answers have feedback


def test_table_rows_are_one_line_and_carry_the_latest_rating() -> None:
    long = "word " * 100
    rows = table_rows(
        [record({}, question=f"line one\nline two {long}", error="boom")],
        {7: Feedback(8, "t", "alice", 7, "down", "c")},
    )
    assert rows == [[7, "2025-01-31 09:15:02", "alice", "answer", rows[0][4], "boom", "down (comment)"]]
    assert "\n" not in rows[0][4] and len(rows[0][4]) == 140 and rows[0][4].endswith("…")


def test_a_sync_record_shows_each_file_with_its_document_and_hash() -> None:
    sha = "ab" * 32
    data = {
        "source": "policies", "kind": "smb", "location": "smb://files/Policies", "groups": ["hr"], "acl": None,
        "result": "ok", "started_at": "2026-12-07T10:00:00+00:00", "finished_at": "2026-12-07T10:01:00+00:00",
        "host": "app-1", "started_by": {"user": "schedule", "uid": 999, "pid": 42, "via": "schedule"},
        "mirror": {"listed": 3, "added": 1}, "counts": {"new": 1, "pruned": 1},
        "added": [{"path": "hr/leave.pdf", "doc_id": sha[:32], "sha256": sha, "groups": ["hr"]}],
        "changed": [], "moved": [{"from": "a.md", "path": "b.md", "doc_id": "c" * 32, "sha256": "c" * 64}],
        "removed": [{"path": HOSTILE, "doc_id": "d" * 32, "sha256": "d" * 64, "document_removed": True}],
        "failed": [{"path": "x.pdf", "reason": "x.pdf: could not be parsed"}], "skipped": [],
    }  # fmt: skip
    page = record_html(record(data, event="source_sync", question="", error=None))
    for title in ("Files added", "Files moved or renamed", "Files removed", "Files that failed"):
        assert title in page
    assert sha in page and "hr/leave.pdf" in page and "smb://files/Policies" in page
    assert "<script>" not in page and HOSTILE in visible_text(page)
    assert "Other data" not in page  # every key had a place


def test_an_upload_record_shows_each_file_with_its_hash() -> None:
    sha, before = "ef" * 32, "01" * 32
    data = {
        "source": "uploads", "groups": ["hr", "payroll"], "replace": True,
        "files": [
            {"name": "rota.md", "size": 82, "sha256": sha, "stored": "new"},
            {"name": HOSTILE, "size": 9, "sha256": "02" * 32, "stored": "replaced", "previous_sha256": before},
        ],
        "started_by": {"user": "adam", "uid": 999, "pid": 42, "via": "admin page"},
    }  # fmt: skip
    page = record_html(record(data, event="upload", question="", error=None))
    assert "Files uploaded" in page and sha in page and before in page and "rota.md" in page
    assert "admin page" in page and "payroll" in page
    assert "<script>" not in page and HOSTILE in visible_text(page)
    assert "Other data" not in page  # every key had a place
