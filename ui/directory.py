"""Sign-in by bind against LDAP / Active Directory, and the user's groups (nested included) from
the directory, mapped to Enclave groups and a role (core.identity; settings: auth.ldap).

Each call opens its own connections (the directory is asked at sign-in and at each
revalidation, not per request): the service account finds the user and their groups, then a
fresh connection binds as the user with the typed password. Servers are tried in order; every
failure to reach one, to agree on TLS, or to get an answer raises
core.identity.DirectoryUnavailable naming the server and the cause, never an ldap3 exception.
`groups_of_sid` gives a file server's SID its Enclave groups (SMB sources, `sid_groups`).
"""

from __future__ import annotations

import ast
import logging
import math
import re
import ssl
import struct
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import ldap3
from ldap3.core.exceptions import LDAPException
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import parse_dn

from core.errors import ConfigError
from core.identity import LDAP, DirectoryAccount, DirectoryUnavailable, Gone
from core.settings import LdapSettings
from core.users import valid_user_name

log = logging.getLogger(__name__)

# Active Directory's LDAP_MATCHING_RULE_IN_CHAIN: the whole chain of groups in one search.
IN_CHAIN = "1.2.840.113556.1.4.1941"
NOT_FOUND = "not found in the directory"
DISABLED = "disabled in the directory"
MAX_NAME_CHARS = 256
OR_BATCH = 100  # DNs per (|...) search of the recursive walk

# Object classes of a group: AD's group, groupOfNames and friends, Samba's NT4-style mapping.
GROUP_CLASSES = frozenset(
    {"group", "groupofnames", "groupofuniquenames", "groupofurls", "posixgroup", "sambagroupmapping"}
)
MAX_SUB_AUTHORITIES = 15

PAGE_SIZE = 500  # entries per page of a group search (AD answers at most 1000 at once)
_PAGED_RESULTS = "1.2.840.113556.1.4.319"

# LDAP result codes read here; any other failure is DirectoryUnavailable.
_SIZE_LIMIT_EXCEEDED = 4
_NO_SUCH_OBJECT = 32
# inappropriateAuthentication, invalidCredentials (AD adds why: bad password, disabled, locked,
# expired), unwillingToPerform (a server that refuses this account's simple bind)
_BIND_REFUSED = (48, 49, 53)


class _Unreachable(DirectoryUnavailable):
    """This server cannot be reached or does not answer: the next may."""


def in_chain_filter(dn: str) -> str:
    """Active Directory's filter for every group `dn` is in, directly or through nesting."""
    return f"(member:{IN_CHAIN}:={escape_filter_chars(dn)})"


def fill(template: str, key: str, value: str) -> str:
    """`template` with `{key}` replaced by `value` escaped for a filter (RFC 4515): a name typed
    at sign-in cannot add clauses (`*`, `alice)(uid=*`) to it."""
    return template.replace("{" + key + "}", escape_filter_chars(value))


def name_filter(settings: LdapSettings, name: str) -> str:
    """The filter for the user whose name_attribute is `name`: a user by user_filter (its
    `{name}` made `*`, so any user) with that name. Not user_filter itself: a user who signs in
    by mail is `uid` afterwards, and is looked up again by that."""
    anyone = settings.user_filter.replace("{name}", "*")
    return f"(&{anyone}({settings.name_attribute}={escape_filter_chars(name)}))"


def domain_of(base: str) -> str:
    """`OU=Staff,DC=corp,DC=example` -> `DC=corp,DC=example` (the base itself when it has no DC)."""
    try:
        parts = parse_dn(base)
    except LDAPException:
        return base
    dcs = [f"{attr}={value}" for attr, value, _ in parts if attr.casefold() == "dc"]
    return ",".join(dcs) or base


def sid_bytes(sid: str) -> bytes | None:
    """`S-1-5-21-...` as Active Directory stores objectSid ([MS-DTYP] 2.4.2.2: revision, count,
    48-bit authority big-endian, 32-bit sub-authorities little-endian); None if it is no SID."""
    parts = sid.split("-")
    numbers = parts[1:]
    if len(parts) < 3 or parts[0].upper() != "S" or not all(p.isascii() and p.isdigit() for p in numbers):
        return None
    revision, authority, *subs = (int(p) for p in numbers)
    if (
        revision != 1
        or authority >= 1 << 48
        or len(subs) > MAX_SUB_AUTHORITIES
        or any(s >= 1 << 32 for s in subs)
    ):
        return None
    head = struct.pack("<BB", revision, len(subs)) + authority.to_bytes(6, "big")
    return head + b"".join(struct.pack("<I", s) for s in subs)


