"""What a source is in settings (`sources:` in enclave.yaml, and <data_dir>/sources.yaml that
`enclave sources add` writes): its kind, location, groups, selection, schedule and credentials
file, checked when loaded. docs/sources.md describes each setting for administrators.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from core.schedule import Schedule

__all__ = ["SOURCE_KINDS", "Endpoint", "SourceSettings", "check_source_name", "guess_kind"]

SourceKind = Literal["folder", "smb", "webdav", "imap"]
SOURCE_KINDS: tuple[str, ...] = ("folder", "smb", "webdav", "imap")
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
FROM_SOURCE = "from-source"
# Settings that only some kinds take, and which.
_KIND_ONLY: dict[str, tuple[str, ...]] = {
    "encrypt": ("smb",),
    "security": ("imap",),
    "folders": ("imap",),
    "ca_file": ("webdav", "imap"),
    "credentials_file": ("smb", "webdav", "imap"),
    "timeout_s": ("smb", "webdav", "imap"),
    "sid_groups": ("smb",),
}
# Kinds whose connector lists each file's permissions (`groups: from-source`).
FROM_SOURCE_KINDS: tuple[str, ...] = ("folder", "smb")


def check_source_name(name: str) -> str:
    """`name` if it can name a source (it becomes a folder under <data_dir>/sources)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(
            f"source name {name!r}: use 1-63 lowercase letters, digits, '-' or '_', starting with a "
            "letter or digit (e.g. hr-policies)"
        )
    return name


def guess_kind(location: str) -> str:
    """The kind a location is written for: smb://, http(s):// (WebDAV), imap(s)://, or a folder."""
    scheme = location.split("://", 1)[0].lower() if "://" in location else ""
    if scheme == "smb" or location.startswith(("//", "\\\\")):
        return "smb"
    if scheme in ("http", "https"):
        return "webdav"
    if scheme in ("imap", "imaps"):
        return "imap"
    return "folder"


@dataclass(frozen=True)
class Endpoint:
    """Where a source is, taken apart: `host` (None for a folder) for the offline guard, and
    what each connector needs."""

    host: str | None
    port: int | None = None
    share: str = ""  # smb
    folder: str = ""  # smb: the folder inside the share
    path: str = ""  # folder: the local path; webdav: the URL


def _port(parts: Any, location: str) -> int | None:
    try:
        port: int | None = parts.port
    except ValueError:
        raise ValueError(f"location {location!r}: the port is not a number from 1 to 65535") from None
    return port


def endpoint(kind: str, location: str) -> Endpoint:
    """The location of a source of `kind`, taken apart; ValueError saying what is wrong."""
    if "://" in location and "@" in urlsplit(location).netloc:
        scheme = location.split("://", 1)[0]
        raise ValueError(
            f"location {scheme}://...@{urlsplit(location).hostname}/...: a user name or password does not go "
            "in the location (settings and logs show it): put them in the credentials_file"
        )
    if kind == "folder":
        if "://" in location:
            raise ValueError(f"location {location!r}: a folder source takes a local path (e.g. /srv/docs)")
        if not Path(location).is_absolute():
            raise ValueError(f"location {location!r}: give the folder's absolute path (e.g. /srv/docs)")
        return Endpoint(None, path=location)
    if kind == "smb":
        text = location.replace("\\", "/")
        if text.startswith("//"):
            text = "smb:" + text
        parts = urlsplit(text)
        names = [unquote(p) for p in parts.path.split("/") if p]
        if parts.scheme.lower() != "smb" or not parts.hostname or not names:
            raise ValueError(
                f"location {location!r}: an SMB share is smb://server/share or smb://server/share/folder "
                "(or //server/share/folder)"
            )
        return Endpoint(parts.hostname, _port(parts, location), names[0], "/".join(names[1:]))
    if kind == "webdav":
        parts = urlsplit(location)
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"location {location!r}: a WebDAV folder is its http(s) URL "
                "(Nextcloud: https://cloud/remote.php/dav/files/<user>/<folder>/)"
            )
        return Endpoint(parts.hostname, _port(parts, location), path=location)
    if kind == "imap":
        parts = urlsplit(location)
        if parts.scheme.lower() not in ("imap", "imaps") or not parts.hostname or parts.path.strip("/"):
            raise ValueError(
                f"location {location!r}: a mailbox is imaps://host (TLS, port 993) or imap://host "
                "(STARTTLS, port 143), with :port if another; name its folders with `folders`"
            )
        return Endpoint(parts.hostname, _port(parts, location))
    raise ValueError(f"kind {kind!r} is not one of {', '.join(SOURCE_KINDS)}")


