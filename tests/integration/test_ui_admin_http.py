"""The admin page over real HTTP: a real Gradio server on 127.0.0.1 over a data folder filled by a
real `enclave ingest` (MiniLM, embedded Chroma, the lexical index, the manifest), with one file
that fails to parse; driven with gradio_client as an admin and as users who are not admins.

Its health section is checked against an LLM endpoint on a closed port and against the scripted
OpenAI-compatible stub (tests/support/openai_stub.py), which lists its model at /v1/models as vLLM
does. The chat side needs an assistant, and none is asked anything here: `object()` stands in.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from gradio_client import Client
from typer.testing import CliRunner

from audit import AuditLog
from core.settings import Settings
from core.users import UserStore
from enclave import wiring
from enclave.cli import app as cli
from enclave.health import AdminOverview
from tests.support.cli import quick_cli
from tests.support.net import free_port as closed_port
from tests.support.net import nothing_left_loopback  # noqa: F401 (an autouse fixture)
from tests.support.openai_stub import scripted_chat_server
from ui import build_app, serve
from ui.app import _navbar_for

pytestmark = pytest.mark.slow  # real ingest, real servers

PASSWORD = "correct horse battery"
LEAVE = (
    "# Leave policy\n\n## Annual leave\n\nEvery employee receives 27 days of annual leave per year, "
    "plus public holidays. Unused days expire on 31 March of the following year.\n"
)
BUDGET = "# Budget\n\nThe harbour budget for 2026 is 4.2 million, most of it for dredging the berths.\n"


@dataclass
class Served:
    url: str
    settings: Settings
    log: AuditLog
    docs: Path

    def client(self, name: str) -> Client:
        return Client(self.url, auth=(name, PASSWORD), verbose=False, analytics_enabled=False)

    def page(self, name: str) -> dict[str, Any]:
        names = ["whoami", "status", "models", "health_summary", "health", "figures"]
        names += ["groups_summary", "groups", "ingest_summary", "problems"]
        values = self.client(name).predict(api_name="/admin_page")
        assert len(values) == len(names)
        return dict(zip(names, values, strict=True))


def ingest(data_dir: Path, folder: Path, groups: str) -> int:
    result = CliRunner().invoke(cli, ["--data-dir", str(data_dir), "ingest", str(folder), "--groups", groups])
    return result.exit_code


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, embedder: Any) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("admin")
    docs = root / "docs"
    (docs / "public").mkdir(parents=True)
    (docs / "finance").mkdir()
    (docs / "public" / "leave.md").write_text(LEAVE, encoding="utf-8")
    (docs / "finance" / "budget.md").write_text(BUDGET, encoding="utf-8")
    (docs / "finance" / "broken.pdf").write_bytes(b"%PDF-1.7\n garbage without any pages")
    data_dir = root / "var"
    with quick_cli(embedder):  # the session's MiniLM; parsed in this process
        assert ingest(data_dir, docs / "public", "public") == 0
        assert ingest(data_dir, docs / "finance", "finance,staff") == 1  # the broken PDF fails

    settings = Settings(data_dir=data_dir)
    settings.ui.host = "127.0.0.1"
    settings.ui.port = closed_port()
    settings.ui.org_name = "Globex <R&D>"
    users = UserStore(settings.users_path)
    users.add("adam", PASSWORD, "admin", ())
    users.add("alice", PASSWORD, "staff", ("finance", "public"))
    users.add("olga", PASSWORD, "auditor", ())
    log = AuditLog(settings.audit_path)
    store = wiring.build_store(settings)
    gr_app = build_app(object(), users, settings, log, admin_status=AdminOverview(settings, store))
    url = serve(gr_app, settings, block=False)
    try:
        yield Served(url, settings, log, docs)
    finally:
        gr_app.close()


@pytest.fixture
def llm(served: Served) -> Iterator[Any]:
    """The LLM settings of the served app, put back after each test (the page reads them live)."""
    saved = served.settings.llm.model_copy()
    yield served.settings.llm
    served.settings.llm = saved


# -- as an admin -----------------------------------------------------------------------------------


def test_documents_and_chunks_per_group(served: Served) -> None:
    page = served.page("adam")
    assert page["whoami"] == "Signed in as **adam** · admin" and page["status"] == ""
    assert page["groups"]["headers"] == ["group", "documents", "chunks"]
    rows = {r[0]: r[1:] for r in page["groups"]["data"]}
    assert set(rows) == {"finance", "public", "staff"}
    assert rows["public"][0] == 1 and rows["finance"][0] == 1 and rows["staff"][0] == 1
    assert rows["finance"] == rows["staff"]  # one document readable by both groups
    assert all(chunks >= 1 for _, chunks in rows.values())
    total_chunks = rows["public"][1] + rows["finance"][1]
    assert page["groups_summary"].startswith(f"2 documents ({total_chunks} chunks) in all.")
    # The store agrees with the manifest.
    assert page["figures"]["chroma"]["chunks"] == total_chunks


def test_the_last_ingest_with_its_failure_and_reason(served: Served) -> None:
    page = served.page("adam")
    summary = page["ingest_summary"]
    assert summary.startswith("**Last ingest FAILED for some files**: finished ")
    assert "1 new" in summary and "1 failed" in summary
    assert str(served.docs / "finance") in summary  # the path it was given
    assert page["problems"]["headers"] == ["file", "status", "reason"]
    [(path, status, reason)] = page["problems"]["data"]
    assert path == str((served.docs / "finance" / "broken.pdf").resolve())
    assert status == "failed" and "broken.pdf" in reason and len(reason) > len(path)


def test_health_with_no_llm_configured(served: Served, llm: Any) -> None:
    llm.base_url, llm.model = None, None
    page = served.page("adam")
    rows = {r[0]: r[1:] for r in page["health"]["data"]}
    assert list(rows) == [
        "embedding model",
        "chroma",
        "lexical index",
        "audit log",
        "llm",
        "disk space",
        "telemetry",
        "network",
    ]
    assert {n: detail for n, (status, detail) in rows.items() if status != "ok"} == {}
    assert page["health_summary"] == "**All 8 checks pass.**"
    assert "all-minilm-l6-v2" in page["models"].lower().replace("\\", "").replace("_", "-")
    assert "LLM: not configured (extractive answers)" in page["models"]
    assert page["figures"]["lexical index"]["chunks"] == page["figures"]["chroma"]["chunks"]


def test_health_reports_an_llm_on_a_closed_port_as_unreachable(served: Served, llm: Any) -> None:
    llm.base_url, llm.model = f"http://127.0.0.1:{closed_port()}/v1", "deepseek-r1-distill-qwen-7b"
    page = served.page("adam")
    rows = {r[0]: r[1:] for r in page["health"]["data"]}
    assert rows["llm"][0] == "FAIL" and "is unreachable" in rows["llm"][1]
    assert page["health_summary"].startswith("**1 check fails:** llm")
    assert "UNREACHABLE" in page["models"]
    assert page["figures"]["llm"]["reachable"] is False


def test_health_names_the_model_the_llm_serves(served: Served, llm: Any) -> None:
    with scripted_chat_server("deepseek-r1-distill-qwen-7b") as server:
        llm.base_url, llm.model = server.base_url, "deepseek-r1-distill-qwen-7b"
        page = served.page("adam")
        rows = {r[0]: r[1:] for r in page["health"]["data"]}
        assert rows["llm"] == ["ok", f"deepseek-r1-distill-qwen-7b served at {server.base_url}"]
        assert page["figures"]["llm"]["served"] == ["deepseek-r1-distill-qwen-7b"]
        assert "(reachable, serving it)" in page["models"]

        # Refresh gathers the figures again: the model is renamed in the settings.
        llm.model = "another-model"
        refreshed = served.client("adam").predict(api_name="/admin_refresh")
        health = {r[0]: r[1:] for r in refreshed[2]["data"]}
        assert health["llm"][0] == "FAIL" and "not 'another-model'" in health["llm"][1]
        assert "NOT serving it" in refreshed[0]


# -- as anyone else ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["alice", "olga"])
def test_others_are_refused_and_get_no_data(served: Served, name: str) -> None:
    # Refused at the boundary (ui.boundary's EVENTS), before any handler runs.
    for api_name in ("/admin_page", "/admin_refresh"):
        with pytest.raises(httpx.HTTPStatusError) as caught:
            served.client(name).predict(api_name=api_name)
        refused = caught.value.response
        assert refused.status_code == 403 and "for the admin role only" in refused.json()["detail"]
        assert "broken.pdf" not in refused.text
    denied = served.log.search(event="access_denied", user=name, limit=None)
    assert sorted(r.data["reason"] for r in denied) == [
        "The event 'admin_page' is for the admin role only.",
        "The event 'admin_refresh' is for the admin role only.",
    ]


def test_the_page_link_shows_for_admins_and_auditors_only(served: Served) -> None:
    users = UserStore(served.settings.users_path)
    navbar = _navbar_for(users)
    shown = {name: navbar(SimpleNamespace(username=name))["visible"] for name in ("adam", "olga", "alice")}
    assert shown == {"adam": True, "olga": True, "alice": "hidden"}
