"""A throwaway OpenLDAP directory for the identity tests: Debian's slapd with a cn=config of its
own (slapadd'ed into a temporary folder, mdb backend), on 127.0.0.1: ldap:// (StartTLS) on one
free port, ldaps:// on another, with a certificate for 127.0.0.1 made here (`ca_file`).

The directory `dc=corp,dc=example` (see `DIRECTORY`): people alice (finance-readers), bob and
frank (hr), carol (admins), dave (hr, disabled), erin (compliance); groupOfNames groups with
nesting finance-readers -> finance -> all-staff, hr -> all-staff, compliance -> auditors, and a
cycle loop-a -> loop-b -> loop-a (erin in loop-a). A disabled person carries
`employeeType: disabled`, the convention of sites without the ppolicy overlay (the tests use
`disabled_filter: (employeeType=disabled)`); a service account `cn=svc-enclave,ou=service` may
read everything but passwords. `move`, `disable` and `delete` change the directory as the
rootdn while a test runs.

With `sids`, the directory also carries Windows security identifiers, as a file server's ACLs
name them: Debian's msuser schema (Active Directory's attributes, with nis it needs) with
objectSid given the octetStringMatch equality AD has (Debian's copy has none, so OpenLDAP could
not search it), and Samba's own schema (sambaSID, NT4-style domains on OpenLDAP). See `SIDS`:
finance-readers, all-staff and alice carry an objectSid (binary, as AD stores it), hr a sambaSID.
slapd runs in the foreground (`-d 0`) in a process group of its own;
root is fine (no -u/-g). Nothing outside the temporary folder is written; no systemd.
"""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import struct
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.support.daemon import LocalDaemon
from tests.support.dovecot import self_signed
from tests.support.net import free_port

REQUIRE_ENV = "REQUIRE_SLAPD"
APT_HINT = "install Debian's slapd package (deploy/tools/install-system-packages.sh)"
SLAPD = "/usr/sbin/slapd"
SLAPADD = "/usr/sbin/slapadd"
SCHEMA = Path("/etc/ldap/schema")
MODULES = Path("/usr/lib/ldap")

SUFFIX = "dc=corp,dc=example"
PEOPLE = f"ou=people,{SUFFIX}"
GROUPS = f"ou=groups,{SUFFIX}"
ROOT_DN = f"cn=admin,{SUFFIX}"
SERVICE_DN = f"cn=svc-enclave,ou=service,{SUFFIX}"
DISABLED_FILTER = "(employeeType=disabled)"

PEOPLE_NAMES = {
    "alice": "Alice Archer",
    "bob": "Bob Baker",
    "carol": "Carol Cook",
    "dave": "Dave Dyer",
    "erin": "Erin Evans",
    "frank": "Frank Fisher",
}
DISABLED = {"dave"}
# group -> its members: people by uid, groups by "cn=<name>".
DIRECTORY: dict[str, list[str]] = {
    "finance-readers": ["alice"],
    "finance": ["cn=finance-readers"],
    "hr": ["bob", "frank", "dave"],
    "all-staff": ["cn=finance", "cn=hr"],
    "admins": ["carol"],
    "compliance": ["erin"],
    "auditors": ["cn=compliance"],
    "loop-a": ["erin", "cn=loop-b"],
    "loop-b": ["cn=loop-a"],
}


DOMAIN_SID = "S-1-5-21-1004336348-1177238915-682003330"
# entry (a group by its cn, or a person by uid) -> its SID, with `sids`; hr's is a sambaSID.
SIDS = {
    "finance-readers": f"{DOMAIN_SID}-1104",
    "all-staff": f"{DOMAIN_SID}-1105",
    "hr": f"{DOMAIN_SID}-1106",
    "alice": f"{DOMAIN_SID}-1001",
}
SAMBA_SID_GROUPS = {"hr"}
MSUSER = SCHEMA / "msuser.ldif"
SAMBA_SCHEMA = Path("/usr/share/doc/samba/examples/LDAP/samba.ldif")


def sid_bytes(sid: str) -> bytes:
    """A SID as AD stores objectSid: revision, count, 48-bit authority (big-endian), sub-authorities."""
    _, revision, authority, *subs = sid.split("-")
    head = struct.pack("<BB", int(revision), len(subs)) + int(authority).to_bytes(6, "big")
    return head + b"".join(struct.pack("<I", int(s)) for s in subs)


def user_dn(uid: str) -> str:
    return f"uid={uid},{PEOPLE}"


def group_dn(cn: str) -> str:
    return f"cn={cn},{GROUPS}"


def member_dn(member: str) -> str:
    return group_dn(member[3:]) if member.startswith("cn=") else user_dn(member)


def missing() -> str | None:
    """Why slapd cannot run here, or None."""
    if not (os.access(SLAPD, os.X_OK) and os.access(SLAPADD, os.X_OK)):
        return f"OpenLDAP's slapd not found: {APT_HINT}"
    if not (SCHEMA / "inetorgperson.ldif").exists() or not (MODULES / "back_mdb.so").exists():
        return f"slapd's schema or back_mdb module not found: {APT_HINT}"
    return None


