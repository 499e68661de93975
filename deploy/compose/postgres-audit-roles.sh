#!/bin/sh
# Run by the postgres image on its first start (an empty data volume) only: makes the audit log's
# roles from deploy/postgres/audit-roles.sql, with the passwords in the secrets' files.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v owner_password="$(cat /run/secrets/audit_owner_password)" \
    -v app_password="$(cat /run/secrets/audit_app_password)" \
    -f /etc/enclave/audit-roles.sql
