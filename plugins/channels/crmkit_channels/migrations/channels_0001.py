"""channels: templates, campaigns, messages

Revision ID: channels_0001
Revises:
"""

from __future__ import annotations

import crmkit
import sqlalchemy as sa
from alembic import op

revision = "channels_0001"
down_revision = None
branch_labels = ("channels",)
depends_on = "core_0001"

TABLES = ("channels_templates", "channels_campaigns", "channels_messages")


def upgrade() -> None:
    op.create_table(
        "channels_templates",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("key", sa.String(100), nullable=False),
        sa.Column("channel", sa.String(20), nullable=False),
        sa.Column("locale", sa.String(20), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("subject", sa.String(500), nullable=True),
        sa.Column("body", sa.String(20000), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_channels_templates")),
        sa.UniqueConstraint(
            "tenant_id",
            "key",
            "channel",
            "locale",
            "version",
            name=op.f("uq_channels_templates_tenant_id"),
        ),
    )
    op.create_table(
        "channels_campaigns",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("template", sa.String(100), nullable=False),
        sa.Column("channel", sa.String(20), nullable=False),
        sa.Column("purpose", sa.String(64), nullable=False),
        sa.Column("locale", sa.String(20), nullable=False),
        sa.Column("filter", sa.JSON(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expanded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("unmask", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_channels_campaigns")),
    )
    op.create_table(
        "channels_messages",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("customer_id", sa.Uuid(), nullable=False),
        sa.Column("campaign_id", sa.Uuid(), nullable=True),
        sa.Column("direction", sa.String(10), nullable=False),
        sa.Column("channel", sa.String(20), nullable=False),
        sa.Column("purpose", sa.String(64), nullable=False),
        sa.Column("template", sa.String(100), nullable=True),
        sa.Column("locale", sa.String(20), nullable=False),
        sa.Column("idempotency_key", sa.String(300), nullable=False),
        sa.Column("requested_by", sa.String(200), nullable=False),
        sa.Column("unmask", sa.JSON(), nullable=False),
        sa.Column("variables", sa.LargeBinary(), nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("reason", sa.String(500), nullable=True),
        sa.Column("address", sa.LargeBinary(), nullable=True),
        sa.Column("subject", sa.LargeBinary(), nullable=True),
        sa.Column("body", sa.LargeBinary(), nullable=True),
        sa.Column("provider_id", sa.String(200), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.String(1000), nullable=True),
        sa.Column("scheduled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("read_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "customer_id"],
            ["customers.tenant_id", "customers.id"],
            name=op.f("fk_channels_messages_tenant_id_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_channels_messages")),
        sa.UniqueConstraint(
            "tenant_id", "idempotency_key", name=op.f("uq_channels_messages_tenant_id")
        ),
    )
    with op.batch_alter_table("channels_messages", schema=None) as batch_op:
        batch_op.create_index("ix_channels_messages_customer", ["tenant_id", "customer_id"])
        batch_op.create_index(
            "ix_channels_messages_campaign", ["tenant_id", "campaign_id", "status"]
        )
    for table in TABLES:
        crmkit.enable_tenant_rls(table)


def downgrade() -> None:
    for table in TABLES:
        crmkit.disable_tenant_rls(table)
    with op.batch_alter_table("channels_messages", schema=None) as batch_op:
        batch_op.drop_index("ix_channels_messages_campaign")
        batch_op.drop_index("ix_channels_messages_customer")
    for table in reversed(TABLES):
        op.drop_table(table)
