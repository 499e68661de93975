"""Where a synced document is shown to live: after `enclave sources sync` of a real smbd, WsgiDAV
and Dovecot (in-process CLI, the real model and Chroma), an answer's citations, the chat's source
list and the audit records (the answer's and the sync's) name the document at its source (an
smb:// URL or UNC path, the WebDAV URL, `imap://host/INBOX;UID=n`), never the local mirror copy
Enclave ingested, and never the credentials; /files and the manifest keep the mirror path."""

from __future__ import annotations

import email.message
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from imapclient import IMAPClient

from core.settings import load_settings
from core.types import Citation
from enclave import wiring
from tests.support import dovecot as dovecot_support
from tests.support import samba as samba_support
from tests.support.cli import data_dir_cli
from tests.support.dovecot import DovecotServer
from tests.support.samba import SambaServer
from tests.support.webdav import WebDavServer
from ui.markup import citation_markdown, sources_markdown

pytestmark = pytest.mark.slow

Run = Callable[..., Result]
PASSWORD = "a long enough password"


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, embedder: Any) -> Run:
    invoke = data_dir_cli(tmp_path, monkeypatch, embedder)
    wiring.build_users(load_settings(None, data_dir=tmp_path / "var")).add(
        "ann", PASSWORD, "staff", ("finance",)
    )
    return invoke


def sync(run: Run, name: str, location: str, credentials: Path, *options: str) -> dict[str, Any]:
    added = run(
        "sources", "add", name, "--location", location, "--credentials-file", str(credentials),
        "--groups", "finance", *options,
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    result = run("sources", "sync", name, "--json")
    assert result.exit_code == 0, result.output
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def ask(run: Run, question: str) -> tuple[dict[str, Any], list[Citation]]:
    result = run("ask", question, "--user", "ann", "--json")
    assert result.exit_code == 0, result.output
    answer: dict[str, Any] = json.loads(result.stdout)
    assert answer["citations"], answer
    return answer, [Citation(**c) for c in answer["citations"]]


def audit(tmp_path: Path, event: str) -> Any:
    log = wiring.build_audit(load_settings(None, data_dir=tmp_path / "var"))
    return next(r for r in reversed(log.last(1000)) if r.event == event)


def shown_elsewhere(tmp_path: Path, answer: dict[str, Any], citations: list[Citation], secret: str) -> str:
    """What staff and the auditor see: the chat's source list, the answer and sync records."""
    mirror = str((tmp_path / "var").resolve())
    shown = sources_markdown(citations)
    for c in citations:
        assert c.source.startswith(mirror)  # the index keeps the mirror copy ...
        assert mirror not in citation_markdown(c)  # ... which the chat never shows
    record = audit(tmp_path, "answer")
    assert [c["location"] for c in record.data["citations"]] == [c.location for c in citations]
    everything = (
        shown + json.dumps(answer) + json.dumps(record.data) + json.dumps(audit(tmp_path, "source_sync").data)
    )
    assert secret not in everything
    return shown


@pytest.fixture
def samba() -> Iterator[SambaServer]:
    samba_support.require()
    server = SambaServer().start()
    try:
        yield server
    finally:
        server.close()


def test_an_smb_document_is_cited_at_its_share(run: Run, samba: SambaServer, tmp_path: Path) -> None:
    budgets = samba.share_dir / "Budgets"
    budgets.mkdir()
    (budgets / "budget 2027.md").write_text("# Budget\n\nThe budget for 2027 is 4.2 million euros.\n")
    location = f"smb://127.0.0.1:{samba.port}/{samba.SHARE}"
    report = sync(run, "finance-share", location, samba.credentials(tmp_path / "smb.cred"))
    expected = f"{location}/Budgets/budget%202027.md"  # a port of its own: a URL (UNC has no port)
    (added,) = report["documents"]["added"]
    assert added["path"] == "Budgets/budget 2027.md" and added["location"] == expected

    answer, citations = ask(run, "What is the budget for 2027?")
    assert citations[0].location == expected
    shown = shown_elsewhere(tmp_path, answer, citations, samba.password)
    assert f"`{expected}`" in shown
    (row,) = audit(tmp_path, "source_sync").data["added"]
    assert row["location"] == expected
    text = run("ask", "What is the budget for 2027?", "--user", "ann")
    assert text.exit_code == 0 and f"({expected})" in text.output
    assert str((tmp_path / "var").resolve()) not in text.output
    listed = run("docs", "list")  # the admin's list names it where it lives, too
    assert listed.exit_code == 0 and expected in listed.output and "/mirror/" not in listed.output
    (doc,) = json.loads(run("docs", "list", "--json").stdout)
    assert doc["location"] == expected and doc["paths"][0].startswith(str((tmp_path / "var").resolve()))

    removed = run("sources", "remove", "finance-share")
    assert removed.exit_code == 0, removed.output
    (row,) = audit(tmp_path, "source_removed").data["removed"]
    assert row["path"] == "Budgets/budget 2027.md" and row["location"] == expected


def test_a_webdav_document_is_cited_at_its_url(run: Run, tmp_path: Path) -> None:
    server = WebDavServer().start()
    try:
        (server.share_dir / "Budgets").mkdir()
        (server.share_dir / "Budgets" / "travel.md").write_text(
            "# Travel\n\nTrain travel is refunded in full.\n"
        )
        sync(run, "dav", server.url, server.credentials(tmp_path / "dav.cred"))
        answer, citations = ask(run, "Is train travel refunded?")
        expected = f"{server.url}Budgets/travel.md"
        assert citations[0].location == expected
        assert f"`{expected}`" in shown_elsewhere(tmp_path, answer, citations, server.password)
    finally:
        server.close()


def test_a_mail_is_cited_at_its_imap_url_with_its_subject(run: Run, tmp_path: Path) -> None:
    reason = dovecot_support.missing()
    if reason is not None:
        pytest.skip(reason)
    server = DovecotServer().start()
    try:
        msg = email.message.EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = "office@example.org", "staff@example.org", "Night rota"
        msg["Message-ID"] = "<night-rota@example.org>"
        msg.set_content("The night shift at the harbour starts at 22:00 at berth 4.\n")
        client = IMAPClient("127.0.0.1", port=server.port, ssl=False, timeout=30)
        client.login(server.USER, server.password)
        client.append("INBOX", bytes(msg))
        client.logout()
        location = f"imap://127.0.0.1:{server.port}"
        sync(run, "mail", location, server.credentials(tmp_path / "imap.cred"), "--security", "none")
        answer, citations = ask(run, "When does the night shift start?")
        expected = f"imap://127.0.0.1:{server.port}/INBOX;UID=1"
        assert citations[0].location == expected and "Night rota" in citations[0].title
        shown = shown_elsewhere(tmp_path, answer, citations, server.password)
        assert f"`{expected}`" in shown and "Night rota" in shown
    finally:
        server.close()
