"""A throwaway Dovecot IMAP server for the tests: Debian's dovecot (dovecot-imapd) with a config
of its own in a temporary folder, one user (a passwd-file of its own; mail stored as `nobody`),
on 127.0.0.1: IMAP with STARTTLS on one free port, IMAPS on another, with a self-signed
certificate for 127.0.0.1 made here (`ca_file`).

`dovecot -F` runs in the foreground in a process group of its own, which `stop()` kills whole;
`start()` brings it back on the same ports with the same mail. The dovecot and dovenull system
users Debian's package creates run its login and internal processes; nothing outside the
temporary folder is written; no systemd. The master must start as root.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import pwd
import secrets
import subprocess
import tempfile
from pathlib import Path

from tests.support.daemon import LocalDaemon
from tests.support.net import free_port

REQUIRE_ENV = "REQUIRE_DOVECOT"
APT_HINT = "install Debian's dovecot-imapd package (deploy/tools/install-system-packages.sh)"
DOVECOT = "/usr/sbin/dovecot"


def missing() -> str | None:
    """Why Dovecot cannot run here, or None."""
    if not os.access(DOVECOT, os.X_OK):
        return f"Dovecot not found: {APT_HINT}"
    if os.geteuid() != 0:
        return "Dovecot's master process must start as root"
    for user in ("dovecot", "dovenull", "nobody"):
        try:
            pwd.getpwnam(user)
        except KeyError:
            return f"the system user {user!r} is missing: {APT_HINT}"
    return None


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, in PEM files under `folder`."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


class DovecotServer(LocalDaemon):
    USER = "enclave"
    user = USER
    name = "dovecot"

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="enclave-dovecot-"))
        self.base.chmod(0o755)  # its login processes run as dovenull
        self.port = free_port()
        self.tls_port = free_port()
        self.password = secrets.token_urlsafe(16)
        self.config = self.base / "dovecot.conf"
        self.log_path = self.base / "dovecot.log"
        self.process: subprocess.Popen[bytes] | None = None
        mail = self.base / "mail"
        mail.mkdir()
        nobody = pwd.getpwnam("nobody")
        os.chown(mail, nobody.pw_uid, nobody.pw_gid)
        self.ca_file, key = self_signed(self.base)
        users = self.base / "users"
        users.write_text(f"{self.USER}:{{PLAIN}}{self.password}\n")
        users.chmod(0o600)
        internal = pwd.getpwnam("dovecot")  # its auth process reads the passwd-file
        os.chown(users, internal.pw_uid, internal.pw_gid)
        b = self.base
        self.config.write_text(
            f"""instance_name = enclave-test-{b.name}
base_dir = {b}/run
state_dir = {b}/state
log_path = {self.log_path}
protocols = imap
listen = 127.0.0.1
ssl = yes
ssl_cert = <{self.ca_file}
ssl_key = <{key}
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{mail}/%u
first_valid_uid = 1
first_valid_gid = 1
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {users}
}}
userdb {{
  driver = static
  args = uid={nobody.pw_uid} gid={nobody.pw_gid} home={mail}/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {self.tls_port}
    ssl = yes
  }}
}}
"""
        )

    def ports(self) -> tuple[int, ...]:
        return (self.port, self.tls_port)

    @property
    def output(self) -> Path:
        return self.base / "dovecot.out"  # log_path is Dovecot's own log

    def start(self) -> DovecotServer:
        with self.output.open("ab") as out:
            self.process = subprocess.Popen(
                [DOVECOT, "-F", "-c", str(self.config)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        self.wait_listening()
        return self
