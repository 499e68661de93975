"""Who a directory says a user is: the account an identity backend (LDAP / Active Directory,
OpenID Connect, the trusted proxy's groups header) reports, and the mapping from the
directory's groups to Enclave's groups and role.

A backend reports the groups as the directory names them (an LDAP DN, an OIDC claim value, a
proxy header's entry); `GroupMapping` turns them into Enclave groups and a role, so the
directory stays the one place where someone joins Finance or leaves the organisation.

Patterns are shell-style (`fnmatch`), matched without regard to case against the whole
directory name and, for a DN, against its first RDN's value (its CN): `CN=Finance*` and
`finance*` both match `CN=Finance-Readers,OU=Groups,DC=corp,DC=example`.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass

from core.errors import EnclaveError
from core.types import Principal, Role

# What a backend is called in sessions, the audit log and `enclave users show`.
LOCAL = "local"
LDAP = "ldap"
OIDC = "oidc"
PROXY = "proxy"
BACKENDS = (LOCAL, LDAP, OIDC, PROXY)


class DirectoryUnavailable(EnclaveError):
    """The directory or identity provider cannot be reached, refused our service account, or
    answered with an error: nothing can be said about the user (the message names the server)."""


@dataclass(frozen=True)
class GroupRule:
    """Directory groups matching `match` give the Enclave groups `groups`."""

    match: str
    groups: tuple[str, ...]


def first_rdn_value(name: str) -> str:
    """`CN=Finance,OU=Groups,DC=x` -> `Finance`; a name that is not a DN comes back as it is."""
    head = name.split(",", 1)[0]
    key, sep, value = head.partition("=")
    if sep and key.strip() and "=" not in value:
        return value.strip()
    return name


def matches(pattern: str, name: str) -> bool:
    """Whether a directory group `name` matches a mapping `pattern` (see the module's doc)."""
    pat = pattern.casefold()
    return fnmatch.fnmatchcase(name.casefold(), pat) or fnmatch.fnmatchcase(
        first_rdn_value(name).casefold(), pat
    )


@dataclass(frozen=True)
class GroupMapping:
    """From directory groups to Enclave groups and a role.

    rules: each rule whose pattern matches one of the user's directory groups adds its groups.
    admin / auditor: patterns; a user in a matching directory group gets that role (admin
    first). Everyone else gets `default_role`.
    pass_through: also keep each directory group's own short name (a DN's CN, lower-cased) as an
    Enclave group, for sites whose directory groups already are the document groups.
    """

    rules: tuple[GroupRule, ...] = ()
    admin: tuple[str, ...] = ()
    auditor: tuple[str, ...] = ()
    default_role: Role = "staff"
    pass_through: bool = False

    def groups(self, directory_groups: Iterable[str]) -> tuple[str, ...]:
        found: set[str] = set()
        for name in directory_groups:
            for rule in self.rules:
                if matches(rule.match, name):
                    found.update(rule.groups)
            if self.pass_through:
                found.add(first_rdn_value(name).casefold())
        return tuple(sorted(found))

    def role(self, directory_groups: Iterable[str]) -> Role:
        names = list(directory_groups)
        for role, patterns in (("admin", self.admin), ("auditor", self.auditor)):
            if any(matches(p, n) for p in patterns for n in names):
                return role  # type: ignore[return-value]
        return self.default_role

    def account(
        self, name: str, backend: str, subject: str, directory_groups: Iterable[str], display_name: str = ""
    ) -> DirectoryAccount:
        """The account of a user the directory reports in `directory_groups`."""
        found = tuple(sorted(set(directory_groups)))
        return DirectoryAccount(
            name=name,
            backend=backend,
            subject=subject,
            directory_groups=found,
            role=self.role(found),
            groups=self.groups(found),
            display_name=display_name,
        )


@dataclass(frozen=True)
class DirectoryAccount:
    """A user as a directory reports them now, mapped."""

    name: str  # the Enclave user name (what sessions, the audit log and the UI show)
    backend: str  # one of BACKENDS
    subject: str  # the directory's own id: an LDAP DN, an OIDC `sub`, the proxy's user name
    directory_groups: tuple[str, ...]  # as the directory names them, nested groups included
    role: Role
    groups: tuple[str, ...]  # Enclave groups, after the mapping
    display_name: str = ""

    @property
    def principal(self) -> Principal:
        return Principal(name=self.name, role=self.role, groups=self.groups)


@dataclass(frozen=True)
class Gone:
    """The directory no longer lets this user in: deleted, disabled, or locked (`reason` says
    which, in words the audit log keeps)."""

    name: str
    reason: str
