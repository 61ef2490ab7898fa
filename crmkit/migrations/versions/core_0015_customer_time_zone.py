"""a customer's own time zone

Messages held in quiet hours were timed in the tenant's zone for every customer; a
customer living elsewhere now has a zone of their own (``customers.time_zone``, an IANA
name, null for the tenant's).

Revision ID: core_0015
Revises: core_0014
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "core_0015"
down_revision = "core_0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("customers", sa.Column("time_zone", sa.String(64), nullable=True))


def downgrade() -> None:
    op.drop_column("customers", "time_zone")
