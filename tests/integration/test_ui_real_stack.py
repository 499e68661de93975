"""The web UI over HTTP on the real stack: real assistant, embedded Chroma, MiniLM, audit log.
Two users of different groups ask the same question; each sees only their groups' documents,
and each answer is one audit record under the signed-in name."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from gradio_client import Client

from core.settings import Settings, load_settings
from enclave import wiring
from tests.support.net import free_port
from ui import build_app, serve

pytestmark = pytest.mark.slow

PASSWORD = "a long enough password"


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory, embedder: Any) -> Iterator[tuple[str, Settings]]:
    root = tmp_path_factory.mktemp("ui-real")
    (root / "public").mkdir()
    (root / "finance").mkdir()
    (root / "public" / "parking.md").write_text(
        "# Parking\n\nStaff permits for the blue car park cost 12 euros per month.\n"
    )
    (root / "finance" / "crane.md").write_text(
        "# Crane budget\n\nThe capital budget for the new crane at berth 7 is 4.2 million euros.\n"
    )
    settings = load_settings(None, data_dir=root / "var")
    settings.ui.port = free_port()
    store = wiring.build_store(settings)
    pipeline = wiring.build_pipeline(settings, embedder=embedder, store=store)
    pipeline.run([root / "public"], ["public"])
    pipeline.run([root / "finance"], ["finance"])
    users = wiring.build_users(settings)
    users.add("alice", PASSWORD, "staff", ("public",))
    users.add("fiona", PASSWORD, "staff", ("finance", "public"))
    app = build_app(wiring.build_assistant(settings, embedder=embedder, store=store), users, settings)
    url = serve(app, settings, block=False)
    try:
        yield url, settings
    finally:
        app.close()


def ask(url: str, user: str, question: str) -> dict[str, Any]:
    client = Client(url, auth=(user, PASSWORD), verbose=False, analytics_enabled=False)
    result: dict[str, Any] = client.predict(question, api_name="/ask")
    return result


def test_each_user_sees_only_their_groups(running: tuple[str, Settings]) -> None:
    url, settings = running
    question = "What is the capital budget for the new crane?"
    alice = ask(url, "alice", question)
    fiona = ask(url, "fiona", question)
    assert "4.2 million" not in alice["answer"]
    assert all("finance" not in c["source"] for c in alice["citations"])
    assert "4.2 million" in fiona["answer"]
    assert any(c["source"].endswith("crane.md") for c in fiona["citations"])

    audit = wiring.build_audit(settings)
    by_id = {r.id: r for r in audit.last(10)}
    assert by_id[alice["audit_id"]].user == "alice"
    assert by_id[fiona["audit_id"]].user == "fiona"
    assert audit.verify().ok
