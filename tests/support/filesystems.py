"""Small real filesystems for the fault tests: a tmpfs of a given size mounted on a test's folder,
which fills up (ENOSPC) or is remounted read-only (EROFS) like a real disk, not a mock of one.

Mounting needs root (CAP_SYS_ADMIN): elsewhere the tests that need it skip, saying why, or fail
with REQUIRE_MOUNT=1.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

REQUIRE_ENV = "REQUIRE_MOUNT"


class Tmpfs:
    def __init__(self, path: Path) -> None:
        self.path = path

    def remount(self, *options: str) -> None:
        """Change the mount in place (`size=...`, `ro`, `rw`); open files stay open."""
        _mount("-o", ",".join(("remount", *options)), str(self.path))

    def free_bytes(self) -> int:
        st = os.statvfs(self.path)
        return st.f_bavail * st.f_frsize

    def fill(self, leave_bytes: int) -> Path:
        """Take all the free space but `leave_bytes` with one file; delete it to give it back."""
        filler = self.path / "filler"
        with filler.open("wb") as fh:
            fh.truncate(0)
            remaining = self.free_bytes() - leave_bytes
            block = b"\0" * (1 << 20)
            while remaining > 0:  # written, not sparse: tmpfs counts only pages that hold data
                remaining -= fh.write(block[: min(len(block), remaining)])
        return filler


def _mount(*args: str) -> None:
    result = subprocess.run(["mount", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise OSError(f"mount {' '.join(args)} failed: {result.stderr.strip()}")


@contextmanager
def tmpfs(path: Path, size_kib: int) -> Iterator[Tmpfs]:
    """A tmpfs of `size_kib` KiB on `path` (made if missing) until the block ends. Unmounted
    lazily: an embedded Chroma in this process may still hold files open on it."""
    path.mkdir(parents=True, exist_ok=True)
    try:
        _mount("-t", "tmpfs", "-o", f"size={size_kib}k,mode=0755", "tmpfs", str(path))
    except OSError as exc:
        reason = f"a tmpfs cannot be mounted here (needs root with CAP_SYS_ADMIN): {exc}"
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{REQUIRE_ENV}=1 but {reason}")
        pytest.skip(reason)
    try:
        yield Tmpfs(path)
    finally:
        subprocess.run(["umount", "--lazy", str(path)], capture_output=True, check=False)
