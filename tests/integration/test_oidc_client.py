"""ui.oidc.OidcClient against a real OpenID Connect provider (the certified `oidc-provider` npm
package, tests/support/oidc_provider.py): the code flow walked with httpx as a browser would, the
callback's and the ID token's checks, revalidation by refresh after the provider's accounts change,
the provider gone, and RP-initiated logout."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from core.errors import ConfigError
from core.identity import DirectoryAccount, DirectoryUnavailable, Gone
from core.settings import GroupMappingSettings, OidcSettings
from tests.support.chromium import launched
from tests.support.net import nothing_left_loopback  # noqa: F401 (autouse)
from tests.support.oidc_provider import OidcProvider, running_provider, sign_in, sign_out
from ui.oidc import OidcClient, OidcError, OidcLogin

pytestmark = pytest.mark.slow

ACCOUNTS = {"alice": ["CN=Finance-Readers,OU=Groups,DC=corp,DC=example", "auditors"], "bob": ["hr"]}


@pytest.fixture(scope="module")
def provider() -> Iterator[OidcProvider]:
    with running_provider(ACCOUNTS) as server:
        yield server


def oidc_settings(provider: OidcProvider, **changes: object) -> OidcSettings:
    values: dict[str, object] = {
        "issuer": provider.issuer,
        "client_id": provider.client_id,
        "client_secret_file": provider.secret_file,
        "redirect_url": provider.redirect_url,
        "post_logout_redirect_url": provider.post_logout_url,
        "scopes": ["openid", "profile", "groups", "offline_access"],
        "allow_plain": True,
        "timeout_seconds": 5,
        "mapping": GroupMappingSettings.model_validate(
            {
                "groups": [
                    {"match": "CN=Finance-*", "groups": ["finance"]},
                    {"match": "hr", "groups": ["hr-docs"]},
                ],
                "auditor": ["auditors"],
            }
        ),
    }
    values.update(changes)
    return OidcSettings(**values)  # type: ignore[arg-type]


@pytest.fixture
def client(provider: OidcProvider) -> Iterator[OidcClient]:
    with OidcClient(oidc_settings(provider)) as oidc:
        yield oidc


@pytest.fixture
def browser() -> Iterator[httpx.Client]:
    """The user's browser as far as the provider sees it: its cookies are the provider session."""
    with httpx.Client(timeout=10) as session:
        yield session


def log_in(client: OidcClient, browser: httpx.Client, provider: OidcProvider, user: str) -> OidcLogin:
    url, pending = client.begin()
    return client.finish(pending, sign_in(browser, url, user, provider.password))


def test_a_sign_in_maps_the_providers_groups_to_enclave_groups_and_role(
    client: OidcClient, browser: httpx.Client, provider: OidcProvider
) -> None:
    url, pending = client.begin()
    query = parse_qs(urlsplit(url).query)
    assert query["response_type"] == ["code"] and query["code_challenge_method"] == ["S256"]
    assert query["state"] == [pending.state] and query["nonce"] == [pending.nonce]
    assert pending.code_verifier not in url
    login = client.finish(pending, sign_in(browser, url, "alice", provider.password))
    assert login.account == DirectoryAccount(
        name="alice",
        backend="oidc",
        subject="alice",
        directory_groups=("CN=Finance-Readers,OU=Groups,DC=corp,DC=example", "auditors"),
        role="auditor",
        groups=("finance",),
        display_name="alice",
    )
    assert login.refresh_token and login.id_token.count(".") == 2
    assert login.expires_at > time.time()
    # every sign-in chooses its own state, nonce and verifier
    _, again = client.begin()
    assert {again.state, again.nonce, again.code_verifier}.isdisjoint(
        {pending.state, pending.nonce, pending.code_verifier}
    )