def require(sids: bool = False) -> None:
    """Skip the calling test when slapd cannot run here (with `sids`: or lacks the msuser or Samba
    schema); fail it where CI requires it (REQUIRE_SLAPD=1)."""
    import pytest

    reason = missing()
    if reason is None and sids and not (MSUSER.exists() and SAMBA_SCHEMA.exists()):
        reason = f"{MSUSER} (slapd) or {SAMBA_SCHEMA} (samba) not found: {APT_HINT}"
    if reason is None:
        return
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{REQUIRE_ENV}=1 but {reason}")
    pytest.skip(reason)


class SlapdServer(LocalDaemon):
    name = "slapd"
    user = SERVICE_DN

    def __init__(self, sids: bool = False) -> None:
        self.sids = sids
        self.base = Path(tempfile.mkdtemp(prefix="enclave-slapd-"))
        self.port = free_port()
        self.tls_port = free_port()
        self.root_password = secrets.token_urlsafe(16)
        self.password = secrets.token_urlsafe(16)  # the service account's
        self.passwords = {uid: secrets.token_urlsafe(12) for uid in PEOPLE_NAMES}
        self.log_path = self.base / "slapd.out"
        self.process: subprocess.Popen[bytes] | None = None
        self.config_dir = self.base / "slapd.d"
        for folder in (self.config_dir, self.base / "db"):
            folder.mkdir()
        self.ca_file, key = self_signed(self.base)
        self._slapadd(0, self._config_ldif(key))
        self._slapadd(1, self._data_ldif())

    @property
    def url(self) -> str:
        """ldap:// (with StartTLS)."""
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def ldaps_url(self) -> str:
        return f"ldaps://127.0.0.1:{self.tls_port}"

    def ports(self) -> tuple[int, ...]:
        return (self.port, self.tls_port)

    def start(self) -> SlapdServer:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [SLAPD, "-d", "0", "-F", str(self.config_dir), "-h", f"{self.url}/ {self.ldaps_url}/"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        self.wait_listening()
        return self

    def password_file(self, folder: Path) -> Path:
        """The service account's password in a file (mode 0600), as bind_password_file wants it."""
        path = folder / "ldap-service-password"
        path.write_text(self.password + "\n")
        path.chmod(0o600)
        return path

    def settings(self, folder: Path, **fields: Any) -> Any:
        """core.settings.LdapSettings for this directory over StartTLS; `fields` override."""
        from core.settings import LdapSettings

        values: dict[str, Any] = {
            "urls": [self.url],
            "start_tls": True,
            "ca_file": self.ca_file,
            "bind_dn": SERVICE_DN,
            "bind_password_file": self.password_file(folder),
            "user_base": PEOPLE,
            "group_base": GROUPS,
            "disabled_filter": DISABLED_FILTER,
            "timeout_seconds": 5,
            "mapping": {
                "groups": [
                    {"match": "finance-readers", "groups": ["finance-docs"]},
                    {"match": "CN=all-staff,*", "groups": ["staff-docs"]},
                    {"match": "hr", "groups": ["hr-docs"]},
                ],
                "admin": ["admins"],
                "auditor": ["auditors"],
            },
        }
        values.update(fields)
        return LdapSettings.model_validate(values)

    # --- changes while a test runs, as the rootdn ---

    @contextlib.contextmanager
    def admin(self) -> Iterator[Any]:
        import ldap3

        server = ldap3.Server("127.0.0.1", port=self.port, connect_timeout=5)
        conn = ldap3.Connection(server, ROOT_DN, self.root_password, auto_bind=True, raise_exceptions=True)
        try:
            yield conn
        finally:
            conn.unbind()

    def move(self, uid: str, from_group: str, to_group: str) -> None:
        """Take `uid` out of `from_group` and put them in `to_group`."""
        import ldap3

        with self.admin() as conn:
            conn.modify(group_dn(to_group), {"member": [(ldap3.MODIFY_ADD, [user_dn(uid)])]})
            self._remove_member(conn, group_dn(from_group), user_dn(uid))

    def disable(self, uid: str) -> None:
        import ldap3

        with self.admin() as conn:
            conn.modify(user_dn(uid), {"employeeType": [(ldap3.MODIFY_REPLACE, ["disabled"])]})

    def delete(self, uid: str) -> None:
        """Remove the person (and their memberships, as a directory's tools do)."""
        dn = user_dn(uid)
        with self.admin() as conn:
            conn.search(GROUPS, f"(member={dn})", attributes=[])
            for entry in list(conn.response or []):
                self._remove_member(conn, entry["dn"], dn)
            conn.delete(dn)

    @staticmethod
    def _remove_member(conn: Any, group: str, dn: str) -> None:
        # A groupOfNames must keep a member: one left empty holds the rootdn, as directory
        # tools do with a placeholder.
        import ldap3

        conn.search(group, "(objectClass=groupOfNames)", ldap3.BASE, attributes=["member"])
        left = [m for m in conn.response[0]["attributes"]["member"] if m.casefold() != dn.casefold()]
        conn.modify(group, {"member": [(ldap3.MODIFY_REPLACE, left or [ROOT_DN])]})

    # --- setup ---

    def _slapadd(self, db: int, ldif: str) -> None:
        path = self.base / f"db{db}.ldif"
        path.write_text(ldif)
        done = subprocess.run(
            [SLAPADD, "-n", str(db), "-F", str(self.config_dir), "-l", str(path)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"slapadd -n {db} failed ({done.returncode}): {done.stderr or done.stdout}")

    def _config_ldif(self, key: Path) -> str:
        b = self.base
        files = [SCHEMA / f"{name}.ldif" for name in ("core", "cosine", "inetorgperson")]
        if self.sids:
            msuser = MSUSER.read_text(encoding="utf-8")
            patched = msuser.replace(
                "NAME 'objectSid'\n  SYNTAX", "NAME 'objectSid'\n  EQUALITY octetStringMatch\n  SYNTAX"
            )
            assert patched != msuser, f"objectSid not found as expected in {MSUSER}"
            (b / "msuser.ldif").write_text(patched, encoding="utf-8")
            files += [SCHEMA / "nis.ldif", b / "msuser.ldif", SAMBA_SCHEMA]
        schemas = "".join(f"include: file://{path}\n\n" for path in files)
        return f"""dn: cn=config
objectClass: olcGlobal
cn: config
olcPidFile: {b}/slapd.pid
olcArgsFile: {b}/slapd.args
olcTLSCACertificateFile: {self.ca_file}
olcTLSCertificateFile: {self.ca_file}
olcTLSCertificateKeyFile: {key}
olcTLSProtocolMin: 3.3

dn: cn=module{{0}},cn=config
objectClass: olcModuleList
cn: module{{0}}
olcModulePath: {MODULES}
olcModuleLoad: back_mdb

dn: cn=schema,cn=config
objectClass: olcSchemaConfig
cn: schema

{schemas}dn: olcDatabase={{-1}}frontend,cn=config
objectClass: olcDatabaseConfig
objectClass: olcFrontendConfig
olcDatabase: {{-1}}frontend

dn: olcDatabase={{0}}config,cn=config
objectClass: olcDatabaseConfig
olcDatabase: {{0}}config
olcAccess: {{0}}to * by * none

dn: olcDatabase={{1}}mdb,cn=config
objectClass: olcDatabaseConfig
objectClass: olcMdbConfig
olcDatabase: {{1}}mdb
olcSuffix: {SUFFIX}
olcDbDirectory: {b}/db
olcDbMaxSize: 67108864
olcRootDN: {ROOT_DN}
olcRootPW: {self.root_password}
olcDbIndex: objectClass eq
olcDbIndex: uid,member eq
olcAccess: {{0}}to attrs=userPassword by anonymous auth by * none
olcAccess: {{1}}to * by dn.exact="{SERVICE_DN}" read by * none
"""

    def _data_ldif(self) -> str:
        entries = [
            f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\ndc: corp\no: Corp",
            f"dn: {PEOPLE}\nobjectClass: organizationalUnit\nou: people",
            f"dn: {GROUPS}\nobjectClass: organizationalUnit\nou: groups",
            f"dn: ou=service,{SUFFIX}\nobjectClass: organizationalUnit\nou: service",
            f"dn: {SERVICE_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\n"
            f"cn: svc-enclave\nuserPassword: {self.password}",
        ]
        for uid, full in PEOPLE_NAMES.items():
            entry = (
                f"dn: {user_dn(uid)}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {full}\n"
                f"sn: {full.split()[-1]}\nmail: {uid}@corp.example\nuserPassword: {self.passwords[uid]}"
            )
            if uid in DISABLED:
                entry += "\nemployeeType: disabled"
            entries.append(entry + self._sid_lines(uid))
        for cn, members in DIRECTORY.items():
            lines = "".join(f"\nmember: {member_dn(m)}" for m in members)
            entries.append(
                f"dn: {group_dn(cn)}\nobjectClass: groupOfNames\ncn: {cn}{lines}{self._sid_lines(cn)}"
            )
        return "\n\n".join(entries) + "\n"

    def _sid_lines(self, name: str) -> str:
        """The LDIF lines that give entry `name` its SID (with `sids`)."""
        if not self.sids or name not in SIDS:
            return ""
        if name in SAMBA_SID_GROUPS:
            return f"\nobjectClass: sambaGroupMapping\ngidNumber: 5106\nsambaGroupType: 2\nsambaSID: {SIDS[name]}"
        encoded = base64.b64encode(sid_bytes(SIDS[name])).decode("ascii")
        return f"\nobjectClass: extensibleObject\nobjectSid:: {encoded}"


@contextlib.contextmanager
def running_slapd(sids: bool = False) -> Iterator[SlapdServer]:
    """A slapd of the caller's own, closed after it (skipped, or failed under REQUIRE_SLAPD, without slapd)."""
    require(sids)
    server = SlapdServer(sids).start()
    try:
        yield server
    finally:
        server.close()
