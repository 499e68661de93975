-- The two PostgreSQL roles of Enclave's audit log, run once by a database administrator:
--   psql -v ON_ERROR_STOP=1 -v owner_password="$OWNER_PASSWORD" -v app_password="$APP_PASSWORD" \
--        -d enclave -f audit-roles.sql
-- enclave_audit_owner owns the schema `enclave_audit` and, once `enclave audit migrate` has run
-- with its DSN (audit.owner_dsn_file), the tables and their triggers; only migrate and purge
-- use it. enclave_app is the web server's role (audit.dsn_file): migrate grants it reading and
-- appending, nothing more, so it cannot update, delete, truncate, alter or disable a trigger.
-- Neither is a superuser; tests/integration/test_audit_roles.py runs this file as it is.
CREATE ROLE enclave_audit_owner LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
    PASSWORD :'owner_password';
CREATE ROLE enclave_app LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
    PASSWORD :'app_password';
CREATE SCHEMA enclave_audit AUTHORIZATION enclave_audit_owner;
REVOKE ALL ON SCHEMA enclave_audit FROM PUBLIC;
-- Both find the log's tables without options in their DSNs.
ALTER ROLE enclave_audit_owner SET search_path = enclave_audit;
ALTER ROLE enclave_app SET search_path = enclave_audit;
GRANT USAGE ON SCHEMA enclave_audit TO enclave_app;
