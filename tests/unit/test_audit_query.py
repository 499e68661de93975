"""Searching the audit log, feedback records, and exports (CSV, re-verifiable JSONL), on both
backends (SQLite files, a PostgreSQL server)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import sqlite3
from datetime import UTC, datetime, timedelta

import pytest

from audit import GENESIS_HASH, AuditLog, AuditRecord
from audit.export import CSV_COLUMNS, export
from audit.query import CONTAINS_FUNCTION, RecordFilter, contains
from core.errors import AccessDenied
from tests.support.audit_backends import AuditBackend


@pytest.fixture
def log(audit_backend: AuditBackend) -> AuditLog:
    return audit_backend.open()


def answer(log: AuditLog, user: str, question: str, text: str = "", **kw: object) -> AuditRecord:
    data = {
        "mode": "llm",
        "answer": text,
        "citations": [{"n": 1, "source": "hr/leave.pdf", "page": 3, "chunk_id": "c1"}],
        **kw,
    }
    return log.append("answer", user, question, data=data)


@pytest.fixture
def filled(log: AuditLog) -> list[AuditRecord]:
    """Eight records: answers by alice and bob, a failure, feedback, a sign-in."""
    return [
        answer(log, "alice", "How many days of leave?", "You get 25 days [1]."),  # 1
        answer(log, "bob", "Wer ist Herr MÜLLER?", "Die Straße ist lang."),  # 2
        log.append("answer_error", "alice", "What is 100% _certain_?", error="LLM down"),  # 3
        answer(log, "alice", "Parental leave?", "Sixteen weeks [1]."),  # 4
        log.append("login", "carol"),  # 5
        answer(log, "bob", "Budget 2026?", "It is 4M."),  # 6
    ]


def ids(records: list[AuditRecord]) -> list[int]:
    return [r.id for r in records]


# -- search ------------------------------------------------------------------------------------


def test_search_is_newest_first_with_limit_and_offset(log: AuditLog, filled: list[AuditRecord]) -> None:
    assert ids(log.search()) == [6, 5, 4, 3, 2, 1]
    assert ids(log.search(limit=2)) == [6, 5]
    assert ids(log.search(limit=2, offset=2)) == [4, 3]
    assert ids(log.search(limit=None, offset=5)) == [1]
    assert log.search(limit=0) == []
    assert log.search()[0] == filled[-1]  # whole records, as stored
    assert log.count(RecordFilter.of()) == 6


def test_search_by_user_event_and_error(log: AuditLog, filled: list[AuditRecord]) -> None:
    assert ids(log.search(user="alice")) == [4, 3, 1]
    assert ids(log.search(user="nobody")) == []
    assert ids(log.search(event="answer")) == [6, 4, 2, 1]
    assert ids(log.search(event=["answer_error", "login"])) == [5, 3]
    assert ids(log.search(has_error=True)) == [3]
    assert 3 not in ids(log.search(has_error=False))
    assert ids(log.search(user="alice", event="answer", has_error=False)) == [4, 1]
    assert log.count(RecordFilter.of(user="bob")) == 2


def test_text_matches_question_or_answer_ignoring_case_beyond_ascii(
    log: AuditLog, filled: list[AuditRecord]
) -> None:
    assert ids(log.search(text="LEAVE")) == [4, 1]  # questions 1 and 4
    assert ids(log.search(text="25 days")) == [1]  # in the answer only
    assert ids(log.search(text="müller")) == [2]  # Unicode case folding, which LIKE lacks
    assert ids(log.search(text="STRASSE")) == [2]  # casefold: ß is ss
    # No wildcards: % and _ are plain characters.
    assert ids(log.search(text="100%")) == [3]
    assert ids(log.search(text="%")) == [3]
    assert ids(log.search(text="_certain_")) == [3]
    assert ids(log.search(text="  ")) == ids(log.search())  # blank means no text filter


def test_time_bounds_are_inclusive_and_dates_take_the_whole_day(
    log: AuditLog, filled: list[AuditRecord]
) -> None:
    third, fourth = filled[2], filled[3]
    assert ids(log.search(since=third.ts)) == [6, 5, 4, 3]
    assert ids(log.search(until=third.ts)) == [3, 2, 1]
    assert ids(log.search(since=third.ts, until=fourth.ts)) == [4, 3]
    # The same instant written with another offset is the same bound.
    plus_two = datetime.fromisoformat(third.ts).astimezone(timezone_plus(2)).isoformat()
    assert ids(log.search(since=plus_two)) == [6, 5, 4, 3]
    # A naive time is UTC.
    naive = datetime.fromisoformat(fourth.ts).replace(tzinfo=None)
    assert ids(log.search(until=naive)) == [4, 3, 2, 1]

    today = datetime.fromisoformat(third.ts).date()
    assert len(log.search(since=today, until=today)) == 6
    assert len(log.search(since=str(today), until=str(today))) == 6
    assert log.search(since=today + timedelta(days=1)) == []
    assert log.search(until=str(today - timedelta(days=1))) == []


def timezone_plus(hours: int):  # type: ignore[no-untyped-def]
    from datetime import timezone

    return timezone(timedelta(hours=hours))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"since": "last tuesday"}, "since: 'last tuesday' is not a date"),
        ({"until": "2025-13-01"}, "until: '2025-13-01' is not a date"),
        ({"since": "2025-02-01", "until": "2025-01-31"}, "is after until"),
        ({"feedback": "meh"}, "feedback: 'meh' is not one of up, down, any, none"),
        ({"has_error": "yes"}, "has_error must be"),
        ({"limit": -1}, "limit must be >= 0"),
        ({"offset": -3}, "offset must be >= 0"),
    ],
)
def test_bad_filters_name_the_input(
    log: AuditLog, filled: list[AuditRecord], kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        log.search(**kwargs)  # type: ignore[arg-type]


def test_a_missing_log_searches_empty_and_is_not_created(audit_backend: AuditBackend) -> None:
    log = audit_backend.open()
    assert log.search(user="alice") == []
    assert log.count(RecordFilter.of(text="x")) == 0
    assert log.events() == []
    assert log.feedback_for(1) == []
    assert not audit_backend.exists()


def test_events_lists_what_the_log_holds(log: AuditLog, filled: list[AuditRecord]) -> None:
    assert log.events() == ["answer", "answer_error", "login"]


@pytest.mark.parametrize("audit_backend", ["sqlite"], indirect=True)  # SQLite's query planner
def test_filters_use_the_indexes(log: AuditLog, filled: list[AuditRecord]) -> None:
    def plan(query: RecordFilter) -> str:
        where, params = query.where()
        conn = sqlite3.connect(log.path)
        conn.create_function(CONTAINS_FUNCTION, 2, contains, deterministic=True)
        try:
            rows = conn.execute(
                f"EXPLAIN QUERY PLAN SELECT r.id FROM records AS r WHERE {where} ORDER BY r.id DESC",
                params,
            ).fetchall()
        finally:
            conn.close()
        return " | ".join(str(row[-1]) for row in rows)

    assert "records_user" in plan(RecordFilter.of(user="alice"))
    assert "records_event" in plan(RecordFilter.of(event="feedback"))
    assert "records_ts" in plan(RecordFilter.of(since="2025-01-01", until="2025-01-31"))
    assert "records_error" in plan(RecordFilter.of(has_error=True))
    # Feedback is read once per query through its partial index (feedback records only), not
    # looked up again for every answer.
    for rating in ("up", "down", "any", "none"):
        feedback_plan = plan(RecordFilter.of(feedback=rating))
        assert "records_feedback_target" in feedback_plan and "CORRELATED" not in feedback_plan


# -- feedback ----------------------------------------------------------------------------------


def test_feedback_is_a_record_of_its_own_and_the_newest_counts(
    log: AuditLog, filled: list[AuditRecord]
) -> None:
    up = log.feedback("alice", 1, "up")
    down = log.feedback("alice", 1, "down", "  Wrong: it is 27 days.  ")
    log.feedback("bob", 2, "down")
    log.feedback("alice", 4, "up", "")

    assert (up.event, up.user, up.question, up.data) == (
        "feedback",
        "alice",
        "",
        {"record_id": 1, "rating": "up", "comment": None},
    )
    assert down.data["comment"] == "Wrong: it is 27 days."  # trimmed
    assert log.get(1) == filled[0]  # the answer itself is untouched
    history = log.feedback_for(1)
    assert [(f.id, f.rating, f.comment) for f in history] == [
        (up.id, "up", None),
        (down.id, "down", "Wrong: it is 27 days."),
    ]
    assert log.feedback_for(6) == []
    latest = log.latest_feedback([1, 2, 4, 6])
    assert {k: v.rating for k, v in latest.items()} == {1: "down", 2: "down", 4: "up"}
    assert latest[4].comment is None  # an empty comment is no comment
    assert log.verify().ok


def test_search_by_latest_feedback_covers_answers_only(log: AuditLog, filled: list[AuditRecord]) -> None:
    log.feedback("alice", 1, "up")
    log.feedback("alice", 1, "down")  # changed their mind: 1 is "down" now
    log.feedback("bob", 2, "up")
    log.feedback("alice", 3, "down", "it failed")  # failed attempts can be rated too

    assert ids(log.search(feedback="down")) == [3, 1]
    assert ids(log.search(feedback="up")) == [2]
    assert ids(log.search(feedback="any")) == [3, 2, 1]
    # "none": answers without feedback; the login and the feedback records are not answers.
    assert ids(log.search(feedback="none")) == [6, 4]
    assert ids(log.search(feedback="down", user="alice", has_error=False)) == [1]
    assert log.count(RecordFilter.of(feedback="any")) == 3

    # A "feedback" record written some other way, about nothing, changes none of this.
    log.append("feedback", "mallory", data={"rating": "up"})
    assert ids(log.search(feedback="none")) == [6, 4]
    assert ids(log.search(feedback="up")) == [2]


@pytest.mark.parametrize(
    ("user", "record_id", "message"),
    [
        ("alice", 99, "audit record 99: there is no such record"),
        ("alice", 2, "audit record 2: it is an answer to another user, not to 'alice'"),
        ("carol", 5, "audit record 5: it is a 'login' record, not an answer"),
    ],
)
def test_feedback_is_refused_on_what_is_not_your_answer(
    log: AuditLog, filled: list[AuditRecord], user: str, record_id: int, message: str
) -> None:
    head = log.head()
    with pytest.raises(AccessDenied, match=message):
        log.feedback(user, record_id, "up")
    assert log.head() == head  # nothing written


def test_feedback_on_feedback_is_refused(log: AuditLog, filled: list[AuditRecord]) -> None:
    fb = log.feedback("alice", 1, "up")
    with pytest.raises(AccessDenied, match="it is a 'feedback' record"):
        log.feedback("alice", fb.id, "down")


@pytest.mark.parametrize(
    ("args", "error", "message"),
    [
        ((1, "meh", None), ValueError, "rating 'meh' is not one of up, down"),
        ((1, "up", "x" * 2001), ValueError, "2001 characters long; the limit is 2000"),
        (("1", "up", None), ValueError, "record_id must be an integer"),
        ((True, "up", None), ValueError, "record_id must be an integer"),
        ((1, "up", 5), TypeError, "comment must be a str"),
    ],
)
def test_bad_feedback_is_refused_before_writing(
    log: AuditLog, filled: list[AuditRecord], args: tuple[object, ...], error: type[Exception], message: str
) -> None:
    head = log.head()
    with pytest.raises(error, match=message):
        log.feedback("alice", *args)  # type: ignore[arg-type]
    assert log.head() == head


# -- export ------------------------------------------------------------------------------------


def test_csv_has_flat_columns_and_defused_formulas(log: AuditLog, filled: list[AuditRecord]) -> None:
    answer(
        log,
        "alice",
        '=HYPERLINK("http://evil.example","x")',
        'Line one,\n"quoted" line two',
        citations=[{"n": 1, "source": "a.pdf", "page": 2}, {"n": 2, "source": "b.md", "page": None}, "odd"],
    )
    log.feedback("alice", 7, "down", 'bad, "really"')
    log.feedback("alice", 1, "up")
    out = io.StringIO()

    written = log.export(log.search(limit=None), "csv", out)

    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert written == len(rows) == 9
    assert tuple(rows[0]) == CSV_COLUMNS
    by_id = {int(r["id"]): r for r in rows}
    hostile = by_id[7]
    assert hostile["question"] == '\'=HYPERLINK("http://evil.example","x")'
    assert hostile["answer"] == 'Line one,\n"quoted" line two'  # exact, quoted by CSV rules
    assert hostile["cited sources"] == '[1] a.pdf p. 2; [2] b.md; "odd"'
    assert hostile["feedback"] == 'down: bad, "really"'
    first = by_id[1]
    assert first["feedback"] == "up"
    assert (first["hash"], first["prev_hash"]) == (filled[0].hash, GENESIS_HASH)
    assert first["ts"] == filled[0].ts and first["user"] == "alice" and first["event"] == "answer"
    assert by_id[3]["error"] == "LLM down" and by_id[3]["answer"] == ""
    assert by_id[5]["cited sources"] == ""


def test_export_refuses_an_unknown_format(log: AuditLog, filled: list[AuditRecord]) -> None:
    with pytest.raises(ValueError, match="export format 'xml' is not one of csv, jsonl"):
        export(filled, "xml", io.StringIO())


def reverify_jsonl(text: str) -> tuple[int, str, str]:
    """The recipe in audit/export.py, with nothing but json and hashlib: (records, first prev, last)."""
    prev, first_prev, count = None, "", 0
    for line in text.splitlines():
        record = json.loads(line)
        digest = record.pop("hash")
        canonical = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert hashlib.sha256(canonical.encode("utf-8")).hexdigest() == digest, record["id"]
        if prev is None:
            first_prev = record["prev_hash"]
        else:
            assert record["prev_hash"] == prev, record["id"]
        prev, count = digest, count + 1
    assert prev is not None
    return count, first_prev, prev


def test_an_unfiltered_jsonl_export_reverifies_without_enclave(
    log: AuditLog, filled: list[AuditRecord]
) -> None:
    log.feedback("alice", 1, "up", "thanks ✓")
    answer(log, "bob", "floats", "x", scores=[0.1, 1e-7, 12345.678], nested={"a": [1, {"b": None}]})
    out = io.StringIO()

    written = log.export(log.iter_select(RecordFilter.of(), oldest_first=True), "jsonl", out)

    assert written == 8
    assert reverify_jsonl(out.getvalue()) == (8, GENESIS_HASH, log.head()[1])
    lines = out.getvalue().splitlines()
    assert json.loads(lines[0])["data"] == filled[0].data  # full records
    assert "thanks ✓" in lines[6]  # UTF-8 kept as is, not \u-escaped


def test_each_record_of_a_filtered_jsonl_export_checks(log: AuditLog, filled: list[AuditRecord]) -> None:
    out = io.StringIO()
    log.export(log.search(user="bob", limit=None), "jsonl", out)
    for line in out.getvalue().splitlines():
        record = json.loads(line)
        digest = record.pop("hash")
        canonical = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert hashlib.sha256(canonical.encode("utf-8")).hexdigest() == digest
    assert len(out.getvalue().splitlines()) == 2


def test_jsonl_reverification_catches_an_edited_export(log: AuditLog, filled: list[AuditRecord]) -> None:
    out = io.StringIO()
    log.export(log.iter_select(RecordFilter.of(), oldest_first=True), "jsonl", out)
    edited = out.getvalue().replace("You get 25 days", "You get 30 days")
    with pytest.raises(AssertionError):
        reverify_jsonl(edited)
    dropped = "\n".join(line for i, line in enumerate(out.getvalue().splitlines()) if i != 2)
    with pytest.raises(AssertionError):
        reverify_jsonl(dropped)


def test_iter_select_streams_oldest_first(log: AuditLog, filled: list[AuditRecord]) -> None:
    it = log.iter_select(RecordFilter.of(user="alice"), oldest_first=True)
    assert next(it).id == 1
    it.close()  # stopping early releases the connection
    assert ids(list(log.iter_select(RecordFilter.of(), limit=3, oldest_first=True))) == [1, 2, 3]
    assert datetime.fromisoformat(filled[0].ts).tzinfo == UTC
