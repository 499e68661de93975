"""Enclave's staff web UI (Gradio): sign-in, chat with streamed answers and their sources.

Gradio types stay inside this package: callers pass core objects and an assistant, and get a
URL back from `serve`.
"""

from ui.app import build_app, serve

__all__ = ["build_app", "serve"]
