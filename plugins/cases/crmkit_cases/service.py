"""Working a case: the one write path GraphQL, the demo and the jobs share, so every
case is validated, clocked, audited (by crmkit, for every row written through the ORM)
and announced the same way."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import crmkit
from sqlalchemy import delete, select

from crmkit_cases import routing, sla
from crmkit_cases.calendar import BusinessCalendar
from crmkit_cases.models import Case, CaseEntry, CaseLink, CustomerTier
from crmkit_cases.settings import CaseKind, CasePriority, CasesSettings, CaseStatus

S = CaseStatus
TRANSITIONS: dict[CaseStatus, frozenset[CaseStatus]] = {
    S.NEW: frozenset({S.IN_PROGRESS, S.WAITING_ON_CUSTOMER, S.RESOLVED, S.CLOSED}),
    S.IN_PROGRESS: frozenset({S.WAITING_ON_CUSTOMER, S.RESOLVED, S.CLOSED}),
    S.WAITING_ON_CUSTOMER: frozenset({S.IN_PROGRESS, S.RESOLVED, S.CLOSED}),
    S.RESOLVED: frozenset({S.CLOSED, S.IN_PROGRESS}),
    S.CLOSED: frozenset({S.IN_PROGRESS}),
}
"""Where each status may go; back to in progress from resolved or closed is a reopen."""
LINK_TYPES = frozenset({"activity", "message"})
SUBJECT_MAX = 200
TEXT_MAX = 10_000


def _text(value: str | None, field: str, maximum: int, *, required: bool) -> str | None:
    value = (value or "").strip() or None
    if value is None and required:
        raise crmkit.BadUserInput(f"{field} must not be empty", field=field)
    if value is not None and len(value) > maximum:
        raise crmkit.BadUserInput(f"{field} is longer than {maximum} characters", field=field)
    return value


def _code(value: str | None, allowed: list[str], field: str, setting: str) -> str | None:
    if value is not None and value not in allowed:
        raise crmkit.BadUserInput(
            f"{field} {value!r} is not one of the tenant's {setting}: {', '.join(allowed)}",
            field=field,
        )
    return value


async def get_case(ctx: crmkit.TenantContext, case_id: uuid.UUID) -> Case:
    """The tenant's case; another tenant's reads as NOT_FOUND, like a missing one."""
    case = await ctx.session.get(Case, (ctx.tenant_id, case_id))
    if case is None:
        raise crmkit.NotFound("no such case")
    return case


async def _case_for_change(
    ctx: crmkit.TenantContext, case_id: uuid.UUID, expected_version: int | None
) -> Case:
    """The case about to change: its customer still there (an erased customer's case
    takes nothing new) and, with ``expected_version``, unchanged since the caller read it."""
    case = await get_case(ctx, case_id)
    await crmkit.get_customer(ctx, case.customer_id)
    if expected_version is not None and expected_version != case.version:
        raise crmkit.Conflict(
            f"the case is at version {case.version}, not {expected_version}; "
            "reload it and apply your change again",
            version=case.version,
        )
    return case


async def open_case(
    ctx: crmkit.TenantContext,
    *,
    customer_id: uuid.UUID,
    kind: CaseKind,
    channel: crmkit.Channel,
    subject: str,
    description: str | None,
    opened_by: str,
    priority: CasePriority = CasePriority.NORMAL,
    team: str | None = None,
    assignee: str | None = None,
    case_id: uuid.UUID | None = None,
) -> Case:
    """Open a case, route it unless a team or assignee is given, start its SLA clocks,
    emit ``cases_opened``, and put a complaint on the customer's timeline."""
    customer = await crmkit.get_customer(ctx, customer_id)
    settings = ctx.settings_as(CasesSettings)
    subject_text = _text(subject, "subject", SUBJECT_MAX, required=True)
    description_text = _text(description, "description", TEXT_MAX, required=False)
    if team is not None and settings.team(team) is None:
        raise crmkit.BadUserInput(f"no team {team!r} in the tenant's settings", field="team")
    if team is None and assignee is None:
        team = await routing.choose_team(ctx, settings, kind, channel.value, customer)
        if team is not None:
            assignee = await routing.choose_agent(ctx, settings, team)
    now = crmkit.utcnow()
    case = Case(
        id=case_id or crmkit.uuid7(),
        customer_id=customer_id,
        kind=kind.value,
        channel=channel.value,
        priority=priority.value,
        status=CaseStatus.NEW.value,
        subject=subject_text,
        description=description_text,
        team=team,
        assignee=_text(assignee, "assignee", 200, required=False),
        opened_by=opened_by,
        opened_at=now,
        updated_at=now,
    )
    sla.start_clocks(case, settings, BusinessCalendar.of(settings))
    ctx.session.add(case)
    await ctx.session.flush()
    crmkit.emit(
        ctx, "cases_opened", "Case", case.id, **sla.event_data(case, team=team, assignee=assignee)
    )
    if kind is CaseKind.COMPLAINT:
        await crmkit.record_activity(
            ctx,
            customer_id=customer_id,
            kind=crmkit.ActivityKind.COMPLAINT,
            channel=channel,
            attributes={"case_id": str(case.id), "priority": case.priority},
            external_ref=f"cases:{case.id}",
        )
    return case


