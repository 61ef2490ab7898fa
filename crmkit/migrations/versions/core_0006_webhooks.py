"""webhook subscriptions of installed apps

Revision ID: core_0006
Revises: core_0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from crmkit.migrations.rls import disable_tenant_rls, enable_tenant_rls

revision = "core_0006"
down_revision = "core_0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "webhook_subscriptions",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("installation_id", sa.Uuid(), nullable=False),
        sa.Column("event_types", sa.JSON(), nullable=False),
        sa.Column("wrapped_key", sa.LargeBinary(), nullable=False),
        sa.Column("secret", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "installation_id"],
            ["app_installations.tenant_id", "app_installations.id"],
            name=op.f("fk_webhook_subscriptions_tenant_id_installation_id_app_installations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "installation_id", name=op.f("pk_webhook_subscriptions")),
    )
    enable_tenant_rls("webhook_subscriptions")


def downgrade() -> None:
    disable_tenant_rls("webhook_subscriptions")
    op.drop_table("webhook_subscriptions")
