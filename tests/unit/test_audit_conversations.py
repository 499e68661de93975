"""Chat history read from the audit log: a user's conversations, and one conversation's turns."""

from __future__ import annotations

from pathlib import Path

from audit import AuditLog


def test_conversations_are_per_user_newest_first_and_purged_with_the_log(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.sqlite3")
    log.append("answer", "alice", "Where do I park?", data={"conversation_id": "a", "answer": "Gate 2."})
    log.append("answer", "bob", "Bob's question", data={"conversation_id": "a"})  # same id, other user
    log.append("answer", "alice", "Crane budget?", data={"conversation_id": "b"})
    log.append("answer_error", "alice", "And its cost?", "LLM down", data={"conversation_id": "a"})
    log.append("answer", "alice", "From the CLI", data={})  # no conversation: not listed
    log.feedback("alice", 1, "up")

    found = log.conversations("alice")
    assert [(c.id, c.title, c.answers) for c in found] == [
        ("a", "Where do I park?", 2),
        ("b", "Crane budget?", 1),
    ]
    assert found[0].started < found[0].updated
    assert [c.id for c in log.conversations("alice", limit=1)] == ["a"]
    assert [(c.id, c.title) for c in log.conversations("bob")] == [("a", "Bob's question")]
    assert log.conversations("carol") == []

    turns = log.conversation("alice", "a")
    assert [(r.id, r.event, r.question) for r in turns] == [
        (1, "answer", "Where do I park?"),
        (4, "answer_error", "And its cost?"),
    ]
    assert [r.user for r in log.conversation("bob", "a")] == ["bob"]
    assert log.conversation("carol", "a") == []

    # Retention: the history goes with the records (there is no other copy).
    log.purge("2999-01-01", by="root")
    assert log.conversations("alice") == [] and log.conversation("alice", "a") == []
    assert log.verify().ok


def test_a_missing_log_has_no_conversations(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "none.sqlite3")
    assert log.conversations("alice") == [] and log.conversation("alice", "a") == []
    assert not (tmp_path / "none.sqlite3").exists()