async def change_status(
    ctx: crmkit.TenantContext,
    case_id: uuid.UUID,
    status: CaseStatus,
    *,
    expected_version: int | None,
    resolution: str | None = None,
    resolution_code: str | None = None,
    root_cause_code: str | None = None,
) -> Case:
    """Move a case along its life; a move :data:`TRANSITIONS` does not allow, or a
    resolution without its text and code, is refused and changes nothing."""
    case = await _case_for_change(ctx, case_id, expected_version)
    settings = ctx.settings_as(CasesSettings)
    calendar = BusinessCalendar.of(settings)
    now = crmkit.utcnow()
    old = CaseStatus(case.status)
    if status not in TRANSITIONS[old]:
        raise crmkit.BadUserInput(
            f"a case that is {old.value} cannot become {status.value}; it can become "
            + ", ".join(sorted(s.value for s in TRANSITIONS[old])),
            field="status",
        )
    ending = status in (CaseStatus.RESOLVED, CaseStatus.CLOSED)
    if ending:
        text = _text(resolution, "resolution", TEXT_MAX, required=False) or case.resolution
        code = (
            _code(resolution_code, settings.resolution_codes, "resolutionCode", "resolution_codes")
            or case.resolution_code
        )
        if text is None or code is None:
            raise crmkit.BadUserInput(
                f"a case is {status.value} only with a resolution and a resolution code",
                field="resolution" if text is None else "resolutionCode",
            )
        cause = _code(
            root_cause_code, settings.root_cause_codes, "rootCauseCode", "root_cause_codes"
        )
        case.resolution, case.resolution_code = text, code
        case.root_cause_code = cause or case.root_cause_code
    if old is CaseStatus.WAITING_ON_CUSTOMER:
        sla.resume(case, calendar, now)
    if old in (CaseStatus.RESOLVED, CaseStatus.CLOSED) and status is CaseStatus.IN_PROGRESS:
        _reopen(case, settings, now)
    if status is CaseStatus.WAITING_ON_CUSTOMER:
        sla.pause(case, now)
    if ending and case.resolved_at is None:
        sla.record_resolution(case, calendar, now)
    if status is CaseStatus.CLOSED:
        case.closed_at = now
    case.status = status.value
    case.updated_at = now
    await ctx.session.flush()
    crmkit.emit(
        ctx,
        "cases_status_changed",
        "Case",
        case.id,
        **sla.event_data(case, old_status=old.value, new_status=status.value),
    )
    if status is CaseStatus.CLOSED:
        crmkit.emit(
            ctx,
            "cases_closed",
            "Case",
            case.id,
            **sla.event_data(
                case,
                resolution_code=case.resolution_code,
                root_cause_code=case.root_cause_code,
                first_response_met=bool(case.first_response_met),
                resolution_met=bool(case.resolution_met),
            ),
        )
    return case


def _reopen(case: Case, settings: CasesSettings, now: datetime) -> None:
    """Back to work within the tenant's window; the resolution clock runs on from its
    old deadline, and the case needs a new resolution to close again."""
    assert case.resolved_at is not None
    if now > case.resolved_at + timedelta(days=settings.reopen_window_days):
        raise crmkit.BadUserInput(
            f"the case was resolved more than {settings.reopen_window_days} days ago "
            "(the tenant's reopen_window_days); open a new case",
            field="status",
        )
    case.reopen_count += 1
    case.resolved_at = case.closed_at = None
    case.resolution_minutes = case.resolution_met = None
    case.resolution = case.resolution_code = None


