"""What a user could read on a day, from hand-built audit records (audit/access.py): group changes
mid-day, documents added and removed mid-day, the standing carried in from the day before, and old
sign-in records that do not name the groups (unknown, never guessed)."""

from __future__ import annotations

from typing import Any

from audit.access import access_report
from audit.records import AuditRecord

DAY = "2026-12-07T00:00:00.000000+00:00"
NEXT = "2026-12-08T00:00:00.000000+00:00"


def at(hhmm: str, day: str = "2026-12-07") -> str:
    return f"{day}T{hhmm}:00.000000+00:00"


class Log:
    """Records numbered as a log numbers them, written at the times given."""

    def __init__(self) -> None:
        self.records: list[AuditRecord] = []

    def add(
        self,
        ts: str,
        event: str,
        user: str,
        data: dict[str, Any],
        question: str = "",
        error: str | None = None,
    ) -> AuditRecord:
        record = AuditRecord(len(self.records) + 1, ts, event, user, question, error, data, "", "")
        self.records.append(record)
        return record

    def sign_in(self, ts: str, user: str, groups: list[str] | None, role: str = "staff") -> None:
        data: dict[str, Any] = {"method": "password", "session": "s", "address": "10.0.0.1"}
        if groups is not None:
            data.update(
                backend="ldap", role=role, groups=groups, directory_groups=[f"CN={g}" for g in groups]
            )
        self.add(ts, "sign_in", user, data)

    def ingest(self, ts: str, **changes: list[dict[str, Any]]) -> None:
        self.add(ts, "ingest", "cli:root", {"paths": ["/docs"], "groups": [], **changes})


def doc(path: str, doc_id: str, *groups: str) -> dict[str, Any]:
    return {"path": path, "doc_id": doc_id, "sha256": doc_id * 2, "groups": list(groups)}


def test_a_group_change_mid_day_splits_the_day_and_what_could_be_read() -> None:
    log = Log()
    log.ingest(
        at("08:00", "2026-12-06"), added=[doc("/d/pay.md", "p1", "finance"), doc("/d/hr.md", "h1", "hr")]
    )
    log.sign_in(at("09:00", "2026-12-06"), "ann", ["hr"])
    log.add(
        at("12:00"), "identity_changed", "ann",
        {"backend": "ldap", "role_before": "staff", "role": "staff", "groups_before": ["hr"],
         "groups": ["finance"], "directory_groups": ["CN=Finance"]},
    )  # fmt: skip
    log.sign_in(at("10:00"), "bob", ["finance"])  # another user's records say nothing of ann's

    report = access_report(log.records, "ann", DAY, NEXT)

    first, second = report.standings
    # Carried in from the sign-in of the day before.
    assert (first.start, first.end, first.groups, first.event, first.since) == (
        DAY, at("12:00"), ("hr",), "sign_in", at("09:00", "2026-12-06"),
    )  # fmt: skip
    assert [(d.doc_id, d.start, d.end) for d in first.documents or ()] == [("h1", DAY, at("12:00"))]
    assert (second.start, second.end, second.groups, second.event) == (
        at("12:00"),
        NEXT,
        ("finance",),
        "identity_changed",
    )
    assert [(d.doc_id, d.label) for d in second.documents or ()] == [("p1", "/d/pay.md")]
    assert [d.doc_id for d in report.readable()] == ["h1", "p1"]
    assert not report.unknown and report.notes == ()


def test_a_document_added_then_removed_mid_day_is_readable_only_between() -> None:
    log = Log()
    log.sign_in(at("07:00"), "ann", ["hr"], role="auditor")
    log.ingest(at("10:00"), added=[doc("/d/memo.md", "m1", "hr", "all"), doc("/d/board.md", "b1", "board")])
    log.add(
        at("15:00"), "document_removed", "cli:root",
        {"doc_id": "m1", "sha256": "m1m1", "title": "Memo", "groups": ["hr", "all"], "paths": ["/d/memo.md"]},
    )  # fmt: skip
    log.ingest(
        at("16:00"), changed=[{**doc("/d/board.md", "b1", "board", "hr"), "previous_groups": ["board"]}]
    )
    log.ingest(at("17:00"), removed=[{"path": "/d/board.md", "doc_id": "b1", "document_removed": True}])

    report = access_report(log.records, "ann", DAY, NEXT)

    before, signed_in = report.standings
    assert (before.groups, before.record_id, before.documents) == (None, None, None)  # no record yet: unknown
    assert signed_in.role == "auditor" and signed_in.groups == ("hr",)
    windows = [(d.doc_id, d.start, d.end) for d in signed_in.documents or ()]
    # Memo from its ingest to its removal; the board paper only while its groups let hr read it.
    assert windows == [("m1", at("10:00"), at("15:00")), ("b1", at("16:00"), at("17:00"))]
    # A title, where a record names one (the removal does), else the path.
    assert {d.doc_id: d.label for d in report.readable()} == {"m1": "Memo", "b1": "/d/board.md"}
    assert report.unknown  # before the 07:00 sign-in nothing says


