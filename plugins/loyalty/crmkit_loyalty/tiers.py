"""Tiers: by points earned in a rolling window, up at once, down only after a grace
period. Recomputed whenever a customer earns, and for every account by a daily cron
job (a window moves on without anyone earning). A change emits
``loyalty_tier_changed`` in the transaction that makes it.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import crmkit
from sqlalchemy import and_, func, or_, select

from crmkit_loyalty.models import Account, EntryKind, LedgerEntry
from crmkit_loyalty.settings import LoyaltySettings

QUALIFYING = or_(
    LedgerEntry.kind == EntryKind.EARN,
    # the reversal of an earning (a reversed transaction) takes its points back out
    and_(LedgerEntry.kind == EntryKind.REVERSE, LedgerEntry.activity_id.is_not(None)),
)
"""Entries that count towards tiers: earnings net of their reversals. Redemptions,
expiry and adjustments do not: spending points never costs a tier."""


async def qualifying_points(
    ctx: crmkit.TenantContext, customer_ids: list[uuid.UUID] | None = None
) -> dict[uuid.UUID, int]:
    """Points earned in the window, by customer (of ``customer_ids``, or all)."""
    settings = ctx.settings_as(LoyaltySettings)
    since = crmkit.utcnow() - timedelta(days=settings.tier_window_days)
    query = (
        select(LedgerEntry.customer_id, func.sum(LedgerEntry.points))
        .where(LedgerEntry.occurred_at > since, QUALIFYING)
        .group_by(LedgerEntry.customer_id)
    )
    if customer_ids is not None:
        query = query.where(LedgerEntry.customer_id.in_(customer_ids))
    return {customer_id: int(points) for customer_id, points in await ctx.session.execute(query)}


async def recompute(ctx: crmkit.TenantContext, account: Account, points: int | None = None) -> None:
    """Move a locked account to the tier its window's ``points`` give (read when not
    given), with the grace period before a downgrade."""
    settings = ctx.settings_as(LoyaltySettings)
    if points is None:
        points = (await qualifying_points(ctx, [account.customer_id])).get(account.customer_id, 0)
    target = settings.tier_for(points)
    now = crmkit.utcnow()
    current = settings.tier_rank(account.tier)
    if settings.tier_rank(target) >= current or current < 0:
        account.below_tier_since = None
        if target == account.tier:
            return
    elif account.below_tier_since is None:
        account.below_tier_since = now  # the grace period starts
        return
    elif now - account.below_tier_since < timedelta(days=settings.downgrade_grace_days):
        return
    old, account.tier, account.tier_since, account.below_tier_since = (
        account.tier,
        target,
        now,
        None,
    )
    crmkit.emit(
        ctx,
        "loyalty_tier_changed",
        "Customer",
        account.customer_id,
        customer_id=str(account.customer_id),
        old_tier=old,
        new_tier=target,
    )


async def recompute_all(ctx: crmkit.TenantContext) -> None:
    """The daily cron job: every account of the tenant, in one transaction. Running it
    twice at one instant changes nothing the second time."""
    accounts = await ctx.session.scalars(
        select(Account).order_by(Account.customer_id).with_for_update()
    )
    points = await qualifying_points(ctx)
    for account in list(accounts):
        await recompute(ctx, account, points.get(account.customer_id, 0))
    await ctx.session.flush()
