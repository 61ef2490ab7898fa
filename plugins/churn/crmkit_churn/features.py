"""Features per customer, computed set-based: a fixed number of statements for the whole
tenant (or for a page of customers), never one per customer.

The core's activities give inactivity, the frequency and amount of transactions and the
logins of the current period against the previous one, and complaints. The signals
other plugins' events left in ``churn_signals`` give SLA breaches (cases), the latest
NPS and CSAT (surveys), tier drops and expiring points (loyalty) and marketing opt-outs
(the core's consent). A feature counts only while its source runs for the tenant.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import crmkit
from sqlalchemy import and_, case, exists, func, select
from sqlalchemy.orm import aliased

from crmkit_churn.models import ChurnSignal, SignalKind
from crmkit_churn.settings import CORE, SOURCES, ChurnSettings, Feature

Activity = crmkit.Activity
Customer = crmkit.Customer
ENGAGEMENT = (
    crmkit.ActivityKind.TRANSACTION,
    crmkit.ActivityKind.LOGIN,
    crmkit.ActivityKind.CONTACT,
    crmkit.ActivityKind.OTHER,
)
"""What counts as activity for inactivity: everything but a complaint."""
LATEST = (SignalKind.NPS, SignalKind.CSAT, SignalKind.MARKETING_CONSENT)
_NO_ACTIVITY = (None, 0, 0, 0, 0, 0, 0, 0)
"""The figures of a customer without activity in the look-back."""
DAY = timedelta(days=1)


@dataclass(slots=True)
class CustomerFeatures:
    customer_id: uuid.UUID
    relationship_manager: str | None
    lifecycle_stage: crmkit.LifecycleStage
    last_active_at: datetime | None
    """The latest engagement within the look-back (``None``: none there)."""
    inactive_days: float
    """Days since the latest engagement (or since the look-back or the customer began)."""
    values: dict[Feature, float] = field(default_factory=dict)
    """The value of each feature the customer has; a missing one has no data."""


def available_features(ctx: crmkit.TenantContext, settings: ChurnSettings) -> list[Feature]:
    """The features the tenant's rules use whose source the tenant runs."""
    return [
        rule.feature
        for rule in settings.rules
        if SOURCES[rule.feature] == CORE or ctx.plugin_enabled(SOURCES[rule.feature])
    ]


def look_back(settings: ChurnSettings) -> timedelta:
    """How far back activities are read: both periods, the complaints and the horizon."""
    days = max(2 * settings.period_days, settings.complaint_window_days, settings.horizon_days)
    return timedelta(days=days)


def _count(condition: Any) -> Any:
    return func.sum(case((condition, 1), else_=0))


def _sum(condition: Any, value: Any) -> Any:
    return func.sum(case((condition, value), else_=Decimal(0)))


async def compute(
    ctx: crmkit.TenantContext,
    settings: ChurnSettings,
    now: datetime,
    customer_ids: Sequence[uuid.UUID] | None = None,
) -> list[CustomerFeatures]:
    """The features of every live customer of the tenant (or of ``customer_ids``), in
    four statements whatever their number. A drop is the share lost against the previous
    period (negative: growth)."""
    period = timedelta(days=settings.period_days)
    current, previous = now - period, now - 2 * period
    since = now - look_back(settings)
    complaints_since = now - timedelta(days=settings.complaint_window_days)
    transaction = Activity.kind == crmkit.ActivityKind.TRANSACTION
    login = Activity.kind == crmkit.ActivityKind.LOGIN
    in_current = Activity.occurred_at >= current
    in_previous = and_(Activity.occurred_at >= previous, Activity.occurred_at < current)
    activity = (
        select(
            Activity.customer_id,
            func.max(case((Activity.kind.in_(ENGAGEMENT), Activity.occurred_at))).label("last"),
            _count(transaction & in_current).label("tx_now"),
            _count(transaction & in_previous).label("tx_before"),
            _sum(transaction & in_current, Activity.amount).label("amt_now"),
            _sum(transaction & in_previous, Activity.amount).label("amt_before"),
            _count(login & in_current).label("login_now"),
            _count(login & in_previous).label("login_before"),
            _count(
                (Activity.kind == crmkit.ActivityKind.COMPLAINT)
                & (Activity.occurred_at >= complaints_since)
            ).label("complaints"),
        )
        .where(Activity.occurred_at >= since)
        .group_by(Activity.customer_id)
    )
    customers = select(
        Customer.id,
        Customer.relationship_manager,
        Customer.lifecycle_stage,
        # only a customer younger than the look-back needs the date: the others' rows
        # carry no datetime to convert
        case((Customer.created_at > since, Customer.created_at)).label("joined"),
    ).where(Customer.erased_at.is_(None), Customer.archived_at.is_(None))
    if customer_ids is not None:
        activity = activity.where(Activity.customer_id.in_(customer_ids))
        customers = customers.where(Customer.id.in_(customer_ids))
    # Two plain statements merged here rather than a join: a grouped scan of the
    # activities keeps one plan whatever the table's statistics say.
    # Rows are unpacked as tuples: named access costs more than the rest of the loop.
    figures = {row[0]: row[1:] for row in await ctx.session.execute(activity)}
    rows = await ctx.session.execute(customers)
    used = set(available_features(ctx, settings))
    unused = {feature for feature, source in SOURCES.items() if source == CORE} - used
    minimum = settings.min_previous_transactions
    result: dict[uuid.UUID, CustomerFeatures] = {}
    for customer_id, manager, stage, joined in rows:
        last, tx_now, tx_before, amt_now, amt_before, login_now, login_before, complaints = (
            figures.get(customer_id, _NO_ACTIVITY)
        )
        inactive_days = (now - (last or joined or since)) / DAY
        values: dict[Feature, float] = {
            Feature.DAYS_INACTIVE: inactive_days,
            Feature.COMPLAINTS: complaints,
        }
        if tx_before >= minimum:  # a fall against fewer says nothing yet
            values[Feature.TRANSACTION_DROP] = 1 - tx_now / tx_before
            if amt_before > 0:
                values[Feature.AMOUNT_DROP] = 1 - float(amt_now) / float(amt_before)
        if login_before >= minimum:
            values[Feature.LOGIN_DROP] = 1 - login_now / login_before
        if unused:
            values = {k: v for k, v in values.items() if k in used}
        result[customer_id] = CustomerFeatures(
            customer_id, manager, stage, last, inactive_days, values
        )
    await _add_signals(ctx, settings, now, result, customer_ids, used)
    return list(result.values())


