"""`enclave eval --grounding` on a tiny corpus made here: the real ingest, the real embedder and the
real Assistant answer, and the flags say where the answer came from; bad question files are
named with their line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from core.errors import ConfigError
from core.settings import Settings
from enclave.cli import app
from enclave.grounding import format_table, load_questions, run_grounding

pytestmark = pytest.mark.slow

LEAVE = (
    "# Annual leave\n\nStaff receive thirty (30) days of annual leave each year. Requests go to "
    "the line manager at least two weeks ahead.\n\n## Carry-over\n\nUp to five days of leave may be "
    "carried over into the next calendar year.\n"
)
CANTEEN = "# Canteen\n\nLentil soup is served on Tuesdays in the staff canteen. The canteen opens at 11:30.\n"

QUESTIONS = [
    {
        "id": "t-1",
        "split": "tune",
        "kind": "answerable",
        "question": "How many days of annual leave do staff receive each year?",
        "source": "policies/leave.md",
        "answer": ["30"],
        "evidence": "Staff receive thirty (30) days of annual leave each year.",
        "type": "number",
    },
    {
        "id": "t-2",
        "split": "heldout",
        "kind": "answerable",
        "question": "On which day is lentil soup served in the staff canteen?",
        "source": "canteen.md",
        "answer": ["Tuesdays"],
        "evidence": "Lentil soup is served on Tuesdays in the staff canteen.",
        "type": "date",
    },
    {  # a control: its expected words are in no document, so no flag may be true for them
        "id": "t-3",
        "split": "tune",
        "kind": "answerable",
        "question": "How many days of annual leave may be carried over into the next year?",
        "source": "policies/leave.md",
        "answer": ["forty-two days"],
        "evidence": "Up to forty-two days may be carried over.",
        "type": "number",
    },
    {
        "id": "t-4",
        "split": "tune",
        "kind": "unanswerable",
        "question": "Zyxwvut qlorp vexhibbit frangolium?",
        "source": "canteen.md",
        "answer": [],
        "evidence": "",
        "type": "other",
    },
]


def _write(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "tiny-corpus"
    (root / "policies").mkdir(parents=True)
    (root / "policies" / "leave.md").write_text(LEAVE, encoding="utf-8")
    (root / "canteen.md").write_text(CANTEEN, encoding="utf-8")
    return root


def test_grounding_flags_on_a_tiny_corpus(tmp_path: Path, settings: Settings, corpus: Path) -> None:
    questions = _write(tmp_path / "tiny.jsonl", QUESTIONS)
    result = run_grounding(settings, questions, corpus)
    rows = {r["id"]: r["extractive"] for r in result["rows"]}

    for qid in ("t-1", "t-2"):
        flags = rows[qid]["flags"]
        assert flags["evidence_in_context"] and flags["answer_contains"], (qid, rows[qid])
        assert flags["source_shown"] and not flags["refused"] and not flags["empty"], (qid, rows[qid])
        assert rows[qid]["evidence_match"] == "evidence"
    control = rows["t-3"]
    assert control["flags"]["answer_contains"] is False and control["flags"]["evidence_in_context"] is False
    assert control["evidence_match"] == "answers" and control["answers_missing"] == ["forty-two days"]
    assert rows["t-4"]["flags"]["refused"] is True and rows["t-4"]["mode"] == "no_answer"
    assert rows["t-1"]["sources"][0]["source"] in ("policies/leave.md", "canteen.md")

    by_split = {s["split"]: s for s in result["summary"]}
    assert by_split["heldout"]["answerable"] == 1 and by_split["heldout"]["unanswerable"] == 0
    tune = by_split["tune"]
    assert (tune["answerable"], tune["unanswerable"]) == (2, 1)
    assert tune["evidence_in_context"] == 0.5 and tune["answer_contains"] == 0.5
    assert tune["refused_rightly"] == 1.0 and tune["refused_wrongly"] == 0.0
    assert result["ingest"]["counts"] == {"new": 2}
    assert result["chunks"]["documents"] == 2
    assert "tiny" in format_table([result]) and "heldout" in format_table([result])
    assert (settings.data_dir / "eval" / "tiny-corpus" / "grounding-ingest.json").is_file()

    again = run_grounding(settings, questions, corpus, split="heldout")  # incremental, one split
    assert again["ingest"]["counts"] == {"unchanged": 2} and not again["ingest"]["reingested"]
    assert [r["id"] for r in again["rows"]] == ["t-2"]


def test_the_cli_runs_it_and_names_bad_question_files(
    tmp_path: Path, settings: Settings, corpus: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = CliRunner()
    shown = runner.invoke(app, ["eval", "--help"])
    assert shown.exit_code == 0
    assert "--grounding" in shown.output and "--corpus" in shown.output and "--mode" in shown.output

    base = ["--data-dir", str(settings.data_dir), "eval"]
    missing = _write(
        tmp_path / "missing.jsonl", [QUESTIONS[0], {k: v for k, v in QUESTIONS[1].items() if k != "evidence"}]
    )
    result = runner.invoke(app, [*base, "--grounding", str(missing), "--corpus", str(corpus)])
    assert result.exit_code == 1
    assert f"{missing}, line 2: missing field `evidence`" in result.output

    split = _write(tmp_path / "split.jsonl", [{**QUESTIONS[0], "split": "test"}])
    result = runner.invoke(app, [*base, "--grounding", str(split), "--corpus", str(corpus)])
    assert result.exit_code == 1
    assert f"{split}, line 1: unknown split 'test'" in result.output and "tune or heldout" in result.output

    with pytest.raises(ConfigError, match="line 1: unknown kind"):
        load_questions(_write(tmp_path / "kind.jsonl", [{**QUESTIONS[0], "kind": "maybe"}]))

    good = _write(tmp_path / "good.jsonl", QUESTIONS[:1])
    result = runner.invoke(app, [*base, "--grounding", str(good)])
    assert result.exit_code != 0 and "--corpus" in result.output

    monkeypatch.setenv("ENCLAVE_INGEST__PARSE_TIMEOUT_S", "0")  # parse in this process: faster
    out = tmp_path / "result.json"
    args = [*base, "--grounding", str(good), "--corpus", str(corpus), "--split", "tune", "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "evidence" not in result.output or "ev.ctx" in result.output
    assert json.loads(out.read_text())["rows"][0]["extractive"]["flags"]["evidence_in_context"] is True
