"""ui.sessions.seal / unseal: the signed cookie that carries an OIDC sign-in under way."""

from __future__ import annotations

import secrets

from ui.sessions import seal, unseal


def test_a_sealed_value_comes_back_only_unaltered_and_for_its_purpose() -> None:
    key = secrets.token_bytes(32)
    sealed = seal(key, "oidc-pending", '{"state": "s1", "next": "/"}')
    assert unseal(key, "oidc-pending", sealed) == '{"state": "s1", "next": "/"}'
    assert unseal(key, "another-purpose", sealed) is None  # not usable as any other cookie
    assert unseal(secrets.token_bytes(32), "oidc-pending", sealed) is None  # another server's key
    body, mac = sealed.split(".")
    forged = seal(key, "x", '{"state": "mine", "next": "/"}').split(".")[0]
    assert unseal(key, "oidc-pending", f"{forged}.{mac}") is None  # a body of one's own choosing
    for broken in ("", ".", "abc", f"{body}.{mac}.x", f"{body}!.{mac}"):
        assert unseal(key, "oidc-pending", broken) is None
