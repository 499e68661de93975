"""The auditor page over real HTTP: a real Gradio server on 127.0.0.1 and a real audit log file,
driven with httpx and gradio_client, as an auditor and as users who are not auditors.

The chat side needs an assistant, and none is asked anything here: `object()` stands in for it.
"""

from __future__ import annotations

import csv
import html
import io
import json
import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from audit import AuditLog
from audit.anchors import append_anchor, read_anchors
from core.settings import Settings
from core.users import UserStore
from tests.support.net import (
    free_port,
    nothing_left_loopback,  # noqa: F401 (an autouse fixture)
)
from tests.unit.test_audit_query import reverify_jsonl
from ui import build_app, serve

pytestmark = pytest.mark.slow  # real servers

PASSWORD = "correct horse battery"
HOSTILE = "<script>alert('q')</script><img src=x onerror=alert(1)> {{#each this}}x{{/each}} ${alert(2)}"
CHUNK_HASH = "a3" * 32
ALL = ("", None, None, "", "all", "all", "all")  # the filters, as the page sends them when empty


def answer_data(answer: str, **extra: Any) -> dict[str, Any]:
    """An answer record's data as assistant.service writes it (and keys it may grow)."""
    return {
        "mode": "llm",
        "groups": ["finance", "public"],
        "role": "staff",
        "model": "deepseek-r1-distill-qwen-7b",
        "settings": {"top_k": 6, "min_score": 0.3},
        "query": {"question": "And in my first year?", "query": "annual leave first year", "method": "llm"},
        "retrieved": [
            {"chunk_id": "leave:0003", "doc_id": "leave", "source": "hr/leave-policy.pdf", "page": 3,
             "score": 0.812345, "sha256": CHUNK_HASH, "used": True},
            {"chunk_id": "budget:0001", "doc_id": "budget", "source": "finance/budget.xlsx", "page": None,
             "score": 0.41, "sha256": "b4" * 32, "used": False, "dropped_for_context": True},
        ],
        "prompt": [
            {"role": "system", "content": "Answer from the numbered sources only."},
            {"role": "user", "content": "[1] Staff get 25 days of leave.\n\nQuestion: How much leave?"},
        ],
        "answer": answer,
        "reasoning": "The leave policy says 25 days.",
        "citations": [{"n": 1, "chunk_id": "leave:0003", "source": "hr/leave-policy.pdf", "page": 3}],
        "support": [{"start": 0, "end": len(answer), "cited": [1], "level": "weak", "lexical": 0.2, "semantic": 0.5}],
        **extra,
    }  # fmt: skip


@dataclass
class Served:
    url: str
    log: AuditLog
    users: UserStore

    def client(self, name: str) -> Client:
        return Client(self.url, auth=(name, PASSWORD), verbose=False, analytics_enabled=False)


def launch(folder: Path, anchor_file: Path | None = None) -> Iterator[Served]:
    settings = Settings(data_dir=folder)
    settings.ui.host = "127.0.0.1"
    settings.ui.port = free_port()
    settings.ui.org_name = "Globex <R&D>"
    users = UserStore(settings.users_path)
    users.add("alice", PASSWORD, "staff", ("finance", "public"))
    users.add("bob", PASSWORD, "staff", ("public",))
    users.add("olga", PASSWORD, "auditor", ())
    users.add("adam", PASSWORD, "admin", ())
    log = AuditLog(settings.audit_path, anchor_file=anchor_file)
    log.append("answer", "alice", "How much leave do I get?", data=answer_data("You get 25 days [1]."))  # 1
    log.append(
        "answer", "bob", f"Budget? {HOSTILE}", data=answer_data(f"It is 4M. {HOSTILE}", future_key={"x": 1})
    )  # 2
    log.append("answer_error", "alice", "Parental leave?", "The language model did not answer within 120 s",
               data=answer_data("Sixteen"))  # 3  # fmt: skip
    log.feedback("alice", 1, "down", "It is 27 days now")  # 4
    log.append("answer", "alice", "Office hours?", data=answer_data("9 to 5."))  # 5
    if anchor_file is not None:
        append_anchor(anchor_file, log.anchor())
    app = build_app(object(), users, settings, audit=log)
    url = serve(app, settings, block=False)
    try:
        yield Served(url, log, users)
    finally:
        app.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    yield from launch(tmp_path_factory.mktemp("auditor"))


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[Served]:
    yield from launch(tmp_path)


