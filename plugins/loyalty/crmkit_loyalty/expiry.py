"""Expiry: points last the tenant's ``expiry_days`` from when they were earned, lot by
lot (first in, first out). A daily cron job expires what is due and, the tenant's
``expiry_warning_days`` before, emits ``loyalty_points_expiring`` once per lot.

Both steps are idempotent: an expired lot holds nothing more to expire (and its entry's
source, ``expire:<lot>``, is unique), a warned lot carries ``warned_at``.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import timedelta

import crmkit
from sqlalchemy import select

from crmkit_loyalty import ledger
from crmkit_loyalty.earning import SYSTEM_ACTOR
from crmkit_loyalty.models import Account, EntryKind, Lot
from crmkit_loyalty.settings import LoyaltySettings


async def expire_due(ctx: crmkit.TenantContext) -> int:
    """Expire every lot past its date; the points expired."""
    now = crmkit.utcnow()
    due = select(Lot.customer_id).where(Lot.expires_at <= now, Lot.remaining > 0)
    accounts = await ctx.session.scalars(
        select(Account)
        .where(Account.customer_id.in_(due))
        .order_by(Account.customer_id)
        .with_for_update()
    )
    expired = 0
    for account in list(accounts):
        lots = await ctx.session.scalars(
            select(Lot)
            .where(Lot.customer_id == account.customer_id, Lot.expires_at <= now, Lot.remaining > 0)
            .order_by(Lot.expires_at, Lot.id)
            .execution_options(populate_existing=True)
        )
        for lot in list(lots):
            points = lot.remaining
            await ledger.append(
                ctx,
                account,
                kind=EntryKind.EXPIRE,
                points=-points,
                actor=SYSTEM_ACTOR,
                source=f"expire:{lot.id}",
                first_lot=lot,
            )
            expired += points
    return expired


async def warn_expiring(ctx: crmkit.TenantContext) -> int:
    """One ``loyalty_points_expiring`` per customer for their lots entering the warning
    window: the points and the first day they expire. The number of events."""
    settings = ctx.settings_as(LoyaltySettings)
    now = crmkit.utcnow()
    horizon = now + timedelta(days=settings.expiry_warning_days)
    lots = await ctx.session.scalars(
        select(Lot)
        .where(
            Lot.expires_at > now,
            Lot.expires_at <= horizon,
            Lot.remaining > 0,
            Lot.warned_at.is_(None),
        )
        .order_by(Lot.customer_id, Lot.expires_at)
    )
    by_customer: defaultdict[uuid.UUID, list[Lot]] = defaultdict(list)
    for lot in lots:
        by_customer[lot.customer_id].append(lot)
    for customer_id, customer_lots in by_customer.items():
        for lot in customer_lots:
            lot.warned_at = now
        crmkit.emit(
            ctx,
            "loyalty_points_expiring",
            "Customer",
            customer_id,
            customer_id=str(customer_id),
            points=sum(lot.remaining for lot in customer_lots),
            expires_on=customer_lots[0].expires_at.date().isoformat(),
        )
    await ctx.session.flush()
    return len(by_customer)


async def run(ctx: crmkit.TenantContext) -> None:
    """The daily cron job: expire, then warn, in the tenant's one transaction."""
    await expire_due(ctx)
    await warn_expiring(ctx)
