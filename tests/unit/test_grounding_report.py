"""The grounding block of docs/benchmarks.md (bench/report.py): before → after per set, split and
mode, the chunk shape, and the run each came from; bench/grounding.py starts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from bench import report

ROOT = Path(__file__).resolve().parents[2]


def _result(commit: str, evidence: float, lt15: float, uncommitted: list[str]) -> dict[str, Any]:
    summary = {
        "split": "heldout",
        "mode": "extractive",
        "answerable": 20,
        "evidence_in_context": evidence,
        "answer_contains": 0.4,
        "refused_wrongly": 0.0,
        "empty_answerable": 0.1,
        "unanswerable": 7,
        "refused_rightly": 0.0,
        "empty_unanswerable": None,
    }
    return {
        "started_utc": "2026-12-07T15:00:00+00:00",
        "command": "python bench/grounding.py",
        "machine": {"cpu_model": "Test CPU", "cores": 2},
        "loadavg": {"max_seen": 0.5, "reliable": True},
        "product": {"commit": commit, "uncommitted": uncommitted},
        "sets": [
            {
                "set": "ntsb",
                "corpus": "/x/ntsb-reports",
                "models": {"extractive": "extractive/minilm"},
                "summary": [summary],
                "chunks": {
                    "documents": 20,
                    "chunks": 1000,
                    "share_lt5_words": 0.42,
                    "share_lt15_words": lt15,
                    "median_words": 19,
                    "pdf": {"chunks_per_page": 12.5, "chunks": 1000, "pages": 80},
                },
            }
        ],
    }


def test_the_grounding_block_sets_before_beside_after(tmp_path: Path) -> None:
    before = _result("435704dd64bd", 0.7, 0.48, [])
    after = _result("aaaabbbbcccc", 0.95, 0.04, ["ingest/chunking.py"])
    block = report.grounding_block(after, before)
    assert "| ntsb | heldout | extractive | 20 | 70% → 95% | 40% → 40% |" in block
    assert "| ntsb-reports | 1,000 → 1,000 | 42% → 42% | 48% → 4% | 19 → 19 | 12.50 → 12.50 |" in block
    assert "commit `435704dd64bd`" in block and "uncommitted: ingest/chunking.py" in block
    assert "extractive: extractive/minilm" in block
    assert report.grounding_block(None, None).startswith("*Not run yet")
    only_before = report.grounding_block(None, before)
    assert "**After**: not run yet" in only_before and "| 20 | 70% | 40% |" in only_before

    doc = tmp_path / "benchmarks.md"
    doc.write_text("intro\n<!-- bench:grounding -->\nold\n<!-- /bench:grounding -->\nend\n")
    text = report.rewrite(doc.read_text(), {"grounding": block})
    assert "old" not in text and "70% → 95%" in text and text.endswith("end\n")


def test_bench_grounding_help() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "grounding.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "--llm-url" in done.stdout and "--split" in done.stdout