def test_old_sign_ins_without_groups_are_unknown_until_an_answer_names_them() -> None:
    log = Log()
    log.ingest(at("08:00", "2026-12-01"), added=[doc("/d/a.md", "a1", "staff")])
    log.sign_in(at("08:30"), "old", None)  # written before sign-in records named groups
    log.add(
        at("09:00"), "answer", "old",
        {"answer": "Yes [1].", "groups": ["staff"], "role": "staff",
         "citations": [{"n": 1, "doc_id": "a1", "source": "/d/a.md", "title": "A"}]},
        question="Is it so?",
    )  # fmt: skip
    log.add(
        at("10:00"),
        "answer_error",
        "old",
        {"groups": ["staff"]},
        question="And then?",
        error="LLM unavailable",
    )

    report = access_report(log.records, "old", DAY, NEXT)

    before, old_sign_in, answered = report.standings
    assert before.groups is None and before.record_id is None
    assert (old_sign_in.event, old_sign_in.groups, old_sign_in.documents) == ("sign_in", None, None)
    assert (answered.start, answered.event, answered.groups) == (at("09:00"), "answer", ("staff",))
    assert [d.doc_id for d in answered.documents or ()] == ["a1"]
    assert report.unknown and "unknown" in report.notes[0]
    # What was asked, and shown: the answer's cited document, readable then.
    assert [(s.event, s.question) for s in report.shown] == [
        ("answer", "Is it so?"),
        ("answer_error", "And then?"),
    ]
    (cited,) = report.shown[0].documents
    assert (cited.doc_id, cited.label, cited.readable) == ("a1", "A", True)


def test_a_revoked_user_reads_nothing_and_a_document_shown_without_the_groups_is_noted() -> None:
    log = Log()
    log.ingest(at("08:00"), added=[doc("/d/x.md", "x1", "finance")])
    log.add(at("09:00"), "user_changed", "cy", {"backend": "local", "role": "staff", "groups": ["hr"], "created": True,
                                                "role_before": None, "groups_before": None})  # fmt: skip
    log.add(at("10:00"), "file_opened", "cy", {"doc_id": "x1", "title": "X"})
    log.add(at("11:00"), "identity_revoked", "cy", {"backend": "ldap", "reason": "disabled"})

    report = access_report(log.records, "cy", DAY, NEXT)

    assert [(s.event, s.groups, s.revoked) for s in report.standings] == [
        (None, None, False), ("user_changed", ("hr",), False), ("identity_revoked", (), True),
    ]  # fmt: skip
    assert all(not s.documents for s in report.standings)
    assert report.shown[0].documents[0].readable is False
    assert any("not readable" in note for note in report.notes)


def test_moves_and_source_records_keep_the_document_and_a_range_within_the_day() -> None:
    log = Log()
    log.sign_in(at("06:00"), "ann", ["eng"])
    log.add(at("07:00"), "source_sync", "schedule", {"source": "wiki", "added": [doc("a.md", "w1", "eng")]})
    log.add(
        at("08:00"),
        "source_sync",
        "schedule",
        {"source": "wiki", "moved": [{**doc("b.md", "w1", "eng"), "from": "a.md"}]},
    )
    log.add(at("09:00"), "source_removed", "cli:root", {"source": "wiki", "removed": [
        {"path": "b.md", "doc_id": "w1", "document_removed": True}]})  # fmt: skip

    report = access_report(log.records, "ann", at("07:30"), at("12:00"))

    (standing,) = report.standings
    assert [(d.doc_id, d.start, d.end) for d in standing.documents or ()] == [
        ("w1", at("07:30"), at("09:00"))
    ]


def test_a_retention_purge_is_said_not_hidden() -> None:
    log = Log()
    log.add(
        at("01:00"), "checkpoint", "cli:root", {"purged_from": 1, "purged_through": 40, "purged_count": 40}
    )
    log.sign_in(at("08:00"), "ann", ["hr"])

    report = access_report(log.records, "ann", DAY, NEXT)

    assert any(
        "records up to #40 were removed by a retention purge (checkpoint #1)" in n for n in report.notes
    )
