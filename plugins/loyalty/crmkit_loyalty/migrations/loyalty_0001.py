"""loyalty tables: accounts, the ledger, lots, rewards, redemptions

The first revision of the plugin's alembic branch. Every table is tenant-owned and
gets row-level security. The ledger's entries are never updated: the application role
may insert, read and (for erasure) delete them, not change them.

Revision ID: loyalty_0001
Revises:
"""

from __future__ import annotations

import crmkit
import sqlalchemy as sa
from alembic import op

revision = "loyalty_0001"
down_revision = None
branch_labels = ("loyalty",)
depends_on = "core_0001"

LEDGER_PRIVILEGES = "SELECT, INSERT, DELETE"
TABLES = (
    "loyalty_redemptions",
    "loyalty_rewards",
    "loyalty_lots",
    "loyalty_entries",
    "loyalty_accounts",
)


def _customer_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["tenant_id", "customer_id"],
        ["customers.tenant_id", "customers.id"],
        name=op.f(f"fk_{table}_tenant_id_customer_id_customers"),
        ondelete="CASCADE",
    )


def _when(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "loyalty_accounts",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("customer_id", sa.Uuid(), nullable=False),
        sa.Column("balance", sa.BigInteger(), nullable=False),
        sa.Column("tier", sa.String(length=40), nullable=False),
        _when("tier_since"),
        _when("below_tier_since", nullable=True),
        _when("created_at"),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.CheckConstraint("balance >= 0", name=op.f("ck_loyalty_accounts_balance_not_negative")),
        _customer_fk("loyalty_accounts"),
        sa.PrimaryKeyConstraint("tenant_id", "customer_id", name=op.f("pk_loyalty_accounts")),
    )
    op.create_table(
        "loyalty_entries",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("customer_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=7), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("balance_after", sa.BigInteger(), nullable=False),
        sa.Column("source", sa.String(length=260), nullable=True),
        sa.Column("activity_id", sa.Uuid(), nullable=True),
        sa.Column("reverses_id", sa.Uuid(), nullable=True),
        sa.Column("reason", sa.LargeBinary(), nullable=True),
        sa.Column("actor", sa.String(length=200), nullable=False),
        _when("occurred_at"),
        _when("created_at"),
        _customer_fk("loyalty_entries"),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_loyalty_entries")),
        sa.UniqueConstraint(
            "tenant_id", "source", name=op.f("uq_loyalty_entries_tenant_id_source")
        ),
    )
    op.create_table(
        "loyalty_lots",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("customer_id", sa.Uuid(), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("remaining", sa.BigInteger(), nullable=False),
        _when("expires_at"),
        _when("warned_at", nullable=True),
        sa.CheckConstraint("remaining >= 0", name=op.f("ck_loyalty_lots_remaining_not_negative")),
        _customer_fk("loyalty_lots"),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_loyalty_lots")),
    )
    op.create_table(
        "loyalty_rewards",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("cost_points", sa.BigInteger(), nullable=False),
        sa.Column("stock", sa.BigInteger(), nullable=True),
        _when("valid_from", nullable=True),
        _when("valid_until", nullable=True),
        sa.Column("tier_required", sa.String(length=40), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        _when("created_at"),
        sa.CheckConstraint(
            "stock IS NULL OR stock >= 0", name=op.f("ck_loyalty_rewards_stock_not_negative")
        ),
        sa.CheckConstraint("cost_points > 0", name=op.f("ck_loyalty_rewards_cost_positive")),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_loyalty_rewards")),
    )
    op.create_table(
        "loyalty_redemptions",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("customer_id", sa.Uuid(), nullable=False),
        sa.Column("reward_id", sa.Uuid(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("balance_after", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=9), nullable=False),
        _when("first_lot_expires_at"),
        sa.Column("actor", sa.String(length=200), nullable=False),
        _when("created_at"),
        _when("cancelled_at", nullable=True),
        _customer_fk("loyalty_redemptions"),
        sa.ForeignKeyConstraint(
            ["tenant_id", "reward_id"],
            ["loyalty_rewards.tenant_id", "loyalty_rewards.id"],
            name=op.f("fk_loyalty_redemptions_tenant_id_reward_id_loyalty_rewards"),
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_loyalty_redemptions")),
        sa.UniqueConstraint(
            "tenant_id",
            "customer_id",
            "idempotency_key",
            name=op.f("uq_loyalty_redemptions_tenant_id_customer_id_idempotency_key"),
        ),
    )
    indexes = {
        "loyalty_accounts": [("ix_loyalty_accounts_tenant_id_tier", ["tenant_id", "tier"])],
        "loyalty_entries": [
            ("ix_loyalty_entries_tenant_id_customer_id_id", ["tenant_id", "customer_id", "id"]),
            ("ix_loyalty_entries_tenant_id_occurred_at", ["tenant_id", "occurred_at"]),
        ],
        "loyalty_lots": [
            (
                "ix_loyalty_lots_tenant_id_customer_id_expires_at",
                ["tenant_id", "customer_id", "expires_at"],
            ),
            ("ix_loyalty_lots_tenant_id_expires_at", ["tenant_id", "expires_at"]),
        ],
        "loyalty_redemptions": [
            ("ix_loyalty_redemptions_tenant_id_reward_id", ["tenant_id", "reward_id"])
        ],
    }
    for table, table_indexes in indexes.items():
        with op.batch_alter_table(table, schema=None) as batch_op:
            for name, columns in table_indexes:
                batch_op.create_index(name, columns)
    for table in TABLES:
        privileges = (
            LEDGER_PRIVILEGES if table == "loyalty_entries" else "SELECT, INSERT, UPDATE, DELETE"
        )
        crmkit.enable_tenant_rls(table, privileges)


def downgrade() -> None:
    for table in TABLES:
        crmkit.disable_tenant_rls(table)
        op.drop_table(table)