def ids(table: dict[str, Any]) -> list[int]:
    return [int(row[0]) for row in table["data"]]


# -- as an auditor ---------------------------------------------------------------------------------


def test_the_page_opens_with_the_newest_records(served: Served) -> None:
    whoami, status, events, table, summary = served.client("olga").predict(api_name="/audit_page")
    assert whoami == "Signed in as **olga** · auditor"
    assert status == "Last anchor: none kept in a file (set audit.anchor_file); the server log has them."
    # Record 6 is olga's own sign-in, audited by ui.server.
    assert [c[1] for c in events["choices"]] == ["all", "answer", "answer_error", "feedback", "sign_in"]
    assert table["headers"] == ["id", "time (UTC)", "user", "event", "question", "error", "feedback"]
    assert ids(table)[:6] == [6, 5, 4, 3, 2, 1]
    row = {r[0]: r for r in table["data"]}
    assert row[6][2:4] == ["olga", "sign_in"]
    assert row[1][2:4] == ["alice", "answer"] and row[1][6] == "down (comment)"
    assert row[3][5].startswith("The language model did not answer")
    assert summary == "6 records match, newest first. Select a row to open it."


def test_filters_by_user_text_feedback_outcome_and_dates(served: Served) -> None:
    client = served.client("olga")

    def search(user: str = "", since: str | None = None, until: str | None = None, text: str = "",
               event: str = "all", feedback: str = "all", outcome: str = "all") -> list[int]:  # fmt: skip
        table, _ = client.predict(
            user, since, until, text, event, feedback, outcome, api_name="/audit_search"
        )
        return ids(table)

    assert search(user="alice", event="answer") == [5, 1]
    assert search(text="BUDGET") == [2]
    assert search(text="25 days") == [1]  # in the answer
    assert search(feedback="down") == [1]
    assert search(feedback="none") == [5, 3, 2]
    assert search(outcome="error") == [3]
    assert 3 not in search(outcome="ok")
    day = served.log.get(1).ts[:10]  # type: ignore[union-attr]
    assert search(since=day, until=day, event="answer") == [5, 2, 1]
    with pytest.raises(AppError, match="since: 'someday' is not a date"):
        search(since="someday")
    _, summary = client.predict("nobody", None, None, "", "all", "all", "all", api_name="/audit_search")
    assert summary == "No record matches these filters."


def test_a_record_opens_in_full_with_everything_escaped(served: Served) -> None:
    client = served.client("olga")
    page, raw = client.predict(2, api_name="/audit_record")

    assert raw == json.loads(json.dumps(served.log.get(2).__dict__))  # type: ignore[union-attr]
    for expected in (
        "Audit record 2",
        CHUNK_HASH,  # the chunk hashes, whole
        "0.8123",  # scores
        "hr/leave-policy.pdf",
        "finance/budget.xlsx",
        "dropped_for_context",  # keys the page does not know still show
        "annual leave first year",  # the rewritten query
        "Answer from the numbered sources only.",  # the prompt
        "The leave policy says 25 days.",  # reasoning
        "leave:0003",  # citations
        "weak",  # support marks
        "future_key",  # unknown data keys, as JSON
        served.log.get(2).hash,  # type: ignore[union-attr]
    ):
        assert expected in page, expected
    # Document and user text is inert: no tag, no template expression survives.
    assert "<script" not in page and "<img" not in page
    assert "{{" not in page and "${" not in page
    assert "&lt;script&gt;" in page

    page, _ = client.predict(1, api_name="/audit_record")
    assert "It is 27 days now" in page and "Feedback" in page

    with pytest.raises(AppError, match="There is no audit record 999"):
        client.predict(999, api_name="/audit_record")


