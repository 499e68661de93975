"""Local user accounts: a JSON file of names, roles, groups and scrypt password hashes.

scrypt is memory-hard and in the standard library; each hash has its own random salt.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import get_args

from core.errors import ConfigError
from core.types import Principal, Role

_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
ROLES: tuple[str, ...] = get_args(Role)
# What an unknown name's password is checked against: a hash with the parameters of _SCRYPT,
# made once by hash_password (no password matches it in any useful time).
_NO_USER_HASH = "scrypt$16384$8$1$T7IuOS/3Yt614RleqH5xMg==$F4Eq0l7vwttE8da2Gr0LQQzNIQqoqQlD0YD1BMiTa/A="


def valid_user_name(name: str) -> bool:
    """Whether `name` may be an Enclave user name (letters, digits and . _ @ -, at most 64), as
    local users' names are, and as a directory's or provider's must be to sign in."""
    return _NAME.fullmatch(name) is not None


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, maxmem=64 * 1024 * 1024, **_SCRYPT)
    b64 = base64.b64encode
    return f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}${b64(salt).decode()}${b64(digest).decode()}"


def check_password(password: str, encoded: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = encoded.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(
            password.encode("utf-8"),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
            maxmem=64 * 1024 * 1024,
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


@dataclass(frozen=True)
class UserRecord:
    name: str
    role: Role
    groups: tuple[str, ...]
    password_hash: str

    @property
    def principal(self) -> Principal:
        return Principal(name=self.name, role=self.role, groups=self.groups)


def parse_groups(text: str | None) -> tuple[str, ...]:
    """'a, b,,c' -> ('a', 'b', 'c'), sorted and without duplicates."""
    if not text:
        return ()
    return tuple(sorted({g.strip() for g in text.split(",") if g.strip()}))


class UserStore:
    """The users file. Read on every call so that `enclave users add` takes effect at once."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _load(self) -> dict[str, UserRecord]:
        if not self.path.exists():
            return {}
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            return {
                name: UserRecord(name, u["role"], tuple(u["groups"]), u["password_hash"])
                for name, u in raw["users"].items()
            }
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"users file {self.path} is damaged: {exc}") from exc

    def _save(self, users: dict[str, UserRecord]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = {
            "users": {
                u.name: {"role": u.role, "groups": list(u.groups), "password_hash": u.password_hash}
                for u in users.values()
            }
        }
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".users-")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, sort_keys=True)
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.path)

    def add(self, name: str, password: str, role: str, groups: tuple[str, ...]) -> UserRecord:
        """Create or replace a user."""
        if not _NAME.match(name):
            raise ConfigError(f"user name {name!r} is not allowed: use letters, digits and . _ @ -")
        if role not in ROLES:
            raise ConfigError(f"role {role!r} is not one of {', '.join(ROLES)}")
        if len(password) < 8:
            raise ConfigError(f"password for {name!r} is too short: use at least 8 characters")
        users = self._load()
        record = UserRecord(name, role, groups, hash_password(password))  # type: ignore[arg-type]
        users[name] = record
        self._save(users)
        return record

    def get(self, name: str) -> UserRecord | None:
        return self._load().get(name)

    def list(self) -> list[UserRecord]:
        return sorted(self._load().values(), key=lambda u: u.name)

    def authenticate(self, name: str, password: str) -> Principal | None:
        """The principal for these credentials, or None. An unknown name costs exactly what a
        known one does (one scrypt, same parameters), so the time taken tells no one which
        names exist."""
        record = self._load().get(name)
        matched = check_password(password, record.password_hash if record is not None else _NO_USER_HASH)
        return record.principal if record is not None and matched else None
