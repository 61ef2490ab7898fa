"""Churn and retention figures over a period, optionally for one segment (a customer
tag): the churn rate, the alerts' outcomes and the retention each playbook step got."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import crmkit
from sqlalchemy import func, select, true

from crmkit_churn.models import ChurnAlert, ChurnSignal, Outcome, SignalKind

Customer = crmkit.Customer


@dataclass
class StepFigures:
    step: str
    """The playbook step's key; ``none`` for alerts resolved without a step."""
    resolved: int = 0
    retained: int = 0

    @property
    def retention_rate(self) -> float | None:
        return None if not self.resolved else round(self.retained / self.resolved, 4)


@dataclass
class Figures:
    customers: int
    """Live customers that existed when the period began: the churn rate's base."""
    churned: int
    alerts_opened: int
    retained: int
    lost: int
    false_alarms: int
    by_step: list[StepFigures] = field(default_factory=list)

    @property
    def churn_rate(self) -> float | None:
        return None if not self.customers else round(self.churned / self.customers, 4)


def _in_segment(column: Any, tag: str | None) -> Any:
    """Customers of ``column``'s rows that carry ``tag`` (all when none)."""
    if tag is None:
        return true()
    tags = Customer.tags.property.mapper.class_
    return column.in_(select(tags.customer_id).where(tags.tag == tag.strip().lower()))


async def figures(
    ctx: crmkit.TenantContext, since: datetime, until: datetime, tag: str | None
) -> Figures:
    if until <= since:
        raise crmkit.BadUserInput("until must be later than since", field="until")
    customers = await ctx.session.scalar(
        select(func.count())
        .select_from(Customer)
        .where(
            Customer.erased_at.is_(None),
            Customer.created_at < since,
            _in_segment(Customer.id, tag),
        )
    )
    churned = await ctx.session.scalar(
        select(func.count(func.distinct(ChurnSignal.customer_id))).where(
            ChurnSignal.kind == SignalKind.CHURNED,
            ChurnSignal.occurred_at >= since,
            ChurnSignal.occurred_at < until,
            _in_segment(ChurnSignal.customer_id, tag),
        )
    )
    opened = await ctx.session.scalar(
        select(func.count())
        .select_from(ChurnAlert)
        .where(
            ChurnAlert.opened_at >= since,
            ChurnAlert.opened_at < until,
            _in_segment(ChurnAlert.customer_id, tag),
        )
    )
    resolved = await ctx.session.execute(
        select(ChurnAlert.action_step, ChurnAlert.outcome, func.count())
        .where(
            ChurnAlert.resolved_at >= since,
            ChurnAlert.resolved_at < until,
            _in_segment(ChurnAlert.customer_id, tag),
        )
        .group_by(ChurnAlert.action_step, ChurnAlert.outcome)
    )
    outcomes: defaultdict[Outcome | None, int] = defaultdict(int)
    steps: dict[str, StepFigures] = {}
    for step, outcome, count in resolved:
        outcomes[outcome] += count
        figures_of_step = steps.setdefault(step or "none", StepFigures(step or "none"))
        figures_of_step.resolved += count
        if outcome is Outcome.RETAINED:
            figures_of_step.retained += count
    return Figures(
        customers=customers or 0,
        churned=churned or 0,
        alerts_opened=opened or 0,
        retained=outcomes[Outcome.RETAINED],
        lost=outcomes[Outcome.LOST],
        false_alarms=outcomes[Outcome.FALSE_ALARM],
        by_step=sorted(steps.values(), key=lambda s: s.step),
    )
