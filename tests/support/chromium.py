"""How the tests start headless Chromium so that it stays off the network.

Debian's Chromium with Playwright's defaults plus switches for what Chromium 156 was still seen
reaching for from a loopback-only namespace (tests/e2e/test_egress.py, each in its net log):
- content-autofill.googleapis.com, asked about every page with a form (the sign-in page, the chat
  box): feature AutofillServerCommunication. A second --disable-features replaces Playwright's own
  list, so its features that keep Chromium from the network are named again.
- update.googleapis.com, for its on-device AI models' manifest (component
  ceofaddefefcbblgcgnibnonglccbfja), on demand, which --disable-component-update does not stop: its
  testing switch --optimization-guide-manifest-override, given an empty override file, makes it
  read the manifest from that file instead.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",  # tests run as root in CI, where Chromium's sandbox cannot start
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-gpu",
    "--disable-quic",
    "--no-proxy-server",
    "--disable-features=AutofillServerCommunication,OptimizationHints,NetworkTimeServiceQuerying,"
    "AimEnabled,PreconnectToSearch,MediaRouter,HttpsUpgrades,LensOverlay",
]


def chromium_args(work: Path) -> list[str]:
    """CHROMIUM_ARGS plus the empty model-manifest override, written into `work`."""
    no_manifest = work / "no-model-manifest.json"
    no_manifest.write_text("{}")
    return [*CHROMIUM_ARGS, f"--optimization-guide-manifest-override={no_manifest}"]


def missing() -> str | None:
    """Why headless Chromium cannot run here, or None."""
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)"
    if importlib.util.find_spec("playwright") is None:
        return "playwright is not installed: run make (requirements.lock pins it)"
    return None


@contextlib.contextmanager
def launched(work: Path) -> Iterator[Any]:
    """Headless Chromium (Playwright's Browser), off the network, its switches' files in `work`.
    Skips the calling test without it; fails it instead where CI sets REQUIRE_BROWSER=1. Each
    launch has a fresh, empty user-data folder."""
    import pytest

    why = missing()
    if why is not None:
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail(why)
        pytest.skip(why)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=chromium_args(work)
        )
        try:
            yield browser
        finally:
            browser.close()