async def add_entry(
    ctx: crmkit.TenantContext,
    case_id: uuid.UUID,
    *,
    body: str,
    author: str,
    visible_to_customer: bool,
) -> CaseEntry:
    """A note or a reply; the first reply the customer sees is the case's first response
    and takes a new case into progress."""
    case = await _case_for_change(ctx, case_id, None)
    text = _text(body, "body", TEXT_MAX, required=True)
    if case.status == CaseStatus.CLOSED:
        raise crmkit.BadUserInput("the case is closed; reopen it first", field="caseId")
    now = crmkit.utcnow()
    entry = CaseEntry(
        case_id=case.id,
        customer_id=case.customer_id,
        visible_to_customer=visible_to_customer,
        body=text,
        author=author,
        created_at=now,
    )
    ctx.session.add(entry)
    if visible_to_customer and case.first_response_at is None:
        settings = ctx.settings_as(CasesSettings)
        sla.record_first_response(case, BusinessCalendar.of(settings), now)
        case.updated_at = now
        if case.status == CaseStatus.NEW:
            case.status = CaseStatus.IN_PROGRESS.value
            crmkit.emit(
                ctx,
                "cases_status_changed",
                "Case",
                case.id,
                **sla.event_data(case, old_status="new", new_status=case.status),
            )
    await ctx.session.flush()
    return entry


async def assign(
    ctx: crmkit.TenantContext,
    case_id: uuid.UUID,
    *,
    expected_version: int | None,
    team: str | None,
    assignee: str | None,
) -> Case:
    case = await _case_for_change(ctx, case_id, expected_version)
    settings = ctx.settings_as(CasesSettings)
    if team is not None and settings.team(team) is None:
        raise crmkit.BadUserInput(f"no team {team!r} in the tenant's settings", field="team")
    case.team = team
    case.assignee = _text(assignee, "assignee", 200, required=False)
    case.updated_at = crmkit.utcnow()
    await ctx.session.flush()
    return case


async def link(
    ctx: crmkit.TenantContext, case_id: uuid.UUID, *, target_type: str, target_id: str
) -> CaseLink:
    """Link an activity of the case's customer, or a message by its id."""
    case = await _case_for_change(ctx, case_id, None)
    if target_type not in LINK_TYPES:
        raise crmkit.BadUserInput("targetType is activity or message", field="targetType")
    if target_type == "activity":
        try:
            activity_id = uuid.UUID(target_id)
        except ValueError:
            raise crmkit.BadUserInput("targetId is not an id", field="targetId") from None
        found = await ctx.session.scalar(
            select(crmkit.Activity.id).where(
                crmkit.Activity.id == activity_id, crmkit.Activity.customer_id == case.customer_id
            )
        )
        if found is None:
            raise crmkit.NotFound("no such activity of the case's customer")
    row = CaseLink(case_id=case.id, target_type=target_type, target_id=target_id[:64])
    ctx.session.add(row)
    await ctx.session.flush()
    return row


async def remember_tier(ctx: crmkit.TenantContext, customer_id: uuid.UUID, tier: str) -> None:
    """Keep the loyalty tier routing rules ask about (from ``loyalty_tier_changed``)."""
    try:
        await crmkit.get_customer(ctx, customer_id)
    except crmkit.NotFound:
        return  # erased since: keep nothing about them
    row = await ctx.session.get(CustomerTier, (ctx.tenant_id, customer_id))
    if row is None:
        ctx.session.add(CustomerTier(customer_id=customer_id, tier=tier))
    elif row.tier != tier:
        row.tier = tier


async def cases_of(ctx: crmkit.TenantContext, customer_id: uuid.UUID) -> list[Case]:
    rows = await ctx.session.scalars(
        select(Case).where(Case.customer_id == customer_id).order_by(Case.id)
    )
    return list(rows)


async def entries_of(ctx: crmkit.TenantContext, case_ids: list[uuid.UUID]) -> list[CaseEntry]:
    rows = await ctx.session.scalars(
        select(CaseEntry).where(CaseEntry.case_id.in_(case_ids)).order_by(CaseEntry.id)
    )
    return list(rows)


async def erase(ctx: crmkit.TenantContext, customer_id: uuid.UUID) -> None:
    """Delete everything held on the customer; the audit trail keeps only the ids."""
    case_ids = select(Case.id).where(Case.customer_id == customer_id).scalar_subquery()
    await ctx.session.execute(delete(CaseLink).where(CaseLink.case_id.in_(case_ids)))
    await ctx.session.execute(delete(CaseEntry).where(CaseEntry.customer_id == customer_id))
    await ctx.session.execute(delete(Case).where(Case.customer_id == customer_id))
    await ctx.session.execute(delete(CustomerTier).where(CustomerTier.customer_id == customer_id))
