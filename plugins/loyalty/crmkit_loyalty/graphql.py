"""The plugin's GraphQL: ``Customer.loyalty``, the catalogue, the points mutations and
the manager summary.

Every field names its scope: ``loyalty:read`` to read, ``loyalty:write`` to earn,
redeem and cancel (relationship managers hold both), ``loyalty:admin`` to adjust and
edit the catalogue (tenant administrators only). ``Customer.loyalty`` and everything
under it load through the request's loaders: a page of customers costs the same
statements for 5 customers as for 50.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import crmkit
import strawberry
from sqlalchemy import ColumnElement, and_, func, select

from crmkit_loyalty import ledger, rewards, summary
from crmkit_loyalty.models import (
    Account,
    EntryKind,
    LedgerEntry,
    Lot,
    RedemptionStatus,
)
from crmkit_loyalty.settings import NAME, LoyaltySettings

READ = f"{NAME}:read"
WRITE = f"{NAME}:write"
ADMIN = f"{NAME}:admin"

EntryKindType = strawberry.enum(EntryKind, name="LoyaltyEntryKind")
RedemptionStatusType = strawberry.enum(RedemptionStatus, name="LoyaltyRedemptionStatus")


@strawberry.type(name="LoyaltyLedgerEntry", description="One movement of a customer's points.")
class LedgerEntryType:
    id: uuid.UUID
    kind: EntryKindType  # type: ignore[valid-type]
    points: int = strawberry.field(description="Signed: what the entry added or took.")
    balance_after: int
    reason = crmkit.personal_field(
        crmkit.InformationClass.CONTACT, "Why (an adjustment's reason): free text."
    )
    actor: str = strawberry.field(description="Who made it: a token's subject or the plugin.")
    occurred_at: datetime
    reverses_id: uuid.UUID | None
    activity_id: uuid.UUID | None


@strawberry.type(name="LoyaltyAccount", description="A customer's points and tier.")
class AccountType:
    customer_id: strawberry.Private[uuid.UUID]
    balance: int
    tier: str
    tier_since: datetime | None = strawberry.field(
        description="When the customer reached the tier; null before their first points."
    )

    @strawberry.field(description="Points expiring within the tenant's warning period.")
    async def points_expiring_soon(self, info: crmkit.Info) -> int:
        points: int = await info.context.load(load_expiring, self.customer_id)
        return points

    @strawberry.field(description="The ledger, newest entry first.")
    async def ledger(
        self, info: crmkit.Info, first: int | None = None, after: str | None = None
    ) -> crmkit.Connection[LedgerEntryType]:
        size, after_id = info.context.page(first, after)
        rows = await info.context.load(load_ledger, (self.customer_id, size, after_id))
        return crmkit.connection(rows, size)


@strawberry.type(name="LoyaltyReward", description="An item of the tenant's reward catalogue.")
class RewardType:
    id: uuid.UUID
    name: str
    cost_points: int
    stock: int | None = strawberry.field(description="Units left; null: unlimited.")
    valid_from: datetime | None
    valid_until: datetime | None
    tier_required: str | None
    active: bool


@strawberry.type(name="LoyaltyRedemption", description="A reward redeemed by a customer.")
class RedemptionType:
    id: uuid.UUID
    customer_id: uuid.UUID
    reward_id: uuid.UUID
    idempotency_key: str
    points: int
    balance_after: int = strawberry.field(description="The balance right after redeeming.")
    status: RedemptionStatusType  # type: ignore[valid-type]
    created_at: datetime
    cancelled_at: datetime | None


@strawberry.input(name="LoyaltyRewardInput", description="Fields left null stay as they are.")
class RewardInputType:
    name: str | None = None
    cost_points: int | None = None
    stock: int | None = None
    unlimited_stock: bool = False
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    tier_required: str | None = strawberry.field(
        default=None, description="A tier name; an empty string removes the requirement."
    )
    active: bool | None = None

    def to_data(self) -> rewards.RewardInput:
        return rewards.RewardInput(
            name=self.name,
            cost_points=self.cost_points,
            stock=self.stock,
            unlimited=self.unlimited_stock,
            valid_from=self.valid_from,
            valid_until=self.valid_until,
            tier_required=self.tier_required,
            active=self.active,
        )


@strawberry.type(name="LoyaltyTierSummary")
class TierSummaryType:
    tier: str
    members: int
    points: int = strawberry.field(description="Outstanding points of the tier's members.")


@strawberry.type(name="LoyaltyMonthSummary")
class MonthSummaryType:
    month: str = strawberry.field(description="YYYY-MM (UTC).")
    earned: int
    redeemed: int
    expired: int


@strawberry.type(name="LoyaltySummary", description="The programme at a glance, for managers.")
class SummaryType:
    members: int
    outstanding_points: int
    point_value: Decimal
    currency: str
    liability: Decimal = strawberry.field(description="Outstanding points x point value.")
    tiers: list[TierSummaryType]
    months: list[MonthSummaryType]


# --- loaders: one statement for every customer of the page ----------------------------


async def load_accounts(
    context: crmkit.RequestContext, customer_ids: Sequence[uuid.UUID]
) -> list[AccountType]:
    """``Customer.loyalty`` of a page: a customer without points yet shows the lowest tier."""
    rows = await context.session.scalars(
        select(Account).where(Account.customer_id.in_(customer_ids))
    )
    by_customer = {account.customer_id: account for account in rows}
    lowest = context.tenant_context(NAME).settings_as(LoyaltySettings).tiers[0].name
    answer = []
    for customer_id in customer_ids:
        account = by_customer.get(customer_id)
        if account is None:
            answer.append(
                AccountType(customer_id=customer_id, balance=0, tier=lowest, tier_since=None)
            )
        else:
            answer.append(
                AccountType(
                    customer_id=customer_id,
                    balance=account.balance,
                    tier=account.tier,
                    tier_since=account.tier_since,
                )
            )
    return answer


async def load_expiring(
    context: crmkit.RequestContext, customer_ids: Sequence[uuid.UUID]
) -> list[int]:
    settings = context.tenant_context(NAME).settings_as(LoyaltySettings)
    horizon = crmkit.utcnow() + timedelta(days=settings.expiry_warning_days)
    rows = await context.session.execute(
        select(Lot.customer_id, func.sum(Lot.remaining))
        .where(Lot.customer_id.in_(customer_ids), Lot.remaining > 0, Lot.expires_at <= horizon)
        .group_by(Lot.customer_id)
    )
    by_customer = {customer_id: int(points) for customer_id, points in rows}
    return [by_customer.get(customer_id, 0) for customer_id in customer_ids]


LedgerPage = tuple[uuid.UUID, int, uuid.UUID | None]
"""A ledger page asked for: customer, page size, the cursor's entry id."""


