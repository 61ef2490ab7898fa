"""Row-level security for tenant-owned tables, for core and plugin migrations alike.

Call :func:`enable_tenant_rls` in the migration that creates a tenant-owned table (and
:func:`disable_tenant_rls` in its downgrade). On PostgreSQL the table gets a policy
that shows and accepts only rows of the tenant named by the transaction-local setting
``crmkit.tenant_id`` (set with ``set_config(..., true)`` at the start of every tenant
transaction); an unset tenant sees nothing. ``FORCE`` applies it to the table owner
too. The application role (:data:`APP_ROLE`, created by ``core_0004``) is granted
``privileges`` on the table when it exists. On SQLite it does nothing: the
tenant-bound session is the wall there.

Migrations run as the role that owns the tables (``CRMKIT_MIGRATION_DATABASE_URL``);
the application connects as a member of :data:`APP_ROLE`, which owns nothing and
cannot bypass row-level security.
"""

from __future__ import annotations

from alembic import op

SETTING = "crmkit.tenant_id"
POLICY = "tenant_isolation"
CURRENT_TENANT = f"NULLIF(current_setting('{SETTING}', true), '')::uuid"
APP_ROLE = "crmkit_app"
"""The group role the application's login role belongs to: no ownership, no BYPASSRLS."""
READ_WRITE = "SELECT, INSERT, UPDATE, DELETE"
APPEND_ONLY = "SELECT, INSERT"
PRIVILEGES = {"SELECT", "INSERT", "UPDATE", "DELETE"}


def _postgres() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def _quoted(table: str) -> str:
    return '"' + table.replace('"', '""') + '"'


def grant_app(table: str, privileges: str = READ_WRITE) -> None:
    """Give :data:`APP_ROLE` exactly ``privileges`` on ``table`` (if the role exists yet:
    ``core_0004`` grants on every table already there when it creates it)."""
    if not _postgres():
        return
    if not set(privileges.replace(",", " ").split()) <= PRIVILEGES:
        raise ValueError(f"privileges {privileges!r}: a comma-separated list of {sorted(PRIVILEGES)}")
    name = _quoted(table)
    op.execute(
        f"""DO $$ BEGIN
        IF EXISTS (SELECT FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
            REVOKE ALL ON {name} FROM {APP_ROLE};
            GRANT {privileges} ON {name} TO {APP_ROLE};
        END IF;
        END $$"""  # noqa: S608  (a quoted identifier and checked keywords)
    )


def enable_tenant_rls(table: str, privileges: str = READ_WRITE) -> None:
    """Isolate ``table`` by tenant; ``privileges`` of the application role on it
    (:data:`APPEND_ONLY` for a ledger the application must never change)."""
    if not _postgres():
        return
    name = _quoted(table)
    op.execute(f"ALTER TABLE {name} ENABLE ROW LEVEL SECURITY")
    op.execute(f"ALTER TABLE {name} FORCE ROW LEVEL SECURITY")
    op.execute(f"DROP POLICY IF EXISTS {POLICY} ON {name}")
    op.execute(
        f"CREATE POLICY {POLICY} ON {name} "
        f"USING (tenant_id = {CURRENT_TENANT}) WITH CHECK (tenant_id = {CURRENT_TENANT})"
    )
    grant_app(table, privileges)


def disable_tenant_rls(table: str) -> None:
    if not _postgres():
        return
    name = _quoted(table)
    op.execute(f"DROP POLICY IF EXISTS {POLICY} ON {name}")
    op.execute(f"ALTER TABLE {name} NO FORCE ROW LEVEL SECURITY")
    op.execute(f"ALTER TABLE {name} DISABLE ROW LEVEL SECURITY")