def sid_filter(sid: str) -> str | None:
    """The filter for the entry whose SID is `sid`: AD's binary objectSid, each byte escaped
    (RFC 4515, `\\01\\05...`), or Samba's sambaSID text (NT4-style domains on OpenLDAP). A
    directory without one of the attributes matches nothing by it. None if `sid` is no SID."""
    raw = sid_bytes(sid)
    if raw is None:
        return None
    escaped = "".join(f"\\{b:02x}" for b in raw)
    return f"(|(objectSid={escaped})(sambaSID={escape_filter_chars(sid)}))"


def all_values(attributes: Any, key: str) -> list[str]:
    """An attribute's values as text, the key without regard to case."""
    for name, value in dict(attributes or {}).items():
        if name.casefold() == key.casefold():
            values = value if isinstance(value, list | tuple) else [value]
            return [v.decode("utf-8", errors="replace") if isinstance(v, bytes) else str(v) for v in values]
    return []


def acceptable_name(name: str) -> bool:
    """A name worth asking the directory about: not empty, not huge, no control characters."""
    return 0 < len(name) <= MAX_NAME_CHARS and name.strip() == name and name.isprintable()


def first_value(attributes: Any, key: str) -> str:
    """An attribute's (first) value as text; "" when the entry lacks it. Keys without regard to case."""
    for name, value in dict(attributes or {}).items():
        if name.casefold() == key.casefold():
            if isinstance(value, list | tuple):
                value = value[0] if value else ""
            if isinstance(value, bytes):
                return value.decode("utf-8", errors="replace")
            return str(value)
    return ""


