"""notes table

The first revision of the plugin's own alembic branch: labelled with the plugin's
name, starting from nothing, and depending on the core revision that created
``customers`` (the foreign key's target). Every tenant-owned table gets row-level
security with :func:`crmkit.enable_tenant_rls` (PostgreSQL only; a no-op
on SQLite), removed again in the downgrade.

Revision ID: notes_0001
Revises:
"""

from __future__ import annotations

import crmkit
import sqlalchemy as sa
from alembic import op

revision = "notes_0001"
down_revision = None
branch_labels = ("notes",)
depends_on = "core_0001"


def upgrade() -> None:
    op.create_table(
        "notes",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("customer_id", sa.Uuid(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("author", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "customer_id"],
            ["customers.tenant_id", "customers.id"],
            name=op.f("fk_notes_tenant_id_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_notes")),
    )
    # batch_alter_table lets SQLite, which cannot ALTER much, run the same migration.
    with op.batch_alter_table("notes", schema=None) as batch_op:
        batch_op.create_index("ix_notes_tenant_id_customer_id", ["tenant_id", "customer_id"])
    crmkit.enable_tenant_rls("notes")


def downgrade() -> None:
    crmkit.disable_tenant_rls("notes")
    with op.batch_alter_table("notes", schema=None) as batch_op:
        batch_op.drop_index("ix_notes_tenant_id_customer_id")
    op.drop_table("notes")
