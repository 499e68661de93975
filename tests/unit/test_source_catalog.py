"""The sources catalogue and each source's state (enclave/sources.py), without syncing: the
settings' sources and the sources file merged (a name in both refused, naming both), added and
replaced without losing a concurrent change, when each runs next, and the state a page shows
(never synced, running, interrupted, failed) from the files and locks alone."""

from __future__ import annotations

import fcntl
import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from core.errors import ConfigError
from core.settings import Settings
from core.sources import SourceSettings
from enclave.sources import (
    SourcePaths,
    add_source,
    drop_source_entry,
    get_source,
    load_sources,
    next_run,
    source_state,
    source_states,
)


def folder(path: str = "/srv/docs", **extra: object) -> SourceSettings:
    return SourceSettings.model_validate({"kind": "folder", "location": path, "groups": ["staff"], **extra})


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "var", sources={"handbook": folder("/srv/handbook")})


def test_settings_and_file_sources_merge_and_a_name_in_both_is_refused(settings: Settings) -> None:
    add_source(settings, "shares", folder("/srv/shares"))
    sources = load_sources(settings)
    assert list(sources) == ["handbook", "shares"]
    assert not sources["handbook"].added_by_command and sources["shares"].origin == str(settings.sources_file)
    with pytest.raises(ConfigError, match="defined in the settings"):
        add_source(settings, "handbook", folder())
    settings.sources = {**settings.sources, "shares": folder("/srv/other")}
    with pytest.raises(
        ConfigError, match=r"'shares' is defined twice: in the settings .* and in .*sources\.yaml"
    ):
        load_sources(settings)


def test_adding_twice_needs_replace_and_concurrent_adds_are_all_kept(settings: Settings) -> None:
    add_source(settings, "a", folder())
    with pytest.raises(ConfigError, match="--replace"):
        add_source(settings, "a", folder("/srv/b"))
    add_source(settings, "a", folder("/srv/b", schedule="1h"), replace=True)
    assert get_source(settings, "a").settings.schedule == "1h"
    threads = [
        threading.Thread(target=add_source, args=(settings, f"s{i}", folder(f"/srv/{i}"))) for i in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(load_sources(settings)) == {"handbook", "a", *(f"s{i}" for i in range(8))}
    assert drop_source_entry(settings, "a") and not drop_source_entry(settings, "a")
    with pytest.raises(ConfigError, match="no source named 'a'"):
        get_source(settings, "a")


def test_a_broken_sources_file_is_named(settings: Settings) -> None:
    settings.sources_file.parent.mkdir(parents=True)
    settings.sources_file.write_text("docs:\n  kind: folder\n  location: docs\n  groups: [a]\n")
    with pytest.raises(ConfigError, match=r"sources\.yaml: source 'docs': .*absolute path"):
        load_sources(settings)
    settings.sources_file.write_text("- a list\n")
    with pytest.raises(ConfigError, match="must map source names"):
        load_sources(settings)


def test_next_run_from_the_last_start_or_at_once_or_at_the_first_cron_time() -> None:
    anchor = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
    started = {"last": {"started_at": "2026-12-07T09:30:00+00:00"}}
    assert next_run(folder(), {}, anchor) is None  # no schedule: only when asked
    assert next_run(folder(schedule="15m"), {}, anchor) == anchor  # never synced: at once
    assert next_run(folder(schedule="15m"), started, anchor) == datetime(2026, 12, 7, 9, 45, tzinfo=UTC)
    cron = next_run(folder(schedule="0 2 * * *"), {}, anchor)
    assert cron is not None and cron > anchor and cron - anchor <= timedelta(days=1)
    # A sync cut short counts as run: the next comes from its start.
    running = {"running": {"started_at": "2026-12-07T09:50:00+00:00"}, **started}
    assert next_run(folder(schedule="15m"), running, anchor) == datetime(2026, 12, 7, 10, 5, tzinfo=UTC)


def write_status(settings: Settings, name: str, data: dict[str, object]) -> SourcePaths:
    paths = SourcePaths.of(settings, name)
    paths.root.mkdir(parents=True, exist_ok=True)
    paths.status.write_text(json.dumps({"format": 1, **data}))
    return paths


def test_a_page_sees_running_interrupted_failed_and_forgotten_sources(settings: Settings) -> None:
    source = get_source(settings, "handbook")
    assert source_state(settings, source, "handbook")["state"] == "never synced"
    running = {"started_at": "2026-12-07T09:50:00+00:00", "host": "app-1", "pid": 4242}
    paths = write_status(settings, "handbook", {"running": running})
    with paths.lock.open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert source_state(settings, source, "handbook")["state"] == "running"
    interrupted = source_state(settings, source, "handbook")
    assert (
        interrupted["state"] == "interrupted" and "app-1 (pid 4242) did not finish" in interrupted["reason"]
    )

    write_status(
        settings, "handbook", {"last": {"result": "failed", "reason": "smb://x: refused", "documents": 7}}
    )
    failed = source_state(settings, source, "handbook")
    assert (failed["state"], failed["reason"], failed["documents"]) == ("failed", "smb://x: refused", 7)

    write_status(settings, "gone", {"last": {"result": "ok", "documents": 3}})
    states = {s["name"]: s for s in source_states(settings)}
    assert states["gone"]["configured"] is False and states["gone"]["documents"] == 3
