"""churn_signals and churn_alerts

The churn plugin's own alembic branch, depending on the core revision that created
``customers``. Both tables are tenant-owned: row-level security on each, removed again
in the downgrade. The partial unique index keeps one unresolved alert per customer.

Revision ID: churn_0001
Revises:
"""

from __future__ import annotations

import crmkit
import sqlalchemy as sa
from alembic import op

revision = "churn_0001"
down_revision = None
branch_labels = ("churn",)
depends_on = "core_0001"

TABLES = ("churn_signals", "churn_alerts")


def _customer_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["tenant_id", "customer_id"],
        ["customers.tenant_id", "customers.id"],
        name=op.f(f"fk_{table}_tenant_id_customer_id_customers"),
        ondelete="CASCADE",
    )


def upgrade() -> None:
    op.create_table(
        "churn_signals",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("customer_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("subject_id", sa.String(length=64), nullable=True),
        sa.Column("value", sa.Numeric(18, 4), nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        _customer_fk("churn_signals"),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_churn_signals")),
    )
    op.create_index(
        "ix_churn_signals_tenant_id_customer_id_kind",
        "churn_signals",
        ["tenant_id", "customer_id", "kind"],
    )
    op.create_table(
        "churn_alerts",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("customer_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("score", sa.Integer(), nullable=False),
        sa.Column("band", sa.String(length=16), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("features_used", sa.JSON(), nullable=False),
        sa.Column("assigned_to", sa.String(length=200), nullable=True),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acknowledged_by", sa.String(length=200), nullable=True),
        sa.Column("action_step", sa.String(length=40), nullable=True),
        sa.Column("action_kind", sa.String(length=16), nullable=True),
        sa.Column("actioned_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("actioned_by", sa.String(length=200), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_by", sa.String(length=200), nullable=True),
        sa.Column("note", sa.LargeBinary(), nullable=True),
        _customer_fk("churn_alerts"),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_churn_alerts")),
    )
    op.create_index(
        "ux_churn_alerts_one_open",
        "churn_alerts",
        ["tenant_id", "customer_id"],
        unique=True,
        sqlite_where=sa.text("resolved_at IS NULL"),
        postgresql_where=sa.text("resolved_at IS NULL"),
    )
    op.create_index("ix_churn_alerts_tenant_id_status", "churn_alerts", ["tenant_id", "status"])
    for table in TABLES:
        crmkit.enable_tenant_rls(table)


def downgrade() -> None:
    for table in TABLES:
        crmkit.disable_tenant_rls(table)
    op.drop_index("ix_churn_alerts_tenant_id_status", table_name="churn_alerts")
    op.drop_index("ux_churn_alerts_one_open", table_name="churn_alerts")
    op.drop_table("churn_alerts")
    op.drop_index("ix_churn_signals_tenant_id_customer_id_kind", table_name="churn_signals")
    op.drop_table("churn_signals")
