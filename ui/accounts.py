"""Every account the web UI knows, and the groups each holds now.

Two kinds:
- **local**: the users file (core.users), read on each call; `enclave users add` takes effect
  at once. Small sites, and the break-glass admin: a name in the users file is always signed in
  against the file, never against a directory.
- **directory**: users of LDAP / Active Directory, an OpenID Connect provider, or the SSO
  proxy's groups header. What the directory said at sign-in is kept in the shared sign-in store
  (table `identities` of ui.sessions.AuthStore, so replicas agree) and read again from the
  directory every `auth.revalidate_minutes`: a user moved between groups reads the new
  documents and stops reading the old ones without signing out; one the directory disabled or
  deleted is signed out at the next check. A change is written to the audit log
  (`identity_changed`, `identity_revoked`).

When the directory cannot be reached at a check, what it said last stays in force for
`auth.unreachable_grace_minutes`; after that the user's requests are refused (DirectoryUnavailable)
until it answers again. Nothing falls back to the users file.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from core.errors import EnclaveError
from core.identity import LDAP, LOCAL, OIDC, PROXY, DirectoryAccount, DirectoryUnavailable, Gone
from core.settings import AuthSettings, Settings
from core.types import Principal, Role
from core.users import UserRecord, UserStore
from ui.sessions import AuthStore

log = logging.getLogger(__name__)

REVOKED_EVENT = "identity_revoked"
CHANGED_EVENT = "identity_changed"


class Revalidator(Protocol):
    """A directory that can say again who a signed-in user is, without their password."""

    def revalidate(
        self, name: str, subject: str, state: str | None
    ) -> tuple[DirectoryAccount | Gone, str | None]:
        """What the directory says of `name` (its id there: `subject`) now, and the state to
        keep for the next check (an OIDC refresh token; None for LDAP). DirectoryUnavailable
        when it cannot say."""
        ...


@dataclass(frozen=True)
class Account:
    """A user as the web UI sees them: who, with which role and groups, from which backend."""

    name: str
    role: Role
    groups: tuple[str, ...]
    backend: str  # core.identity.BACKENDS
    mark_source: str  # what the session's mark is taken from: a password hash, or backend and subject
    subject: str = ""
    directory_groups: tuple[str, ...] = ()
    display_name: str = ""
    checked: float = 0.0  # when the directory last answered (directory accounts)

    @property
    def principal(self) -> Principal:
        return Principal(name=self.name, role=self.role, groups=self.groups)

    @property
    def password_hash(self) -> str:
        """What sessions' marks are made from (ui.sessions.password_mark): for a local user the
        password hash (a new password ends their sessions), for a directory user the backend and
        the directory's id of them (a new account of the same name does)."""
        return self.mark_source

    @classmethod
    def local(cls, record: UserRecord) -> Account:
        return cls(record.name, record.role, record.groups, LOCAL, record.password_hash)

    @classmethod
    def of_directory(cls, found: DirectoryAccount, checked: float) -> Account:
        return cls(
            name=found.name,
            role=found.role,
            groups=found.groups,
            backend=found.backend,
            mark_source=f"{found.backend}:{found.subject}",
            subject=found.subject,
            directory_groups=found.directory_groups,
            display_name=found.display_name,
            checked=checked,
        )


