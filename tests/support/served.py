"""What the tests of a served web UI share: files written and ingested into groups by folder,
the document id a file got, and the audit records of one event and user."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from core.settings import Settings


def write_files(root: Path, files: Mapping[str, str]) -> None:
    """Each `relative path -> text` under `root`, folders made."""
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")


def ingest_folders(
    settings: Settings, embedder: Any, root: Path, groups: Mapping[str, Sequence[str]]
) -> None:
    """Ingest each folder of `root` named in `groups` into its groups (the real pipeline)."""
    from enclave import wiring

    pipeline = wiring.build_pipeline(settings, embedder=embedder, store=wiring.build_store(settings))
    for folder, folder_groups in groups.items():
        pipeline.run([root / folder], list(folder_groups))


def doc_id_of(settings: Settings, path: Path) -> str:
    """The document id the manifest holds for the file at `path`."""
    from ingest.manifest import Manifest

    entry = Manifest(settings.manifest_path).file(str(path.resolve()))
    assert entry is not None and entry.doc_id is not None, path
    return entry.doc_id


def events_of(log: Any, event: str, user: str | None = None) -> list[Any]:
    """The audit records of `event` (by `user`), oldest first, among the last thousand."""
    return [r for r in reversed(log.last(1000)) if r.event == event and (user is None or r.user == user)]
