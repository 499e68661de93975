"""ui.files: a document's original is served only while its bytes are the ones ingest hashed, and
is copied in blocks (a large file spills to an anonymous temporary file, never all in memory)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from ui.files import BLOCK_BYTES, SPOOL_MEMORY_BYTES, copy_matching, stream_blocks


def test_a_large_file_is_copied_in_blocks_to_disk_and_served_whole(tmp_path: Path) -> None:
    data = bytes(range(256)) * ((3 * SPOOL_MEMORY_BYTES) // 256 + 7)
    path = tmp_path / "large.pdf"
    path.write_bytes(data)
    copy = copy_matching((str(path),), hashlib.sha256(data).hexdigest())
    assert copy is not None and copy.size == len(data) and copy.name == str(path)
    assert copy.body._rolled  # type: ignore[attr-defined]  # spilled to a temporary file
    blocks = list(stream_blocks(copy.body))
    assert b"".join(blocks) == data and max(len(b) for b in blocks) <= BLOCK_BYTES
    assert copy.body.closed


def test_only_bytes_that_still_hash_to_the_document_are_served(tmp_path: Path) -> None:
    original = b"Staff get 25 days of leave."
    changed, gone, kept = tmp_path / "changed.md", tmp_path / "gone.md", tmp_path / "kept.md"
    changed.write_bytes(b"Staff get 30 days of leave.")
    kept.write_bytes(original)
    digest = hashlib.sha256(original).hexdigest()
    copy = copy_matching((str(gone), str(changed), str(kept)), digest)
    assert copy is not None and copy.name == str(kept) and copy.body.read() == original
    assert copy_matching((str(gone), str(changed)), digest) is None
    assert copy_matching((str(kept),), None) is None  # no recorded hash: nothing is vouched for
