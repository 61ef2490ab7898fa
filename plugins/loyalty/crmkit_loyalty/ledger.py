"""The ledger: the one place points move. Every change of a customer's points locks
their account, appends an entry and keeps the running balance and the lots in step,
so the balance is always the sum of the entries and never goes negative, also when
requests for the same customer run in parallel.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import crmkit
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError

from crmkit_loyalty import tiers
from crmkit_loyalty.models import Account, EntryKind, LedgerEntry, Lot, Redemption
from crmkit_loyalty.settings import LoyaltySettings

MAX_REASON = 500
MAX_POINTS = 1_000_000_000
"""The most points one entry may move: far above any programme, far below overflow."""


async def lock_account(ctx: crmkit.TenantContext, customer_id: uuid.UUID) -> Account:
    """The customer's account, created at first use, locked until the transaction ends.

    On PostgreSQL the row lock (``FOR UPDATE``) makes every other change of the
    customer's points wait for this transaction; a concurrent first use finds the
    account the other created (its insert fails in a savepoint). SQLite has no row
    locks: there the account's version column turns a write from a stale read into an
    error (a job retries it), never a lost update.
    """
    session = ctx.session
    key = (ctx.tenant_id, customer_id)
    account = await session.get(Account, key, with_for_update=True, populate_existing=True)
    if account is not None:
        return account
    settings = ctx.settings_as(LoyaltySettings)
    account = Account(customer_id=customer_id, balance=0, tier=settings.tiers[0].name)
    try:
        async with session.begin_nested():
            session.add(account)
            await session.flush()
    except IntegrityError:  # created meanwhile by a concurrent first use
        found = await session.get(Account, key, with_for_update=True, populate_existing=True)
        assert found is not None
        return found
    return account


def check_points(points: int, *, field: str = "points") -> None:
    if not 0 < points <= MAX_POINTS:
        raise crmkit.BadUserInput(f"{field} must be between 1 and {MAX_POINTS}", field=field)


def check_reason(reason: str | None, *, required: bool) -> str | None:
    """A reason is free text about the customer: stored encrypted (``PersonalText``)."""
    text = (reason or "").strip()
    if not text:
        if required:
            raise crmkit.BadUserInput("an adjustment needs a reason", field="reason")
        return None
    if len(text) > MAX_REASON:
        raise crmkit.BadUserInput(f"reason is longer than {MAX_REASON} characters", field="reason")
    return text


async def append(
    ctx: crmkit.TenantContext,
    account: Account,
    *,
    kind: EntryKind,
    points: int,
    actor: str,
    source: str | None = None,
    activity_id: uuid.UUID | None = None,
    reverses_id: uuid.UUID | None = None,
    reason: str | None = None,
    occurred_at: datetime | None = None,
    lot_expires_at: datetime | None = None,
    first_lot: Lot | None = None,
) -> LedgerEntry:
    """Append one entry to a locked account and move its balance and lots.

    Points added start a lot expiring at ``lot_expires_at`` (default: the tenant's
    expiry period from ``occurred_at``); points taken are spent from ``first_lot``,
    then from the oldest lots.
    The caller has checked that the balance covers what it takes.
    """
    if account.balance + points < 0:
        raise AssertionError("a caller let the balance go negative")  # a bug, not input
    now = crmkit.utcnow()
    entry = LedgerEntry(
        id=crmkit.uuid7(),
        customer_id=account.customer_id,
        kind=kind,
        points=points,
        balance_after=account.balance + points,
        source=source,
        activity_id=activity_id,
        reverses_id=reverses_id,
        reason=reason,
        actor=actor,
        occurred_at=occurred_at or now,
        created_at=now,
    )
    ctx.session.add(entry)
    if points > 0:
        if lot_expires_at is None:
            days = ctx.settings_as(LoyaltySettings).expiry_days
            lot_expires_at = entry.occurred_at + timedelta(days=days)
        ctx.session.add(
            Lot(
                id=entry.id,
                customer_id=account.customer_id,
                points=points,
                remaining=points,
                expires_at=lot_expires_at,
            )
        )
    elif points < 0:
        await spend(ctx, account.customer_id, -points, first_lot)
    account.balance += points
    await ctx.session.flush()
    return entry


async def spend(
    ctx: crmkit.TenantContext, customer_id: uuid.UUID, points: int, first: Lot | None = None
) -> None:
    """Take ``points`` from the customer's lots: ``first``, then the oldest."""
    lots = list(
        await ctx.session.scalars(
            select(Lot)
            .where(Lot.customer_id == customer_id, Lot.remaining > 0)
            .order_by(Lot.expires_at, Lot.id)
        )
    )
    if first is not None and first in lots:
        lots.remove(first)
        lots.insert(0, first)
    for lot in lots:
        taken = min(points, lot.remaining)
        lot.remaining -= taken
        points -= taken
        if points == 0:
            return
    raise AssertionError("the lots hold fewer points than the balance")


