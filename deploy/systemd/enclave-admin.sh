#!/bin/sh
# Runs an `enclave` command as enclave-web.service runs: its user, settings and audit DSN.
#   sudo /opt/enclave/deploy/systemd/enclave-admin.sh ingest /srv/documents --groups staff
#   sudo /opt/enclave/deploy/systemd/enclave-admin.sh users add alice --role staff --password-stdin
exec systemd-run --quiet --wait --pipe --collect --service-type=exec \
    --uid=enclave --gid=enclave --working-directory=/var/lib/enclave \
    --property=EnvironmentFile=/etc/enclave/enclave.env \
    --setenv=ENCLAVE_DATA_DIR=/var/lib/enclave \
    --property=LoadCredential=audit-dsn:/etc/enclave/credentials/audit-dsn \
    /bin/sh -c 'ENCLAVE_AUDIT__DSN_FILE="$CREDENTIALS_DIRECTORY/audit-dsn" exec /opt/enclave/venv/bin/enclave "$@"' \
    enclave "$@"
