"""Row-level security for tenant-owned tables, for core and plugin migrations alike.

Call :func:`enable_tenant_rls` in the migration that creates a tenant-owned table (and
:func:`disable_tenant_rls` in its downgrade). On PostgreSQL the table gets a policy
that shows and accepts only rows of the tenant named by the transaction-local setting
``crmkit.tenant_id`` (set with ``set_config(..., true)`` at the start of every tenant
transaction); an unset tenant sees nothing. ``FORCE`` applies it to the table owner
too. On SQLite it does nothing: the tenant-bound session is the wall there.
"""

from __future__ import annotations

from alembic import op

SETTING = "crmkit.tenant_id"
POLICY = "tenant_isolation"
CURRENT_TENANT = f"NULLIF(current_setting('{SETTING}', true), '')::uuid"


def _postgres() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def enable_tenant_rls(table: str) -> None:
    if not _postgres():
        return
    op.execute(f'ALTER TABLE "{table}" ENABLE ROW LEVEL SECURITY')
    op.execute(f'ALTER TABLE "{table}" FORCE ROW LEVEL SECURITY')
    op.execute(
        f'CREATE POLICY {POLICY} ON "{table}" '
        f"USING (tenant_id = {CURRENT_TENANT}) WITH CHECK (tenant_id = {CURRENT_TENANT})"
    )


def disable_tenant_rls(table: str) -> None:
    if not _postgres():
        return
    op.execute(f'DROP POLICY IF EXISTS {POLICY} ON "{table}"')
    op.execute(f'ALTER TABLE "{table}" NO FORCE ROW LEVEL SECURITY')
    op.execute(f'ALTER TABLE "{table}" DISABLE ROW LEVEL SECURITY')