def test_roles_from_a_nested_claim_make_the_role(browser: httpx.Client) -> None:
    """Keycloak sends realm roles as realm_access.roles: roles_claim reaches in, and the
    mapping names them "role:<name>", apart from groups of the same name."""
    with running_provider({"dora": ["hr"]}) as provider:
        provider.set_roles("dora", ["enclave-admin", "offline_access"])
        settings = oidc_settings(provider, roles_claim="realm_access.roles")
        settings.mapping.admin = ["role:enclave-admin"]
        with OidcClient(settings) as client:
            login = log_in(client, browser, provider, "dora")
        assert login.account.role == "admin" and login.account.groups == ("hr-docs",)
        assert "role:enclave-admin" in login.account.directory_groups
        provider.set_roles("dora", [])  # the role taken away: a group named like it makes no admin
        provider.set_groups("dora", ["hr", "enclave-admin"])
        with OidcClient(settings) as client:
            assert log_in(client, browser, provider, "dora").account.role == "staff"


def test_groups_in_the_id_token_are_read_from_there(browser: httpx.Client) -> None:
    with running_provider({"bob": ["hr"]}, claims_in_id_token=True) as provider:
        with OidcClient(oidc_settings(provider)) as client:
            login = log_in(client, browser, provider, "bob")
    assert (login.account.name, login.account.groups, login.account.role) == ("bob", ("hr-docs",), "staff")


def test_a_wrong_password_gets_no_code(client: OidcClient, browser: httpx.Client) -> None:
    url, _ = client.begin()
    with pytest.raises(AssertionError, match="401"):
        sign_in(browser, url, "alice", "not-the-password")


def test_a_callback_with_another_state_is_refused(
    client: OidcClient, browser: httpx.Client, provider: OidcProvider
) -> None:
    url, pending = client.begin()
    params = sign_in(browser, url, "alice", provider.password)
    with pytest.raises(OidcError, match="sign in again") as refused:
        client.finish(pending, {**params, "state": pending.state[:-1] + "x"})
    assert "state" in refused.value.reason
    with pytest.raises(OidcError) as refused:
        client.finish(pending, {k: v for k, v in params.items() if k != "state"})
    assert "state" in refused.value.reason


def test_a_code_used_twice_is_refused(
    client: OidcClient, browser: httpx.Client, provider: OidcProvider
) -> None:
    url, pending = client.begin()
    params = sign_in(browser, url, "alice", provider.password)
    client.finish(pending, params)
    with pytest.raises(OidcError) as refused:
        client.finish(pending, params)
    assert "invalid_grant" in refused.value.reason


def test_a_callback_for_another_sign_ins_nonce_or_verifier_is_refused(
    client: OidcClient, browser: httpx.Client, provider: OidcProvider
) -> None:
    url, pending = client.begin()
    params = sign_in(browser, url, "alice", provider.password)
    with pytest.raises(OidcError) as refused:
        client.finish(dataclasses.replace(pending, nonce="another-sign-ins-nonce"), params)
    assert "nonce" in refused.value.reason
    url, pending = client.begin()
    params = sign_in(browser, url, "alice", provider.password)
    with pytest.raises(OidcError) as refused:  # PKCE: the provider checks the verifier
        client.finish(dataclasses.replace(pending, code_verifier="x" * 64), params)
    assert "invalid_grant" in refused.value.reason


def test_an_error_from_the_provider_or_an_old_sign_in_is_refused(
    client: OidcClient, browser: httpx.Client, provider: OidcProvider
) -> None:
    _, pending = client.begin()
    with pytest.raises(OidcError, match="access_denied") as refused:
        client.finish(
            pending,
            {"error": "access_denied", "error_description": "End-User aborted", "state": pending.state},
        )
    assert "End-User aborted" in refused.value.reason
    url, pending = client.begin()
    params = sign_in(browser, url, "alice", provider.password)
    with pytest.raises(OidcError, match="sign in again") as refused:
        client.finish(dataclasses.replace(pending, created=time.time() - 601), params)
    assert "old" in refused.value.reason
    with pytest.raises(OidcError) as refused:  # RFC 9207: a callback naming another issuer
        client.finish(pending, {**params, "iss": "https://evil.example"})
    assert "issuer" in refused.value.reason
    assert client.metadata()["authorization_response_iss_parameter_supported"] is True
    with pytest.raises(OidcError) as refused:  # or none, where the provider always names itself
        client.finish(pending, {k: v for k, v in params.items() if k != "iss"})
    assert "issuer" in refused.value.reason


