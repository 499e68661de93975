"""Mail attachments as documents of their own, on the real parts: real mails from
../shared/corpus (EML and MSG) and mails made here, parsed in a real parser process, embedded
by the real model into real Chroma.

Each attachment is stored once however many mails (or files) hold it, under the source
`<mail>#<name>` with a title naming the mail and the mail's groups; `enclave docs show` links
mail and attachment both ways; a bad attachment is reported on its own and the mail is
ingested; attachments follow their mail when it changes, is copied, removed or pruned.
"""

from __future__ import annotations

import email.message
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from core.settings import Settings
from enclave import wiring
from enclave.cli import app
from ingest.manifest import Manifest
from ingest.pipeline import MAX_ATTACHMENT_DEPTH
from tests.integration.test_ingest_sync import assert_consistent

pytestmark = pytest.mark.slow

EXAMPLES = (
    Path(__file__).resolve().parents[3] / "shared" / "corpus" / "unstructured-example-docs" / "example-docs"
)


def mail(
    subject: str, body: str, attachments: dict[str, bytes | email.message.EmailMessage]
) -> email.message.EmailMessage:
    msg = email.message.EmailMessage()
    msg["From"] = "Harbour office <office@example.org>"
    msg["To"] = "Staff <staff@example.org>"
    msg["Subject"] = subject
    msg.set_content(body)
    for name, data in attachments.items():
        if isinstance(data, email.message.EmailMessage):
            msg.add_attachment(data, filename=name)
        else:
            msg.add_attachment(data, maintype="text", subtype="plain", filename=name)
    return msg


def write(path: Path, msg: email.message.EmailMessage) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(msg))
    return path


def nested(depth: int) -> email.message.EmailMessage:
    """A mail holding a mail holding ... `depth` deep, the innermost holding deep.txt."""
    inner = mail(f"Level {depth}", f"Forwarded {depth} times.\n", {"deep.txt": b"The vault code is 4711.\n"})
    for level in range(depth - 1, 0, -1):
        inner = mail(f"Level {level}", f"Forwarded {level} times.\n", {"fwd.eml": inner})
    return inner


