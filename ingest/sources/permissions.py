"""Who may read a file at its source, and the Enclave groups that makes (`groups: from-source`,
docs/sources.md, "Permissions from the source").

A connector asked for permissions lists each entry's readers as the source names them:
`group:<name>` (a POSIX group, or its number when it has no name), `sid:<SID>` (an SMB security
identifier) and `everyone` (POSIX "other", SMB Everyone or Authenticated Users), and, where an
SMB DACL denies reading to a SID while letting others read, `deny:sid:<SID>`. A GroupMap turns
them into Enclave groups: a POSIX group becomes the Enclave group of the same name unless the
mapping file names it; a SID through the mapping file, or the directory (`sid_groups`: a
resolver the caller gives); a nameless group only through the mapping file; `everyone` only to
the source's everyone_group. Readers it cannot map are collected, for the sync to report once.
A file with a `deny:` reader gets no group: Enclave's groups only grant, so the members of the
denied SID who also hold an allowed group would read what the source keeps from them.
"""

from __future__ import annotations

import errno
import grp
import os
import struct
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from core.errors import ConfigError

__all__ = ["DENIED", "EVERYONE", "GroupMap", "SidResolver", "posix_readers", "sid_readers"]

EVERYONE = "everyone"
DENIED = "deny:"  # before a reader the source's DACL denies while it lets others read
# A SID's Enclave groups by the directory: None when it does not know the SID. Raises
# SourceUnavailable when the directory cannot be asked.
SidResolver = Callable[[str], tuple[str, ...] | None]
_ACL_XATTR = "system.posix_acl_access"
_ACL_VERSION = 2
# Tags of the kernel's POSIX ACL xattr (linux/posix_acl_xattr.h): each entry is tag, perm, id.
_USER_OBJ, _USER, _GROUP_OBJ, _GROUP, _MASK, _OTHER = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
_READ = 0x04
_NO_ACL = {errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP}
# SMB ([MS-DTYP] 2.4.4.1, 2.4.3): ACE types and flags, and the access rights that let a SID read.
ACCESS_ALLOWED, ACCESS_DENIED = 0x00, 0x01
_INHERIT_ONLY = 0x08
_READS = 0x00000001 | 0x80000000 | 0x10000000  # FILE_READ_DATA, GENERIC_READ, GENERIC_ALL
_EVERYONE_SIDS = {"S-1-1-0", "S-1-5-11"}  # Everyone, Authenticated Users
# The system itself and placeholders of inheritable ACEs: never a reader worth a group.
_IGNORED_SIDS = {"S-1-5-18", "S-1-3-0", "S-1-3-1"}


def _group(gid: int) -> str:
    try:
        return f"group:{grp.getgrgid(gid).gr_name}"
    except KeyError:
        return f"group:{gid}"


def posix_readers(path: Path, st: os.stat_result) -> tuple[str, ...]:
    """The groups that may read `path` by its POSIX ACL (the kernel's own xattr, read without a
    new dependency), or by its mode bits where it has none (no ACL set, or a filesystem without
    them). The owner group and named groups count where they grant read (through the mask); the
    owner and named users are not groups and do not count. OSError if it cannot be read."""
    try:
        raw = os.getxattr(path, _ACL_XATTR)
    except OSError as exc:
        if exc.errno not in _NO_ACL:
            raise
        raw = b""
    readers: set[str] = set()
    if not raw:
        if st.st_mode & 0o040:
            readers.add(_group(st.st_gid))
        if st.st_mode & 0o004:
            readers.add(EVERYONE)
        return tuple(sorted(readers))
    if len(raw) < 4 or (len(raw) - 4) % 8 or struct.unpack_from("<I", raw)[0] != _ACL_VERSION:
        raise OSError(errno.EINVAL, f"its POSIX ACL ({_ACL_XATTR}) is not in a known format", str(path))
    entries = [struct.unpack_from("<HHI", raw, offset) for offset in range(4, len(raw), 8)]
    mask = next((perm for tag, perm, _ in entries if tag == _MASK), 0o7)
    for tag, perm, ident in entries:
        if tag == _GROUP_OBJ and perm & mask & _READ:
            readers.add(_group(st.st_gid))
        elif tag == _GROUP and perm & mask & _READ:
            readers.add(_group(ident))
        elif tag == _OTHER and perm & _READ:
            readers.add(EVERYONE)
    return tuple(sorted(readers))


