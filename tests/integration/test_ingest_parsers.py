"""Parser processes on the real parts: a parse over `ingest.parse_timeout_s` is stopped (its
process killed) and fails with a reason naming the file and the limit; a parser process that
dies fails only the file it was parsing; the rest of the run goes on. A mail attachment that
does either fails alone: the mail is parsed again without it and ingested.

The slow and crashing parses are real: tests/support/parse_hooks.py sleeps, or kills its own
process, in the worker process, on files so named.
"""

from __future__ import annotations

import email.message
import multiprocessing
from pathlib import Path
from typing import Any

import pytest

from core.settings import Settings
from enclave import wiring
from ingest.chunking import Chunker
from ingest.manifest import Manifest
from ingest.pipeline import IngestPipeline
from tests.integration.test_ingest_sync import assert_consistent
from tests.support.parse_hooks import slow_or_crashing_parse

pytestmark = pytest.mark.slow

LIMIT_S = 10  # the first parse in a process has its imports done before the clock starts


def make_mail(path: Path, attachments: dict[str, bytes]) -> Path:
    msg = email.message.EmailMessage()
    msg["From"] = "Facilities <facilities@example.org>"
    msg["To"] = "Staff <staff@example.org>"
    msg["Subject"] = "Canteen hours"
    msg.set_content("The canteen opens at half past eleven from Monday.\n")
    for name, data in attachments.items():
        msg.add_attachment(data, maintype="text", subtype="plain", filename=name)
    path.write_bytes(bytes(msg))
    return path


def pipeline(settings: Settings, embedder: Any, workers: int) -> IngestPipeline:
    return IngestPipeline(
        store=wiring.build_store(settings),
        embedder=embedder,
        manifest=Manifest(settings.manifest_path),
        chunker=Chunker(),
        max_file_bytes=10 << 20,
        workers=workers,
        parse=slow_or_crashing_parse,
        parse_timeout_s=LIMIT_S,
    )


def test_a_parse_over_the_limit_or_a_crash_fails_its_file_and_the_rest_go_on(
    settings: Settings, embedder: Any, tmp_path: Path
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    for name in ("a.md", "slow.md", "crash.md", "b.md"):
        (docs / name).write_text(
            f"# {name}\n\nThe file {name} says the meeting room is on floor {len(name)}.\n"
        )
    mail = make_mail(
        docs / "mail.eml",
        {
            "menu.txt": b"Soup of the day is served until two.\n",
            "slow.txt": b"This attachment never finishes parsing.\n",
            "crash.txt": b"This attachment kills its parser.\n",
        },
    )

    report = pipeline(settings, embedder, workers=2).run([docs], ["staff"])

    outcome = {Path(f.path).name: (f.status, f.error) for f in report.files}
    assert outcome["a.md"] == ("new", None) and outcome["b.md"] == ("new", None)
    limit = f"parsing took longer than the limit of {LIMIT_S} s (ingest.parse_timeout_s)"
    assert outcome["slow.md"] == ("failed", f"{docs / 'slow.md'}: {limit}; its parser process was stopped")
    assert outcome["crash.md"] == ("failed", f"{docs / 'crash.md'}: the parser crashed on this file")
    # The mail is ingested; its two bad attachments fail alone, named after the mail.
    assert outcome["mail.eml"] == ("new", None)
    assert outcome["mail.eml#menu.txt"] == ("new", None)
    assert outcome["mail.eml#slow.txt"] == (
        "failed",
        f"{mail}#slow.txt: {limit}; its parser process was stopped and the mail parsed again",
    )
    assert outcome["mail.eml#crash.txt"] == (
        "failed",
        f"{mail}#crash.txt: the parser crashed on this attachment; the mail was parsed again",
    )
    assert multiprocessing.active_children() == []  # no parser process outlives the run
    manifest = Manifest(settings.manifest_path)
    assert manifest.file(str(docs / "slow.md")).status == "failed"
    assert_consistent(settings)


def test_a_one_file_run_parses_in_a_worker_when_a_limit_is_set(
    settings: Settings, embedder: Any, tmp_path: Path
) -> None:
    # Under _MIN_FILES_FOR_WORKERS files and with one worker, a run would parse in the ingest
    # process, where a parse cannot be stopped: with a limit it starts one parser process.
    slow = tmp_path / "slow.md"
    slow.write_text("# Slow\n\nNever parsed.\n")
    report = pipeline(settings, embedder, workers=1).run([slow], ["staff"])
    assert [(f.status, f.error) for f in report.files] == [
        (
            "failed",
            f"{slow}: parsing took longer than the limit of {LIMIT_S} s (ingest.parse_timeout_s); "
            "its parser process was stopped",
        )
    ]
    assert multiprocessing.active_children() == []
