#!/usr/bin/env bash
# Debian packages the test suite drives for real: Chromium (browser tests, tests/e2e/test_browser.py),
# strace (the egress proof, tests/e2e/test_egress.py, records every connect of every process with it)
# and the PostgreSQL server binaries (the audit log's PostgreSQL backend; the tests start their own
# throwaway server, so the cluster Debian's package creates is not used) and tesseract (OCR of
# scanned PDFs and images: tests/unit/test_parsing.py, tests/integration/test_external_corpus.py;
# without it those files are reported "needs OCR", which the same tests check), Samba's smbd and
# Dovecot's IMAP server (the SMB and IMAP sources, tests/integration/test_connectors.py: the tests
# start throwaway servers of their own on 127.0.0.1; the services the packages set up are not
# used, and in a container without systemd they are not started), and acl's setfacl/getfacl (the
# POSIX ACLs of a folder source with `groups: from-source`, tests/integration/test_source_permissions.py),
# and OpenLDAP's slapd with ldap-utils (the LDAP / Active Directory sign-in,
# tests/integration/test_ldap_directory.py: the tests start a throwaway directory of their own on
# 127.0.0.1 with a cn=config in a temporary folder; the directory Debian's package sets up is not
# used), and Samba's VFS modules (acl_xattr: a share of the tests' smbd that keeps Windows NT ACLs
# of its own, with domain SIDs and deny ACEs, for SMB permissions resolved through the directory,
# tests/integration/test_source_sids.py).
# Installs only what is missing;
# needs root and Debian's package registry. systemd-analyze (deploy unit checks) comes with
# systemd, already on Debian.
set -euo pipefail
need=()
[[ -x /usr/bin/chromium ]] || need+=(chromium)
[[ -x /usr/bin/strace ]] || need+=(strace)
[[ -x /usr/lib/postgresql/15/bin/initdb ]] || need+=(postgresql)
[[ -x /usr/bin/tesseract ]] || need+=(tesseract-ocr)
[[ -x /usr/sbin/smbd ]] || need+=(samba)
[[ -x /usr/sbin/dovecot ]] || need+=(dovecot-imapd)
[[ -x /usr/bin/setfacl ]] || need+=(acl)
[[ -x /usr/sbin/slapd ]] || need+=(slapd ldap-utils)
compgen -G "/usr/lib/*/samba/vfs/acl_xattr.so" >/dev/null || need+=(samba-vfs-modules)
if ((${#need[@]} == 0)); then
    echo "system packages present: chromium, strace, postgresql, tesseract, samba, dovecot-imapd, acl, slapd, samba-vfs-modules"
    exit 0
fi
if [[ $(id -u) != 0 ]]; then
    echo "error: missing Debian packages: ${need[*]}; install them as root: apt-get install ${need[*]}" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
echo "installed: ${need[*]}"