class LdapDirectory:
    """The LDAP / Active Directory identity backend (docs/deploy.md, Identity)."""

    backend = LDAP

    def __init__(self, settings: LdapSettings) -> None:
        self.settings = settings
        self.mapping = settings.mapping.to_mapping()
        self.group_base = settings.group_base or domain_of(settings.user_base)
        for url in settings.urls:
            if url.lower().startswith("ldap://") and not settings.start_tls and not settings.allow_plain:
                raise ConfigError(
                    f"auth.ldap.urls: {url} would send passwords in clear: use ldaps://, or set "
                    "auth.ldap.start_tls: true (allow_plain is for tests on 127.0.0.1 only)"
                )
        if settings.bind_dn and settings.bind_password_file is None:
            raise ConfigError("auth.ldap.bind_dn is set but bind_password_file is not: name the file")
        ca = settings.ca_file
        if ca is not None and not _readable(ca):
            raise ConfigError(f"auth.ldap.ca_file {ca} cannot be read: name a PEM file of the directory's CA")
        self.service_password()  # unreadable: said now, not at the first sign-in
        # create_default_context (ldap3 uses it when no version is given) refuses below TLS 1.2.
        self._tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=str(ca) if ca else None)
        self.servers = self.fresh_servers()

    def fresh_servers(self) -> list[Any]:
        """The servers of auth.ldap.urls as new ldap3.Server objects. Each search and bind takes
        new ones: an ldap3.Server remembers an address that failed and refuses it for a while
        ("invalid server address"), so a directory back from an outage would stay refused."""
        return [
            ldap3.Server(
                url,
                use_ssl=url.lower().startswith("ldaps://"),
                tls=self._tls,
                get_info=ldap3.NONE,
                connect_timeout=self.settings.timeout_seconds,
            )
            for url in self.settings.urls
        ]

    # -- the backend's calls ------------------------------------------------------------------

    def authenticate(self, name: str, password: str) -> DirectoryAccount | Gone | None:
        """The user `name` if `password` binds as them; Gone when disabled_filter matches them;
        None for a wrong password, an unknown or ambiguous name. DirectoryUnavailable when the
        directory cannot say. (Active Directory refuses a disabled account's bind itself: None
        there, and `lookup` says Gone.)"""
        # An empty password is an "unauthenticated bind", which servers answer with success.
        if not password or not acceptable_name(name):
            return None
        with _Session(self) as session:
            entry = session.find_user(fill(self.settings.user_filter, "name", name), name)
            if entry is None:
                return None
            dn = entry["dn"]
            if not session.bind_as(dn, password):
                return None
            if session.disabled(dn):
                return Gone(name, DISABLED)
            return self._account(session, name, entry)

    def lookup(self, name: str) -> DirectoryAccount | Gone:
        """What the directory says now of the user whose Enclave name (name_attribute) is
        `name`, without a password (revalidation)."""
        if not acceptable_name(name):
            return Gone(name, NOT_FOUND)
        with _Session(self) as session:
            entry = session.find_user(name_filter(self.settings, name), name)
            if entry is None:
                return Gone(name, NOT_FOUND)
            if session.disabled(entry["dn"]):
                return Gone(name, DISABLED)
            return self._account(session, name, entry)

    def groups_of_sid(self, sid: str) -> tuple[str, ...] | None:
        """The Enclave groups of the directory group whose SID `sid` is (a file server's ACL
        names it): the group's DN mapped by auth.ldap.mapping, as a member's groups are at
        sign-in, so a file readable by Finance goes to the Enclave groups Finance's members get
        (members of groups nested in it have Finance among their groups too). () when the
        mapping gives it none; None when no group under group_base has it (unknown, a user's,
        or not a SID). DirectoryUnavailable when the directory cannot say."""
        query = sid_filter(sid)
        if query is None:
            return None
        with _Session(self) as session:
            found = session.search(self.group_base, query, ["objectClass"], size_limit=2)
        groups = [
            e["dn"]
            for e in found
            if GROUP_CLASSES & {c.casefold() for c in all_values(e.get("attributes"), "objectClass")}
        ]
        if len(groups) != 1:
            if len(groups) > 1:
                log.warning("auth.ldap finds several groups with the SID %s: taken as none", sid)
            return None
        return self.mapping.groups(groups)

    def probe(self, test_name: str | None = None) -> list[tuple[str, bool, str]]:
        """For `enclave doctor`: (check, ok, detail) for each server (reachable with valid TLS,
        the service account's bind) and, with `test_name`, what a lookup of that user says."""
        results: list[tuple[str, bool, str]] = []
        for server in self.fresh_servers():
            try:
                conn = _open_service(self, server)
            except DirectoryUnavailable as exc:
                results.append((f"{server.name} reachable", False, str(exc)))
                continue
            try:
                tls = _tls_version(conn)
                results.append((f"{server.name} reachable", True, f"TLS valid ({tls})" if tls else "no TLS"))
                who = self.settings.bind_dn or "anonymous"
                try:
                    _service_bind(self, server, conn)
                    results.append((f"{server.name} service bind", True, f"bound as {who}"))
                except DirectoryUnavailable as exc:
                    results.append((f"{server.name} service bind", False, str(exc)))
            finally:
                _close(conn)
        if test_name:
            results.append(self._probe_lookup(test_name))
        return results

    def _probe_lookup(self, name: str) -> tuple[str, bool, str]:
        check = f"lookup {name}"
        try:
            found = self.lookup(name)
        except DirectoryUnavailable as exc:
            return check, False, str(exc)
        if isinstance(found, Gone):
            return check, False, found.reason
        detail = (
            f"{found.subject}: {len(found.directory_groups)} directory groups, role {found.role}, "
            f"Enclave groups {', '.join(found.groups) or 'none'}"
        )
        if not found.directory_groups and self.settings.nested == "in_chain":
            # Directories other than AD answer the in-chain rule with nothing, not an error.
            return (
                check,
                False,
                detail + ": nested: in_chain works on Active Directory only (else: recursive)",
            )
        return check, True, detail

    # -- parts ----------------------------------------------------------------------------------

    def service_password(self) -> str | None:
        path = self.settings.bind_password_file
        if not self.settings.bind_dn or path is None:
            return None
        try:
            password = Path(path).read_text(encoding="utf-8").rstrip("\r\n")  # spaces may be part of it
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(
                f"auth.ldap.bind_password_file {path} cannot be read ({exc.__class__.__name__}): "
                "put the service account's password in it, readable by Enclave only"
            ) from None
        if not password:
            raise ConfigError(
                f"auth.ldap.bind_password_file {path} is empty: put the service account's password in it"
            )
        return password

    def _account(self, session: _Session, typed: str, entry: dict[str, Any]) -> DirectoryAccount | Gone:
        attributes = entry.get("attributes")
        dn = entry["dn"]
        name = first_value(attributes, self.settings.name_attribute) or typed
        if not valid_user_name(name):
            # Sessions, the audit log and the users file all key on it: only names a local user
            # could have (letters, digits and . _ @ -, at most 64).
            log.warning(
                "%s: its %s %r is not a valid Enclave user name", dn, self.settings.name_attribute, name
            )
            return Gone(typed, f"named {name!r} in the directory, which Enclave cannot use as a user name")
        return self.mapping.account(
            name=name,
            backend=LDAP,
            subject=dn,
            directory_groups=session.groups(dn),
            display_name=first_value(attributes, self.settings.display_name_attribute),
        )


