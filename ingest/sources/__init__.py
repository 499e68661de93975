"""Sources: where documents live (folders, SMB shares, WebDAV, IMAP mailboxes), mirrored into a
local folder by their own change markers for the ingest to take (docs/sources.md).

The SMB, WebDAV and IMAP connectors are imported from their modules (ingest.sources.smb, .webdav,
.imap) when a source of that kind is configured, so their client libraries load only then.
"""

from ingest.sources.base import (
    Connector,
    Credentials,
    Entry,
    Selection,
    SourceError,
    SourceShrank,
    SourceUnavailable,
    path_problem,
    read_credentials,
    shown_location,
)
from ingest.sources.local import LocalConnector
from ingest.sources.mirror import (
    MirrorResult,
    mirror_groups,
    mirror_location,
    mirror_mtime_ns,
    sync_mirror,
    write_atomically,
)
from ingest.sources.permissions import EVERYONE, GroupMap, posix_readers

__all__ = [
    "EVERYONE",
    "Connector",
    "Credentials",
    "Entry",
    "GroupMap",
    "LocalConnector",
    "MirrorResult",
    "Selection",
    "SourceError",
    "SourceShrank",
    "SourceUnavailable",
    "mirror_groups",
    "mirror_location",
    "mirror_mtime_ns",
    "path_problem",
    "posix_readers",
    "read_credentials",
    "shown_location",
    "sync_mirror",
    "write_atomically",
]
