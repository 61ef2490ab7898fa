"""Process monitoring: the figures a service manager watches, each one SQL aggregate.

Open cases are counted as they stand now; the rest are over the cases opened in a
period ``[since, until)``. Durations are business minutes stored on each case when its
clock stopped, so a mean or a 90th percentile is arithmetic the database does; the
percentile is nearest-rank (the smallest value at or above 90 % of the ordered values,
through ``cume_dist``), which SQLite and PostgreSQL compute alike.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import crmkit
import strawberry
from sqlalchemy import ColumnElement, case, func, select
from sqlalchemy.orm import InstrumentedAttribute

from crmkit_cases.models import Case
from crmkit_cases.settings import OPEN_STATUSES, CaseKind

AGE_BANDS = (
    (timedelta(days=1), "under_1d"),
    (timedelta(days=3), "1d_3d"),
    (timedelta(days=7), "3d_7d"),
)
OLDEST_BAND = "over_7d"
HUNDRED = Decimal(100)
TWO_PLACES = Decimal("0.01")


@strawberry.type(name="CaseCount", description="Cases with one value of a grouping.")
class Count:
    key: str
    count: int


@strawberry.type(name="CaseDuration")
class Duration:
    """Business hours from opening (pauses left out), over the cases that got there."""

    cases: int
    mean_hours: Decimal | None
    p90_hours: Decimal | None


@strawberry.type(name="CaseMonitoring", description="Service-process figures (see monitoring.py).")
class Figures:
    open_by_status: list[Count]
    open_by_age: list[Count]
    open_by_assignee: list[Count]
    cases_opened: int
    first_response_compliance: Decimal | None
    resolution_compliance: Decimal | None
    first_response: Duration
    resolution: Duration
    reopen_rate: Decimal | None
    complaints: int
    complaints_per_1000_customers: Decimal | None
    complaints_by_root_cause: list[Count]


def _share(part: int | None, whole: int | None, scale: Decimal = HUNDRED) -> Decimal | None:
    if not whole:
        return None
    return (Decimal(part or 0) * scale / whole).quantize(TWO_PLACES)


def _hours(value: Any) -> Decimal | None:
    return None if value is None else (Decimal(str(value)) / 60).quantize(TWO_PLACES)


def _counts(rows: Any, missing: str = "unassigned") -> list[Count]:
    return [Count(key=key or missing, count=count) for key, count in rows]


async def _p90(
    session: crmkit.TenantSession,
    column: InstrumentedAttribute[int | None],
    in_period: ColumnElement[bool],
) -> Decimal | None:
    """The nearest-rank 90th percentile of ``column`` over the period, in hours."""
    ranked = (
        select(column.label("minutes"), func.cume_dist().over(order_by=column).label("rank"))
        .where(in_period, column.is_not(None))
        .subquery()
    )
    return _hours(
        await session.scalar(select(func.min(ranked.c.minutes)).where(ranked.c.rank >= 0.9))
    )


async def figures(session: crmkit.TenantSession, since: datetime, until: datetime) -> Figures:
    now = crmkit.utcnow()
    is_open = Case.status.in_(OPEN_STATUSES)
    band = case(
        *((Case.opened_at > now - age, label) for age, label in AGE_BANDS), else_=OLDEST_BAND
    )
    in_period = (Case.opened_at >= since) & (Case.opened_at < until)
    by_status = await session.execute(
        select(Case.status, func.count()).where(is_open).group_by(Case.status).order_by(Case.status)
    )
    by_age = await session.execute(
        select(band, func.count()).where(is_open).group_by(band).order_by(band)
    )
    by_assignee = await session.execute(
        select(Case.assignee, func.count())
        .where(is_open)
        .group_by(Case.assignee)
        .order_by(Case.assignee)
    )
    complaint = Case.kind == CaseKind.COMPLAINT.value
    totals = (
        await session.execute(
            select(
                func.count(),
                func.count(Case.first_response_met),
                func.count(case((Case.first_response_met.is_(True), 1))),
                func.count(Case.resolution_met),
                func.count(case((Case.resolution_met.is_(True), 1))),
                func.count(case(((Case.resolved_at.is_not(None)) | (Case.reopen_count > 0), 1))),
                func.count(case((Case.reopen_count > 0, 1))),
                func.count(case((complaint, 1))),
                func.count(Case.first_response_minutes),
                func.avg(Case.first_response_minutes),
                func.count(Case.resolution_minutes),
                func.avg(Case.resolution_minutes),
            ).where(in_period)
        )
    ).one()
    opened, fr_measured, fr_met, res_measured, res_met, resolved, reopened, complaints = totals[:8]
    fr_cases, fr_mean, res_cases, res_mean = totals[8:]
    customers = await session.scalar(
        select(func.count()).select_from(crmkit.Customer).where(crmkit.Customer.erased_at.is_(None))
    )
    by_cause = await session.execute(
        select(Case.root_cause_code, func.count())
        .where(in_period, complaint)
        .group_by(Case.root_cause_code)
        .order_by(Case.root_cause_code)
    )
    return Figures(
        open_by_status=_counts(by_status),
        open_by_age=_counts(by_age),
        open_by_assignee=_counts(by_assignee),
        cases_opened=opened,
        first_response_compliance=_share(fr_met, fr_measured),
        resolution_compliance=_share(res_met, res_measured),
        first_response=Duration(
            cases=fr_cases,
            mean_hours=_hours(fr_mean),
            p90_hours=await _p90(session, Case.first_response_minutes, in_period),
        ),
        resolution=Duration(
            cases=res_cases,
            mean_hours=_hours(res_mean),
            p90_hours=await _p90(session, Case.resolution_minutes, in_period),
        ),
        reopen_rate=_share(reopened, resolved),
        complaints=complaints,
        complaints_per_1000_customers=_share(complaints, customers, Decimal(1000)),
        complaints_by_root_cause=_counts(by_cause, missing="none"),
    )