class _Session:
    """The service account's connection to the first server that answers, for one call."""

    def __init__(self, directory: LdapDirectory) -> None:
        self.directory = directory
        self.settings = directory.settings
        self.server: Any = None
        self.conn: Any = None

    def __enter__(self) -> _Session:
        failures = []
        for server in self.directory.fresh_servers():
            try:
                conn = _open_service(self.directory, server)
                try:
                    _service_bind(self.directory, server, conn)
                except DirectoryUnavailable:
                    _close(conn)
                    raise
            except _Unreachable as exc:
                log.warning("%s", exc)
                failures.append(str(exc))
                continue
            self.server, self.conn = server, conn
            return self
        raise DirectoryUnavailable("no directory server answered: " + "; ".join(failures))

    def __exit__(self, *exc: object) -> None:
        _close(self.conn)

    def search(
        self, base: str, query: str, attributes: list[str], scope: str = ldap3.SUBTREE, size_limit: int = 0
    ) -> list[dict[str, Any]]:
        """The entries found (references left out). Without `size_limit`, page by page: every
        entry or DirectoryUnavailable, never a list cut short at the server's limit."""
        entries: list[dict[str, Any]] = []
        cookie: bytes | None = None
        while True:
            try:
                self.conn.search(
                    base, query, scope, attributes=attributes, size_limit=size_limit,
                    paged_size=None if size_limit else PAGE_SIZE, paged_cookie=cookie,
                )  # fmt: skip
            except LDAPException as exc:
                raise DirectoryUnavailable(f"{self.server.name}: search under {base} failed: {exc}") from None
            result = self.conn.result
            code = result.get("result", 0)
            if code == _NO_SUCH_OBJECT and scope == ldap3.BASE:
                return []  # the entry itself is gone
            if code == _NO_SUCH_OBJECT:
                raise DirectoryUnavailable(f"{self.server.name}: {base} does not exist (auth.ldap's bases)")
            if code not in (0, _SIZE_LIMIT_EXCEEDED) or (code == _SIZE_LIMIT_EXCEEDED and not size_limit):
                raise DirectoryUnavailable(
                    f"{self.server.name}: search under {base} failed: {result.get('description')} "
                    f"{result.get('message') or ''}".rstrip()
                )
            entries.extend(r for r in self.conn.response or [] if r.get("type") == "searchResEntry")
            control = (result.get("controls") or {}).get(_PAGED_RESULTS) or {}
            cookie = (control.get("value") or {}).get("cookie")
            if size_limit or not cookie:
                return entries

    def find_user(self, query: str, name: str) -> dict[str, Any] | None:
        """The one entry `query` finds; None for none or several."""
        s = self.settings
        found = self.search(s.user_base, query, [s.name_attribute, s.display_name_attribute], size_limit=2)
        if len(found) > 1:
            log.warning("auth.ldap finds %d entries for %r with %s: refused", len(found), name, query)
        return found[0] if len(found) == 1 else None

    def disabled(self, dn: str) -> bool:
        query = self.settings.disabled_filter
        return bool(query) and bool(self.search(dn, query or "", ["1.1"], scope=ldap3.BASE))

    def bind_as(self, dn: str, password: str) -> bool:
        """Whether `password` is `dn`'s, on a fresh connection to the same server."""
        conn = _open(self.directory, self.server, dn, password)
        try:
            try:
                if conn.bind():
                    return True
            except LDAPException as exc:
                raise DirectoryUnavailable(f"{self.server.name}: bind failed: {_cause(exc)}") from None
            if conn.result.get("result") in _BIND_REFUSED:
                log.info("bind as %s refused: %s", dn, conn.result.get("description"))
                return False
            raise DirectoryUnavailable(
                f"{self.server.name}: the user's bind was answered {conn.result.get('description')}"
            )
        finally:
            _close(conn)

    def groups(self, dn: str) -> list[str]:
        """Every group `dn` is in: direct, and by `nested`, the groups those are in."""
        s = self.settings
        base = self.directory.group_base
        if s.nested == "in_chain":
            return [e["dn"] for e in self.search(base, in_chain_filter(dn), ["1.1"])]
        found: dict[str, str] = {}  # casefolded DN -> DN: a cycle ends where it meets itself
        level, depth = [dn], 0
        while level:
            new = []
            for entry in self._member_of(level):
                key = entry["dn"].casefold()
                if key not in found and key != dn.casefold():
                    found[key] = entry["dn"]
                    new.append(entry["dn"])
            if s.nested == "none" or depth >= s.max_depth:
                break
            level, depth = new, depth + 1
        return list(found.values())

    def _member_of(self, dns: list[str]) -> Iterable[dict[str, Any]]:
        template = self.settings.group_filter
        for start in range(0, len(dns), OR_BATCH):
            batch = [fill(template, "dn", d) for d in dns[start : start + OR_BATCH]]
            query = batch[0] if len(batch) == 1 else "(|" + "".join(batch) + ")"
            yield from self.search(self.directory.group_base, query, ["1.1"])


