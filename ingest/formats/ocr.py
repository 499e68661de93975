"""OCR with the tesseract command (Debian: tesseract-ocr), on images and on rendered PDF pages.

unstructured's own OCR paths (hi_res, ocr_only) need layout models from the network; this needs
only the tesseract binary and its English data, and pypdfium2 to render PDF pages. tesseract
runs one thread per call (OMP_THREAD_LIMIT=1): ingests run files in parallel already, and
OpenMP's threads make tesseract slower, not faster, on a busy machine.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

LANGUAGE = "eng"
INSTALL_HINT = "install tesseract-ocr: apt-get install --no-install-recommends tesseract-ocr"
DPI = 300
MAX_PIXELS = 40_000_000  # a page rendered larger than this is scaled down before OCR
# Refused outright: Pillow's own bomb limit is raised to 1e9 pixels by unstructured's PDF module.
MAX_IMAGE_PIXELS = 200_000_000
PAGE_TIMEOUT_S = 300


class OCRError(RuntimeError):
    """tesseract failed or timed out on one page; the message says how."""


@functools.lru_cache(maxsize=1)
def missing() -> str | None:
    """None when tesseract and its English data are installed; else why OCR cannot run."""
    binary = shutil.which("tesseract")
    if binary is None:
        return f"needs OCR ({INSTALL_HINT})"
    try:
        result = subprocess.run(
            [binary, "--list-langs"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"needs OCR (tesseract did not run: {exc}; {INSTALL_HINT})"
    if LANGUAGE not in result.stdout.split():
        return f"needs OCR (tesseract has no '{LANGUAGE}' data: apt-get install tesseract-ocr-{LANGUAGE})"
    return None


def image_text(image: Any) -> str:
    """The text tesseract reads in a PIL image, paragraphs separated by blank lines."""
    if is_blank(image):
        return ""
    with tempfile.TemporaryDirectory(prefix="enclave-ocr-") as folder:
        source = Path(folder) / "page.png"
        image.save(source)
        env = {**os.environ, "OMP_THREAD_LIMIT": "1"}
        try:
            result = subprocess.run(
                ["tesseract", str(source), "stdout", "-l", LANGUAGE],
                capture_output=True,
                env=env,
                timeout=PAGE_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise OCRError(f"tesseract took more than {PAGE_TIMEOUT_S} s") from exc
        except OSError as exc:
            raise OCRError(f"tesseract did not run: {exc}") from exc
    if result.returncode != 0:
        detail = " ".join(result.stderr.decode("utf-8", "replace").split())[-300:]
        raise OCRError(f"tesseract failed: {detail or f'exit status {result.returncode}'}")
    return _paragraphs(result.stdout.decode("utf-8", "replace"))


def is_blank(image: Any) -> bool:
    """Whether the image is one flat shade: an empty page costs tesseract a second for nothing."""
    gray = image.convert("L")
    low, high = gray.getextrema()
    return bool(high - low < 16)


def _paragraphs(text: str) -> str:
    paragraphs = []
    for block in re.split(r"\n\s*\n", text.replace("\f", "\n\n")):
        lines = [line.strip() for line in block.splitlines() if line.strip()]
        if not lines:
            continue
        joined = lines[0]
        for line in lines[1:]:
            # A word hyphenated at the line end is joined back; other lines join with a space.
            joined = joined[:-1] + line if joined.endswith("-") and line[:1].islower() else f"{joined} {line}"
        paragraphs.append(joined)
    return "\n\n".join(paragraphs)


def _fit(image: Any) -> Any:
    pixels = image.width * image.height
    if pixels <= MAX_PIXELS:
        return image
    ratio = (MAX_PIXELS / pixels) ** 0.5
    return image.resize((max(1, int(image.width * ratio)), max(1, int(image.height * ratio))))


def image_frames(path: Path) -> Iterator[tuple[int, int, Any]]:
    """(number, count, grayscale image) for every frame of an image file: one, or the pages of a
    multi-page TIFF, read one at a time."""
    from PIL import Image, ImageSequence

    if path.suffix.lower() in (".heic", ".heif"):
        from pi_heif import register_heif_opener

        register_heif_opener()
    with Image.open(path) as image:
        if image.width * image.height > MAX_IMAGE_PIXELS:
            raise ValueError(
                f"{image.width} x {image.height} pixels is over the limit of {MAX_IMAGE_PIXELS:,} (an image bomb?)"
            )
        count = int(getattr(image, "n_frames", 1))
        for number, frame in enumerate(ImageSequence.Iterator(image), start=1):
            yield number, count, _fit(frame.convert("L"))


def pdf_page_image(pdf: Any, page_number: int) -> Any:
    """Page `page_number` (1-based) of an open pypdfium2 PdfDocument, rendered for OCR."""
    page = pdf[page_number - 1]
    try:
        width, height = page.get_size()  # points, 1/72 inch
        scale = DPI / 72
        if width * height * scale * scale > MAX_PIXELS:
            scale = (MAX_PIXELS / (width * height)) ** 0.5
        bitmap = page.render(scale=scale, grayscale=True)
        return bitmap.to_pil()
    finally:
        page.close()