def sid_readers(dacl: Iterable[tuple[int, int, int, str]] | None) -> tuple[str, ...]:
    """The readers an SMB file's DACL gives, from its ACEs as (type, flags, access mask, SID):
    each SID an allow ACE lets read (`sid:<SID>`, Everyone and Authenticated Users as
    `everyone`), less each SID a deny ACE keeps from reading (a deny to Everyone: none). When a
    deny leaves others reading, each denied SID is kept as `deny:sid:<SID>`: whether its
    members are among the others is not known here, so the file must go to no group. ACEs that
    only pass to children, and types other than allow and deny, do not count. No DACL at all
    lets everyone in; an empty one, no one."""
    if dacl is None:
        return (EVERYONE,)
    allowed: set[str] = set()
    denied: set[str] = set()
    for ace_type, flags, mask, sid in dacl:
        if flags & _INHERIT_ONLY or not mask & _READS or sid in _IGNORED_SIDS:
            continue
        reader = EVERYONE if sid in _EVERYONE_SIDS else f"sid:{sid}"
        if ace_type == ACCESS_ALLOWED:
            allowed.add(reader)
        elif ace_type == ACCESS_DENIED:
            denied.add(reader)
    if EVERYONE in denied:
        return ()
    readers = allowed - denied
    if readers and denied:
        readers |= {DENIED + reader for reader in denied}
    return tuple(sorted(readers))


@dataclass(frozen=True)
class GroupMap:
    """Readers at the source to Enclave groups. `names` maps a POSIX group name or number, or a
    SID, to Enclave groups (an empty list: to none, on purpose); `everyone` is what files every
    user may read go to (none by default); `directory` gives the groups of a SID the file does
    not name (None: only the file)."""

    names: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    everyone: tuple[str, ...] = ()
    directory: SidResolver | None = None

    def groups(self, readers: Iterable[str]) -> tuple[tuple[str, ...], list[str]]:
        """The Enclave groups of these readers, and the readers that map to none (unmapped,
        a SID whose directory group the mapping gives no Enclave group among them). None at
        all when the source denies some reader while letting others read (see `sid_readers`)."""
        readers = list(readers)
        if any(reader.startswith(DENIED) for reader in readers):
            return (), []
        groups: set[str] = set()
        unmapped: list[str] = []
        for reader in readers:
            kind, _, name = reader.partition(":")
            if reader == EVERYONE:
                groups.update(self.everyone)
            elif name in self.names:
                groups.update(self.names[name])
            elif kind == "group" and not name.isdigit():
                groups.add(name)
            elif kind == "sid" and self.directory is not None and (found := self.directory(name)):
                groups.update(found)
            else:
                unmapped.append(reader)
        return tuple(sorted(groups)), unmapped

    @classmethod
    def load(
        cls, path: Path | None, everyone: str | None = None, directory: SidResolver | None = None
    ) -> GroupMap:
        """The mapping file `path` (YAML: a group name or SID to an Enclave group or a list of
        them), or none, and the `directory` for the SIDs it does not name; ConfigError naming
        the file and the entry when it is malformed."""
        names: dict[str, tuple[str, ...]] = {}
        if path is not None:
            try:
                data = yaml.safe_load(path.read_text(encoding="utf-8"))
            except (OSError, yaml.YAMLError) as exc:
                raise ConfigError(f"group mapping file {path} cannot be read: {exc}") from exc
            if data is None:
                data = {}
            if not isinstance(data, dict):
                raise ConfigError(
                    f"group mapping file {path} must map group names or SIDs to Enclave groups "
                    "(e.g. `S-1-5-21-1-2-3-1104: [hr]`)"
                )
            for key, value in data.items():
                if isinstance(value, str):
                    value = [value]
                if (
                    not isinstance(key, str | int)
                    or not str(key).strip()
                    or not isinstance(value, list)
                    or not all(isinstance(g, str) and g.strip() and "," not in g for g in value)
                ):
                    raise ConfigError(
                        f"group mapping file {path}: {key!r} must map to an Enclave group name or a list "
                        "of them ([] for none)"
                    )
                names[str(key).strip()] = tuple(sorted({g.strip() for g in value}))
        return cls(names, (everyone,) if everyone else (), directory)