def test_an_id_token_for_another_client_is_refused(
    client: OidcClient, browser: httpx.Client, provider: OidcProvider, tmp_path: Path
) -> None:
    secret = tmp_path / "other-secret"
    secret.write_text(provider.other_client_secret)
    with OidcClient(
        oidc_settings(provider, client_id=provider.other_client_id, client_secret_file=secret)
    ) as other:
        theirs = log_in(other, browser, provider, "bob")
    assert theirs.account.name == "bob"
    with pytest.raises(OidcError) as refused:
        client.verify_id_token(theirs.id_token, nonce=None)
    assert "audience" in refused.value.reason


def test_an_issuer_other_than_the_providers_own_is_refused(provider: OidcProvider) -> None:
    lookalike = provider.issuer.replace("127.0.0.1", "localhost")
    with OidcClient(oidc_settings(provider, issuer=lookalike)) as client:
        with pytest.raises(ConfigError, match="names issuer"):
            client.begin()
        checks = {name: ok for name, ok, _ in client.probe()}
    assert checks["OIDC discovery"] and not checks["OIDC issuer"]


def test_probe_reports_discovery_issuer_and_keys(client: OidcClient) -> None:
    checks = {name: (ok, detail) for name, ok, detail in client.probe()}
    assert all(ok for ok, _ in checks.values()), checks
    assert checks["OIDC signing keys"][1] == "2 key(s) fetched"


def test_a_user_moved_between_groups_gets_the_new_groups_at_refresh(
    client: OidcClient, browser: httpx.Client, provider: OidcProvider
) -> None:
    provider.add_user("carol", ["hr"])
    login = log_in(client, browser, provider, "carol")
    assert login.account.groups == ("hr-docs",) and login.refresh_token
    provider.set_groups("carol", ["CN=Finance-Readers,OU=Groups,DC=corp,DC=example"])
    account, token = client.refresh(login.refresh_token, subject=login.account.subject)
    assert isinstance(account, DirectoryAccount)
    assert (account.name, account.groups, account.role) == ("carol", ("finance",), "staff")
    assert token
    provider.set_groups("carol", ["auditors"])
    account, _ = client.refresh(token)
    assert isinstance(account, DirectoryAccount)
    assert (account.groups, account.role) == ((), "auditor")


@pytest.mark.parametrize("change", ["disable", "delete"])
def test_a_disabled_or_deleted_user_is_gone_at_refresh(
    client: OidcClient, browser: httpx.Client, provider: OidcProvider, change: str
) -> None:
    name = f"leaver-{change}"
    provider.add_user(name, ["hr"])
    login = log_in(client, browser, provider, name)
    assert login.refresh_token
    getattr(provider, change)(name)
    gone, token = client.refresh(login.refresh_token)
    assert isinstance(gone, Gone) and "invalid_grant" in gone.reason and token is None
    with httpx.Client(timeout=10) as another_browser, pytest.raises(AssertionError, match="401"):
        log_in(client, another_browser, provider, name)  # nor can they sign in again


def test_a_provider_that_cannot_be_reached_is_unavailable_not_gone(browser: httpx.Client) -> None:
    with running_provider({"alice": ["hr"]}) as provider, OidcClient(oidc_settings(provider)) as client:
        login = log_in(client, browser, provider, "alice")
        assert login.refresh_token
        provider.stop()
        with pytest.raises(DirectoryUnavailable, match=provider.issuer):
            client.refresh(login.refresh_token)
        checks = {name: ok for name, ok, _ in client.probe()}
        assert checks == {"OIDC discovery": False}
        # back with new signing keys and no sessions: a new sign-in's ID token names a key the
        # client has not seen, which it fetches once; the old session's refresh token is refused
        provider.start()
        assert log_in(client, browser, provider, "alice").account.name == "alice"
        gone, _ = client.refresh(login.refresh_token)
        assert isinstance(gone, Gone)


