"""Features per customer as SQL: one statement for the whole tenant (or for a page of
customers), never one per customer, and nothing computed row by row in Python.

The core's activities give inactivity, the frequency and amount of transactions and the
logins of the current period against the previous one, and complaints. The signals
other plugins' events left in ``churn_signals`` give SLA breaches (cases), the latest
NPS and CSAT (surveys), tier drops and expiring points (loyalty) and marketing opt-outs
(the core's consent). A feature counts only while its source runs for the tenant.

Everything is read as it stood at ``now``: the scoring passes the present, the model's
fit a cut-off in the past (nothing after it is read).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import crmkit
from sqlalchemy import Float, and_, case, cast, exists, func, literal, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import aliased
from sqlalchemy.sql.expression import ColumnElement, FunctionElement, Select

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
DAY = 86400.0
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
BASE = ("customer_id", "relationship_manager", "lifecycle_stage", "last_active_at", "inactive")
"""The columns of :func:`select_features` before the features' own."""


class epoch_days(FunctionElement[float]):
    """Days since 1970-01-01 UTC of a timestamp column, as a float, on either backend."""

    type = Float()
    inherit_cache = True


@compiles(epoch_days, "postgresql")
def _epoch_days_pg(element: epoch_days, compiler: Any, **kw: Any) -> str:
    return f"(date_part('epoch', {compiler.process(element.clauses, **kw)}) / {DAY})"


@compiles(epoch_days, "sqlite")
def _epoch_days_sqlite(element: epoch_days, compiler: Any, **kw: Any) -> str:
    return f"(julianday({compiler.process(element.clauses, **kw)}) - 2440587.5)"


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


def _share_lost(now: Any, before: Any) -> Any:
    """1 - now / before as a float (both backends would divide integers as integers)."""
    return 1 - cast(now, Float) / cast(before, Float)


def _activity(
    settings: ChurnSettings, now: datetime, customer_ids: Sequence[uuid.UUID] | None
) -> Any:
    """Per customer with activities in the look-back: the latest engagement and the
    counts and amounts of both periods, one grouped scan."""
    period = timedelta(days=settings.period_days)
    current, previous = now - period, now - 2 * period
    complaints_since = now - timedelta(days=settings.complaint_window_days)
    transaction = Activity.kind == crmkit.ActivityKind.TRANSACTION
    login = Activity.kind == crmkit.ActivityKind.LOGIN
    in_current = Activity.occurred_at >= current
    in_previous = and_(Activity.occurred_at >= previous, Activity.occurred_at < current)
    query = (
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
        .where(Activity.occurred_at >= now - look_back(settings), Activity.occurred_at <= now)
        .group_by(Activity.customer_id)
    )
    if customer_ids is not None:
        query = query.where(Activity.customer_id.in_(customer_ids))
    return query.subquery("activity")


def _signals(
    settings: ChurnSettings, now: datetime, customer_ids: Sequence[uuid.UUID] | None
) -> Any:
    """Per customer with signals: open SLA breaches, recent tier drops, points still to
    expire, and the latest NPS, CSAT and marketing decision."""
    closed = aliased(ChurnSignal)
    open_breach = and_(
        ChurnSignal.kind == SignalKind.SLA_BREACH,
        ~exists().where(
            closed.kind == SignalKind.CASE_CLOSED,
            closed.subject_id == ChurnSignal.subject_id,
            closed.customer_id == ChurnSignal.customer_id,
            closed.occurred_at <= now,
        ),
    )
    ranked = select(
        ChurnSignal.customer_id,
        ChurnSignal.kind,
        ChurnSignal.value,
        ChurnSignal.occurred_at,
        ChurnSignal.expires_at,
        case((open_breach, ChurnSignal.subject_id)).label("open_breach"),
        func.row_number()
        .over(
            partition_by=(ChurnSignal.customer_id, ChurnSignal.kind),
            order_by=(ChurnSignal.occurred_at.desc(), ChurnSignal.id.desc()),
        )
        .label("rank"),
    ).where(ChurnSignal.occurred_at <= now)
    if customer_ids is not None:
        ranked = ranked.where(ChurnSignal.customer_id.in_(customer_ids))
    r = ranked.subquery("ranked")

    def latest(kind: SignalKind) -> Any:
        return func.max(case((and_(r.c.kind == kind.value, r.c.rank == 1), r.c.value)))

    recent = r.c.occurred_at >= now - timedelta(days=settings.period_days)
    expiring = and_(r.c.kind == SignalKind.POINTS_EXPIRING.value, r.c.expires_at >= now)
    return (
        select(
            r.c.customer_id,
            func.count(func.distinct(r.c.open_breach)).label("breaches"),
            _count((r.c.kind == SignalKind.TIER_DROP.value) & recent).label("tier_drops"),
            _sum(expiring, r.c.value).label("points"),
            latest(SignalKind.NPS).label("nps"),
            latest(SignalKind.CSAT).label("csat"),
            latest(SignalKind.MARKETING_CONSENT).label("opt_out"),
        )
        .group_by(r.c.customer_id)
        .subquery("signals")
    )


