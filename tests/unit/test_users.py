from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.errors import ConfigError
from core.users import UserStore, parse_groups


def test_add_and_authenticate(tmp_path: Path) -> None:
    users = UserStore(tmp_path / "users.json")
    users.add("alice", "correct horse", "staff", ("public", "hr"))
    p = users.authenticate("alice", "correct horse")
    assert p is not None and p.name == "alice" and p.groups == ("public", "hr") and p.role == "staff"
    assert users.authenticate("alice", "wrong password") is None
    assert users.authenticate("nobody", "correct horse") is None


def test_hashes_are_salted_and_never_plain(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    users = UserStore(path)
    users.add("a", "same-password", "staff", ())
    users.add("b", "same-password", "staff", ())
    raw = path.read_text()
    assert "same-password" not in raw
    hashes = [u["password_hash"] for u in json.loads(raw)["users"].values()]
    assert hashes[0] != hashes[1] and all(h.startswith("scrypt$") for h in hashes)
    assert path.stat().st_mode & 0o077 == 0


@pytest.mark.parametrize(
    ("name", "password", "role", "match"),
    [
        ("bad name", "longenough", "staff", "not allowed"),
        ("x", "short", "staff", "too short"),
        ("x", "longenough", "boss", "role"),
    ],
)
def test_rejects_bad_input(tmp_path: Path, name: str, password: str, role: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        UserStore(tmp_path / "u.json").add(name, password, role, ())


def test_damaged_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    path.write_text("{not json")
    with pytest.raises(ConfigError, match=str(path)):
        UserStore(path).authenticate("a", "b")


def test_parse_groups() -> None:
    assert parse_groups(" hr, public,,hr ") == ("hr", "public")
    assert parse_groups(None) == ()
