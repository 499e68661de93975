"""`enclave demo`: the bundled corpus of a fictional port authority, and users to try it with."""

from __future__ import annotations

import logging
from pathlib import Path

from core.settings import Settings
from enclave import wiring

log = logging.getLogger(__name__)

DEMO_CORPUS = Path(__file__).parent / "demo_corpus"

# (name, password, role, groups). Demo credentials are printed on purpose: this is sample data.
DEMO_USERS: list[tuple[str, str, str, tuple[str, ...]]] = [
    ("alice", "alice-demo-2026", "staff", ("public",)),
    ("fiona", "fiona-demo-2026", "staff", ("finance", "public")),
    ("henry", "henry-demo-2026", "staff", ("hr", "public")),
    ("audrey", "audrey-demo-2026", "auditor", ("public",)),
    ("adam", "adam-demo-2026", "admin", ("finance", "hr", "public")),
]


def demo_folders() -> list[tuple[Path, tuple[str, ...]]]:
    """Each top-level folder of the demo corpus is readable by the group of its name."""
    return [
        (p, (p.name,)) for p in sorted(DEMO_CORPUS.iterdir()) if p.is_dir() and not p.name.startswith("_")
    ]


def prepare_demo(settings: Settings) -> list[tuple[str, str, str, tuple[str, ...]]]:
    """Ingest the demo corpus (incrementally) and create missing demo users; return the logins."""
    embedder = wiring.build_embedder(settings)
    store = wiring.build_store(settings)
    pipeline = wiring.build_pipeline(settings, embedder=embedder, store=store)
    from ingest.pipeline import IngestReport
    from ingest.reports import save_last_report

    whole = IngestReport()
    for folder, groups in demo_folders():
        report = pipeline.run([folder], groups)
        whole.files += report.files
        whole.seconds += report.seconds
        print(f"{folder.name:8} ({', '.join(groups)}): {report.summary()}")
        for f in report.files:
            if f.status == "failed":
                print(f"  failed: {f.error}")
    save_last_report(settings.data_dir, whole.as_dict(), [DEMO_CORPUS])  # for the admin page
    users = wiring.build_users(settings)
    for name, password, role, groups in DEMO_USERS:
        if users.get(name) is None:
            users.add(name, password, role, groups)
    return DEMO_USERS