def test_verify_chain_reports_an_intact_log(served: Served) -> None:
    result = served.client("olga").predict(api_name="/audit_verify")
    count, head = served.log.head()
    assert result.startswith(f"**Chain intact**: {count} records verified.")
    assert f"Head: record {count}, hash `{head}`" in result


def test_the_page_shows_the_last_anchor_and_whether_the_log_holds_it(tmp_path: Path) -> None:
    anchors = tmp_path / "anchors.jsonl"
    for served in launch(tmp_path / "data", anchor_file=anchors):
        client = served.client("olga")
        anchor = read_anchors(anchors)[-1]
        _, status, _, _, _ = client.predict(api_name="/audit_page")
        status = status.replace("\\", "")  # Markdown escapes
        assert f"Last anchor: written {anchor.at}, record 5, hash `{anchor.hash}`" in status
        assert "the log holds the 1 anchor in" in status

        conn = sqlite3.connect(served.log.path, isolation_level=None)
        try:
            for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
                conn.execute(f"DROP TRIGGER {name}")
            fourth = conn.execute("SELECT hash FROM records WHERE id = 4").fetchone()[0]
            conn.execute("DELETE FROM records WHERE id > 4")
            conn.execute("UPDATE chain_head SET count = 4, last_hash = ?", (fourth,))
        finally:
            conn.close()
        result = client.predict(api_name="/audit_verify").replace("\\", "")
        assert result.startswith("**Chain intact**")  # consistent in itself: the anchor shows the cut
        assert "**The log does NOT match its anchors**: the anchor of record 5" in result
        assert "ends at record 4, below the anchor" in result


def test_verify_chain_finds_tampering(fresh: Served) -> None:
    conn = sqlite3.connect(fresh.log.path, isolation_level=None)
    try:
        for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
            conn.execute(f"DROP TRIGGER {name}")
        conn.execute("UPDATE records SET user = 'mallory' WHERE id = 2")
    finally:
        conn.close()
    result = fresh.client("olga").predict(api_name="/audit_verify")
    assert result.startswith("**Chain BROKEN** at record 2")


def test_exports_download_the_filtered_records(served: Served) -> None:
    client = served.client("olga")
    link = client.predict("alice", None, None, "", "answer", "all", "all", api_name="/audit_export_csv")
    # The event gives a link to our own export route; the file streams from it, to auditors only,
    # and never passes through Gradio's cache or a shared folder.
    href = html.unescape(re.search(r"href='([^']+)'", link)[1])  # type: ignore[index]
    assert href == "/audit/export.csv?user=alice&event=answer" and "2 records" in link
    with httpx.Client(base_url=served.url) as http:
        assert http.post("/login", data={"username": "olga", "password": PASSWORD}).is_success
        got = http.get(href)
        assert got.status_code == 200 and got.headers["content-type"].startswith("text/csv")
        assert got.headers["content-disposition"].startswith('attachment; filename="enclave-audit-')
        rows = list(csv.DictReader(io.StringIO(got.text, newline="")))
        assert [r["id"] for r in rows] == ["1", "5"]  # oldest first
        assert rows[0]["feedback"] == "down: It is 27 days now"
        assert rows[0]["cited sources"] == "[1] hr/leave-policy.pdf p. 3"

        before = served.log.head()
        link = client.predict(*ALL, api_name="/audit_export_jsonl")
        jsonl = http.get(html.unescape(re.search(r"href='([^']+)'", link)[1]))  # type: ignore[index]
        count, first_prev, last = reverify_jsonl(jsonl.text)  # the whole log, re-verified without Enclave
        assert first_prev == "0" * 64 and (count, last) == before
        assert http.get("/audit/export.csv?since=yesterday").status_code == 400
    with httpx.Client(base_url=served.url) as http:
        assert http.post("/login", data={"username": "alice", "password": PASSWORD}).is_success
        refused = http.get(href)
        assert refused.status_code == 403 and "2 records" not in refused.text and "leave" not in refused.text

    # Each export is itself on the record, with who asked for what.
    exports = served.log.search(event="audit_export", limit=None)
    assert [(e.user, e.data["format"], e.data["records"]) for e in reversed(exports)][-2:] == [
        ("olga", "csv", 2),
        ("olga", "jsonl", before[0]),
    ]
    assert exports[1].data["filters"] == {"user": "alice", "events": ["answer"]}


