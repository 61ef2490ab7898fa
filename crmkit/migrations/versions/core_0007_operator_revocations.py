"""revoked operator tokens

Revision ID: core_0007
Revises: core_0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "core_0007"
down_revision = "core_0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # a platform table (operator tokens belong to no tenant): no row-level security;
    # the application role gets read-write by core_0004's default privileges
    op.create_table(
        "operator_revocations",
        sa.Column("jti", sa.String(length=64), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("jti", name=op.f("pk_operator_revocations")),
    )


def downgrade() -> None:
    op.drop_table("operator_revocations")