def test_logout_ends_the_providers_session(
    client: OidcClient, browser: httpx.Client, provider: OidcProvider
) -> None:
    login = log_in(client, browser, provider, "alice")
    url = client.logout_url(login.id_token, provider.post_logout_url, "logout-state")
    assert url is not None
    query = parse_qs(urlsplit(url).query)
    assert query["id_token_hint"] == [login.id_token]
    assert query["post_logout_redirect_uri"] == [provider.post_logout_url]
    back = sign_out(browser, url)
    assert back.startswith(provider.post_logout_url) and parse_qs(urlsplit(back).query)["state"] == [
        "logout-state"
    ]
    # the session is over at the provider: its refresh token is refused, and the next sign-in
    # asks for the password again
    assert login.refresh_token
    gone, _ = client.refresh(login.refresh_token)
    assert isinstance(gone, Gone)
    url, _ = client.begin()
    response = browser.get(url, follow_redirects=True)
    assert response.status_code == 200 and 'name="password"' in response.text


@pytest.fixture(scope="module")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Headless Chromium (skipped without it, failed under REQUIRE_BROWSER=1)."""
    with launched(tmp_path_factory.mktemp("chromium")) as browser:
        yield browser


@pytest.mark.browser
def test_a_browser_signs_in_and_out_at_the_provider(
    client: OidcClient, provider: OidcProvider, chromium: Any
) -> None:
    """The provider's pages work in a real browser; Enclave's side (nothing listens on the
    redirect URL here) is played by catching the requests the provider sends the browser to."""
    caught: list[str] = []
    page = chromium.new_page()
    try:
        for url in (provider.redirect_url, provider.post_logout_url):
            page.route(f"{url}**", lambda route: (caught.append(route.request.url), route.fulfill(body="ok")))
        url, pending = client.begin()
        page.goto(url)
        page.get_by_label("Username").fill("bob")
        page.get_by_label("Password").fill(provider.password)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(f"{provider.redirect_url}**")
        login = client.finish(pending, dict(httpx.URL(caught[-1]).params))
        assert (login.account.name, login.account.groups) == ("bob", ("hr-docs",))
        logout = client.logout_url(login.id_token, provider.post_logout_url, "bye")
        assert logout is not None
        page.goto(logout)
        page.get_by_role("button", name="Yes, sign me out").click()
        page.wait_for_url(f"{provider.post_logout_url}**")
        assert httpx.URL(caught[-1]).params["state"] == "bye"
    finally:
        page.close()


def test_over_https_the_providers_certificate_must_chain_to_ca_file(
    browser: httpx.Client, tmp_path: Path
) -> None:
    """A provider on https (its own certificate for 127.0.0.1): with ca_file naming its CA the
    sign-in works and the probe says the TLS is valid; with another CA nothing is fetched, and
    the error says it is the certificate."""
    from tests.support.dovecot import self_signed

    with running_provider({"bob": ["hr"]}, tls=True) as provider:
        assert provider.issuer.startswith("https://") and provider.ca_file is not None
        with OidcClient(oidc_settings(provider, ca_file=provider.ca_file, allow_plain=False)) as client:
            url, pending = client.begin()
            with httpx.Client(timeout=10, verify=str(provider.ca_file)) as tls_browser:
                login = client.finish(pending, sign_in(tls_browser, url, "bob", provider.password))
            assert login.account.groups == ("hr-docs",)
            probed = {name: (ok, detail) for name, ok, detail in client.probe()}
            assert probed["OIDC TLS"][0] and all(ok for ok, _ in probed.values()), probed
        other = tmp_path / "other-ca"
        other.mkdir()
        stranger, _ = self_signed(other)
        with OidcClient(oidc_settings(provider, ca_file=stranger, allow_plain=False)) as client:
            with pytest.raises(DirectoryUnavailable, match=r"(?i)certificate"):
                client.begin()
            probed = {name: (ok, detail) for name, ok, detail in client.probe()}
            assert not probed["OIDC TLS"][0] and "certificate" in probed["OIDC TLS"][1].lower()
