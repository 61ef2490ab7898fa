"""SLA clocks of a case: deadlines set at opening, moved while the case waits on the
customer, results recorded when the clock stops; and the cron job that warns, marks
breaches and escalates.

Every deadline is business time (:class:`BusinessCalendar`): a complaint opened on
Friday at 17:00 with a 24-hour target uses one hour that Friday and goes on when the
desk next opens. While a case waits on the customer its clocks stand still; when it
comes back, each deadline still ahead moves by exactly the business time it waited.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import crmkit
from sqlalchemy import and_, or_, select

from crmkit_cases.calendar import BusinessCalendar
from crmkit_cases.models import Case
from crmkit_cases.settings import CaseKind, CasePriority, CasesSettings, CaseStatus

DEADLINES = (
    "first_response_warn_at",
    "first_response_due_at",
    "resolution_warn_at",
    "resolution_due_at",
)
TICKING = (CaseStatus.NEW, CaseStatus.IN_PROGRESS)
"""Statuses whose clocks run: waiting on the customer pauses them, resolving stops them."""


def minutes(duration: timedelta) -> int:
    return int(duration.total_seconds() // 60)


def start_clocks(case: Case, settings: CasesSettings, calendar: BusinessCalendar) -> None:
    """Set the targets (copied, so a later change of settings does not move them) and
    the deadlines of a case being opened."""
    target = settings.target(CaseKind(case.kind), CasePriority(case.priority))
    case.first_response_target_minutes = round(target.first_response_hours * 60)
    case.resolution_target_minutes = round(target.resolution_hours * 60)
    case.paused_minutes = 0
    for name, total in (
        ("first_response", case.first_response_target_minutes),
        ("resolution", case.resolution_target_minutes),
    ):
        warn_after = timedelta(minutes=total * settings.warning_share)
        setattr(case, f"{name}_warn_at", calendar.add(case.opened_at, warn_after))
        setattr(case, f"{name}_due_at", calendar.add(case.opened_at, timedelta(minutes=total)))


def pause(case: Case, now: datetime) -> None:
    case.paused_at = now


def resume(case: Case, calendar: BusinessCalendar, now: datetime) -> None:
    """Move every deadline still ahead of the pause by the business time it lasted."""
    if case.paused_at is None:
        return
    waited = calendar.between(case.paused_at, now)
    for name in DEADLINES:
        deadline: datetime = getattr(case, name)
        if deadline > case.paused_at:
            setattr(case, name, calendar.add(deadline, waited))
    case.paused_minutes += minutes(waited)
    case.paused_at = None


def running_minutes(case: Case, calendar: BusinessCalendar, now: datetime) -> int:
    """Business minutes the case's clock has run since opening, pauses left out."""
    paused = case.paused_minutes
    if case.paused_at is not None:
        paused += minutes(calendar.between(case.paused_at, now))
    return minutes(calendar.between(case.opened_at, now)) - paused


def record_first_response(case: Case, calendar: BusinessCalendar, now: datetime) -> None:
    if case.first_response_at is not None:
        return
    case.first_response_at = now
    case.first_response_minutes = running_minutes(case, calendar, now)
    case.first_response_met = now <= case.first_response_due_at


def record_resolution(case: Case, calendar: BusinessCalendar, now: datetime) -> None:
    """Stop the resolution clock; a case resolved without a reply was answered by it."""
    record_first_response(case, calendar, now)
    case.resolved_at = now
    case.resolution_minutes = running_minutes(case, calendar, now)
    case.resolution_met = now <= case.resolution_due_at


def event_data(case: Case, **extra: object) -> dict[str, object]:
    """What every case event carries: ids and codes, never the customer's words."""
    return {
        "customer_id": str(case.customer_id),
        "kind": case.kind,
        "priority": case.priority,
        "status": case.status,
        **extra,
    }


async def check_slas(ctx: crmkit.TenantContext) -> None:
    """Cron, per tenant: warn at the warning share, mark breaches, escalate.

    Each warning and breach is stamped on the case in this transaction, and the query
    only finds unstamped ones: a second run (or two overlapping runs, where the case's
    version makes the later writer fail and retry) finds nothing left to do.
    """
    settings = ctx.settings_as(CasesSettings)
    now = crmkit.utcnow()
    pending_first = and_(
        Case.first_response_at.is_(None),
        or_(
            and_(Case.first_response_warned_at.is_(None), Case.first_response_warn_at <= now),
            and_(Case.first_response_breached_at.is_(None), Case.first_response_due_at < now),
        ),
    )
    pending_resolution = or_(
        and_(Case.resolution_warned_at.is_(None), Case.resolution_warn_at <= now),
        and_(Case.resolution_breached_at.is_(None), Case.resolution_due_at < now),
    )
    due = await ctx.session.scalars(
        select(Case)
        .where(Case.status.in_(TICKING), or_(pending_first, pending_resolution))
        .order_by(Case.id)
    )
    for case in due:
        breached = [
            target for target in ("first_response", "resolution") if _stamp(ctx, case, target, now)
        ]
        if breached:
            await _escalate(ctx, settings, case, breached, now)


def _stamp(ctx: crmkit.TenantContext, case: Case, target: str, now: datetime) -> bool:
    """Warn or breach one target of the case if due; whether it breached now."""
    if target == "first_response" and case.first_response_at is not None:
        return False
    due_at: datetime = getattr(case, f"{target}_due_at")
    if getattr(case, f"{target}_breached_at") is None and due_at < now:
        setattr(case, f"{target}_breached_at", now)
        if getattr(case, f"{target}_warned_at") is None:
            setattr(case, f"{target}_warned_at", now)  # a breach says more than a warning
        setattr(case, f"{target}_met", False)
        return True
    if getattr(case, f"{target}_warned_at") is None and getattr(case, f"{target}_warn_at") <= now:
        setattr(case, f"{target}_warned_at", now)
        crmkit.emit(
            ctx,
            "cases_sla_warning",
            "Case",
            case.id,
            **event_data(case, target=target, due_at=due_at.isoformat()),
        )
    return False


async def _escalate(
    ctx: crmkit.TenantContext,
    settings: CasesSettings,
    case: Case,
    targets: list[str],
    now: datetime,
) -> None:
    """Hand the case to its team's lead, record each breach as an event, and tell the
    customer through the channels plugin when the tenant runs it."""
    team = settings.team(case.team)
    lead = team.lead if team is not None else None
    if lead is not None and case.assignee != lead:
        case.assignee = lead
    case.escalated_at = now
    case.updated_at = now
    await ctx.session.flush()
    for target in targets:
        due_at: datetime = getattr(case, f"{target}_due_at")
        crmkit.emit(
            ctx,
            "cases_sla_breached",
            "Case",
            case.id,
            **event_data(case, target=target, due_at=due_at.isoformat(), escalated_to=lead),
        )
        if settings.notify_on_escalation and ctx.plugin_enabled("channels"):
            crmkit.emit(
                ctx,
                "channels_send_requested",
                "Case",
                case.id,
                customer_id=str(case.customer_id),
                purpose="service_notices",
                template="cases.escalated",
                variables={"case_id": str(case.id), "target": target},
                idempotency_key=f"cases:escalated:{case.id}:{target}",
                requested_by="cases",
            )
