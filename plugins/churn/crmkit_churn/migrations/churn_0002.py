"""churn_models

The fits of the optional per-tenant logistic-regression model: coefficients as numbers
(never a pickle) and the held-out figures. Tenant-owned, under row-level security.

Revision ID: churn_0002
Revises: churn_0001
"""

from __future__ import annotations

import crmkit
import sqlalchemy as sa
from alembic import op

revision = "churn_0002"
down_revision = "churn_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "churn_models",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("fitted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("fitted_by", sa.String(length=200), nullable=False),
        sa.Column("cutoff", sa.DateTime(timezone=True), nullable=False),
        sa.Column("intercept", sa.Float(), nullable=False),
        sa.Column("coefficients", sa.JSON(), nullable=False),
        sa.Column("auc", sa.Float(), nullable=False),
        sa.Column("precision", sa.Float(), nullable=True),
        sa.Column("recall", sa.Float(), nullable=True),
        sa.Column("training_customers", sa.Integer(), nullable=False),
        sa.Column("training_churned", sa.Integer(), nullable=False),
        sa.Column("held_out_customers", sa.Integer(), nullable=False),
        sa.Column("held_out_churned", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_churn_models")),
    )
    op.create_index(
        "ix_churn_models_tenant_id_fitted_at", "churn_models", ["tenant_id", "fitted_at"]
    )
    crmkit.enable_tenant_rls("churn_models")


def downgrade() -> None:
    crmkit.disable_tenant_rls("churn_models")
    op.drop_index("ix_churn_models_tenant_id_fitted_at", table_name="churn_models")
    op.drop_table("churn_models")