class SourceSettings(BaseModel):
    """One source. Paths must be absolute: the web server syncs it from its own folder."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    kind: SourceKind = Field(
        description="folder (a local or mounted folder), smb (an SMB/CIFS share), webdav (a WebDAV "
        "folder: Nextcloud, ownCloud, Apache), imap (an IMAP mailbox)."
    )
    location: str = Field(
        description="folder: its absolute path; smb: smb://server[:port]/share[/folder]; webdav: the "
        "folder's http(s) URL; imap: imaps://host[:port] (TLS) or imap://host[:port] (STARTTLS)."
    )
    groups: list[str] = Field(
        default_factory=list,
        description="Groups that may read the source's documents (every one of them), unless the acl "
        "file gives a folder others. [from-source]: each file's own permissions at the source (folder: "
        "its owner group and ACL groups that grant read; smb: the SIDs its security descriptor lets "
        "read), mapped through group_map.",
    )
    group_map: Path | None = Field(
        None,
        description="groups from-source: a YAML file mapping the source's group names and SIDs to "
        "Enclave groups (`finance-staff: [finance]`, `S-1-5-21-...-1104: [hr]`). Unmapped POSIX "
        "groups keep their name; unmapped SIDs (and, with sid_groups, SIDs the directory does not "
        "know) give no group and are reported at each sync.",
    )
    sid_groups: Literal["map-file", "directory", "both"] | None = Field(
        None,
        description="smb, groups from-source: where a SID's Enclave groups come from. map-file (the "
        "default): group_map only. directory: the directory of auth.ldap, the group whose objectSid (AD) "
        "or sambaSID it is, mapped by auth.ldap.mapping as its members' groups are at sign-in. both: "
        "group_map first, then the directory. A directory that cannot be reached fails the sync, "
        "changing no one's access.",
    )
    everyone_group: str | None = Field(
        None,
        description="groups from-source: the Enclave group of files every user may read at the source "
        "(POSIX other, SMB Everyone or Authenticated Users). Empty: such a grant gives no group.",
    )
    acl: Path | None = Field(
        None,
        description="ACL file as `enclave ingest --acl` takes, its folders relative to the source's "
        "top: `.: [staff]`, `finance: [finance]` (the longest match wins). Instead of or beside groups.",
    )
    include: list[str] = Field(
        default_factory=list,
        description="Glob patterns of the files to take (none: all). With a '/' a pattern matches the "
        "path from the source's top (hr/**), without it a file or folder name (*.pdf). Case ignored.",
    )
    exclude: list[str] = Field(
        default_factory=list, description="Glob patterns of the files to leave out (~$*, Archive, *.tmp)."
    )
    max_file_mb: float | None = Field(
        None, gt=0, description="Larger files are skipped and reported. Empty: ingest.max_file_mb."
    )
    schedule: str | None = Field(
        None,
        description="When the web server syncs it: an interval (15m, 1h, 1h30m, 1d) from the last "
        "sync's start, or a cron expression in the server's local time ('0 2 * * *'). Empty: only "
        "`enclave sources sync NAME`.",
    )
    min_ratio: float = Field(
        0.5,
        ge=0,
        le=1,
        description="A sync that lists fewer than this share of the files of the last one is taken "
        "for an outage: it removes nothing and fails, naming both counts. 0: off (for one sync after "
        "a real mass deletion).",
    )
    credentials_file: Path | None = Field(
        None,
        description="smb, imap (required) and webdav: the file holding username=, password= (and "
        "domain=) lines, mode 0600. The secret never goes in settings.",
    )
    encrypt: bool = Field(False, description="smb: require SMB3 encryption.")
    security: Literal["ssl", "starttls", "none"] | None = Field(
        None,
        description="imap: ssl (IMAPS), starttls, or none (plain text: a trusted network only). "
        "Empty: ssl for imaps://, starttls for imap://.",
    )
    folders: list[str] = Field(
        default_factory=list, description="imap: the folders to take (INBOX, Team.Rotas). Empty: all."
    )
    ca_file: Path | None = Field(
        None, description="webdav, imap: a CA certificate file (PEM) for a server with an internal CA."
    )
    timeout_s: float | None = Field(
        None, gt=0, description="smb, webdav, imap: seconds before an unanswered request fails the sync."
    )

    @field_validator("groups", mode="before")
    @classmethod
    def _groups(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [g.strip() for g in value.split(",") if g.strip()]
        if isinstance(value, list) and FROM_SOURCE in value and len(value) > 1:
            raise ValueError(
                f"groups {value}: 'from-source' takes each file's groups from the source's permissions, "
                "so it goes alone (map other names through group_map, or use everyone_group)"
            )
        return value

    @field_validator("groups")
    @classmethod
    def _group_names(cls, value: list[str]) -> list[str]:
        for group in value:
            if not group.strip() or "," in group:
                raise ValueError(f"group {group!r} is not a group name")
        return sorted({g.strip() for g in value})

    @field_validator("everyone_group")
    @classmethod
    def _everyone_group(cls, value: str | None) -> str | None:
        if value is not None and (not value.strip() or "," in value):
            raise ValueError(f"everyone_group {value!r} is not a group name")
        return value.strip() if value else None

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str | None) -> str | None:
        if value is None or not value.strip() or value.strip().lower() == "manual":
            return None
        return Schedule.parse(value).text

    @model_validator(mode="after")
    def _consistent(self) -> SourceSettings:
        endpoint(self.kind, self.location)
        if not self.groups and self.acl is None:
            raise ValueError("give the groups that may read its documents (groups: [..]) or an acl file")
        if self.groups_from_source:
            if self.kind not in FROM_SOURCE_KINDS:
                raise ValueError(
                    f"groups from-source: a {self.kind} source gives no permissions to read; it is built "
                    f"for {' and '.join(FROM_SOURCE_KINDS)} sources (give the groups or an acl file)"
                )
            if self.acl is not None:
                raise ValueError("groups from-source and an acl file: choose one")
            if self.sid_groups == "directory" and self.group_map is not None:
                raise ValueError(
                    "sid_groups directory leaves group_map unread: use sid_groups both for the file "
                    "first, then the directory"
                )
        else:
            for name in ("group_map", "everyone_group", "sid_groups"):
                if getattr(self, name) is not None:
                    raise ValueError(f"{name} is a setting of groups: [from-source], not of fixed groups")
        for name, kinds in _KIND_ONLY.items():
            value = getattr(self, name)
            if value not in (None, False, []) and self.kind not in kinds:
                raise ValueError(
                    f"{name} is a setting of {' and '.join(kinds)} sources, not of {self.kind} ones"
                )
        if self.kind in ("smb", "imap") and self.credentials_file is None:
            raise ValueError(f"a {self.kind} source needs a credentials_file (username=, password= lines)")
        for name in ("acl", "credentials_file", "ca_file", "group_map"):
            path = getattr(self, name)
            if path is not None and not path.is_absolute():
                raise ValueError(f"{name} {str(path)!r} must be an absolute path")
        scheme = self.location.split("://", 1)[0].lower()
        if self.kind == "imap" and scheme == "imaps" and self.security not in (None, "ssl"):
            raise ValueError(f"security {self.security} does not go with imaps:// (use imap://)")
        if self.kind == "imap" and scheme == "imap" and self.security == "ssl":
            raise ValueError("security ssl goes with imaps://, not imap://")
        return self

    @property
    def groups_from_source(self) -> bool:
        """Each file's groups come from its permissions at the source."""
        return self.groups == [FROM_SOURCE]

    @property
    def sids_from_directory(self) -> bool:
        """A SID's Enclave groups may come from the directory (sid_groups directory or both)."""
        return self.sid_groups in ("directory", "both")

    @property
    def endpoint(self) -> Endpoint:
        return endpoint(self.kind, self.location)

    @property
    def parsed_schedule(self) -> Schedule | None:
        return Schedule.parse(self.schedule) if self.schedule else None

    @property
    def imap_security(self) -> Literal["ssl", "starttls", "none"]:
        if self.security is not None:
            return self.security
        return "ssl" if self.location.lower().startswith("imaps://") else "starttls"