async def oldest_lot_expiry(ctx: crmkit.TenantContext, customer_id: uuid.UUID) -> datetime | None:
    """When the lot spent next expires."""
    return await ctx.session.scalar(
        select(func.min(Lot.expires_at)).where(Lot.customer_id == customer_id, Lot.remaining > 0)
    )


async def entry_by_source(ctx: crmkit.TenantContext, source: str) -> LedgerEntry | None:
    return await ctx.session.scalar(select(LedgerEntry).where(LedgerEntry.source == source))


async def earn(
    ctx: crmkit.TenantContext,
    *,
    customer_id: uuid.UUID,
    points: int,
    actor: str,
    reason: str | None = None,
    idempotency_key: str | None = None,
) -> LedgerEntry:
    """Points given by staff (a welcome bonus, a goodwill gesture); with a key, a
    retried request earns once and answers the first entry."""
    check_points(points)
    reason = check_reason(reason, required=False)
    source = None
    if idempotency_key is not None:
        if not idempotency_key.strip() or len(idempotency_key) > 200:
            raise crmkit.BadUserInput(
                "idempotencyKey must be 1 to 200 characters", field="idempotencyKey"
            )
        source = f"earn:{customer_id}:{idempotency_key}"
    await crmkit.get_customer(ctx, customer_id)
    account = await lock_account(ctx, customer_id)
    if source is not None and (done := await entry_by_source(ctx, source)) is not None:
        if done.points != points:
            raise crmkit.Conflict(
                "idempotencyKey was used for another number of points", field="idempotencyKey"
            )
        return done
    entry = await append(
        ctx, account, kind=EntryKind.EARN, points=points, actor=actor, reason=reason, source=source
    )
    await tiers.recompute(ctx, account)
    return entry


async def adjust(
    ctx: crmkit.TenantContext,
    *,
    customer_id: uuid.UUID,
    points: int,
    reason: str | None,
    actor: str,
) -> LedgerEntry:
    """An administrator's correction, up or down, always with a reason."""
    if points == 0 or abs(points) > MAX_POINTS:
        raise crmkit.BadUserInput(
            f"points must be non-zero and at most {MAX_POINTS} either way", field="points"
        )
    text = check_reason(reason, required=True)
    await crmkit.get_customer(ctx, customer_id)
    account = await lock_account(ctx, customer_id)
    if account.balance + points < 0:
        raise crmkit.BadUserInput(
            f"the balance ({account.balance} points) does not cover {-points} points",
            field="points",
        )
    return await append(
        ctx, account, kind=EntryKind.ADJUST, points=points, actor=actor, reason=text
    )


async def ledger_balance(ctx: crmkit.TenantContext, customer_id: uuid.UUID) -> int:
    """The balance as the sum of the entries, what the running total must equal."""
    total = await ctx.session.scalar(
        select(func.coalesce(func.sum(LedgerEntry.points), 0)).where(
            LedgerEntry.customer_id == customer_id
        )
    )
    return int(total or 0)


async def delete_customer_data(ctx: crmkit.TenantContext, customer_id: uuid.UUID) -> None:
    """Erasure: every row naming the customer goes (the audit trail keeps their ids).
    The account first: deleting it waits for an earning that holds its lock."""
    for model in (Account, Redemption, Lot, LedgerEntry):
        await ctx.session.execute(delete(model).where(model.customer_id == customer_id))
