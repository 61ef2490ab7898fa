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


def upgrade() -> None:
    op.add_column("customers", sa.Column("erased_ref_index", sa.LargeBinary(16), nullable=True))
    op.create_index("ix_customers_tenant_id_erased_ref_index", "customers", ["tenant_id", "erased_ref_index"])


def downgrade() -> None:
    op.drop_index("ix_customers_tenant_id_erased_ref_index", table_name="customers")
    op.drop_column("customers", "erased_ref_index")