def test_access_on_a_day_shows_what_a_user_could_read_and_was_shown(served: Served) -> None:
    client = served.client("olga")
    day = served.log.get(2).ts[:10]  # type: ignore[union-attr]
    page = client.predict("bob", day, api_name="/audit_access")
    # bob's answer names the groups it was searched with; nothing before it says: unknown.
    assert "groups <b>unknown</b> (no record before)" in page
    assert "role staff, groups finance, public (answer #2): 0 documents readable" in page
    assert "Budget? &lt;script&gt;" in page and "<script>" not in page and "{{" not in page
    with pytest.raises(AppError, match="Day: 'someday' is not a date"):
        client.predict("bob", "someday", api_name="/audit_access")
    with pytest.raises(AppError, match="user 'nobody': no audit record names this user"):
        client.predict("nobody", day, api_name="/audit_access")


# -- as anyone else ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["alice", "adam"])
def test_others_are_refused_everywhere_and_get_no_data(served: Served, name: str) -> None:
    client = served.client(name)
    calls: list[tuple[str, tuple[Any, ...]]] = [
        ("/audit_page", ()),
        ("/audit_search", ALL),
        ("/audit_record", (1,)),
        ("/audit_verify", ()),
        ("/audit_export_csv", ALL),
        ("/audit_export_jsonl", ALL),
        ("/audit_access", ("alice", "2026-12-07")),
    ]
    # Refused at the boundary (ui.boundary's EVENTS), before any handler runs.
    for api_name, args in calls:
        with pytest.raises(httpx.HTTPStatusError) as caught:
            client.predict(*args, api_name=api_name)
        refused = caught.value.response
        assert refused.status_code == 403 and "for the auditor role only" in refused.json()["detail"]
        assert "How much leave" not in refused.text

    denied = served.log.search(event="access_denied", user=name, limit=None)
    reasons = sorted(r.data["reason"] for r in denied if r.data["path"] == "/gradio_api/queue/join")
    assert reasons == sorted(f"The event {api[1:]!r} is for the auditor role only." for api, _ in calls)


def test_the_audit_page_exists_and_only_the_ask_api_is_documented(served: Served) -> None:
    with httpx.Client(base_url=served.url) as http:
        assert http.post("/login", data={"username": "olga", "password": PASSWORD}).is_success
        page = http.get("/audit")
        assert page.status_code == 200
        config = http.get("/config").json()
    with httpx.Client(base_url=served.url) as http:
        assert http.post("/login", data={"username": "alice", "password": PASSWORD}).is_success
        refused = http.get("/audit", headers={"accept": "text/html"})
    # A staff user is stopped before the page is sent, and the attempt is on record.
    assert refused.status_code == 403 and "for the auditor role only" in refused.text
    denied = served.log.last(1)[0]
    assert (denied.event, denied.user, denied.data["path"]) == ("access_denied", "alice", "/audit")
    assert ["audit", "Audit log", True] in config["pages"]
    # The chat page's bar starts rendered but hidden (so the default bar is not shown either);
    # its load shows it to auditors only (checked in a browser: see the browser tests).
    navbars = [c["props"]["visible"] for c in config["components"] if c["type"] == "navbar"]
    assert sorted(navbars, key=str) == [True, True, "hidden"]  # the audit and admin pages show theirs
    api = served.client("olga").view_api(print_info=False, return_format="dict")
    assert isinstance(api, dict) and list(api["named_endpoints"]) == ["/ask", "/feedback"]
