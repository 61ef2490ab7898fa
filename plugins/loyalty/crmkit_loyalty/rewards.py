"""The reward catalogue, redemptions and their cancellation.

A redemption locks the customer's account (their balance) and then the reward's row
(its stock), always in that order, so parallel redemptions neither overspend a balance
nor oversell a stock, and never deadlock. Its idempotency key, unique per customer,
makes a retried request answer the first redemption instead of redeeming again.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import crmkit
from sqlalchemy import select

from crmkit_loyalty import ledger
from crmkit_loyalty.models import EntryKind, Redemption, RedemptionStatus, Reward
from crmkit_loyalty.settings import LoyaltySettings

MAX_NAME = 200
MAX_KEY = 200


@dataclass
class RewardInput:
    """A catalogue item as an administrator gives it; ``None`` leaves a field unchanged
    on update (``stock``: ``unlimited`` clears it)."""

    name: str | None = None
    cost_points: int | None = None
    stock: int | None = None
    unlimited: bool = False
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    tier_required: str | None = None
    active: bool | None = None


def _apply(settings: LoyaltySettings, reward: Reward, data: RewardInput) -> None:
    if data.name is not None:
        name = data.name.strip()
        if not name or len(name) > MAX_NAME:
            raise crmkit.BadUserInput(f"name must be 1 to {MAX_NAME} characters", field="name")
        reward.name = name
    if data.cost_points is not None:
        ledger.check_points(data.cost_points, field="costPoints")
        reward.cost_points = data.cost_points
    if data.unlimited:
        reward.stock = None
    elif data.stock is not None:
        if data.stock < 0:
            raise crmkit.BadUserInput("stock cannot be negative", field="stock")
        reward.stock = data.stock
    # GraphQL's DateTime refuses a time without an offset before it gets here
    if data.valid_from is not None:
        reward.valid_from = data.valid_from
    if data.valid_until is not None:
        reward.valid_until = data.valid_until
    if reward.valid_from and reward.valid_until and reward.valid_until <= reward.valid_from:
        raise crmkit.BadUserInput("validUntil must come after validFrom", field="validUntil")
    if data.tier_required is not None:
        if data.tier_required and settings.tier_rank(data.tier_required) < 0:
            names = ", ".join(tier.name for tier in settings.tiers)
            raise crmkit.BadUserInput(
                f"tierRequired must be one of the tenant's tiers ({names})", field="tierRequired"
            )
        reward.tier_required = data.tier_required or None
    if data.active is not None:
        reward.active = data.active


async def create_reward(ctx: crmkit.TenantContext, data: RewardInput) -> Reward:
    if data.name is None:
        raise crmkit.BadUserInput("a reward needs a name", field="name")
    if data.cost_points is None:
        raise crmkit.BadUserInput("a reward needs a cost in points", field="costPoints")
    reward = Reward(id=crmkit.uuid7(), active=True)
    _apply(ctx.settings_as(LoyaltySettings), reward, data)
    ctx.session.add(reward)
    await ctx.session.flush()
    return reward


async def get_reward(
    ctx: crmkit.TenantContext, reward_id: uuid.UUID, *, lock: bool = False
) -> Reward:
    reward = await ctx.session.get(
        Reward, (ctx.tenant_id, reward_id), with_for_update=lock, populate_existing=lock
    )
    if reward is None:
        raise crmkit.NotFound("no reward has this id", field="rewardId")
    return reward


async def update_reward(
    ctx: crmkit.TenantContext, reward_id: uuid.UUID, data: RewardInput
) -> Reward:
    reward = await get_reward(ctx, reward_id, lock=True)
    _apply(ctx.settings_as(LoyaltySettings), reward, data)
    await ctx.session.flush()
    return reward


async def list_rewards(ctx: crmkit.TenantContext, *, available_only: bool) -> list[Reward]:
    query = select(Reward).order_by(Reward.id)
    if available_only:
        now = crmkit.utcnow()
        query = query.where(
            Reward.active.is_(True),
            (Reward.valid_from.is_(None)) | (Reward.valid_from <= now),
            (Reward.valid_until.is_(None)) | (Reward.valid_until > now),
            (Reward.stock.is_(None)) | (Reward.stock > 0),
        )
    return list(await ctx.session.scalars(query))


async def redeem(
    ctx: crmkit.TenantContext,
    *,
    customer_id: uuid.UUID,
    reward_id: uuid.UUID,
    idempotency_key: str,
    actor: str,
) -> Redemption:
    """Redeem a reward for a customer, once per idempotency key."""
    key = idempotency_key.strip()
    if not key or len(key) > MAX_KEY:
        raise crmkit.BadUserInput(
            f"idempotencyKey must be 1 to {MAX_KEY} characters", field="idempotencyKey"
        )
    await crmkit.get_customer(ctx, customer_id)
    account = await ledger.lock_account(ctx, customer_id)
    done = await ctx.session.scalar(
        select(Redemption).where(
            Redemption.customer_id == customer_id, Redemption.idempotency_key == key
        )
    )
    if done is not None:
        if done.reward_id != reward_id:
            raise crmkit.Conflict(
                "idempotencyKey was used for another reward", field="idempotencyKey"
            )
        return done  # a retried request: the first answer
    reward = await get_reward(ctx, reward_id, lock=True)
    _check_available(ctx.settings_as(LoyaltySettings), reward, account.tier)
    if account.balance < reward.cost_points:
        raise crmkit.BadUserInput(
            f"the balance ({account.balance} points) does not cover the reward "
            f"({reward.cost_points} points)",
            field="rewardId",
        )
    if reward.stock is not None:
        reward.stock -= 1
    expiry = await ledger.oldest_lot_expiry(ctx, customer_id)
    assert expiry is not None  # the balance is positive, so some lot holds points
    redemption = Redemption(
        id=crmkit.uuid7(),
        customer_id=customer_id,
        reward_id=reward.id,
        idempotency_key=key,
        points=reward.cost_points,
        balance_after=account.balance - reward.cost_points,
        first_lot_expires_at=expiry,
        actor=actor,
    )
    ctx.session.add(redemption)
    await ledger.append(
        ctx,
        account,
        kind=EntryKind.REDEEM,
        points=-reward.cost_points,
        actor=actor,
        source=f"redeem:{redemption.id}",
    )
    return redemption


def _check_available(settings: LoyaltySettings, reward: Reward, tier: str) -> None:
    now = crmkit.utcnow()
    if not reward.active:
        raise crmkit.BadUserInput("the reward is withdrawn from the catalogue", field="rewardId")
    if (reward.valid_from and now < reward.valid_from) or (
        reward.valid_until and now >= reward.valid_until
    ):
        raise crmkit.BadUserInput("the reward is outside its validity window", field="rewardId")
    if reward.tier_required and settings.tier_rank(tier) < settings.tier_rank(reward.tier_required):
        raise crmkit.BadUserInput(
            f"the reward needs the tier {reward.tier_required}; the customer is {tier}",
            field="rewardId",
        )
    if reward.stock == 0:
        raise crmkit.Conflict("the reward is out of stock", field="rewardId")


async def cancel(ctx: crmkit.TenantContext, *, redemption_id: uuid.UUID, actor: str) -> Redemption:
    """Cancel a redemption: its points come back (expiring when the oldest points it
    spent would have) and its unit goes back into stock. Cancelling twice is once."""
    found = await ctx.session.get(Redemption, (ctx.tenant_id, redemption_id))
    if found is None:
        raise crmkit.NotFound("no redemption has this id", field="redemptionId")
    account = await ledger.lock_account(ctx, found.customer_id)
    redemption = await ctx.session.get(
        Redemption, (ctx.tenant_id, redemption_id), populate_existing=True
    )
    assert redemption is not None  # rows are deleted only with their customer's account
    if redemption.status is RedemptionStatus.CANCELLED:
        return redemption
    reward = await get_reward(ctx, redemption.reward_id, lock=True)
    if reward.stock is not None:
        reward.stock += 1
    redeemed = await ledger.entry_by_source(ctx, f"redeem:{redemption.id}")
    await ledger.append(
        ctx,
        account,
        kind=EntryKind.REVERSE,
        points=redemption.points,
        actor=actor,
        source=f"cancel:{redemption.id}",
        reverses_id=redeemed.id if redeemed else None,
        lot_expires_at=redemption.first_lot_expires_at,
    )
    redemption.status = RedemptionStatus.CANCELLED
    redemption.cancelled_at = crmkit.utcnow()
    await ctx.session.flush()
    return redemption