async def _add_signals(
    ctx: crmkit.TenantContext,
    settings: ChurnSettings,
    now: datetime,
    result: dict[uuid.UUID, CustomerFeatures],
    customer_ids: Sequence[uuid.UUID] | None,
    used: set[Feature],
) -> None:
    """The other plugins' signals, in two statements: sums, and the latest of each kind;
    only the features in ``used`` are kept."""
    closed = aliased(ChurnSignal)
    open_breach = and_(
        ChurnSignal.kind == SignalKind.SLA_BREACH,
        ~exists().where(
            closed.kind == SignalKind.CASE_CLOSED,
            closed.subject_id == ChurnSignal.subject_id,
            closed.customer_id == ChurnSignal.customer_id,
        ),
    )
    recent = ChurnSignal.occurred_at >= now - timedelta(days=settings.period_days)
    expiring = and_(ChurnSignal.kind == SignalKind.POINTS_EXPIRING, ChurnSignal.expires_at >= now)
    sums = select(
        ChurnSignal.customer_id,
        func.count(func.distinct(case((open_breach, ChurnSignal.subject_id)))).label("breaches"),
        _count((ChurnSignal.kind == SignalKind.TIER_DROP) & recent).label("tier_drops"),
        func.sum(case((expiring, ChurnSignal.value), else_=Decimal(0))).label("points"),
    ).group_by(ChurnSignal.customer_id)
    ranked = select(
        ChurnSignal.customer_id,
        ChurnSignal.kind,
        ChurnSignal.value,
        func.row_number()
        .over(
            partition_by=(ChurnSignal.customer_id, ChurnSignal.kind),
            order_by=(ChurnSignal.occurred_at.desc(), ChurnSignal.id.desc()),
        )
        .label("rank"),
    ).where(ChurnSignal.kind.in_(LATEST))
    if customer_ids is not None:
        sums = sums.where(ChurnSignal.customer_id.in_(customer_ids))
        ranked = ranked.where(ChurnSignal.customer_id.in_(customer_ids))
    for row in await ctx.session.execute(sums):
        features = result.get(row.customer_id)
        if features is not None:
            for feature, value in (
                (Feature.SLA_BREACHES, row.breaches),
                (Feature.TIER_DROPS, row.tier_drops),
                (Feature.EXPIRING_POINTS, row.points),
            ):
                if feature in used:
                    features.values[feature] = float(value or 0)
    latest = ranked.subquery()
    by_kind = {
        SignalKind.NPS: Feature.LATEST_NPS,
        SignalKind.CSAT: Feature.LATEST_CSAT,
        SignalKind.MARKETING_CONSENT: Feature.MARKETING_OPT_OUT,
    }
    for row in await ctx.session.execute(
        select(latest.c.customer_id, latest.c.kind, latest.c.value).where(latest.c.rank == 1)
    ):
        features = result.get(row.customer_id)
        feature = by_kind[SignalKind(row.kind)]
        if features is not None and row.value is not None and feature in used:
            features.values[feature] = float(row.value)
