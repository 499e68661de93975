"""Sign-in with an OpenID Connect provider (Keycloak, ADFS, Authentik): the authorization code
flow with PKCE, state and nonce, the ID token's checks, the refresh that revalidation uses, and
RP-initiated logout. The routes carry a `PendingLogin` between `begin()` and `finish()` in a
signed cookie; this module only says what goes in it.

Errors: `OidcError` (the provider's answer or the browser's callback fails a check: a message for
the user and a `reason` for the audit log), `core.identity.DirectoryUnavailable` (the provider
cannot be reached or answers with a server error), `core.errors.ConfigError` (the settings
cannot work: an http:// issuer without allow_plain, an unreadable client secret, an issuer
that is not the one the provider's discovery document names).
"""

from __future__ import annotations

import base64
import hmac
import json
import logging
import secrets
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import Key, KeySet

from core.errors import ConfigError, EnclaveError
from core.identity import OIDC, DirectoryAccount, DirectoryUnavailable, Gone
from core.settings import OidcSettings
from core.users import valid_user_name

log = logging.getLogger(__name__)

# Asymmetric signatures only: never `none`, never HS* (whose key would be the client secret, or,
# in the classic attack, the provider's public key).
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512")
_KEY_TYPES = {"RS": "RSA", "PS": "RSA", "ES": "EC"}
PENDING_MAX_AGE_S = 600.0  # a sign-in left at the provider longer than this starts again
LEEWAY_S = 60.0  # clock difference allowed between the provider and us on exp and iat