class Accounts:
    """Local users and directory users, for the sign-in gate and every page's handlers.

    `get(name)` is what each request asks (ui.login.principal_of, ui.signin.Gate.check): the
    local user, or the directory user as last checked, checked again first when the check is
    due. `revalidators` maps a backend to what can check it (ldap: ui.directory.LdapDirectory,
    oidc: ui.oidc.OidcClient through its refresh token); the proxy's users are checked by the
    proxy at each request (`seen`)."""

    def __init__(
        self,
        users: UserStore,
        store: AuthStore,
        settings: AuthSettings,
        audit: Any,
        revalidators: dict[str, Revalidator] | None = None,
        *,
        ldap: Any = None,
        oidc: Any = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.users = users
        self.store = store
        self.revalidate_s = settings.revalidate_minutes * 60
        self.grace_s = settings.unreachable_grace_minutes * 60
        self.audit = audit
        self.revalidators = dict(revalidators or {})
        self.ldap = ldap  # ui.directory.LdapDirectory: password sign-in of names not in the users file
        self.oidc = oidc  # ui.oidc.OidcClient: the provider's sign-in button
        self.clock = clock

    # -- lookups ----------------------------------------------------------------------------

    def get(self, name: str) -> Account | None:
        """The account called `name` as it stands now; None when there is none (or the
        directory no longer lets it in). DirectoryUnavailable when its check is overdue and the
        directory cannot be reached."""
        record = self.users.get(name)
        if record is not None:
            return Account.local(record)
        row = self.store.identity(name)
        if row is None or row["gone"]:
            return None
        account = _account(row)
        now = self.clock()
        if now - account.checked < self.revalidate_s:
            return account
        return self._revalidate(account, row, now)

    def gone_reason(self, name: str) -> str | None:
        """Why the directory no longer lets `name` in, when it said so at a check."""
        row = self.store.identity(name)
        return str(row["gone"]) if row is not None and row["gone"] else None

    def local(self, name: str) -> UserRecord | None:
        return self.users.get(name)

    def local_account(self, name: str) -> Account | None:
        record = self.users.get(name)
        return Account.local(record) if record is not None else None

    def authenticate_local(self, name: str, password: str) -> Principal | None:
        return self.users.authenticate(name, password)

    # -- what a directory said -----------------------------------------------------------------

    def signed_in(self, found: DirectoryAccount, state: str | None = None) -> Account:
        """Keep what the directory said at a sign-in (`state`: the OIDC refresh token). Nothing
        is written to the audit log here: the caller's sign_in record names the role and groups
        granted."""
        now = self.clock()
        self.store.put_identity(_row(found, now, state))
        return Account.of_directory(found, now)

    def seen(self, found: DirectoryAccount) -> Account:
        """What the proxy's header says of a user at a request: kept, and a change audited."""
        now = self.clock()
        before = self.store.identity(found.name)
        row = _row(found, now, None)
        if before is not None and not before["gone"] and _same(before, row):
            return _account(before)  # unchanged: no write on every request
        self.store.put_identity(row)
        if before is not None and not before["gone"]:
            was = _account(before)
            if (was.role, was.groups) != (
                found.role,
                found.groups,
            ):  # what a user may read: as for LDAP and OIDC
                self._changed(was, found)
        return Account.of_directory(found, now)

    def _revalidate(self, account: Account, row: dict[str, Any], now: float) -> Account | None:
        if account.backend == PROXY:
            # The proxy vouches for its users at each request (Gate.identify); between requests
            # there is nothing to ask. A proxy user is as fresh as their last request.
            return account
        checker = self.revalidators.get(account.backend)
        if checker is None:
            raise DirectoryUnavailable(
                f"{account.name!r} signed in through {account.backend}, which is no longer configured "
                "(auth.ldap / auth.oidc): sign in again"
            )
        try:
            result, state = checker.revalidate(account.name, account.subject, row["state"])
        except DirectoryUnavailable:
            if now - account.checked < self.revalidate_s + self.grace_s:
                log.warning(
                    "could not check %r with %s; their groups of %s stay in force (auth.unreachable_grace_minutes)",
                    account.name,
                    account.backend,
                    time.strftime("%H:%M:%S UTC", time.gmtime(account.checked)),
                )
                return account
            raise
        if isinstance(result, Gone):
            self._revoke(account, result.reason, now)
            return None
        if result.name != account.name:
            # The directory now knows this session's subject by another name: a rename ends it.
            self._revoke(account, f"renamed in the directory to {result.name!r}", now)
            return None
        if not self.store.replace_identity(account.name, row["version"], _row(result, now, state)):
            fresh = self.store.identity(account.name)  # another request or replica checked at once
            return None if fresh is None or fresh["gone"] else _account(fresh)
        if (result.role, result.groups) != (account.role, account.groups):
            self._changed(account, result)
        return Account.of_directory(result, now)

    def _changed(self, before: Account, after: DirectoryAccount) -> None:
        log.info(
            "%s: %s says role %s, groups %s (was %s, %s)",
            after.name,
            after.backend,
            after.role,
            ",".join(after.groups),
            before.role,
            ",".join(before.groups),
        )
        self._append(
            CHANGED_EVENT,
            after.name,
            {
                "backend": after.backend,
                "role_before": before.role,
                "role": after.role,
                "groups_before": list(before.groups),
                "groups": list(after.groups),
                "directory_groups": list(after.directory_groups),
            },
        )

    def _revoke(self, account: Account, reason: str, now: float) -> None:
        if not self.store.mark_gone(account.name, reason, now):
            return  # another request or replica saw it first and wrote the record
        log.warning("%s is signed out: %s (%s)", account.name, reason, account.backend)
        self._append(REVOKED_EVENT, account.name, {"backend": account.backend, "reason": reason})

    def _append(self, event: str, user: str, data: dict[str, Any]) -> None:
        try:
            self.audit.append(event, user, data=data)
        except EnclaveError:
            log.exception("could not write the %s event for %r to the audit log", event, user)


def _row(found: DirectoryAccount, checked: float, state: str | None) -> dict[str, Any]:
    return {
        "user": found.name,
        "backend": found.backend,
        "subject": found.subject,
        "role": found.role,
        "groups": json.dumps(list(found.groups)),
        "directory_groups": json.dumps(list(found.directory_groups)),
        "display_name": found.display_name,
        "checked": checked,
        "state": state,
    }


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    keys = ("backend", "subject", "role", "groups", "directory_groups", "display_name")
    return all(a[k] == b[k] for k in keys)


def _account(row: dict[str, Any]) -> Account:
    return Account(
        name=row["user"],
        role=row["role"],
        groups=tuple(json.loads(row["groups"])),
        backend=row["backend"],
        mark_source=f"{row['backend']}:{row['subject']}",
        subject=row["subject"],
        directory_groups=tuple(json.loads(row["directory_groups"])),
        display_name=row["display_name"],
        checked=float(row["checked"]),
    )


def accounts_for(settings: Settings, users: UserStore, audit: Any) -> Accounts:
    """The accounts of `settings`: the users file, and the directories auth.* configures."""
    revalidators: dict[str, Revalidator] = {}
    ldap = oidc = None
    if settings.auth.ldap is not None:
        from ui.directory import LdapDirectory

        ldap = LdapDirectory(settings.auth.ldap)
        revalidators[LDAP] = LdapRevalidator(ldap)
    if settings.auth.oidc is not None:
        from ui.oidc import OidcClient

        oidc = OidcClient(settings.auth.oidc)
        revalidators[OIDC] = OidcRevalidator(oidc)
    return Accounts(
        users, AuthStore(settings.auth_store_path), settings.auth, audit, revalidators, ldap=ldap, oidc=oidc
    )


class LdapRevalidator:
    """Checks by a lookup in LDAP / Active Directory (ui.directory.LdapDirectory), as the service
    account: a user whose entry now has another DN is another person of the same name."""

    def __init__(self, directory: Any) -> None:
        self.directory = directory

    def revalidate(
        self, name: str, subject: str, state: str | None
    ) -> tuple[DirectoryAccount | Gone, str | None]:
        found = self.directory.lookup(name)
        if isinstance(found, DirectoryAccount) and found.subject.casefold() != subject.casefold():
            # Deleted, and another account made with the name: not the person who signed in.
            return Gone(name, "replaced in the directory by another account of the same name"), None
        return found, None


class OidcRevalidator:
    """Checks by a refresh at the OIDC provider (ui.oidc.OidcClient) with the refresh token kept
    at sign-in: invalid_grant (disabled, deleted, signed out there) ends the user's sessions."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def revalidate(
        self, name: str, subject: str, state: str | None
    ) -> tuple[DirectoryAccount | Gone, str | None]:
        if not state:
            return Gone(name, "the provider gave no refresh token to check the account with"), None
        result, new_state = self.client.refresh(state, subject=subject)
        if isinstance(result, Gone):
            return Gone(name, result.reason), None
        return result, new_state or state
