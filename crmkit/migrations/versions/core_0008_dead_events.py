"""outbox events that can never be dispatched are marked dead

Revision ID: core_0008
Revises: core_0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "core_0008"
down_revision = "core_0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # set once by dispatch when an event's type is no longer declared or its data is
    # unusable; the outbox sweep skips dead events instead of re-queuing them forever
    with op.batch_alter_table("outbox_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("dead_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbox_events", schema=None) as batch_op:
        batch_op.drop_column("dead_at")
