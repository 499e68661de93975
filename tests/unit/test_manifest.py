"""The ingest manifest on a real SQLite file: who holds a document (files, and mails through
their attachments, nested), which documents are orphans, and the upgrade of a manifest made
before attachments were recorded."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from ingest.manifest import SCHEMA_VERSION, AttachmentEntry, DocEntry, Manifest

MODEL = "model-a"


def doc(manifest: Manifest, doc_id: str, groups: tuple[str, ...] = ("x",), model: str = MODEL) -> None:
    with manifest.transaction() as db:
        manifest.put_doc(db, DocEntry(doc_id, groups, 1, doc_id, 1, model, doc_id, ""))


def held_by(manifest: Manifest, path: str, doc_id: str, groups: tuple[str, ...]) -> None:
    with manifest.transaction() as db:
        manifest.put_file(db, path, "ingested", groups, doc_id, doc_id, 1, 1)


def attach(manifest: Manifest, mail_id: str, *rows: tuple[str, str | None]) -> None:
    with manifest.transaction() as db:
        manifest.put_attachments(
            db,
            mail_id,
            [
                AttachmentEntry(mail_id, i, name, d, "ingested" if d else "failed", None if d else "broken")
                for i, (name, d) in enumerate(rows, 1)
            ],
        )


def test_mails_hold_their_attachments_nested_and_shared(tmp_path: Path) -> None:
    m = Manifest(tmp_path / "manifest.sqlite3")
    for d in ("mail", "inner", "note", "shared", "orphan"):
        doc(m, d)
    held_by(m, "/hr/mail.eml", "mail", ("hr",))
    held_by(m, "/fin/copy.eml", "mail", ("finance",))
    held_by(m, "/public/shared.txt", "shared", ("public",))
    attach(m, "mail", ("inner.eml", "inner"), ("shared.txt", "shared"), ("scan.pdf", None))
    attach(m, "inner", ("note.txt", "note"))

    assert m.holder_groups("note") == ("finance", "hr")  # through inner.eml, through both copies
    assert m.holder_groups("shared") == ("finance", "hr", "public")
    assert m.holder_groups("note", excluding=["/hr/mail.eml"]) == ("finance",)
    assert m.orphan_docs() == ["orphan"]
    assert sorted(m.sources("note")) == [
        "/fin/copy.eml#inner.eml#note.txt",
        "/hr/mail.eml#inner.eml#note.txt",
    ]
    assert [(a.name, a.status, a.error) for a in m.attachments("mail")] == [
        ("inner.eml", "ingested", None),
        ("shared.txt", "ingested", None),
        ("scan.pdf", "failed", "broken"),
    ]
    assert m.attachments_whole("mail", MODEL)
    assert not m.attachments_whole("mail", "model-b")  # embedded with another model: not whole
    with m.transaction() as db:
        m.drop_doc(db, "note")  # an attachment deep down is lost: the mail is no longer whole
    assert not m.attachments_whole("mail", MODEL)

    with m.transaction() as db:  # no file holds the mail any more: all below it are orphans
        m.drop_file(db, "/hr/mail.eml")
        m.drop_file(db, "/fin/copy.eml")
    assert sorted(m.orphan_docs()) == ["inner", "mail", "orphan"]  # shared is still a file


def test_a_manifest_from_before_attachments_is_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "manifest.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE docs (doc_id TEXT PRIMARY KEY, groups TEXT NOT NULL, chunks INTEGER NOT NULL,
            title TEXT NOT NULL, size INTEGER NOT NULL, embed_model TEXT NOT NULL, source TEXT NOT NULL,
            updated_at TEXT NOT NULL);
        CREATE TABLE files (path TEXT PRIMARY KEY, status TEXT NOT NULL, doc_id TEXT, sha256 TEXT,
            size INTEGER, mtime_ns INTEGER, groups TEXT NOT NULL, error TEXT, updated_at TEXT NOT NULL);
        CREATE TABLE pending (doc_id TEXT NOT NULL, groups TEXT NOT NULL, since TEXT NOT NULL,
            PRIMARY KEY (doc_id, groups));
        INSERT INTO docs VALUES ('d1', '["x"]', 3, 'T', 10, 'model-a', '/a.md', 'now');
        INSERT INTO files VALUES ('/a.md', 'ingested', 'd1', 's', 10, 1, '["x"]', NULL, 'now');
        PRAGMA user_version = 1;
        """
    )
    db.close()
    m = Manifest(path)
    assert m.docs()[0].doc_id == "d1" and m.attachments("d1") == []
    assert m.attachments_whole("d1", MODEL) and m.orphan_docs() == []
    assert m._db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2
