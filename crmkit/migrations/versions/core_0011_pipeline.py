"""upkeep that looks only at tenants with work: unrelayed events and unsigned heads

The outbox sweep and the audit checkpoint each find the tenants with work in one
query, read from a partial index of the rows that are work (events in flight, heads
past their last checkpoint), so idle tenants cost them nothing. ``audit_heads`` gains
``checkpoint_seq`` (the seq last signed; 0 until the first checkpoint after this
migration, which therefore visits every tenant once). A plugin's cron finds the
tenants that enabled the plugin in one query too.

On PostgreSQL row-level security hides these rows from a session bound to no tenant.
Three functions answer with tenant ids alone: ``crmkit_unrelayed_tenants(cutoff)``,
``crmkit_unsigned_tenants()`` and ``crmkit_plugin_tenants(name)``, SECURITY DEFINER, owned by the role ``crmkit_upkeep``
(NOLOGIN, no BYPASSRLS), which may read only the columns they need, through a
SELECT policy of its own; only ``crmkit_app`` may call them. The role is
cluster-wide and stays on downgrade, like ``crmkit_app``.

Revision ID: core_0011
Revises: core_0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from crmkit.migrations.rls import APP_ROLE

revision = "core_0011"
down_revision = "core_0010"
branch_labels = None
depends_on = None

UPKEEP_ROLE = "crmkit_upkeep"
UNRELAYED = "relayed_at IS NULL AND dead_at IS NULL"
UNSIGNED = "seq > checkpoint_seq"
READABLE = {
    "outbox_events": "tenant_id, created_at, relayed_at, dead_at",
    "audit_heads": "tenant_id, seq, checkpoint_seq",
    "tenant_plugins": "tenant_id, plugin, enabled",
}
FUNCTIONS = {
    "crmkit_unrelayed_tenants(cutoff timestamptz)": (
        "SELECT DISTINCT o.tenant_id FROM outbox_events o"
        " WHERE o.relayed_at IS NULL AND o.dead_at IS NULL AND o.created_at <= cutoff"
    ),
    "crmkit_unsigned_tenants()": "SELECT h.tenant_id FROM audit_heads h WHERE h.seq > h.checkpoint_seq",
    "crmkit_plugin_tenants(name text)": "SELECT p.tenant_id FROM tenant_plugins p WHERE p.plugin = name AND p.enabled",
}

CREATE_ROLE = f"""
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{UPKEEP_ROLE}') THEN
        BEGIN
            CREATE ROLE {UPKEEP_ROLE} NOLOGIN NOSUPERUSER NOBYPASSRLS NOINHERIT NOCREATEDB NOCREATEROLE;
        EXCEPTION
            WHEN duplicate_object OR unique_violation THEN NULL;  -- created concurrently
            WHEN insufficient_privilege THEN
                RAISE EXCEPTION 'cannot create role {UPKEEP_ROLE}: run the migration as a role with '
                    'CREATEROLE, or have a DBA run CREATE ROLE {UPKEEP_ROLE} NOLOGIN first';
        END;
    END IF;
END $$
"""


def upgrade() -> None:
    # plain ALTERs, not batch: recreating audit_heads on SQLite would break the
    # triggers that name it
    op.add_column(
        "audit_heads", sa.Column("checkpoint_seq", sa.BigInteger(), server_default="0", nullable=False)
    )
    op.drop_index("ix_outbox_events_relayed_at_created_at", table_name="outbox_events")
    op.create_index(
        "ix_outbox_events_unrelayed",
        "outbox_events",
        ["tenant_id", "created_at"],
        postgresql_where=sa.text(UNRELAYED),
        sqlite_where=sa.text(UNRELAYED),
    )
    op.create_index(
        "ix_audit_heads_unsigned",
        "audit_heads",
        ["tenant_id"],
        postgresql_where=sa.text(UNSIGNED),
        sqlite_where=sa.text(UNSIGNED),
    )
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(CREATE_ROLE)
    op.execute(f"GRANT {UPKEEP_ROLE} TO CURRENT_USER")  # to hand it the functions
    op.execute(
        f"DO $$ BEGIN EXECUTE format('GRANT USAGE ON SCHEMA %I TO {UPKEEP_ROLE}', current_schema()); END $$"
    )
    for table, columns in READABLE.items():
        op.execute(f"GRANT SELECT ({columns}) ON {table} TO {UPKEEP_ROLE}")
        op.execute(f"CREATE POLICY upkeep_scan ON {table} FOR SELECT TO {UPKEEP_ROLE} USING (true)")
    for signature, body in FUNCTIONS.items():
        op.execute(
            f"CREATE FUNCTION {signature} RETURNS TABLE (tenant_id uuid) LANGUAGE sql STABLE ROWS 10 "
            f"SECURITY DEFINER AS $$ {body} $$"
        )
        op.execute(
            f"DO $$ BEGIN EXECUTE format('ALTER FUNCTION {signature} SET search_path = pg_catalog, %I', "
            "current_schema()); END $$"
        )
        op.execute(f"ALTER FUNCTION {signature} OWNER TO {UPKEEP_ROLE}")
        op.execute(f"REVOKE ALL ON FUNCTION {signature} FROM PUBLIC")
        op.execute(f"GRANT EXECUTE ON FUNCTION {signature} TO {APP_ROLE}")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for signature in FUNCTIONS:
            op.execute(f"DROP FUNCTION {signature}")
        for table in READABLE:
            op.execute(f"DROP POLICY upkeep_scan ON {table}")
            op.execute(f"REVOKE ALL ON {table} FROM {UPKEEP_ROLE}")
        op.execute(
            f"DO $$ BEGIN EXECUTE format('REVOKE USAGE ON SCHEMA %I FROM {UPKEEP_ROLE}', current_schema()); END $$"
        )
    op.drop_index("ix_audit_heads_unsigned", table_name="audit_heads")
    op.drop_index("ix_outbox_events_unrelayed", table_name="outbox_events")
    op.create_index("ix_outbox_events_relayed_at_created_at", "outbox_events", ["relayed_at", "created_at"])
    op.execute("ALTER TABLE audit_heads DROP COLUMN checkpoint_seq")