async def load_ledger(
    context: crmkit.RequestContext, keys: Sequence[LedgerPage]
) -> list[list[LedgerEntry]]:
    """``size + 1`` entries per customer, newest first: one windowed statement per
    distinct page (size and cursor), which is one for a page of customers."""
    pages: defaultdict[tuple[int, uuid.UUID | None], list[uuid.UUID]] = defaultdict(list)
    for customer_id, size, after in keys:
        pages[(size, after)].append(customer_id)
    found: dict[LedgerPage, list[LedgerEntry]] = {}
    for (size, after), customer_ids in pages.items():
        where: list[ColumnElement[bool]] = [LedgerEntry.customer_id.in_(customer_ids)]
        if after is not None:
            where.append(LedgerEntry.id < after)
        ranked = (
            select(
                LedgerEntry.tenant_id,
                LedgerEntry.id,
                func.row_number()
                .over(partition_by=LedgerEntry.customer_id, order_by=LedgerEntry.id.desc())
                .label("n"),
            )
            .where(*where)
            .subquery()
        )
        rows = await context.session.scalars(
            select(LedgerEntry)
            .join(
                ranked,
                and_(LedgerEntry.tenant_id == ranked.c.tenant_id, LedgerEntry.id == ranked.c.id),
            )
            .where(ranked.c.n <= size + 1)
            .order_by(LedgerEntry.id.desc())
        )
        for entry in rows:
            found.setdefault((entry.customer_id, size, after), []).append(entry)
    return [found.get(key, []) for key in keys]


# --- resolvers --------------------------------------------------------------------------


def _ctx(info: crmkit.Info) -> crmkit.TenantContext:
    return info.context.tenant_context(NAME)


