"""A local or mounted folder as a source (an NFS or CIFS mount, a synced folder).

Markers are "<mtime_ns>:<size>"; the identity is the inode with the marker, so a file renamed or
moved within the folder is recognised. With `permissions`, each entry's readers are its owner
group, ACL groups and "other" that grant read (ingest.sources.permissions). Symlinked files are followed, symlinked folders and
hidden folders are not entered (as the ingest's own walk). A folder that cannot be listed fails
the whole listing: its files must not look deleted. An unmounted share usually leaves an empty
mount point, which the mirror's ratio check takes for an outage. With `hard_links` (upload
sources only) the mirror links each file rather than copying it: one copy on disk.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from pathlib import Path
from typing import BinaryIO

from core.errors import IngestError, SourceUnavailable
from ingest.sources.base import Entry
from ingest.sources.permissions import posix_readers

# Errors about one file while the folder itself answers; any other error is the source's.
_ENTRY_ERRNOS = {errno.ENOENT, errno.EACCES, errno.EPERM, errno.EISDIR, errno.ELOOP, errno.ENAMETOOLONG}


class LocalConnector:
    kind = "folder"

    def __init__(self, root: Path, *, permissions: bool = False, hard_links: bool = False) -> None:
        self.root = Path(root).absolute()
        self.permissions = permissions
        # Only for a folder whose files are replaced by a rename, never changed in place (an
        # upload source, enclave/uploads.py): the mirror may then link a file instead of copying
        # it, and the link keeps the bytes it was made with, as a copy would.
        self.hard_links = hard_links
        self.location = str(self.root)

    def linkable(self, entry: Entry) -> Path | None:
        """The file the mirror may hard-link for `entry` instead of copying it, or None."""
        return self.root / entry.path if self.hard_links else None

    def list(self) -> list[Entry]:
        if not self.root.is_dir():
            raise SourceUnavailable(f"{self.location}: no such folder (is the share mounted?)")

        def fail(exc: OSError) -> None:
            raise SourceUnavailable(
                f"{self.location}: the folder {exc.filename} cannot be listed: {exc.strerror or exc}; "
                "nothing was removed (exclude it, or let the service account read it)"
            ) from exc

        entries: list[Entry] = []
        for dirpath, dirnames, filenames in os.walk(self.root, onerror=fail, followlinks=False):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                path = Path(dirpath) / name
                try:
                    st = path.stat()
                except FileNotFoundError:
                    continue  # a broken symlink, or deleted since the folder was read
                except OSError as exc:
                    fail(exc)
                if not stat.S_ISREG(st.st_mode):
                    continue
                readers = None
                if self.permissions:
                    try:
                        readers = posix_readers(path, st)
                    except OSError as exc:
                        fail(exc)
                marker = f"{st.st_mtime_ns}:{st.st_size}"
                entries.append(
                    Entry(
                        path=path.relative_to(self.root).as_posix(),
                        size=st.st_size,
                        marker=marker,
                        identity=f"{st.st_ino}@{marker}",
                        modified_ns=st.st_mtime_ns,
                        readers=readers,
                    )
                )
        return entries

    def fetch(self, entry: Entry, dest: BinaryIO) -> None:
        try:
            with (self.root / entry.path).open("rb") as fh:
                shutil.copyfileobj(fh, dest, 1 << 20)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            if exc.errno in _ENTRY_ERRNOS and self.root.is_dir():
                raise IngestError(f"{self.location}: {entry.path}: cannot be read: {reason}") from exc
            raise SourceUnavailable(f"{self.location}: reading {entry.path} failed: {reason}") from exc

    def close(self) -> None:
        pass
