"""crmkit-loyalty: a points ledger, earning rules, tiers, expiry and rewards.

crmkit loads this module through the ``crmkit.plugins`` entry point: ``plugin_info``
and the hook implementations below are the plugin's table of contents.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import crmkit
from sqlalchemy import select

from crmkit_loyalty import earning, expiry, graphql, hookspecs, ledger, rewards, tiers, winback
from crmkit_loyalty.models import Account, LedgerEntry, Redemption, Reward
from crmkit_loyalty.settings import NAME, LoyaltySettings

plugin_info = crmkit.PluginInfo(
    name=NAME,
    version="0.1.0",
    description="Loyalty points, tiers, expiry and rewards.",
    requires=">=0.1,<0.2",
    settings=LoyaltySettings,
    migrations=Path(__file__).parent / "migrations",
    hookspecs=hookspecs,
)


@crmkit.hookimpl
def register_scopes() -> Iterable[crmkit.Scope]:
    """Relationship managers read and earn; only tenant administrators (who hold every
    scope) adjust points and edit the catalogue."""
    managers = frozenset({crmkit.Role.RELATIONSHIP_MANAGER})
    return [
        crmkit.Scope(
            graphql.READ, "Read loyalty balances, tiers, ledgers and the catalogue.", managers
        ),
        crmkit.Scope(graphql.WRITE, "Earn points, redeem rewards, cancel redemptions.", managers),
        crmkit.Scope(graphql.ADMIN, "Adjust points and manage the reward catalogue."),
    ]


@crmkit.hookimpl
def register_graphql() -> crmkit.GraphQLContribution:
    return graphql.contribution()


@crmkit.hookimpl
def register_jobs() -> Iterable[crmkit.JobSpec | crmkit.CronSpec]:
    """Daily, per enabled tenant: expiry (with its warnings), then tiers."""
    return [
        crmkit.CronSpec("expire_points", expiry.run, hour={1}, minute={30}),
        crmkit.CronSpec("recompute_tiers", tiers.recompute_all, hour={2}, minute={0}),
    ]


@crmkit.hookimpl
async def activity_recorded(event: crmkit.DomainEvent, ctx: crmkit.TenantContext) -> None:
    """Earn (or reverse) the activity's points; a redelivered event earns nothing more."""
    await earning.earn_from_activity(ctx, uuid.UUID(event.subject_id))


@crmkit.hookimpl
async def churn_action_requested(event: crmkit.DomainEvent, ctx: crmkit.TenantContext) -> None:
    """The churn plugin's win-back offer (called only where a tenant runs both plugins):
    bonus points, once per alert."""
    await winback.grant(ctx, event)


@crmkit.hookimpl
async def export_customer_data(ctx: crmkit.TenantContext, customer_id: uuid.UUID) -> Any:
    """The account, every ledger entry (reasons included) and the redemptions."""
    account = await ctx.session.get(Account, (ctx.tenant_id, customer_id))
    if account is None:
        return None
    entries = await ctx.session.scalars(
        select(LedgerEntry).where(LedgerEntry.customer_id == customer_id).order_by(LedgerEntry.id)
    )
    redemptions = await ctx.session.scalars(
        select(Redemption).where(Redemption.customer_id == customer_id).order_by(Redemption.id)
    )
    return {
        "balance": account.balance,
        "tier": account.tier,
        "tier_since": account.tier_since.isoformat(),
        "ledger": [
            {
                "id": str(e.id),
                "kind": e.kind.value,
                "points": e.points,
                "reason": e.reason,
                "actor": e.actor,
                "occurred_at": e.occurred_at.isoformat(),
            }
            for e in entries
        ],
        "redemptions": [
            {
                "id": str(r.id),
                "reward_id": str(r.reward_id),
                "points": r.points,
                "status": r.status.value,
                "created_at": r.created_at.isoformat(),
            }
            for r in redemptions
        ],
    }


@crmkit.hookimpl
async def erase_customer(ctx: crmkit.TenantContext, customer_id: uuid.UUID) -> None:
    """Every row naming the customer is deleted; the audit trail keeps their ids."""
    await ledger.delete_customer_data(ctx, customer_id)


DEMO_REWARDS = [
    rewards.RewardInput(name="Airport lounge pass", cost_points=800, stock=25),
    rewards.RewardInput(name="Waived card fee (one year)", cost_points=1_500),
    rewards.RewardInput(
        name="Private banking dinner", cost_points=5_000, stock=4, tier_required="gold"
    ),
]


@crmkit.hookimpl
async def seed_demo(ctx: crmkit.TenantContext, customer_ids: list[uuid.UUID]) -> None:
    """Points from the demo's transactions, a catalogue, welcome bonuses that spread the
    customers over the tiers, and one redemption. Idempotent: earnings are once per
    activity, bonuses and the redemption carry keys, the catalogue is made once."""
    rng = random.Random(11)  # noqa: S311  (the same demo every time; not security)
    activities = await ctx.session.scalars(
        select(crmkit.Activity.id)
        .where(crmkit.Activity.customer_id.in_(customer_ids))
        .order_by(crmkit.Activity.id)
    )
    for activity_id in list(activities):
        await earning.earn_from_activity(ctx, activity_id)
    catalogue = {reward.name: reward for reward in await ctx.session.scalars(select(Reward))}
    if not catalogue:
        for item in DEMO_REWARDS:
            reward = await rewards.create_reward(ctx, item)
            catalogue[reward.name] = reward
    lounge = catalogue.get(str(DEMO_REWARDS[0].name))
    for customer_id in customer_ids:
        bonus = rng.choice([0, 0, 1_200, 6_000, 25_000])
        if bonus:
            await ledger.earn(
                ctx,
                customer_id=customer_id,
                points=bonus,
                reason="Welcome bonus",
                idempotency_key="demo-welcome",
                actor=earning.SYSTEM_ACTOR,
            )
    if customer_ids and lounge is not None:
        account = await ctx.session.get(Account, (ctx.tenant_id, customer_ids[0]))
        if account is not None and account.balance >= lounge.cost_points:
            await rewards.redeem(
                ctx,
                customer_id=customer_ids[0],
                reward_id=lounge.id,
                idempotency_key="demo-redemption",
                actor=earning.SYSTEM_ACTOR,
            )
