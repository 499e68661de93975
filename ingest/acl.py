"""Which groups may read a file: `--groups` for everything, or a mapping file per folder.

The mapping file is YAML, folders relative to the file's own folder, the longest match wins:

    # acl.yaml
    .: [public]                  # everything under this folder, unless a deeper rule matches
    finance: [finance]
    hr/confidential: [hr-leads]
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from core.errors import ConfigError, IngestError


@dataclass(frozen=True)
class GroupPolicy:
    default: tuple[str, ...]
    rules: tuple[tuple[Path, tuple[str, ...]], ...] = field(default=())
    # Each file's own groups (a source's permissions, `groups: from-source`), by resolved path:
    # then every file must be in it, and default and rules are not used.
    files: Mapping[Path, tuple[str, ...]] | None = None

    def __post_init__(self) -> None:
        if not self.default and not self.rules and self.files is None:
            raise ConfigError("documents need at least one group: pass --groups or an ACL file")

    def groups_for(self, path: Path) -> tuple[str, ...]:
        resolved = path.resolve()
        if self.files is not None:
            if resolved not in self.files:
                raise IngestError(
                    f"{path}: its source gave no permissions for it (it is not in the mirror's state); "
                    "the next sync of the source takes it again"
                )
            return self.files[resolved]
        best: tuple[int, tuple[str, ...]] | None = None
        for folder, groups in self.rules:
            if resolved == folder or folder in resolved.parents:
                depth = len(folder.parts)
                if best is None or depth > best[0]:
                    best = (depth, groups)
        if best is not None:
            return best[1]
        if not self.default:
            raise ConfigError(f"{path}: no rule of the ACL file covers it and no --groups was given")
        return self.default

    @classmethod
    def from_file(cls, path: Path, default: tuple[str, ...] = (), base: Path | None = None) -> GroupPolicy:
        """The rules of the ACL file `path`, its folders relative to `base` (a source's mirror),
        or by default to the file's own folder."""
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"ACL file {path} cannot be read: {exc}") from exc
        if not isinstance(data, dict) or not data:
            raise ConfigError(f"ACL file {path} must map folders to lists of groups")
        base = base.resolve() if base is not None else path.resolve().parent
        rules = []
        for folder, groups in data.items():
            if isinstance(groups, str):
                groups = [g.strip() for g in groups.split(",")]
            if (
                not isinstance(groups, list)
                or not groups
                or not all(isinstance(g, str) and g for g in groups)
            ):
                raise ConfigError(f"ACL file {path}: '{folder}' must map to a non-empty list of group names")
            target = (base / str(folder)).resolve()
            if target != base and base not in target.parents:
                raise ConfigError(f"ACL file {path}: '{folder}' points outside {base}")
            rules.append((target, tuple(sorted(set(groups)))))
        return cls(default=tuple(sorted(set(default))), rules=tuple(rules))
