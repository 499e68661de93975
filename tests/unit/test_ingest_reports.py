"""The last ingest report kept in the data folder (ingest/reports.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.errors import IngestError
from ingest.reports import last_report_path, load_last_report, save_last_report


def test_saved_report_is_the_latest_with_its_time_and_paths(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    assert load_last_report(data_dir) is None  # no ingest yet
    first = {"counts": {"new": 2, "failed": 1}, "files": [{"path": "/a", "status": "new"}]}
    path = save_last_report(data_dir, first, [tmp_path / "docs"])
    assert path == data_dir / "reports" / "last-ingest.json"
    save_last_report(data_dir, {"counts": {"unchanged": 3}, "files": []}, ["x"])
    got = load_last_report(data_dir)
    assert got is not None and got["counts"] == {"unchanged": 3}  # replaced, not appended
    assert got["paths"] == [str(Path("x").resolve())]
    assert got["finished_at"].endswith("+00:00")
    assert [p.name for p in path.parent.iterdir()] == ["last-ingest.json"]  # no temp file left


def test_an_unreadable_report_is_an_error_naming_the_file(tmp_path: Path) -> None:
    path = last_report_path(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text("{half a rep", encoding="utf-8")
    with pytest.raises(IngestError, match=r"last-ingest\.json is not valid JSON"):
        load_last_report(tmp_path)
    path.write_text(json.dumps([1, 2]), encoding="utf-8")
    with pytest.raises(IngestError, match="does not hold a report"):
        load_last_report(tmp_path)


def test_a_data_folder_that_cannot_hold_it_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(IngestError, match=r"could not be kept in .*check that the data folder is writable"):
        save_last_report(tmp_path / "file", {"counts": {}})