class OidcError(EnclaveError):
    """A sign-in or refresh refused: `str(error)` is for the user, `reason` for the audit log."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class PendingLogin:
    """What `begin()` chose and `finish()` checks: kept by the browser in a short-lived, signed,
    HttpOnly cookie between the two."""

    state: str
    nonce: str
    code_verifier: str
    created: float

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> PendingLogin:
        try:
            data = json.loads(text)
            pending = cls(
                state=data["state"], nonce=data["nonce"], code_verifier=data["code_verifier"],
                created=float(data["created"]),
            )  # fmt: skip
        except (ValueError, TypeError, KeyError) as error:
            raise OidcError(_START_AGAIN, f"malformed pending sign-in: {error!r}") from None
        if not all(isinstance(v, str) and v for v in (pending.state, pending.nonce, pending.code_verifier)):
            raise OidcError(_START_AGAIN, "malformed pending sign-in: empty or non-text field")
        return pending


@dataclass(frozen=True)
class OidcLogin:
    """A completed sign-in. `expires_at`: the ID token's expiry (epoch seconds); `id_token`: the
    hint for RP-initiated logout; `refresh_token`: what revalidation uses (None when the provider
    gave none)."""

    account: DirectoryAccount
    refresh_token: str | None
    id_token: str
    expires_at: float


_START_AGAIN = "Your sign-in expired or was interrupted. Please sign in again."
_REFUSED = (
    "Your organisation's sign-in could not be completed. Please sign in again, or ask your administrator."
)


def _b64_json(part: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


class OidcClient:
    """A relying party of one provider (`settings.issuer`). Thread-safe; `close()` when done."""

    backend = OIDC

    def __init__(self, settings: OidcSettings, *, now: Callable[[], float] = time.time) -> None:
        if settings.issuer.startswith("http://") and not settings.allow_plain:
            raise ConfigError(
                f"auth.oidc.issuer {settings.issuer} is plain http: use https, or set "
                "auth.oidc.allow_plain (tests on 127.0.0.1 only)"
            )
        if not settings.issuer.startswith(("https://", "http://")):
            raise ConfigError(f"auth.oidc.issuer {settings.issuer!r} is not an https:// URL")
        self.settings = settings
        self._now = now
        self._secret: str | None = None
        if settings.client_secret_file is not None:
            try:
                self._secret = settings.client_secret_file.read_text(encoding="utf-8").strip()
            except OSError as error:
                raise ConfigError(
                    f"auth.oidc.client_secret_file {settings.client_secret_file} cannot be read: {error}"
                ) from None
            if not self._secret:
                raise ConfigError(f"auth.oidc.client_secret_file {settings.client_secret_file} is empty")
        verify: ssl.SSLContext | bool = True
        if settings.ca_file is not None:
            try:
                verify = ssl.create_default_context(cafile=str(settings.ca_file))
            except (OSError, ssl.SSLError) as error:
                raise ConfigError(f"auth.oidc.ca_file {settings.ca_file} cannot be used: {error}") from None
        self._http = httpx.Client(verify=verify, timeout=settings.timeout_seconds, follow_redirects=False)
        self._lock = threading.Lock()
        self._metadata: dict[str, Any] | None = None
        self._metadata_at = 0.0
        self._keys: KeySet | None = None
        self._keys_at = 0.0

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> OidcClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- talking to the provider --------------------------------------------------------------

    @property
    def _cache_s(self) -> float:
        return self.settings.jwks_cache_minutes * 60

    def _unavailable(self, what: str, detail: object) -> DirectoryUnavailable:
        return DirectoryUnavailable(f"OpenID provider {self.settings.issuer}: {what}: {detail}")

    def _request(self, method: str, url: str, what: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, url, **kwargs)
        except httpx.HTTPError as error:
            raise self._unavailable(f"{what} failed", _describe(error)) from error
        if response.status_code >= 500:
            raise self._unavailable(what, f"HTTP {response.status_code}")
        return response

    def _get_json(self, url: str, what: str, **kwargs: Any) -> dict[str, Any]:
        response = self._request("GET", url, what, **kwargs)
        if response.status_code != 200:
            raise self._unavailable(what, f"HTTP {response.status_code}")
        try:
            data = response.json()
        except ValueError:
            raise self._unavailable(what, "the answer is not JSON") from None
        if not isinstance(data, dict):
            raise self._unavailable(what, "the answer is not a JSON object")
        return data

    def _discovery_url(self) -> str:
        return self.settings.issuer.rstrip("/") + "/.well-known/openid-configuration"

    def metadata(self) -> dict[str, Any]:
        """The provider's discovery document, checked and cached for jwks_cache_minutes."""
        with self._lock:
            if self._metadata is not None and self._now() - self._metadata_at < self._cache_s:
                return self._metadata
        data = self._get_json(self._discovery_url(), "discovery")
        if data.get("issuer") != self.settings.issuer:
            raise ConfigError(
                f"OpenID provider {self.settings.issuer}: its discovery document names issuer "
                f"{data.get('issuer')!r}: set auth.oidc.issuer to exactly that"
            )
        for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            url = data.get(name)
            if not isinstance(url, str) or not url.startswith(
                ("https://", "http://") if self.settings.allow_plain else ("https://",)
            ):
                raise self._unavailable("discovery", f"{name} {url!r} is missing or not an https:// URL")
        with self._lock:
            self._metadata, self._metadata_at = data, self._now()
        return data

    def _key_set(self, *, refresh: bool = False) -> KeySet:
        with self._lock:
            if not refresh and self._keys is not None and self._now() - self._keys_at < self._cache_s:
                return self._keys
        data = self._get_json(self.metadata()["jwks_uri"], "signing keys (JWKS)")
        keys: list[Key] = []
        for entry in data.get("keys") or []:
            if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
                continue
            try:
                keys.append(KeySet.import_key_set({"keys": [entry]}).keys[0])
            except (JoseError, ValueError, TypeError) as error:  # a key type we cannot use
                log.info("OIDC: skipping a signing key of %s: %s", self.settings.issuer, error)
        key_set = KeySet(keys)
        with self._lock:
            self._keys, self._keys_at = key_set, self._now()
        return key_set

    def _token_request(self, data: dict[str, str], what: str) -> tuple[int, dict[str, Any]]:
        endpoint = self.metadata()["token_endpoint"]
        auth: tuple[str, str] | None = None
        if self._secret is None:
            data = {**data, "client_id": self.settings.client_id}
        elif "client_secret_basic" in self.metadata().get(
            "token_endpoint_auth_methods_supported", ["client_secret_basic"]
        ):
            auth = (self.settings.client_id, self._secret)
        else:
            data = {**data, "client_id": self.settings.client_id, "client_secret": self._secret}
        response = self._request(
            "POST", endpoint, what, data=data, auth=auth, headers={"Accept": "application/json"}
        )
        try:
            body = response.json()
        except ValueError:
            raise self._unavailable(what, f"HTTP {response.status_code}, not JSON") from None
        if not isinstance(body, dict):
            raise self._unavailable(what, f"HTTP {response.status_code}, not a JSON object")
        return response.status_code, body

    def _userinfo(self, access_token: str, what: str) -> dict[str, Any]:
        endpoint = self.metadata().get("userinfo_endpoint")
        if not isinstance(endpoint, str):
            return {}
        return self._get_json(endpoint, what, headers={"Authorization": f"Bearer {access_token}"})

    # -- the ID token ---------------------------------------------------------------------------

    def verify_id_token(self, token: str, *, nonce: str | None) -> dict[str, Any]:
        """The ID token's claims once its signature (the provider's keys, an allowed algorithm),
        issuer, audience, times and, when given, nonce are checked; OidcError otherwise."""
        try:
            header = _b64_json(token.split(".")[0])
            alg = header["alg"]
        except (ValueError, KeyError, TypeError, IndexError):
            raise OidcError(_REFUSED, "ID token: malformed header") from None
        if token.count(".") != 2:
            raise OidcError(_REFUSED, "ID token: not a signed JWT (JWS compact)")
        if alg not in ALGORITHMS:
            raise OidcError(_REFUSED, f"ID token: algorithm {alg!r} is not allowed")
        kid = header.get("kid")
        claims: dict[str, Any] | None = None
        for refresh in (False, True):  # a key we do not know yet: the provider rotated; fetch once
            candidates = [
                key for key in self._key_set(refresh=refresh)
                if key.key_type == _KEY_TYPES[alg[:2]]
                and (kid is None or key.kid == kid)
                and key.alg in (None, alg)
            ]  # fmt: skip
            for key in candidates:
                try:
                    claims = dict(jwt.decode(token, key, algorithms=[alg]).claims)
                    break
                except JoseError:
                    continue
            if claims is not None or (candidates and kid is not None):
                break
        if claims is None:
            raise OidcError(
                _REFUSED, f"ID token: signature not made by any of the provider's keys (kid {kid!r})"
            )
        self._check_claims(claims, nonce)
        return claims

    def _check_claims(self, claims: dict[str, Any], nonce: str | None) -> None:
        def refuse(reason: str) -> OidcError:
            return OidcError(_REFUSED, f"ID token: {reason}")

        client_id = self.settings.client_id
        if claims.get("iss") != self.settings.issuer:
            raise refuse(f"issuer {claims.get('iss')!r} is not {self.settings.issuer!r}")
        aud = claims.get("aud")
        audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        if client_id not in audiences:
            raise refuse(f"audience {aud!r} does not include {client_id!r}")
        azp = claims.get("azp")
        if (len(audiences) > 1 or azp is not None) and azp != client_id:
            raise refuse(f"authorized party {azp!r} is not {client_id!r}")
        now = self._now()
        exp, iat = claims.get("exp"), claims.get("iat")
        if not isinstance(exp, int | float) or not isinstance(iat, int | float):
            raise refuse("exp or iat missing")
        if now > exp + LEEWAY_S:
            raise refuse(f"expired {now - exp:.0f} s ago")
        if iat > now + LEEWAY_S:
            raise refuse(f"issued {iat - now:.0f} s in the future")
        if not isinstance(claims.get("sub"), str) or not claims["sub"]:
            raise refuse("sub missing")
        if nonce is not None and not hmac.compare_digest(
            str(claims.get("nonce", "")).encode(), nonce.encode()
        ):
            raise refuse("nonce does not match this sign-in's")

    # -- the account ----------------------------------------------------------------------------

    def _account(self, claims: dict[str, Any], access_token: str | None) -> DirectoryAccount:
        wanted = [self.settings.username_claim, self.settings.groups_claim]
        if self.settings.roles_claim:
            wanted.append(self.settings.roles_claim)
        if any(claim_value(claims, name) is None for name in wanted) and access_token:
            info = self._userinfo(access_token, "userinfo")
            if info and info.get("sub") != claims["sub"]:
                raise OidcError(_REFUSED, f"userinfo: sub {info.get('sub')!r} is not the ID token's")
            claims = {**info, **claims}
        name = claim_value(claims, self.settings.username_claim)
        if not isinstance(name, str) or not valid_user_name(name):
            raise OidcError(
                "Your organisation account has no user name Enclave can use. Ask your administrator.",
                f"claim {self.settings.username_claim!r} is missing or not a valid user name: {name!r}",
            )
        groups = _names(claims, self.settings.groups_claim)
        if self.settings.roles_claim:
            # Roles beside groups (Keycloak's realm_access.roles): named "role:<name>" for the
            # mapping, so a role and a group of the same name are never taken for each other.
            groups += [ROLE_PREFIX + r for r in _names(claims, self.settings.roles_claim)]
        display = claims.get("name")
        return self.settings.mapping.to_mapping().account(
            name, OIDC, subject=claims["sub"], directory_groups=groups,
            display_name=display if isinstance(display, str) else "",
        )  # fmt: skip

    # -- the flow -------------------------------------------------------------------------------

    def begin(self) -> tuple[str, PendingLogin]:
        """The provider's authorization URL to send the browser to, and what to keep until the
        callback (state, nonce and PKCE verifier, new for every sign-in)."""
        pending = PendingLogin(
            state=secrets.token_urlsafe(32),
            nonce=secrets.token_urlsafe(32),
            code_verifier=secrets.token_urlsafe(64),
            created=self._now(),
        )
        params = {
            "response_type": "code",
            "client_id": self.settings.client_id,
            "redirect_uri": self.settings.redirect_url,
            "scope": " ".join(self.settings.scopes),
            "state": pending.state,
            "nonce": pending.nonce,
            "code_challenge": create_s256_code_challenge(pending.code_verifier),
            "code_challenge_method": "S256",
        }
        endpoint = self.metadata()["authorization_endpoint"]
        return f"{endpoint}{'&' if '?' in endpoint else '?'}{urlencode(params)}", pending

    def finish(self, pending: PendingLogin, params: Mapping[str, str]) -> OidcLogin:
        """The signed-in account from the provider's callback `params` (the redirect URL's query),
        after every check; OidcError when one fails."""
        if "error" in params:
            error, description = params["error"], params.get("error_description", "")
            raise OidcError(
                f"Your organisation's sign-in did not complete ({error}).",
                f"provider returned {error}: {description}".rstrip(": "),
            )
        age = self._now() - pending.created
        if not -LEEWAY_S <= age <= PENDING_MAX_AGE_S:
            raise OidcError(
                _START_AGAIN, f"pending sign-in is {age:.0f} s old (at most {PENDING_MAX_AGE_S:.0f})"
            )
        if not hmac.compare_digest(params.get("state", "").encode(), pending.state.encode()):
            raise OidcError(_START_AGAIN, "state does not match this browser's sign-in")
        # RFC 9207: the callback names its issuer, so a code from another provider (a mix-up) is refused
        iss = params.get("iss")
        if iss is None and self.metadata().get("authorization_response_iss_parameter_supported") is True:
            raise OidcError(_REFUSED, "callback names no issuer, though the provider always sends it")
        if iss is not None and iss != self.settings.issuer:
            raise OidcError(_REFUSED, f"callback names issuer {iss!r}, not {self.settings.issuer!r}")
        code = params.get("code", "")
        if not code:
            raise OidcError(_REFUSED, "callback carries no code")
        status, body = self._token_request(
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": self.settings.redirect_url,
                "code_verifier": pending.code_verifier,
            },
            "token endpoint",
        )
        if status != 200 or "error" in body:
            raise OidcError(
                _REFUSED,
                f"token endpoint refused the code: HTTP {status} {body.get('error')}: "
                f"{body.get('error_description', '')}",
            )
        id_token = body.get("id_token")
        if not isinstance(id_token, str):
            raise OidcError(_REFUSED, "token endpoint returned no ID token (is the openid scope granted?)")
        claims = self.verify_id_token(id_token, nonce=pending.nonce)
        access_token = body.get("access_token")
        account = self._account(claims, access_token if isinstance(access_token, str) else None)
        refresh_token = body.get("refresh_token")
        return OidcLogin(
            account=account,
            refresh_token=refresh_token if isinstance(refresh_token, str) else None,
            id_token=id_token,
            expires_at=float(claims["exp"]),
        )

    def refresh(
        self, refresh_token: str, *, subject: str | None = None
    ) -> tuple[DirectoryAccount | Gone, str | None]:
        """Revalidation: the account as the provider reports it now, and the refresh token to use
        next time (the rotated one, or the same). Gone when the provider refuses the grant (user
        disabled or deleted, session ended at the provider) or, given the signed-in `subject`,
        reports another one; DirectoryUnavailable when it cannot be reached or answers with a
        server error; OidcError when a new ID token fails its checks."""
        status, body = self._token_request(
            {"grant_type": "refresh_token", "refresh_token": refresh_token}, "token endpoint (refresh)"
        )
        if body.get("error") == "invalid_grant":
            description = body.get("error_description", "")
            return Gone(
                name="", reason=f"the provider refused the refresh: invalid_grant {description}".strip()
            ), None
        if status != 200 or "error" in body:
            raise self._unavailable(
                "token endpoint (refresh)",
                f"HTTP {status} {body.get('error')}: {body.get('error_description', '')}",
            )
        access_token = body.get("access_token")
        access_token = access_token if isinstance(access_token, str) else None
        id_token = body.get("id_token")
        if isinstance(id_token, str):
            claims = self.verify_id_token(id_token, nonce=None)
        else:
            claims = self._userinfo(access_token, "userinfo") if access_token else {}
            if not isinstance(claims.get("sub"), str):
                raise self._unavailable("refresh", "neither an ID token nor userinfo says who the user is")
            access_token = None  # already read
        if subject is not None and claims["sub"] != subject:
            return Gone(
                name="", reason=f"the provider now reports subject {claims['sub']!r}, not {subject!r}"
            ), None
        account = self._account(claims, access_token)
        rotated = body.get("refresh_token")
        return account, rotated if isinstance(rotated, str) else refresh_token

    def logout_url(self, id_token_hint: str | None, post_logout_redirect_uri: str, state: str) -> str | None:
        """Where to send the browser to end the provider's session too (RP-initiated logout), or
        None when the provider offers no end_session_endpoint."""
        endpoint = self.metadata().get("end_session_endpoint")
        if not isinstance(endpoint, str):
            return None
        params = {"client_id": self.settings.client_id, "post_logout_redirect_uri": post_logout_redirect_uri}
        if id_token_hint:
            params["id_token_hint"] = id_token_hint
        params["state"] = state
        return f"{endpoint}{'&' if '?' in endpoint else '?'}{urlencode(params)}"

    def probe(self) -> list[tuple[str, bool, str]]:
        """For `enclave doctor`: (check, passed, detail) for discovery, TLS, issuer and keys."""
        url = self._discovery_url()
        checks: list[tuple[str, bool, str]] = []
        try:
            response = self._http.get(url)
        except httpx.HTTPError as error:
            tls_failed = _ssl_error(error) is not None
            checks.append(("OIDC discovery", False, f"{url}: {_describe(error)}"))
            if tls_failed:
                checks.append(("OIDC TLS", False, _describe(error)))
            return checks
        checks.append(("OIDC discovery", response.status_code == 200, f"{url}: HTTP {response.status_code}"))
        if url.startswith("https://"):
            checks.append(("OIDC TLS", True, f"certificate valid ({self.settings.ca_file or 'system CAs'})"))
        else:
            checks.append(("OIDC TLS", self.settings.allow_plain, "plain http (allow_plain: tests only)"))
        if response.status_code != 200:
            return checks
        try:
            issuer = response.json().get("issuer")
        except (ValueError, AttributeError):
            checks.append(("OIDC issuer", False, "the discovery document is not a JSON object"))
            return checks
        same = issuer == self.settings.issuer
        checks.append(
            ("OIDC issuer", same, f"{issuer!r}" + ("" if same else f" is not {self.settings.issuer!r}"))
        )
        if not same:
            return checks
        try:
            keys = self._key_set(refresh=True)
        except DirectoryUnavailable as error:
            checks.append(("OIDC signing keys", False, str(error)))
        else:
            usable = [k for k in keys if k.key_type in _KEY_TYPES.values()]
            checks.append(("OIDC signing keys", bool(usable), f"{len(usable)} key(s) fetched"))
        return checks


ROLE_PREFIX = "role:"


def claim_value(claims: Mapping[str, Any], path: str) -> Any:
    """The claim `path` names: a top-level claim of that name, else a dotted path into nested
    objects (`realm_access.roles`, `resource_access.enclave.roles`); None when absent."""
    if path in claims:
        return claims[path]
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _names(claims: Mapping[str, Any], path: str) -> list[str]:
    """The list of names in claim `path` (a single name counts as a list of one; absent: none)."""
    raw = claim_value(claims, path)
    if raw is None:
        return []
    names = [raw] if isinstance(raw, str) else raw
    if not isinstance(names, list) or not all(isinstance(g, str) for g in names):
        raise OidcError(_REFUSED, f"claim {path!r} is not a list of names: {raw!r}")
    return list(names)


def _ssl_error(error: BaseException) -> ssl.SSLError | None:
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _describe(error: httpx.HTTPError) -> str:
    found = _ssl_error(error)
    if found is not None:
        return f"TLS: {getattr(found, 'verify_message', None) or found.reason or found}"
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