async def resolve_earn(
    info: crmkit.Info,
    customer_id: uuid.UUID,
    points: int,
    reason: str | None = None,
    idempotency_key: str | None = None,
) -> LedgerEntryType:
    """``earnPoints``: points given by staff; with a key, a retry earns once."""
    entry = await ledger.earn(
        _ctx(info),
        customer_id=customer_id,
        points=points,
        reason=reason,
        idempotency_key=idempotency_key,
        actor=info.context.principal.subject,
    )
    return entry  # type: ignore[return-value]  # strawberry reads the row's attributes


async def resolve_adjust(
    info: crmkit.Info, customer_id: uuid.UUID, points: int, reason: str | None = None
) -> LedgerEntryType:
    """``adjustPoints``: an administrator's correction, up or down, with a reason."""
    entry = await ledger.adjust(
        _ctx(info),
        customer_id=customer_id,
        points=points,
        reason=reason,
        actor=info.context.principal.subject,
    )
    return entry  # type: ignore[return-value]


async def resolve_redeem(
    info: crmkit.Info, customer_id: uuid.UUID, reward_id: uuid.UUID, idempotency_key: str
) -> RedemptionType:
    """``redeemReward``: the same ``idempotencyKey`` answers the first redemption."""
    redemption = await rewards.redeem(
        _ctx(info),
        customer_id=customer_id,
        reward_id=reward_id,
        idempotency_key=idempotency_key,
        actor=info.context.principal.subject,
    )
    return redemption  # type: ignore[return-value]


async def resolve_cancel(info: crmkit.Info, redemption_id: uuid.UUID) -> RedemptionType:
    redemption = await rewards.cancel(
        _ctx(info), redemption_id=redemption_id, actor=info.context.principal.subject
    )
    return redemption  # type: ignore[return-value]


async def resolve_create_reward(info: crmkit.Info, input: RewardInputType) -> RewardType:
    return await rewards.create_reward(_ctx(info), input.to_data())  # type: ignore[return-value]


async def resolve_update_reward(
    info: crmkit.Info, id: uuid.UUID, input: RewardInputType
) -> RewardType:
    return await rewards.update_reward(_ctx(info), id, input.to_data())  # type: ignore[return-value]


async def resolve_rewards(info: crmkit.Info, available_only: bool = False) -> list[RewardType]:
    """The catalogue; ``availableOnly``: active, in its window and in stock now."""
    found: list[Any] = await rewards.list_rewards(_ctx(info), available_only=available_only)
    return found


async def resolve_summary(info: crmkit.Info, months: int = 12) -> SummaryType:
    """Members and points by tier, points per month, and the liability."""
    if not 1 <= months <= 60:
        raise crmkit.BadUserInput("months must be between 1 and 60", field="months")
    report = await summary.report(_ctx(info), months)
    return SummaryType(
        members=report.members,
        outstanding_points=report.outstanding_points,
        point_value=report.point_value,
        currency=report.currency,
        liability=report.liability,
        tiers=[
            TierSummaryType(tier=t.tier, members=t.members, points=t.points) for t in report.tiers
        ],
        months=[
            MonthSummaryType(month=m.month, earned=m.earned, redeemed=m.redeemed, expired=m.expired)
            for m in report.months
        ],
    )


def contribution() -> crmkit.GraphQLContribution:
    return crmkit.GraphQLContribution(
        customer={
            "loyalty": crmkit.customer_field(load_accounts, scope=READ, graphql_type=AccountType)
        },
        query={
            "loyalty_rewards": crmkit.field(resolve_rewards, scope=READ),
            "loyalty_summary": crmkit.field(resolve_summary, scope=READ),
        },
        mutation={
            "earn_points": crmkit.field(resolve_earn, scope=WRITE),
            "redeem_reward": crmkit.field(resolve_redeem, scope=WRITE),
            "cancel_redemption": crmkit.field(resolve_cancel, scope=WRITE),
            "adjust_points": crmkit.field(resolve_adjust, scope=ADMIN),
            "create_loyalty_reward": crmkit.field(resolve_create_reward, scope=ADMIN),
            "update_loyalty_reward": crmkit.field(resolve_update_reward, scope=ADMIN),
        },
    )
