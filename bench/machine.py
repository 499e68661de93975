"""What every benchmark records about the machine it ran on: CPU, cores, RAM, Python, platform,
library versions, and the load average (a figure taken under load says so)."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any


def checkout_state(root: Path, paths: Iterable[str]) -> dict[str, Any]:
    """Which code a run measured: the checkout's commit, and those of `paths` changed since it
    (others may be editing the same checkout while a benchmark runs)."""

    def git(*args: str) -> str:
        try:
            done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=30)
        except OSError:
            return ""
        return done.stdout.rstrip("\n")

    changed = [line[3:] for line in git("status", "--porcelain", "--", *paths).splitlines()]
    return {"commit": git("rev-parse", "HEAD"), "uncommitted": changed}


def loadavg() -> float:
    """The 1-minute load average."""
    return round(os.getloadavg()[0], 2)


def machine(packages: Iterable[str]) -> dict[str, Any]:
    """The CPU model, cores, RAM, Python, platform and the installed version of each package."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions: dict[str, str | None] = {}
    for name in packages:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "cpu_model": cpu,
        "cores": os.cpu_count(),
        "ram_gib": round(ram, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
    }
