"""the audit checkpoint also finds tenants with events waiting in the audit journal

``core_0012`` lets a transaction that finds its tenant's chain head taken journal its
events instead of waiting; the checkpoint chains them before it signs. A tenant whose
head has not moved since its last checkpoint may still have journaled events, so
``crmkit_unsigned_tenants()`` (``core_0011``) names those tenants too, and
``crmkit_upkeep`` may read ``audit_journal.tenant_id`` (the journal holds only events
waiting: its size does not grow with idle tenants).

Revision ID: core_0013
Revises: core_0012
"""

from __future__ import annotations

from alembic import op

revision = "core_0013"
down_revision = "core_0012"
branch_labels = None
depends_on = None

UPKEEP_ROLE = "crmkit_upkeep"
HEADS = "SELECT h.tenant_id FROM audit_heads h WHERE h.seq > h.checkpoint_seq"
JOURNAL = "SELECT j.tenant_id FROM audit_journal j"


def _define(body: str) -> None:
    """Redefine ``crmkit_unsigned_tenants()``; its owner and grants stay."""
    op.execute(
        "CREATE OR REPLACE FUNCTION crmkit_unsigned_tenants() RETURNS TABLE (tenant_id uuid) "
        f"LANGUAGE sql STABLE ROWS 10 SECURITY DEFINER AS $$ {body} $$"
    )
    op.execute(
        "DO $$ BEGIN EXECUTE format('ALTER FUNCTION crmkit_unsigned_tenants() "
        "SET search_path = pg_catalog, %I', current_schema()); END $$"
    )


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"GRANT SELECT (tenant_id) ON audit_journal TO {UPKEEP_ROLE}")
    op.execute(f"CREATE POLICY upkeep_scan ON audit_journal FOR SELECT TO {UPKEEP_ROLE} USING (true)")
    _define(f"{HEADS} UNION {JOURNAL}")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    _define(HEADS)
    op.execute("DROP POLICY upkeep_scan ON audit_journal")
    op.execute(f"REVOKE ALL ON audit_journal FROM {UPKEEP_ROLE}")
