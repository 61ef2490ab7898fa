"""an erased customer's external reference kept as a blind index

An erasure cleared ``customers.external_ref``, so a retried ``createCustomer`` or a re-run
import of the bank's old record created the erased customer again, personal data and
all. ``erased_ref_index`` keeps the reference as a keyed blind index only (the
reference itself is gone), and creating or importing it again is refused. Customers
erased before this revision kept nothing of their reference, so it cannot cover them.

Revision ID: core_0014
Revises: core_0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "core_0014"
down_revision = "core_0013"
branch_labels = None
depends_on = None

ERASED = "erased_ref_index IS NOT NULL"
"""The index holds erased customers only: a whole-table index on ``tenant_id`` first,
all of its values null, looked cheap enough to the planner (without statistics) to
answer any query of a tenant's customers through it, and an import batch's lookup of
a thousand references read every customer of the tenant."""


def upgrade() -> None:
    op.add_column("customers", sa.Column("erased_ref_index", sa.LargeBinary(16), nullable=True))
    op.create_index(
        "ix_customers_tenant_id_erased_ref_index",
        "customers",
        ["tenant_id", "erased_ref_index"],
        postgresql_where=sa.text(ERASED),
        sqlite_where=sa.text(ERASED),
    )


def downgrade() -> None:
    op.drop_index("ix_customers_tenant_id_erased_ref_index", table_name="customers")
    op.drop_column("customers", "erased_ref_index")
