"""The loyalty tables. Every one is tenant-owned; ``tenant_id`` leads every key.

The ledger (``LedgerEntry``) is append-only: a correction is a new entry (an adjustment
or a reversal), never an update. What changes is derived state kept beside it for
speed: the account's running ``balance`` (always the sum of the customer's entries)
and the ``Lot``'s ``remaining`` points (what each earning still holds, spent oldest
first and expired by lot).
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

import crmkit
from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Enum,
    ForeignKeyConstraint,
    Index,
    String,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.orm import Mapped, mapped_column


def _enum(cls: type[enum.StrEnum]) -> Enum:
    """Stored by value as a checked VARCHAR, readable in SQL."""
    return Enum(
        cls,
        native_enum=False,
        length=max(len(m.value) for m in cls),
        values_callable=lambda e: [m.value for m in e],
        validate_strings=True,
    )


class EntryKind(enum.StrEnum):
    EARN = "earn"
    REDEEM = "redeem"
    EXPIRE = "expire"
    ADJUST = "adjust"
    REVERSE = "reverse"


class RedemptionStatus(enum.StrEnum):
    ACTIVE = "active"
    CANCELLED = "cancelled"


class Account(crmkit.TenantOwned, crmkit.Model):
    """A customer's loyalty account: the running balance and the tier."""

    __tablename__ = "loyalty_accounts"
    __table_args__ = (
        crmkit.customer_key(),
        CheckConstraint("balance >= 0", name="balance_not_negative"),
        Index("ix_loyalty_accounts_tenant_id_tier", "tenant_id", "tier"),
    )

    customer_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    balance: Mapped[int] = mapped_column(BigInteger, default=0)
    """The sum of the customer's ledger entries, kept with each entry (checked in tests)."""
    tier: Mapped[str] = mapped_column(String(40))
    tier_since: Mapped[datetime] = mapped_column(default=crmkit.utcnow)
    below_tier_since: Mapped[datetime | None] = mapped_column()
    """When the customer's points in the window first fell below their tier: the grace
    period runs from here; ``None`` while they qualify."""
    created_at: Mapped[datetime] = mapped_column(default=crmkit.utcnow)
    version: Mapped[int] = mapped_column(default=1)

    __mapper_args__ = {"version_id_col": version}


class LedgerEntry(crmkit.TenantOwned, crmkit.Model):
    """One movement of points. ``points`` is signed: earnings add, the rest subtract
    (a positive adjustment and the reversal of a redemption add too)."""

    __tablename__ = "loyalty_entries"
    __table_args__ = (
        crmkit.customer_key(),
        UniqueConstraint("tenant_id", "source"),
        Index("ix_loyalty_entries_tenant_id_customer_id_id", "tenant_id", "customer_id", "id"),
        Index("ix_loyalty_entries_tenant_id_occurred_at", "tenant_id", "occurred_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=crmkit.uuid7)
    customer_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    kind: Mapped[EntryKind] = mapped_column(_enum(EntryKind))
    points: Mapped[int] = mapped_column(BigInteger)
    balance_after: Mapped[int] = mapped_column(BigInteger)
    source: Mapped[str | None] = mapped_column(String(260))
    """What the entry answers, unique in the tenant (``activity:<id>``, ``expire:<lot>``,
    ``redeem:<redemption>``...): a second delivery of the same cause finds it and stops."""
    activity_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    reverses_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    """The entry a ``reverse`` entry undoes."""
    reason: Mapped[str | None] = mapped_column(crmkit.PersonalText())
    """Free text (an adjustment's reason): personal data, under the customer's key."""
    actor: Mapped[str] = mapped_column(String(200))
    occurred_at: Mapped[datetime] = mapped_column(default=crmkit.utcnow)
    """When the cause happened (an activity's time); windows and caps count by it."""
    created_at: Mapped[datetime] = mapped_column(default=crmkit.utcnow)


class Lot(crmkit.TenantOwned, crmkit.Model):
    """Points added by one entry, spent and expired first in, first out."""

    __tablename__ = "loyalty_lots"
    __table_args__ = (
        crmkit.customer_key(),
        CheckConstraint("remaining >= 0", name="remaining_not_negative"),
        Index(
            "ix_loyalty_lots_tenant_id_customer_id_expires_at",
            "tenant_id",
            "customer_id",
            "expires_at",
        ),
        Index("ix_loyalty_lots_tenant_id_expires_at", "tenant_id", "expires_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    """The id of the ledger entry that added the points."""
    customer_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    points: Mapped[int] = mapped_column(BigInteger)
    remaining: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[datetime] = mapped_column()
    warned_at: Mapped[datetime | None] = mapped_column()


class Reward(crmkit.TenantOwned, crmkit.Model):
    """An item of the tenant's catalogue."""

    __tablename__ = "loyalty_rewards"
    __table_args__ = (
        CheckConstraint("stock IS NULL OR stock >= 0", name="stock_not_negative"),
        CheckConstraint("cost_points > 0", name="cost_positive"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=crmkit.uuid7)
    name: Mapped[str] = mapped_column(String(200))
    cost_points: Mapped[int] = mapped_column(BigInteger)
    stock: Mapped[int | None] = mapped_column(BigInteger)
    """Units left; ``None``: unlimited."""
    valid_from: Mapped[datetime | None] = mapped_column()
    valid_until: Mapped[datetime | None] = mapped_column()
    tier_required: Mapped[str | None] = mapped_column(String(40))
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=crmkit.utcnow)


class Redemption(crmkit.TenantOwned, crmkit.Model):
    """A reward redeemed by a customer; the key makes a retried request redeem once."""

    __tablename__ = "loyalty_redemptions"
    __table_args__ = (
        crmkit.customer_key(),
        ForeignKeyConstraint(
            ["tenant_id", "reward_id"], ["loyalty_rewards.tenant_id", "loyalty_rewards.id"]
        ),
        UniqueConstraint("tenant_id", "customer_id", "idempotency_key"),
        Index("ix_loyalty_redemptions_tenant_id_reward_id", "tenant_id", "reward_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=crmkit.uuid7)
    customer_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    reward_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    idempotency_key: Mapped[str] = mapped_column(String(200))
    points: Mapped[int] = mapped_column(BigInteger)
    balance_after: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[RedemptionStatus] = mapped_column(
        _enum(RedemptionStatus), default=RedemptionStatus.ACTIVE
    )
    first_lot_expires_at: Mapped[datetime] = mapped_column()
    """When the oldest points it spent would have expired: points returned by a
    cancellation expire then, so cancelling never extends their life."""
    actor: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=crmkit.utcnow)
    cancelled_at: Mapped[datetime | None] = mapped_column()
