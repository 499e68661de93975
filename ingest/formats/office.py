"""Legacy binary Office files (.doc, .ppt) converted to DOCX/PPTX by LibreOffice, when installed.

Each conversion runs `soffice --headless` with a profile folder of its own, so conversions in
parallel processes do not wait on, or break, each other (unstructured's helper shares one).
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

INSTALL_HINT = "apt-get install --no-install-recommends libreoffice-writer-nogui libreoffice-impress-nogui"
TIMEOUT_S = 300
TARGETS = {".doc": "docx", ".ppt": "pptx"}


class ConversionError(RuntimeError):
    """soffice failed, timed out, or wrote nothing; str() says which."""


@functools.lru_cache(maxsize=1)
def soffice() -> str | None:
    return shutil.which("soffice") or shutil.which("libreoffice")


def missing() -> str | None:
    """None when LibreOffice is installed; else the reason, with the install command."""
    return None if soffice() else f"needs LibreOffice ({INSTALL_HINT})"


def convert(path: Path, target: str, out_dir: Path) -> Path:
    """Convert `path` to `target` ("docx", "pptx") in `out_dir`; return the new file."""
    binary = soffice()
    if binary is None:
        raise ConversionError(missing() or "LibreOffice is not installed")
    with tempfile.TemporaryDirectory(prefix="enclave-soffice-") as profile:
        command = [
            binary,
            f"-env:UserInstallation=file://{profile}",
            "--headless",
            "--norestore",
            "--nolockcheck",
            "--convert-to",
            target,
            "--outdir",
            str(out_dir),
            str(path),
        ]
        try:
            # A session of its own: on a timeout the whole group goes (soffice starts soffice.bin).
            process = subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
            )
        except OSError as exc:
            raise ConversionError(f"LibreOffice did not run: {exc}") from exc
        try:
            stdout, stderr = process.communicate(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired as exc:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise ConversionError(f"LibreOffice took more than {TIMEOUT_S} s to convert it") from exc
    converted = out_dir / f"{path.stem}.{target}"
    if process.returncode != 0 or not converted.is_file():
        detail = " ".join((stderr or stdout).decode("utf-8", "replace").split())[-300:]
        raise ConversionError(
            f"LibreOffice could not convert it to {target.upper()}: {detail or 'no output'}"
        )
    return converted
