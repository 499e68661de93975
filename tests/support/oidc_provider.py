"""A throwaway OpenID Connect provider for the tests: the certified `oidc-provider` package from
the npm registry (tests/support/oidc_provider/, installed by `make oidc-provider`) on Node, on
http://127.0.0.1:<free port>, with Enclave's client, a second client (another audience) and
accounts in a JSON file it reads again on every lookup: `set_groups`, `disable` and `delete`
rewrite that file, and the provider sees the change at the next sign-in or refresh.

`node server.mjs` runs in a process group of its own, which `stop()` kills whole; `start()`
brings it back on the same port. Its keys, sessions and tokens live in its memory only, so a
restart ends every session.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx

from tests.support.daemon import LocalDaemon
from tests.support.net import free_port

REQUIRE_ENV = "REQUIRE_OIDC"
PACKAGE = Path(__file__).parent / "oidc_provider"
SERVER = PACKAGE / "server.mjs"
INSTALL_HINT = "run `make oidc-provider` (npm ci --prefix tests/support/oidc_provider) with Node >= 20.19"
CLIENT_ID = "enclave"
OTHER_CLIENT_ID = "other-app"
REDIRECT_URL = "http://127.0.0.1:8000/auth/oidc/callback"
POST_LOGOUT_URL = "http://127.0.0.1:8000/login"


def missing() -> str | None:
    """Why the provider cannot run here, or None."""
    node = shutil.which("node")
    if node is None:
        return f"node not found: {INSTALL_HINT}"
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=False).stdout
    found = re.match(r"v(\d+)\.(\d+)", version)
    if found is None or (int(found[1]), int(found[2])) < (20, 19):
        return f"node {version.strip() or '?'} is too old for oidc-provider: {INSTALL_HINT}"
    if not (PACKAGE / "node_modules" / "oidc-provider" / "package.json").is_file():
        return f"the oidc-provider package is not installed: {INSTALL_HINT}"
    return None


def require() -> None:
    """Skip the calling test when the provider cannot run here; fail it where CI requires it
    (REQUIRE_OIDC=1)."""
    import pytest

    reason = missing()
    if reason is None:
        return
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{REQUIRE_ENV}=1 but {reason}")
    pytest.skip(reason)


class OidcProvider(LocalDaemon):
    """`accounts`: name -> groups; every account's password is `password`. `redirect_url` and
    `post_logout_url`: what Enclave's client registers (a served Enclave's own, for end-to-end tests)."""

    name = "oidc-provider"

    def __init__(
        self,
        accounts: Mapping[str, Sequence[str]],
        *,
        claims_in_id_token: bool = False,
        redirect_url: str = REDIRECT_URL,
        post_logout_url: str = POST_LOGOUT_URL,
        tls: bool = False,
    ) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="enclave-oidc-"))
        self.port = free_port()
        # tls: https with a certificate for 127.0.0.1 of its own (`ca_file`), as a real provider is.
        self.ca_file: Path | None = None
        self.issuer = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.log_path = self.base / "provider.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.user = next(iter(accounts), "")
        self.password = secrets.token_urlsafe(12)
        self.client_id, self.other_client_id = CLIENT_ID, OTHER_CLIENT_ID
        self.redirect_url, self.post_logout_url = redirect_url, post_logout_url
        self.client_secret = secrets.token_urlsafe(24)
        self.other_client_secret = secrets.token_urlsafe(24)
        self.secret_file = self.base / "client-secret"
        self.secret_file.write_text(self.client_secret + "\n")
        self.secret_file.chmod(0o600)
        self.accounts_path = self.base / "accounts.json"
        self._accounts: dict[str, dict[str, Any]] = {}
        for name, groups in accounts.items():
            self._accounts[name] = {"password": self.password, "groups": list(groups)}
        self._write_accounts()
        clients = [
            self._client(self.client_id, self.client_secret),
            self._client(self.other_client_id, self.other_client_secret),
        ]
        self.config = self.base / "config.json"
        self.config.write_text(
            json.dumps(
                {
                    "port": self.port,
                    "issuer": self.issuer,
                    "accounts": str(self.accounts_path),
                    "clients": clients,
                    "claimsInIdToken": claims_in_id_token,
                    **({"tls": self._certificate()} if tls else {}),
                }
            )
        )

    def _certificate(self) -> dict[str, str]:
        from tests.support.dovecot import self_signed

        folder = self.base / "tls"
        folder.mkdir()
        cert, key = self_signed(folder)
        self.ca_file = cert
        return {"cert": str(cert), "key": str(key)}

    def _client(self, client_id: str, secret: str) -> dict[str, Any]:
        return {
            "client_id": client_id,
            "client_secret": secret,
            "token_endpoint_auth_method": "client_secret_basic",
            "redirect_uris": [self.redirect_url],
            "post_logout_redirect_uris": [self.post_logout_url],
            "response_types": ["code"],
            "grant_types": ["authorization_code", "refresh_token"],
        }

    def ports(self) -> tuple[int, ...]:
        return (self.port,)

    def start(self) -> OidcProvider:
        with self.log_path.open("ab") as out:
            self.process = subprocess.Popen(
                ["node", str(SERVER), str(self.config)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                cwd=PACKAGE,
            )  # fmt: skip
        self.wait_listening()
        return self

    # Accounts: each change rewrites the file the provider reads on every lookup.
    def _write_accounts(self) -> None:
        tmp = self.accounts_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._accounts))
        tmp.replace(self.accounts_path)

    def add_user(self, name: str, groups: Sequence[str]) -> None:
        self._accounts[name] = {"password": self.password, "groups": list(groups)}
        self._write_accounts()

    def set_groups(self, name: str, groups: Sequence[str]) -> None:
        self._accounts[name]["groups"] = list(groups)
        self._write_accounts()

    def set_roles(self, name: str, roles: Sequence[str]) -> None:
        """The account's roles, sent as Keycloak does (realm_access.roles)."""
        self._accounts[name]["roles"] = list(roles)
        self._write_accounts()

    def disable(self, name: str) -> None:
        self._accounts[name]["disabled"] = True
        self._write_accounts()

    def delete(self, name: str) -> None:
        del self._accounts[name]
        self._write_accounts()