def _open(directory: LdapDirectory, server: Any, user: str | None = None, password: str | None = None) -> Any:
    """A connection to `server` for `user` (None: anonymous), TLS agreed (LDAPS, or StartTLS
    when configured), not bound yet."""
    settings = directory.settings
    conn = ldap3.Connection(
        server,
        user=user,
        password=password,
        authentication=ldap3.SIMPLE if user else ldap3.ANONYMOUS,
        receive_timeout=math.ceil(settings.timeout_seconds),  # ldap3 packs it as whole seconds
        auto_referrals=False,
        read_only=True,
        raise_exceptions=False,
    )
    try:
        conn.open()
        if settings.start_tls and not server.ssl:
            conn.start_tls()
    except (LDAPException, OSError) as exc:
        _close(conn)
        raise _Unreachable(f"{server.name}: {_cause(exc)}") from None
    return conn


def _open_service(directory: LdapDirectory, server: Any) -> Any:
    return _open(directory, server, directory.settings.bind_dn, directory.service_password())


def _service_bind(directory: LdapDirectory, server: Any, conn: Any) -> None:
    settings = directory.settings
    who = settings.bind_dn or "an anonymous bind"
    try:
        ok = conn.bind()
    except LDAPException as exc:
        raise _Unreachable(f"{server.name}: bind as {who} failed: {_cause(exc)}") from None
    if not ok:
        raise DirectoryUnavailable(
            f"{server.name}: the service account {who} was refused: {conn.result.get('description')} "
            "(auth.ldap.bind_dn, bind_password_file)"
        )


def _cause(exc: BaseException) -> str:
    """ldap3's error in words, with TLS problems named as such."""
    args: tuple[Any, ...] = exc.args
    # ldap3's "unable to open socket" keeps the real causes in its second argument, and wraps
    # messages in tuples it then turns into text: unwrap both.
    if len(args) > 1 and isinstance(args[1], list):
        text = "; ".join(_unwrap(str(item[1] if isinstance(item, tuple) else item)) for item in args[1])
    else:
        text = _unwrap(str(exc))
    lowered = text.lower()
    mismatch = re.search(r"certificate (\{.*\}) doesn't match any name in \[([^\]]*)\]", text)
    if mismatch:
        return (
            f"TLS failed: the certificate is not for {mismatch.group(2).strip(chr(39))} (it names "
            f"{_cert_names(mismatch.group(1))}): name the server in auth.ldap.urls as its certificate does"
        )
    if "certificate" in lowered or "ssl" in lowered or "tls" in lowered:
        return f"TLS failed ({text}): is auth.ldap.ca_file the CA of the directory's certificate?"
    if "timed out" in lowered or "receive" in lowered:
        return f"no answer within auth.ldap.timeout_seconds ({text})"
    return f"cannot connect ({text})"


def _cert_names(printed: str) -> str:
    """The names in a certificate as ssl's getpeercert() prints it."""
    try:
        cert = ast.literal_eval(printed)
        names = [str(v) for _, v in cert.get("subjectAltName", ())]
    except (ValueError, SyntaxError, TypeError, AttributeError):
        names = []
    return ", ".join(names) or "other names"


def _unwrap(text: str) -> str:
    text = re.sub(r"\s*\(_ssl\.c:\d+\)", "", text)
    previous = None
    while previous != text:
        previous, text = text, text.strip("()'\", ")
    return text


def _tls_version(conn: Any) -> str:
    sock = getattr(conn, "socket", None)
    version = getattr(sock, "version", None)
    return str(version()) if callable(version) else ""


def _close(conn: Any) -> None:
    if conn is None:
        return
    try:
        conn.unbind()
    except (LDAPException, OSError):
        log.debug("closing an LDAP connection failed", exc_info=True)


def _readable(path: Path) -> bool:
    try:
        with Path(path).open("rb"):
            return True
    except OSError:
        return False
