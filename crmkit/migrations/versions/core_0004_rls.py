"""row-level security on every tenant-owned table; the application role

PostgreSQL only (SQLite has neither roles nor policies: the tenant session is the wall
there). Every tenant-owned table of ``core_0003`` gets the ``tenant_isolation``
policy, ENABLE and FORCE row level security (:mod:`crmkit.migrations.rls`).

The group role ``crmkit_app`` (NOLOGIN, NOBYPASSRLS, owner of nothing) is created if
it does not exist yet (an existing one that is a superuser or bypasses RLS is refused);
a DBA may create it beforehand when the migrating role has no CREATEROLE. The
application logs in as a member of it. It gets USAGE on the schema; SELECT, INSERT,
UPDATE, DELETE on the tables, except the append-only ``audit_events`` and
``consent_records`` (SELECT, INSERT: append-only by privilege as well as by trigger)
and ``alembic_version`` (SELECT). Default privileges grant it the same on tables and
sequences the migrating role creates later, so every migration (core and plugins)
must run as this same owner role.

The downgrade removes the policies and every privilege of ``crmkit_app`` in this
database; the role itself is cluster-wide (other databases may use it) and stays.

Revision ID: core_0004
Revises: core_0003
"""

from __future__ import annotations

from alembic import op

from crmkit.migrations.rls import APP_ROLE, APPEND_ONLY, READ_WRITE, disable_tenant_rls, enable_tenant_rls

revision = "core_0004"
down_revision = "core_0003"
branch_labels = None
depends_on = None

TENANT_TABLES = {
    "customers": READ_WRITE,
    "customer_tags": READ_WRITE,
    "customer_keys": READ_WRITE,
    "customer_name_tokens": READ_WRITE,
    "activities": READ_WRITE,
    "outbox_events": READ_WRITE,
    "tenant_plugins": READ_WRITE,
    "handler_failures": READ_WRITE,
    "event_deliveries": READ_WRITE,
    "tenant_keys": READ_WRITE,
    "consent_records": APPEND_ONLY,
    "audit_events": APPEND_ONLY,
    "audit_heads": READ_WRITE,
    "audit_checkpoints": READ_WRITE,
}
"""The tenant-owned tables at core_0003, with the application role's privileges."""

CREATE_ROLE = f"""
DO $$
DECLARE
    existing pg_roles%ROWTYPE;
BEGIN
    SELECT * INTO existing FROM pg_roles WHERE rolname = '{APP_ROLE}';
    IF NOT FOUND THEN
        BEGIN
            CREATE ROLE {APP_ROLE} NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
        EXCEPTION
            WHEN duplicate_object OR unique_violation THEN NULL;  -- created concurrently
            WHEN insufficient_privilege THEN
                RAISE EXCEPTION 'cannot create role {APP_ROLE}: run the migration as a role with '
                    'CREATEROLE, or have a DBA run CREATE ROLE {APP_ROLE} NOLOGIN NOBYPASSRLS first';
        END;
    ELSIF existing.rolsuper OR existing.rolbypassrls THEN
        RAISE EXCEPTION 'role {APP_ROLE} must be neither a superuser nor BYPASSRLS';
    END IF;
END $$
"""  # noqa: S608  (constants only)

GRANT_REMAINING = f"""
DO $$
DECLARE
    t record;
BEGIN
    FOR t IN
        SELECT c.oid::regclass AS name FROM pg_class c
        WHERE c.relnamespace = current_schema()::text::regnamespace AND c.relkind IN ('r', 'p')
          AND c.relname <> 'alembic_version'
          AND NOT has_table_privilege('{APP_ROLE}', c.oid, 'SELECT')
    LOOP
        EXECUTE format('GRANT {READ_WRITE} ON %s TO {APP_ROLE}', t.name);
    END LOOP;
END $$
"""  # noqa: S608  (constants only)
"""Tables a migration created before the role existed (``tenants``, a plugin's table
whose migration ran first): read-write, as default privileges grant later ones."""


def _schema() -> str:
    name = str(op.get_bind().exec_driver_sql("SELECT current_schema()").scalar())
    return '"' + name.replace('"', '""') + '"'


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    schema = _schema()
    op.execute(CREATE_ROLE)
    op.execute(f"GRANT USAGE ON SCHEMA {schema} TO {APP_ROLE}")
    for table, privileges in TENANT_TABLES.items():
        enable_tenant_rls(table, privileges)
    op.execute(f"REVOKE ALL ON alembic_version FROM {APP_ROLE}")
    op.execute(f"GRANT SELECT ON alembic_version TO {APP_ROLE}")
    op.execute(GRANT_REMAINING)
    op.execute(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {APP_ROLE}")
    op.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT {READ_WRITE} ON TABLES TO {APP_ROLE}")
    op.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT USAGE, SELECT ON SEQUENCES TO {APP_ROLE}")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    schema = _schema()
    for table in reversed(TENANT_TABLES):
        disable_tenant_rls(table)
    op.execute(
        f"""DO $$ BEGIN
        IF EXISTS (SELECT FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
            ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} REVOKE ALL ON TABLES FROM {APP_ROLE};
            ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} REVOKE ALL ON SEQUENCES FROM {APP_ROLE};
            REVOKE ALL ON ALL TABLES IN SCHEMA {schema} FROM {APP_ROLE};
            REVOKE ALL ON ALL SEQUENCES IN SCHEMA {schema} FROM {APP_ROLE};
            REVOKE USAGE ON SCHEMA {schema} FROM {APP_ROLE};
        END IF;
        END $$"""  # noqa: S608  (constants and the quoted schema name)
    )
