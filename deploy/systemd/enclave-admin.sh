#!/bin/sh
# Runs an `enclave` command as enclave-web.service runs: its user, settings and audit DSN.
#   sudo /opt/enclave/deploy/systemd/enclave-admin.sh ingest /srv/documents --groups staff
#   sudo /opt/enclave/deploy/systemd/enclave-admin.sh users add alice --role staff --password-stdin
# On embedded Chroma (store.mode: embedded), a running enclave-web carries out `ingest`,
# `docs remove|reindex` and `sources sync|remove` itself over its admin channel
# (<data>/run/admin.sock, open to this user): the documents must be where the service sees them
# (not /home or /tmp: docs/deploy.md). It also syncs each source on its schedule:
#   sudo /opt/enclave/deploy/systemd/enclave-admin.sh sources add policies --location smb://files/Policies \
#       --credentials-file /etc/enclave/credentials/policies.cred --groups hr --schedule 1h
# `audit migrate` and `audit purge` also get the DSN of the role that owns the audit tables
# (/etc/enclave/credentials/audit-owner-dsn, root 0600), which the web service never sees:
#   sudo /opt/enclave/deploy/systemd/enclave-admin.sh audit migrate
owner=""
if [ "${1-}" = audit ] && { [ "${2-}" = migrate ] || [ "${2-}" = purge ]; }; then
    owner="--property=LoadCredential=audit-owner-dsn:/etc/enclave/credentials/audit-owner-dsn"
fi
# shellcheck disable=SC2086 # $owner is one word, or none
exec systemd-run --quiet --wait --pipe --collect --service-type=exec \
    --uid=enclave --gid=enclave --working-directory=/var/lib/enclave \
    --property=EnvironmentFile=/etc/enclave/enclave.env \
    --setenv=ENCLAVE_DATA_DIR=/var/lib/enclave \
    --property=LoadCredential=audit-dsn:/etc/enclave/credentials/audit-dsn \
    $owner \
    /bin/sh -c 'export ENCLAVE_AUDIT__DSN_FILE="$CREDENTIALS_DIRECTORY/audit-dsn"
if [ -f "$CREDENTIALS_DIRECTORY/audit-owner-dsn" ]; then
    export ENCLAVE_AUDIT__OWNER_DSN_FILE="$CREDENTIALS_DIRECTORY/audit-owner-dsn"
fi
exec /opt/enclave/venv/bin/enclave "$@"' \
    enclave "$@"