@pytest.mark.skipif(
    not EXAMPLES.is_dir(), reason=f"{EXAMPLES} is not here (../shared is checked out next to the repo)"
)
def test_attachments_become_documents_linked_to_their_mail(
    settings: Settings, embedder: Any, tmp_path: Path
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    for rel in (
        "eml/fake-email-attachment.eml",
        "fake-email-attachment.msg",
        "eml/mime-multipart-digest.eml",
        "eml/mime-attach-mp3.eml",
    ):
        shutil.copy(EXAMPLES / rel, docs / Path(rel).name)
    corrupt = mail("Board pack", "The board pack is attached.\n", {})
    corrupt.add_attachment(
        b"%PDF-1.4\n%\xe2\xe3\n1 0 obj garbage", maintype="application", subtype="pdf", filename="pack.pdf"
    )
    board = write(docs / "board.eml", corrupt)
    chain = write(
        docs / "chain.eml", mail("Chain", "A long thread.\n", {"fwd.eml": nested(MAX_ATTACHMENT_DEPTH)})
    )

    store = wiring.build_store(settings)
    settings.ingest.workers = 1  # one parser process: mails and their attachments parsed there
    settings.ingest.parse_timeout_s = 300  # with a limit, parsing runs in that parser process
    report = wiring.build_pipeline(settings, embedder=embedder, store=store).run([docs], ["hr"])

    outcome = {f.path.removeprefix(f"{docs}/"): f for f in report.files}
    assert {k: o.status for k, o in outcome.items() if "#" not in k} == {
        "board.eml": "new",
        "chain.eml": "new",
        "fake-email-attachment.eml": "new",
        "fake-email-attachment.msg": "new",
        "mime-attach-mp3.eml": "new",
        "mime-multipart-digest.eml": "new",
    }
    # The same attachment in an EML and an MSG: one document, found under both mails.
    eml_part, msg_part = (
        outcome["fake-email-attachment.eml#fake-attachment.txt"],
        outcome["fake-email-attachment.msg#fake-attachment.txt"],
    )
    assert eml_part.status == msg_part.status == "new" and eml_part.doc_id == msg_part.doc_id
    assert eml_part.attached_to == str(docs / "fake-email-attachment.eml")
    manifest = Manifest(settings.manifest_path)
    assert eml_part.doc_id is not None
    assert sorted(manifest.sources(eml_part.doc_id)) == [
        f"{docs}/fake-email-attachment.eml#fake-attachment.txt",
        f"{docs}/fake-email-attachment.msg#fake-attachment.txt",
    ]
    # Mails attached to a mail (a digest) are documents too.
    assert [outcome[f"mime-multipart-digest.eml#attachment-{i}.eml"].status for i in (1, 2, 3)] == ["new"] * 3
    # What cannot be ingested is reported, named after the mail, and does not fail the mail.
    mp3 = outcome["mime-attach-mp3.eml#sample-3s.mp3"]
    assert (mp3.status, mp3.error) == (
        "skipped",
        f"{docs}/mime-attach-mp3.eml#sample-3s.mp3: unsupported file type '.mp3'",
    )
    pdf = outcome["board.eml#pack.pdf"]
    assert pdf.status == "failed" and pdf.error is not None
    assert pdf.error.startswith(f"{board}#pack.pdf: ") and "enclave-attachment-" not in pdf.error
    # Mails inside mails are followed MAX_ATTACHMENT_DEPTH deep; deeper attachments are skipped.
    path = "chain.eml" + "#fwd.eml" * MAX_ATTACHMENT_DEPTH
    assert outcome[path].status == "new"
    assert outcome[f"{path}#deep.txt"].status == "skipped"
    assert f"followed {MAX_ATTACHMENT_DEPTH} deep at most" in (outcome[f"{path}#deep.txt"].error or "")
    assert chain.exists()

    # A passage of an attachment: its own source and title, the mail's groups.
    query = embedder.embed_query("Hey this is a fake attachment!")
    hits = [h for h in store.search(query, 5, ["hr"]) if h.chunk.doc_id == eml_part.doc_id]
    assert hits and hits[0].chunk.source in manifest.sources(eml_part.doc_id)
    assert hits[0].chunk.title == "fake-attachment (attached to mail: Fake email with attachment)"
    assert hits[0].chunk.groups == ("hr",)
    assert not [h for h in store.search(query, 5, ["public"]) if h.chunk.doc_id == eml_part.doc_id]

    # `docs show`: the mail lists its attachments, an attachment names its mails.
    cli = CliRunner()
    base = ["--data-dir", str(settings.data_dir)]
    shown = json.loads(cli.invoke(app, [*base, "docs", "show", str(board), "--json"]).stdout)
    assert [(a["name"], a["status"]) for a in shown["attachments"]] == [("pack.pdf", "failed")]
    shown = json.loads(cli.invoke(app, [*base, "docs", "show", eml_part.doc_id, "--json"]).stdout)
    assert shown["paths"] == []
    assert sorted(s for m in shown["attached_to"] for s in m["sources"]) == [
        f"{docs}/fake-email-attachment.eml",
        f"{docs}/fake-email-attachment.msg",
    ]
    text = cli.invoke(app, [*base, "docs", "show", str(docs / "fake-email-attachment.eml")]).stdout
    assert f"attachment: fake-attachment.txt: {eml_part.doc_id}" in text
    assert_consistent(settings)


def test_attachments_follow_their_mail(settings: Settings, embedder: Any, tmp_path: Path) -> None:
    settings.ingest.workers = 1
    settings.ingest.parse_timeout_s = 0  # parse in this process: the other test has the parser process
    store = wiring.build_store(settings)
    pipeline = wiring.build_pipeline(settings, embedder=embedder, store=store)
    manifest = Manifest(settings.manifest_path)
    a, b, c = (
        b"Berth 4 is closed for dredging.\n",
        b"Pilots board at the outer buoy.\n",
        b"Tugs need 2 hours notice.\n",
    )
    hr, public, finance = tmp_path / "hr", tmp_path / "public", tmp_path / "finance"
    memo = write(hr / "memo.eml", mail("Harbour memo", "See the attached notes.\n", {"a.txt": a, "b.txt": b}))
    public.mkdir()
    (public / "pilots.txt").write_bytes(b)  # the same bytes as the attachment b.txt

    report = pipeline.run([hr], ["hr"])
    ids = {Path(f.path).name.split("#")[-1]: f.doc_id for f in report.files}
    report = pipeline.run([public], ["public"])
    assert [f.status for f in report.files] == ["linked"]  # stored already, as an attachment
    assert manifest.doc(ids["b.txt"]).groups == ("hr", "public")
    assert manifest.doc(ids["a.txt"]).groups == ("hr",)

    # The mail changes: a.txt goes (nothing else holds it), c.txt comes, b.txt stays.
    write(
        hr / "memo.eml", mail("Harbour memo", "See the attached notes, revised.\n", {"b.txt": b, "c.txt": c})
    )
    report = pipeline.run([hr], ["hr"])
    status = {Path(f.path).name: f.status for f in report.files}
    assert status == {"memo.eml": "changed", "memo.eml#b.txt": "linked", "memo.eml#c.txt": "new"}
    ids.update({Path(f.path).name.split("#")[-1]: f.doc_id for f in report.files})
    assert manifest.doc(ids["a.txt"]) is None and ids["a.txt"] not in store.document_ids()
    assert_consistent(settings)

    # A copy of the mail under other groups: its attachments are readable by them too.
    finance.mkdir()
    shutil.copy(memo, finance / "memo-copy.eml")
    report = pipeline.run([finance], ["finance"])
    assert [f.status for f in report.files] == ["linked"]
    assert manifest.doc(ids["c.txt"]).groups == ("finance", "hr")
    assert manifest.doc(ids["b.txt"]).groups == ("finance", "hr", "public")

    # An attachment lost from the index (removed here) makes its mail parse again.
    assert pipeline.remove(ids["c.txt"]) == [f"{finance}/memo-copy.eml#c.txt", f"{memo}#c.txt"]
    report = pipeline.run([hr], ["hr"])
    status = {Path(f.path).name: f.status for f in report.files}
    assert status == {"memo.eml": "changed", "memo.eml#b.txt": "linked", "memo.eml#c.txt": "new"}
    assert manifest.doc(ids["c.txt"]).groups == ("finance", "hr")
    assert_consistent(settings)

    # Removing the mail removes its attachments, except what another file holds.
    mail_id = manifest.file(str(memo)).doc_id
    assert sorted(pipeline.remove(mail_id)) == [str(finance / "memo-copy.eml"), str(memo)]
    assert manifest.doc(ids["c.txt"]) is None
    assert manifest.doc(ids["b.txt"]).groups == ("public",)
    assert_consistent(settings)

    # Ingested again, then pruned once its file is gone: the same.
    report = pipeline.run([hr], ["hr"])
    assert {Path(f.path).name: f.status for f in report.files}["memo.eml#c.txt"] == "new"
    memo.unlink()
    report = pipeline.run([hr], ["hr"], prune=True)
    assert [(Path(f.path).name, f.status) for f in report.files] == [("memo.eml", "pruned")]
    assert manifest.doc(ids["c.txt"]) is None and manifest.doc(ids["b.txt"]).groups == ("public",)
    assert set(store.document_ids()) == {ids["b.txt"]}
    assert_consistent(settings)
