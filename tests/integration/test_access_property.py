"""Access control as a property, checked by hypothesis: whatever a user's groups and whatever they
type, no retrieval (dense, lexical, hybrid), no citation, no source file (/files) and no audit
export reveals a chunk of a document outside the user's groups.

The store is the real one (embedded Chroma, the lexical index, MiniLM), ingested once for the
module: a fixed pool of documents whose groups are drawn from a seeded generator, one of them
held by two files with different groups (its groups are the union). Each document carries a
marker of its own that no question contains, so a leak of its text shows wherever it lands.
Hypothesis draws the users (their groups, none included, and groups no document has) and the
questions (words of the documents and words of no document).
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from assistant.retrieval import Retriever
from assistant.service import Assistant
from audit import AuditLog
from core.settings import Settings, load_settings
from core.types import Principal
from core.users import UserStore
from enclave import wiring
from ingest.acl import GroupPolicy
from ingest.manifest import Manifest
from ui import build_app, serve

pytestmark = pytest.mark.slow  # a real store and a real server

GROUPS = ("public", "finance", "hr", "board", "legal")
NO_DOCUMENT_HAS = "contractors"
CODES = ("heron", "osprey", "gannet", "puffin", "kestrel", "plover", "curlew", "dunlin", "tern", "avocet")
SHARED_WORDS = ("harbour", "budget", "ferry", "schedule", "team", "members", "euros", "spring")
PROXY = "127.0.0.2"  # the SSO proxy the server trusts: each request names its user in a header
PROXY_SECRET = "the-proxy-proves-itself-with-this"


def sso_headers(name: str) -> dict[str, str]:
    return {"X-Remote-User": name, "X-Enclave-Proxy-Secret": PROXY_SECRET}


PASSWORD = "a long enough password"


@dataclass
class Pool:
    settings: Settings
    retriever: Retriever
    assistant: Assistant
    audit: AuditLog
    users: UserStore
    url: str
    groups_of: dict[str, frozenset[str]]  # document id -> its groups, as the files gave them
    marker_of: dict[str, str]  # document id -> the marker only its text holds


def document(i: int, code: str, marker: str) -> str:
    return (
        f"# Report {code}\n\n## Budget\n\nThe harbour budget for {code} is {marker} euros. "
        f"The ferry schedule for {code} changes in spring.\n\n## Team\n\n"
        f"The {code} team has {i + 3} members working at the harbour.\n"
    )


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory, embedder: Any) -> Iterator[Pool]:
    root = tmp_path_factory.mktemp("access")
    draw = random.Random(20261129)  # the documents' groups, the same on every run
    settings = load_settings(None, data_dir=root / "var")
    settings.ingest.parse_timeout_s = 0
    settings.ui.port = _free_port()
    settings.ui.sso_header = "X-Remote-User"
    settings.ui.trusted_proxies = [PROXY]
    (root / "proxy.secret").write_text(PROXY_SECRET)  # the proxy proves itself with it
    settings.ui.sso_secret_file = root / "proxy.secret"
    markers = [f"Q{i}Z{draw.randint(1000, 9999)}" for i in range(len(CODES))]
    copies = [*enumerate(CODES), (0, CODES[0])]  # the first document twice, in another folder
    docs, acl, folder_groups = root / "docs", [], {}
    for n, (i, code) in enumerate(copies):
        groups = sorted(draw.sample(GROUPS, draw.randint(1, 2)))
        (docs / f"{n:02d}").mkdir(parents=True)
        (docs / f"{n:02d}" / f"{code}.md").write_text(document(i, code, markers[i]))
        acl.append(f"docs/{n:02d}: [{', '.join(groups)}]")
        folder_groups[f"{n:02d}"] = groups
    (root / "acl.yaml").write_text("\n".join(acl) + "\n")
    store = wiring.build_store(settings)
    pipeline = wiring.build_pipeline(settings, embedder=embedder, store=store)
    report = pipeline.run([docs], GroupPolicy.from_file(root / "acl.yaml"))
    groups_of: dict[str, frozenset[str]] = {}
    marker_of: dict[str, str] = {}
    for outcome in report.files:
        assert outcome.doc_id is not None and outcome.status in ("new", "linked"), outcome
        folder = Path(outcome.path).parent.name
        groups_of[outcome.doc_id] = groups_of.get(outcome.doc_id, frozenset()) | set(folder_groups[folder])
        marker_of[outcome.doc_id] = next(m for m in markers if m in Path(outcome.path).read_text())
    assert len(groups_of) == len(CODES)  # the copy is the first document, not one of its own
    manifest = Manifest(settings.manifest_path)
    assert {doc: frozenset(manifest.doc(doc).groups) for doc in groups_of} == groups_of  # type: ignore[union-attr]
    users = wiring.build_users(settings)
    audit = AuditLog(settings.audit_path)
    assistant = wiring.build_assistant(settings, embedder=embedder, store=store)
    app = build_app(object(), users, settings, audit=audit)
    url = serve(app, settings, block=False, sources=wiring.build_originals(settings).find)
    try:
        yield Pool(settings, assistant.retriever, assistant, audit, users, url, groups_of, marker_of)
    finally:
        app.close()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


user_groups = st.frozensets(st.sampled_from((*GROUPS, NO_DOCUMENT_HAS)), max_size=3)
questions = st.one_of(
    st.lists(st.sampled_from(CODES + SHARED_WORDS), min_size=1, max_size=4).map(" ".join),
    st.from_regex(r"[a-z]{2,9}( [a-z]{2,9}){0,3}", fullmatch=True),  # mostly words of no document
)
names = (f"user{n}" for n in itertools.count())  # a new user each time: exports are per user


def test_no_retrieval_citation_source_file_or_export_reveals_another_groups_chunk(pool: Pool) -> None:
    seen: Counter[str] = Counter()

    @settings(max_examples=50, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
    @given(groups=user_groups, question=questions)
    def holds(groups: frozenset[str], question: str) -> None:
        name = next(names)
        principal = Principal(name, "staff", tuple(sorted(groups)))
        allowed = {doc for doc, held in pool.groups_of.items() if held & groups}
        denied = set(pool.groups_of) - allowed
        seen["some denied"] += bool(denied)

        # Retrieval, each way, as deep as the store goes.
        for mode in ("dense", "lexical", "hybrid"):
            hits = pool.retriever.rank(principal, question, len(CODES) * 5, mode=mode)
            assert {h.chunk.doc_id for h in hits} <= allowed, (mode, groups, question)
            seen[f"{mode} hits"] += bool(hits)

        # Citations, and the passages an answer is drawn from.
        answer = pool.assistant.ask(principal, question)
        assert {c.doc_id for c in answer.citations} <= allowed
        assert {h.chunk.doc_id for h in answer.hits} <= allowed
        assert not any(pool.marker_of[doc] in answer.text for doc in denied)
        seen["cited"] += bool(answer.citations)

        # Source files: every document's link, opened as this user through the SSO proxy.
        pool.users.add(name, PASSWORD, "staff", principal.groups)
        transport = httpx.HTTPTransport(local_address=PROXY)
        with httpx.Client(base_url=pool.url, transport=transport, headers=sso_headers(name)) as http:
            for doc in pool.groups_of:
                opened = http.get(f"/files/{doc}")
                assert opened.status_code == (200 if doc in allowed else 403), (doc, groups, opened.text)
                if doc in denied:
                    assert pool.marker_of[doc] not in opened.text

        # The audit export of this user's records, both formats: no denied chunk, no denied text.
        records = pool.audit.search(user=name, limit=None)
        assert {r.event for r in records} <= {"sign_in", "answer", "file_opened", "access_denied"}
        jsonl, table = io.StringIO(), io.StringIO()
        pool.audit.export(records, "jsonl", jsonl)
        pool.audit.export(records, "csv", table)
        for line in jsonl.getvalue().splitlines():
            record = json.loads(line)
            data = record["data"]
            referenced = {
                item["doc_id"] for key in ("retrieved", "citations") for item in data.get(key) or []
            }
            assert referenced <= allowed, (record["event"], groups, question)
            if record["event"] == "access_denied":
                assert data["doc_id"] in denied  # the refusal names the document, never its text
            data.pop("query", None)  # the question, as typed: it is the user's, not a document's
            shown = json.dumps(data)
            assert not any(pool.marker_of[doc] in shown for doc in denied)
        for row in csv.DictReader(io.StringIO(table.getvalue())):
            cells = row["answer"] + row["cited sources"]
            assert not any(pool.marker_of[doc] in cells for doc in denied)

    holds()
    # Not vacuous: documents were held back, and each way of searching found something.
    assert seen["some denied"] and seen["cited"]
    assert all(seen[f"{mode} hits"] for mode in ("dense", "lexical", "hybrid")), seen
