"""The web UI's Gradio queue follows the ui.* settings instead of Gradio's defaults (one of each
event at a time, an unbounded queue, 40 threads): built app only, no server."""

from __future__ import annotations

from pathlib import Path

from audit import AuditLog
from core.settings import Settings, load_settings
from core.users import UserStore
from ui import build_app
from ui.chat import ANSWER_GROUP


def test_queue_and_answer_slots_follow_the_ui_settings(tmp_path: Path) -> None:
    settings = load_settings(None, data_dir=tmp_path)
    settings.ui.concurrent_answers = 3
    settings.ui.concurrent_events = 2
    settings.ui.queue_max_size = 17
    app = build_app(object(), UserStore(settings.users_path), settings, audit=AuditLog(settings.audit_path))

    queue = app._queue
    assert queue.max_size == 17
    assert queue.default_concurrency_limit == 2
    # Answers can hold 3 worker threads at most; 2 more stay free for the other events.
    assert app.max_threads == queue.max_thread_count == 5
    assert app.limiter is not None and app.limiter.total_tokens == 5
    fns = {fn.api_name: fn for fn in app.fns.values() if fn.api_name}
    for name in ("chat", "ask"):
        assert (fns[name].concurrency_limit, fns[name].concurrency_id) == (3, ANSWER_GROUP)
    assert fns["feedback"].concurrency_limit == "default"  # -> the queue's default, 2


def test_queue_defaults_are_documented_choices() -> None:
    ui = Settings().ui
    assert (ui.concurrent_answers, ui.concurrent_events, ui.queue_max_size) == (32, 8, 512)
    deploy = (Path(__file__).resolve().parents[2] / "docs" / "deploy.md").read_text(encoding="utf-8")
    for name in ("ui.concurrent_answers", "ui.concurrent_events", "ui.queue_max_size"):
        assert name in deploy