@contextmanager
def running_provider(accounts: Mapping[str, Sequence[str]], **options: Any) -> Iterator[OidcProvider]:
    """A provider of the caller's own, closed after it (skipped, or failed under REQUIRE_OIDC,
    without Node or the package)."""
    require()
    provider = OidcProvider(accounts, **options).start()
    try:
        yield provider
    finally:
        provider.close()


def sign_in(client: httpx.Client, authorization_url: str, user: str, password: str) -> dict[str, str]:
    """Walk a browser's way through the provider with `client` (its cookies are the provider
    session): open the authorization URL, submit the sign-in form, follow the redirects up to
    the redirect URL, and return the query parameters the provider sent back there."""
    response = client.get(authorization_url)
    for _ in range(10):
        if response.is_redirect:
            target = urljoin(str(response.url), response.headers["location"])
            if target.startswith(REDIRECT_URL):
                return dict(httpx.URL(target).params)
            response = client.get(target)
        elif response.status_code == 200 and 'name="password"' in response.text:
            action = re.search(r'<form method="post" action="([^"]+)"', response.text)
            assert action is not None, response.text
            response = client.post(
                urljoin(str(response.url), action[1]), data={"username": user, "password": password}
            )
        else:
            raise AssertionError(
                f"unexpected answer from the provider: {response.status_code} {response.text[:500]}"
            )
    raise AssertionError("too many redirects at the provider")


def sign_out(client: httpx.Client, logout_url: str) -> str:
    """Follow an RP-initiated logout URL as a browser would: confirm on the provider's page, and
    return the URL it sends the browser to afterwards."""
    response = client.get(logout_url)
    assert response.status_code == 200, response.text
    action = re.search(r'<form[^>]*action="([^"]+)"', response.text)
    xsrf = re.search(r'name="xsrf" value="([^"]+)"', response.text)
    assert action is not None and xsrf is not None, response.text
    response = client.post(urljoin(str(response.url), action[1]), data={"xsrf": xsrf[1], "logout": "yes"})
    assert response.is_redirect, response.text
    return urljoin(str(response.url), response.headers["location"])
