"""Earning from the core's ``activity_recorded`` event, by the tenant's rules.

Each activity earns at most once: its entry's ``source`` is ``activity:<id>``, unique
in the tenant, and looked for under the account's lock, so a second delivery of the
event (delivery is at least once), even a parallel one, finds it and stops.

An activity whose ``attributes`` hold ``"reverses": "<id or externalRef of an earlier
activity>"`` (a reversed card transaction) reverses that activity's points instead.
A reversal that arrives before the earning it reverses leaves a zero-point entry
(``reversal:<id>``) that the late earning finds, so the points are never earned.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import crmkit
from sqlalchemy import func, or_, select

from crmkit_loyalty import ledger, tiers
from crmkit_loyalty.models import EntryKind, LedgerEntry, Lot
from crmkit_loyalty.settings import CapPeriod, EarningRule, LoyaltySettings

SYSTEM_ACTOR = "crmkit:loyalty"
REVERSES = "reverses"
"""The activity attribute naming the activity a reversal undoes."""


def rule_for(settings: LoyaltySettings, activity: crmkit.Activity) -> EarningRule | None:
    """The rule for the activity's kind on its channel, else for its kind on any channel."""
    by_key = {(rule.kind, rule.channel): rule for rule in settings.rules}
    return by_key.get((activity.kind.value, activity.channel.value)) or by_key.get(
        (activity.kind.value, None)
    )


def multiplier(settings: LoyaltySettings, activity: crmkit.Activity) -> Decimal:
    """The highest multiplier of the campaigns running on the activity's day."""
    day = activity.occurred_at.astimezone(UTC).date()
    running = [
        campaign.multiplier
        for campaign in settings.campaigns
        if campaign.starts_on <= day <= campaign.ends_on
        and (not campaign.kinds or activity.kind.value in campaign.kinds)
    ]
    return max(running, default=Decimal(1))


def points_for(settings: LoyaltySettings, activity: crmkit.Activity) -> int:
    """Whole points the rules give the activity, before the cap. A negative amount
    (money going out the other way) earns nothing by its amount."""
    rule = rule_for(settings, activity)
    if rule is None:
        return 0
    amount = max(activity.amount or Decimal(0), Decimal(0))
    raw = (amount * rule.points_per_unit + rule.points_per_activity) * multiplier(
        settings, activity
    )
    return settings.rounding.apply(raw)


def period_start(period: CapPeriod, moment: datetime) -> tuple[datetime, datetime]:
    """The cap period (UTC calendar day, month or year) holding ``moment``."""
    moment = moment.astimezone(UTC)
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if period is CapPeriod.DAY:
        return day, day + timedelta(days=1)
    if period is CapPeriod.MONTH:
        start = day.replace(day=1)
        end = start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)
        return start, end
    start = day.replace(month=1, day=1)
    return start, start.replace(year=start.year + 1)


async def capped(
    ctx: crmkit.TenantContext,
    settings: LoyaltySettings,
    customer_id: uuid.UUID,
    when: datetime,
    points: int,
) -> int:
    """``points`` cut to what the cap leaves in the period of ``when``. Activity earnings
    count towards the cap; staff's earnings and reversals do not."""
    if settings.cap_points is None:
        return points
    start, end = period_start(settings.cap_period, when)
    earned = await ctx.session.scalar(
        select(func.coalesce(func.sum(LedgerEntry.points), 0)).where(
            LedgerEntry.customer_id == customer_id,
            LedgerEntry.kind == EntryKind.EARN,
            LedgerEntry.activity_id.is_not(None),
            LedgerEntry.occurred_at >= start,
            LedgerEntry.occurred_at < end,
        )
    )
    return max(0, min(points, settings.cap_points - int(earned or 0)))


async def earn_from_activity(ctx: crmkit.TenantContext, activity_id: uuid.UUID) -> None:
    """The ``activity_recorded`` handler's work, in the delivery's transaction."""
    activity = await ctx.session.get(crmkit.Activity, (ctx.tenant_id, activity_id))
    if activity is None:
        # purged by retention, or its customer erased since: erasure deletes a customer's
        # activities in its transaction, so an activity found names a customer not erased
        return
    reverses = (activity.attributes or {}).get(REVERSES)
    if reverses is not None:
        await _reverse_activity(ctx, activity, str(reverses))
        return
    settings = ctx.settings_as(LoyaltySettings)
    points = points_for(settings, activity)
    if points <= 0:
        return
    account = await ledger.lock_account(ctx, activity.customer_id)
    done = await ctx.session.scalar(
        select(func.count())
        .select_from(LedgerEntry)
        .where(LedgerEntry.source.in_([f"activity:{activity.id}", f"reversal:{activity.id}"]))
    )
    if done:
        return  # earned by an earlier delivery, or reversed before it was earned
    points = await capped(ctx, settings, activity.customer_id, activity.occurred_at, points)
    if points <= 0:
        return
    await ledger.append(
        ctx,
        account,
        kind=EntryKind.EARN,
        points=points,
        actor=SYSTEM_ACTOR,
        source=f"activity:{activity.id}",
        activity_id=activity.id,
        occurred_at=activity.occurred_at,
    )
    await tiers.recompute(ctx, account)


async def _reverse_activity(
    ctx: crmkit.TenantContext, reversal: crmkit.Activity, reference: str
) -> None:
    """Take back what the referenced activity earned: from its own lot first, then the
    oldest, and never more than the balance (points already spent stay spent)."""
    try:
        by_id = [uuid.UUID(reference)]
    except ValueError:
        by_id = []
    original = await ctx.session.scalar(
        select(crmkit.Activity).where(
            crmkit.Activity.customer_id == reversal.customer_id,
            or_(crmkit.Activity.id.in_(by_id), crmkit.Activity.external_ref == reference),
        )
    )
    if original is None:
        return  # nothing of this customer's to reverse
    account = await ledger.lock_account(ctx, reversal.customer_id)
    source = f"reversal:{original.id}"
    if await ledger.entry_by_source(ctx, source) is not None:
        return  # reversed by an earlier delivery
    earned = await ledger.entry_by_source(ctx, f"activity:{original.id}")
    points = 0 if earned is None else min(earned.points, account.balance)
    await ledger.append(
        ctx,
        account,
        kind=EntryKind.REVERSE,
        points=-points,
        actor=SYSTEM_ACTOR,
        source=source,
        activity_id=reversal.id,
        reverses_id=earned.id if earned else None,
        # dated as the earning, so it nets out in the same tier window and cap period
        occurred_at=earned.occurred_at if earned else reversal.occurred_at,
        first_lot=await ctx.session.get(Lot, (ctx.tenant_id, earned.id)) if earned else None,
    )
    await tiers.recompute(ctx, account)
