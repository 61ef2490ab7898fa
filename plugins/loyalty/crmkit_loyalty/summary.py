"""The manager summary: members and points by tier, points earned, redeemed and expired
per month, and the liability (outstanding points x the tenant's point value). Three
grouped statements whatever the tenant's size."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import crmkit
from sqlalchemy import func, select
from sqlalchemy.sql.elements import ColumnElement

from crmkit_loyalty.models import Account, EntryKind, LedgerEntry
from crmkit_loyalty.settings import LoyaltySettings


@dataclass(frozen=True)
class TierLine:
    tier: str
    members: int
    points: int


@dataclass(frozen=True)
class MonthLine:
    month: str
    earned: int
    redeemed: int
    expired: int


@dataclass(frozen=True)
class Report:
    members: int
    outstanding_points: int
    point_value: Decimal
    currency: str
    liability: Decimal
    tiers: list[TierLine]
    months: list[MonthLine]


def _month(ctx: crmkit.TenantContext) -> ColumnElement[str]:
    """``YYYY-MM`` of an entry's time in UTC, in the database's own dialect."""
    if ctx.session.get_bind().dialect.name == "postgresql":
        return func.to_char(func.timezone("UTC", LedgerEntry.occurred_at), "YYYY-MM")
    return func.strftime("%Y-%m", LedgerEntry.occurred_at)  # SQLite stores UTC


def _months_back(count: int) -> list[str]:
    """The last ``count`` months up to the current one, oldest first."""
    now = crmkit.utcnow().astimezone(UTC)
    index = now.year * 12 + now.month - 1
    return [f"{i // 12:04d}-{i % 12 + 1:02d}" for i in range(index - count + 1, index + 1)]


async def report(ctx: crmkit.TenantContext, months: int) -> Report:
    settings = ctx.settings_as(LoyaltySettings)
    by_tier = {
        tier: (int(members), int(points or 0))
        for tier, members, points in await ctx.session.execute(
            select(Account.tier, func.count(), func.sum(Account.balance)).group_by(Account.tier)
        )
    }
    names = [tier.name for tier in settings.tiers]
    names += sorted(set(by_tier) - set(names))  # tiers since removed, until recomputed
    tiers = [TierLine(name, *by_tier.get(name, (0, 0))) for name in names]
    wanted = _months_back(months)
    month = _month(ctx)
    totals: dict[tuple[str, EntryKind], int] = {
        (row_month, kind): int(points)
        for row_month, kind, points in await ctx.session.execute(
            select(month, LedgerEntry.kind, func.sum(LedgerEntry.points))
            .where(
                LedgerEntry.occurred_at >= datetime.fromisoformat(f"{wanted[0]}-01T00:00+00:00"),
                LedgerEntry.kind.in_([EntryKind.EARN, EntryKind.REDEEM, EntryKind.EXPIRE]),
            )
            .group_by(month, LedgerEntry.kind)
        )
    }
    outstanding = sum(line.points for line in tiers)
    return Report(
        members=sum(line.members for line in tiers),
        outstanding_points=outstanding,
        point_value=settings.point_value,
        currency=settings.currency,
        liability=outstanding * settings.point_value,
        tiers=tiers,
        months=[
            MonthLine(
                m,
                earned=totals.get((m, EntryKind.EARN), 0),
                redeemed=-totals.get((m, EntryKind.REDEEM), 0),
                expired=-totals.get((m, EntryKind.EXPIRE), 0),
            )
            for m in wanted
        ],
    )
