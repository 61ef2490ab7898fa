"""cases, case_entries, case_links, case_routing_cursors, case_customer_tiers

The first revision of the plugin's branch: labelled ``cases``, depending on the core
revision that created ``customers``. Every table is tenant-owned and gets row-level
security; personal text columns hold ciphertext (``LargeBinary``).

Revision ID: cases_0001
Revises:
"""

from __future__ import annotations

import crmkit
import sqlalchemy as sa
from alembic import op

revision = "cases_0001"
down_revision = None
branch_labels = ("cases",)
depends_on = "core_0001"

TABLES = ("cases", "case_entries", "case_links", "case_routing_cursors", "case_customer_tiers")


def _when(name: str, nullable: bool = True) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _customer_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["tenant_id", "customer_id"],
        ["customers.tenant_id", "customers.id"],
        name=op.f(f"fk_{table}_tenant_id_customer_id_customers"),
        ondelete="CASCADE",
    )


def _case_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["tenant_id", "case_id"],
        ["cases.tenant_id", "cases.id"],
        name=op.f(f"fk_{table}_tenant_id_case_id_cases"),
        ondelete="CASCADE",
    )


def upgrade() -> None:
    op.create_table(
        "cases",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("customer_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("channel", sa.String(20), nullable=False),
        sa.Column("priority", sa.String(20), nullable=False),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("subject", sa.LargeBinary(), nullable=True),
        sa.Column("description", sa.LargeBinary(), nullable=True),
        sa.Column("team", sa.String(100), nullable=True),
        sa.Column("assignee", sa.String(200), nullable=True),
        sa.Column("opened_by", sa.String(200), nullable=False),
        _when("opened_at", nullable=False),
        _when("updated_at", nullable=False),
        sa.Column("first_response_target_minutes", sa.Integer(), nullable=False),
        sa.Column("resolution_target_minutes", sa.Integer(), nullable=False),
        _when("first_response_warn_at", nullable=False),
        _when("first_response_due_at", nullable=False),
        _when("resolution_warn_at", nullable=False),
        _when("resolution_due_at", nullable=False),
        _when("paused_at"),
        sa.Column("paused_minutes", sa.Integer(), nullable=False),
        _when("first_response_at"),
        sa.Column("first_response_minutes", sa.Integer(), nullable=True),
        sa.Column("first_response_met", sa.Boolean(), nullable=True),
        _when("first_response_warned_at"),
        _when("first_response_breached_at"),
        _when("resolution_warned_at"),
        _when("resolution_breached_at"),
        _when("escalated_at"),
        _when("resolved_at"),
        sa.Column("resolution_minutes", sa.Integer(), nullable=True),
        sa.Column("resolution_met", sa.Boolean(), nullable=True),
        sa.Column("resolution", sa.LargeBinary(), nullable=True),
        sa.Column("resolution_code", sa.String(40), nullable=True),
        sa.Column("root_cause_code", sa.String(40), nullable=True),
        _when("closed_at"),
        sa.Column("reopen_count", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        _customer_fk("cases"),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_cases")),
    )
    with op.batch_alter_table("cases", schema=None) as batch_op:
        for column in ("customer_id", "status", "assignee", "opened_at"):
            batch_op.create_index(f"ix_cases_tenant_id_{column}", ["tenant_id", column])
    op.create_table(
        "case_entries",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("case_id", sa.Uuid(), nullable=False),
        sa.Column("customer_id", sa.Uuid(), nullable=False),
        sa.Column("visible_to_customer", sa.Boolean(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=True),
        sa.Column("author", sa.String(200), nullable=False),
        _when("created_at", nullable=False),
        _customer_fk("case_entries"),
        _case_fk("case_entries"),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_case_entries")),
    )
    with op.batch_alter_table("case_entries", schema=None) as batch_op:
        batch_op.create_index("ix_case_entries_tenant_id_case_id", ["tenant_id", "case_id"])
    op.create_table(
        "case_links",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("case_id", sa.Uuid(), nullable=False),
        sa.Column("target_type", sa.String(20), nullable=False),
        sa.Column("target_id", sa.String(64), nullable=False),
        _when("created_at", nullable=False),
        _case_fk("case_links"),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_case_links")),
    )
    with op.batch_alter_table("case_links", schema=None) as batch_op:
        batch_op.create_index("ix_case_links_tenant_id_case_id", ["tenant_id", "case_id"])
    op.create_table(
        "case_routing_cursors",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("team", sa.String(100), nullable=False),
        sa.Column("last_agent", sa.String(200), nullable=True),
        sa.PrimaryKeyConstraint("tenant_id", "team", name=op.f("pk_case_routing_cursors")),
    )
    op.create_table(
        "case_customer_tiers",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("customer_id", sa.Uuid(), nullable=False),
        sa.Column("tier", sa.Text(), nullable=False),
        _customer_fk("case_customer_tiers"),
        sa.PrimaryKeyConstraint("tenant_id", "customer_id", name=op.f("pk_case_customer_tiers")),
    )
    for table in TABLES:
        crmkit.enable_tenant_rls(table)


def downgrade() -> None:
    for table in reversed(TABLES):
        crmkit.disable_tenant_rls(table)
        op.drop_table(table)
