"""`enclave demo`: the bundled corpus of a fictional port authority, and users to try it with."""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime
from pathlib import Path

from core.errors import ConfigError
from core.settings import Settings
from enclave import wiring

log = logging.getLogger(__name__)

DEMO_CORPUS = Path(__file__).parent / "demo_corpus"
# Written into an empty data folder before the demo puts anything there: the demo runs again only
# in a folder that holds it (and nothing but demo data).
DEMO_MARKER = "enclave-demo.json"

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


def claim_demo_folder(settings: Settings) -> None:
    """Refuse a data folder that could hold anything but demo data, or mark an empty one as the
    demo's. The demo adds users with published passwords (an admin among them) and sample
    documents: in a folder in real use they would be a way in and data that is not true."""
    folder = settings.data_dir
    elsewhere = _stores_outside(settings)
    if elsewhere:
        raise ConfigError(
            f"`enclave demo` keeps all its data in its data folder {folder}, but "
            + "; ".join(elsewhere)
            + ": run it without these settings (no --config, no ENCLAVE_* variables for them)"
        )
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"the data folder {folder} is not a folder: give the demo another with --data-dir")
    if not folder.exists() or not any(folder.iterdir()):
        folder.mkdir(parents=True, exist_ok=True)
        _mark(folder, "enclave demo")
        return
    advice = f"give the demo an empty folder of its own, e.g. `enclave --data-dir {folder}-demo demo`"
    if not (folder / DEMO_MARKER).is_file():
        if _made_by_an_earlier_demo(settings):
            _mark(folder, "enclave demo, found unmarked: an earlier version's")
            return
        raise ConfigError(
            f"the data folder {folder} is not empty and was not made by `enclave demo` (no {DEMO_MARKER}): "
            f"the demo would add users with published passwords and sample documents to it; {advice}"
        )
    foreign = _foreign_data(settings)
    if foreign:
        raise ConfigError(
            f"the data folder {folder} was made by `enclave demo` but now holds other data ({'; '.join(foreign)}): "
            f"the demo would add its users with published passwords back beside it; {advice}"
        )


def _mark(folder: Path, made_by: str) -> None:
    made = {"made_by": made_by, "created_at": datetime.now(UTC).isoformat(timespec="seconds")}
    partial = folder / f".{DEMO_MARKER}.partial"
    partial.write_text(json.dumps(made) + "\n", encoding="utf-8")
    os.replace(partial, folder / DEMO_MARKER)


def _made_by_an_earlier_demo(settings: Settings) -> bool:
    """A folder an Enclave before the marker made with `enclave demo`: every demo user as the demo
    makes them and no other, and only demo documents. A folder set up for real use has none of
    those users, so it is never taken for one."""
    if not settings.users_path.exists():
        return False
    users = {u.name: (u.role, u.groups) for u in wiring.build_users(settings).list()}
    return users == {name: (role, groups) for name, _, role, groups in DEMO_USERS} and not _foreign_data(
        settings
    )


def _stores_outside(settings: Settings) -> list[str]:
    """Settings that would put the demo's data somewhere other than its data folder."""
    out = []
    if settings.store.mode != "embedded":
        out.append(f"store.mode is {settings.store.mode} (a shared Chroma server)")
    if settings.audit.backend != "sqlite":
        out.append(f"audit.backend is {settings.audit.backend} (a shared audit log)")
    paths = {
        "store.path": settings.chroma_path,
        "store.lexical_path": settings.lexical_path,
        "ingest.manifest_path": settings.manifest_path,
        "audit.path": settings.audit_path,
        "ui.session_secret_path": settings.session_secret_path,
        "ui.auth_store_path": settings.auth_store_path,
    }
    folder = settings.data_dir.absolute()
    for key, path in paths.items():
        if not path.absolute().is_relative_to(folder):
            out.append(f"{key} is {path}, outside it")
    return out


def _foreign_data(settings: Settings) -> list[str]:
    """What a demo-made data folder holds that the demo did not put there: users other than the
    demo's (or changed), documents from outside the demo corpus. Audit records come from these
    users' use of it only (the app and `enclave ask` answer known users only)."""
    found = []
    demo_users = {name: (role, groups) for name, _, role, groups in DEMO_USERS}
    if settings.users_path.exists():
        others = [
            u.name
            for u in wiring.build_users(settings).list()
            if demo_users.get(u.name) != (u.role, u.groups)
        ]
        if others:
            found.append("users not as the demo made them: " + ", ".join(others))
    if settings.manifest_path.exists():
        from ingest.manifest import Manifest

        manifest = Manifest(settings.manifest_path)
        try:
            corpus = DEMO_CORPUS.resolve()
            outside = [f.path for f in manifest.files() if not _in_corpus(f.path, corpus)]
        finally:
            manifest.close()
        if outside:
            shown = ", ".join(outside[:3]) + (f" and {len(outside) - 3} more" if len(outside) > 3 else "")
            found.append(f"documents not from the demo corpus: {shown}")
    return found


def _in_corpus(path: str, corpus: Path) -> bool:
    mail = path.partition("#")[0]  # a mail attachment is `<mail>#<attachment>`
    return Path(mail).resolve().is_relative_to(corpus)


def prepare_demo(settings: Settings) -> list[tuple[str, str, str, tuple[str, ...]]]:
    """Ingest the demo corpus (incrementally) and create missing demo users; return the logins."""
    embedder = wiring.build_embedder(settings)
    store = wiring.build_store(settings)
    pipeline = wiring.build_pipeline(settings, embedder=embedder, store=store)
    from enclave.store_commands import Caller, audit_ingest, audit_user_changed
    from ingest.pipeline import IngestReport
    from ingest.reports import files_under, save_last_report

    audit = wiring.build_audit(settings)
    audit.check_writable()  # every ingest is audited, the demo's too
    whole = IngestReport()
    for folder, groups in demo_folders():
        before = files_under(pipeline.manifest, [folder])
        report = pipeline.run([folder], groups)
        audit_ingest(audit, Caller.local(), report, before, pipeline.manifest, [folder], groups=groups)
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
            audit_user_changed(audit, Caller.local(), None, users.add(name, password, role, groups))
    return DEMO_USERS