def select_features(
    settings: ChurnSettings,
    used: Sequence[Feature],
    now: datetime,
    customer_ids: Sequence[uuid.UUID] | None = None,
) -> Select[Any]:
    """One row per live customer (or per one of ``customer_ids``): the ``BASE`` columns
    (``inactive``: days since the latest engagement, or since the look-back or the
    customer began), then one column per feature of ``used``, NULL where the customer
    has no data for it. A drop is the share lost against the previous period (negative:
    growth), and counts only against ``min_previous_transactions`` or more."""
    since = now - look_back(settings)
    a = _activity(settings, now, customer_ids)
    minimum = literal(settings.min_previous_transactions)
    joined = case((Customer.created_at > since, Customer.created_at))
    inactive = (literal((now - EPOCH).total_seconds() / DAY, Float)) - epoch_days(
        func.coalesce(a.c.last, joined, literal(since, Customer.created_at.type))
    )
    values: dict[Feature, ColumnElement[Any]] = {
        Feature.DAYS_INACTIVE: inactive,
        Feature.COMPLAINTS: func.coalesce(a.c.complaints, 0),
        Feature.TRANSACTION_DROP: case(
            (a.c.tx_before >= minimum, _share_lost(a.c.tx_now, a.c.tx_before))
        ),
        Feature.AMOUNT_DROP: case(
            (
                and_(a.c.tx_before >= minimum, a.c.amt_before > 0),
                _share_lost(a.c.amt_now, a.c.amt_before),
            )
        ),
        Feature.LOGIN_DROP: case(
            (a.c.login_before >= minimum, _share_lost(a.c.login_now, a.c.login_before))
        ),
    }
    query = select(
        Customer.id.label("customer_id"),
        Customer.relationship_manager,
        Customer.lifecycle_stage,
        a.c.last.label("last_active_at"),
        inactive.label("inactive"),
    ).outerjoin(a, a.c.customer_id == Customer.id)
    if any(SOURCES[feature] != CORE or feature is Feature.MARKETING_OPT_OUT for feature in used):
        s = _signals(settings, now, customer_ids)
        values |= {
            Feature.MARKETING_OPT_OUT: s.c.opt_out,
            Feature.SLA_BREACHES: s.c.breaches,
            Feature.LATEST_NPS: s.c.nps,
            Feature.LATEST_CSAT: s.c.csat,
            Feature.TIER_DROPS: s.c.tier_drops,
            Feature.EXPIRING_POINTS: s.c.points,
        }
        query = query.outerjoin(s, s.c.customer_id == Customer.id)
    query = query.add_columns(
        *(cast(values[feature], Float).label(feature.value) for feature in used)
    ).where(Customer.erased_at.is_(None), Customer.archived_at.is_(None))
    if customer_ids is not None:
        query = query.where(Customer.id.in_(customer_ids))
    return query
