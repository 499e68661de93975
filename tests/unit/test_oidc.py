"""ui.oidc without a provider: what the sign-in cookie carries, the settings refused up front, and
ID tokens refused for their algorithm before any key is looked up (`none`, HS256 built by hand)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import pytest

from core.errors import ConfigError
from core.settings import OidcSettings
from ui.oidc import OidcClient, OidcError, PendingLogin

# Nothing listens there: a test that reached the provider would fail with DirectoryUnavailable.
ISSUER = "http://127.0.0.1:9"


def settings(**changes: object) -> OidcSettings:
    values: dict[str, object] = {
        "issuer": ISSUER,
        "client_id": "enclave",
        "redirect_url": "http://127.0.0.1:8000/auth/oidc/callback",
        "allow_plain": True,
        "timeout_seconds": 1,
    }
    values.update(changes)
    return OidcSettings(**values)  # type: ignore[arg-type]


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token(header: dict[str, object], key: bytes | None) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": "enclave", "sub": "mallory", "iat": now, "exp": now + 60, "nonce": "n"}
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    signature = b"" if key is None else hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def test_a_pending_login_survives_its_cookie() -> None:
    pending = PendingLogin(state="s", nonce="n", code_verifier="v" * 43, created=1765000000.5)
    assert PendingLogin.from_json(pending.to_json()) == pending


@pytest.mark.parametrize(
    "text", ["", "{}", "[1]", '{"state": "s", "nonce": "", "code_verifier": "v", "created": 1}']
)
def test_a_damaged_pending_login_is_refused(text: str) -> None:
    with pytest.raises(OidcError, match="sign in again"):
        PendingLogin.from_json(text)


def test_a_plain_http_issuer_needs_allow_plain() -> None:
    with pytest.raises(ConfigError, match="allow_plain"):
        OidcClient(settings(allow_plain=False))


@pytest.mark.parametrize(
    "header, key",
    [
        ({"alg": "none"}, None),
        ({"alg": "HS256"}, b"the provider's public key, or the client secret"),
        ({"alg": "HS256", "kid": "rsa-1"}, b"-----BEGIN PUBLIC KEY-----"),
        ({"typ": "JWT"}, None),
    ],
)
def test_id_tokens_are_refused_for_their_algorithm_before_any_key_is_fetched(
    header: dict[str, object], key: bytes | None
) -> None:
    with OidcClient(settings()) as client, pytest.raises(OidcError) as refused:
        client.verify_id_token(token(header, key), nonce="n")
    assert "algorithm" in refused.value.reason or "header" in refused.value.reason
