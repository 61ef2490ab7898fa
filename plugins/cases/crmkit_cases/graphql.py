"""The plugin's GraphQL: cases and their queue, transitions as mutations, the
monitoring figures, and ``Customer.cases``.

Resolvers return the ORM rows; strawberry reads their attributes. Personal text
(subject, description, resolution, entry bodies) goes out through
``crmkit.personal_field``: masked without ``pii:contact``, logged when shown.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import crmkit
import strawberry
from sqlalchemy import Select, func, or_, select

from crmkit_cases import monitoring, service
from crmkit_cases.models import Case, CaseEntry, CaseLink
from crmkit_cases.settings import (
    NAME,
    OPEN_STATUSES,
    CaseKind,
    CasePriority,
    CasesSettings,
    CaseStatus,
)

READ = f"{NAME}:read"
WRITE = f"{NAME}:write"
MANAGE = f"{NAME}:manage"

strawberry.enum(CaseKind, name="CaseKind")
strawberry.enum(CasePriority, name="CasePriority")
strawberry.enum(CaseStatus, name="CaseStatus")


@strawberry.type(name="CaseEntry", description="An internal note or a reply the customer saw.")
class CaseEntryType:
    id: uuid.UUID
    visible_to_customer: bool
    body = crmkit.personal_field(crmkit.InformationClass.CONTACT, "What was written.")
    author: str
    created_at: datetime


async def load_entries(
    context: crmkit.RequestContext, case_ids: Sequence[uuid.UUID]
) -> list[list[CaseEntry]]:
    """The entries of every case on a page in one query."""
    rows = await context.session.scalars(
        select(CaseEntry).where(CaseEntry.case_id.in_(case_ids)).order_by(CaseEntry.id)
    )
    return crmkit.rows_by_key(rows, lambda entry: entry.case_id, case_ids)


@strawberry.type(name="CaseLink", description="An activity or a message the case concerns.")
class CaseLinkType:
    target_type: str = strawberry.field(description="activity or message")
    target_id: str
    created_at: datetime


async def load_links(
    context: crmkit.RequestContext, case_ids: Sequence[uuid.UUID]
) -> list[list[CaseLink]]:
    """The links of every case on a page in one query."""
    rows = await context.session.scalars(
        select(CaseLink).where(CaseLink.case_id.in_(case_ids)).order_by(CaseLink.id)
    )
    return crmkit.rows_by_key(rows, lambda link: link.case_id, case_ids)


@strawberry.type(name="Case", description="A customer's enquiry, request or complaint.")
class CaseType:
    id: uuid.UUID
    customer_id: uuid.UUID
    kind: CaseKind
    channel: crmkit.Channel
    priority: CasePriority
    status: CaseStatus
    subject = crmkit.personal_field(crmkit.InformationClass.CONTACT, "What the case is about.")
    description = crmkit.personal_field(crmkit.InformationClass.CONTACT, "The customer's account.")
    team: str | None
    assignee: str | None
    opened_at: datetime
    updated_at: datetime
    first_response_due_at: datetime
    first_response_at: datetime | None
    first_response_met: bool | None
    resolution_due_at: datetime
    resolved_at: datetime | None
    resolution_met: bool | None
    resolution = crmkit.personal_field(crmkit.InformationClass.CONTACT, "How it was resolved.")
    resolution_code: str | None
    root_cause_code: str | None
    closed_at: datetime | None
    escalated_at: datetime | None
    reopen_count: int
    version: int = strawberry.field(description="Pass as expectedVersion when changing it.")

    @strawberry.field(description="Notes and replies, oldest first.")
    async def entries(self, info: crmkit.Info) -> list[CaseEntryType]:
        return await info.context.load(load_entries, self.id)

    @strawberry.field(description="Linked activities and messages, oldest first.")
    async def links(self, info: crmkit.Info) -> list[CaseLinkType]:
        return await info.context.load(load_links, self.id)


@strawberry.input(name="CaseFilter")
class CaseFilter:
    status: CaseStatus | None = None
    kind: CaseKind | None = None
    priority: CasePriority | None = None
    team: str | None = None
    assignee: str | None = None
    customer_id: uuid.UUID | None = None
    breached: bool | None = strawberry.field(
        default=None, description="Only cases that missed (true) or kept (false) an SLA."
    )


@strawberry.input(name="OpenCaseInput")
class OpenCaseInput:
    customer_id: uuid.UUID
    kind: CaseKind
    channel: crmkit.Channel
    subject: str
    description: str | None = None
    priority: CasePriority = CasePriority.NORMAL
    team: str | None = strawberry.field(default=None, description="Skip routing: this team.")
    assignee: str | None = strawberry.field(default=None, description="Skip routing: this agent.")


@strawberry.input(name="ChangeCaseStatusInput")
class ChangeCaseStatusInput:
    id: uuid.UUID
    expected_version: int
    status: CaseStatus
    resolution: str | None = None
    resolution_code: str | None = None
    root_cause_code: str | None = None


def _page(
    statement: Select[Any], info: crmkit.Info, first: int | None, after: str | None
) -> tuple[Select[Any], int]:
    size, after_id = info.context.page(first, after)
    if after_id is not None:
        statement = statement.where(Case.id > after_id)
    return statement.order_by(Case.id).limit(size + 1), size


async def resolve_cases(
    info: crmkit.Info,
    first: int | None = None,
    after: str | None = None,
    filter: CaseFilter | None = None,
) -> crmkit.Connection[CaseType]:
    """Every case of the tenant, filtered, oldest first (keyset on the case id)."""
    statement = select(Case)
    if filter is not None:
        equal = {
            "status": filter.status and filter.status.value,
            "kind": filter.kind and filter.kind.value,
            "priority": filter.priority and filter.priority.value,
            "team": filter.team,
            "assignee": filter.assignee,
            "customer_id": filter.customer_id,
        }
        for name, value in equal.items():
            if value is not None:
                statement = statement.where(getattr(Case, name) == value)
        if filter.breached is not None:
            missed = or_(Case.first_response_met.is_(False), Case.resolution_met.is_(False))
            statement = statement.where(missed if filter.breached else ~missed)
    statement, size = _page(statement, info, first, after)
    rows = list(await info.context.session.scalars(statement))
    return crmkit.connection(rows, size)  # type: ignore[arg-type]


async def resolve_my_cases(
    info: crmkit.Info, first: int | None = None, after: str | None = None
) -> crmkit.Connection[CaseType]:
    """The caller's queue: open cases assigned to them, and their teams' unassigned ones."""
    me = info.context.principal.subject
    settings = info.context.tenant_context(NAME).settings_as(CasesSettings)
    teams = [team.name for team in settings.teams if me in team.agents or me == team.lead]
    mine = or_(Case.assignee == me, Case.assignee.is_(None) & Case.team.in_(teams))
    statement, size = _page(
        select(Case).where(mine, Case.status.in_(OPEN_STATUSES)), info, first, after
    )
    rows = list(await info.context.session.scalars(statement))
    return crmkit.connection(rows, size)


async def resolve_case(info: crmkit.Info, id: uuid.UUID) -> CaseType:
    return await service.get_case(info.context.tenant_context(NAME), id)  # type: ignore[return-value]


async def resolve_monitoring(
    info: crmkit.Info, since: datetime, until: datetime
) -> monitoring.Figures:
    """The service-process figures over the cases opened in ``[since, until)``."""
    if until <= since:
        raise crmkit.BadUserInput("until must be after since", field="until")
    return await monitoring.figures(info.context.session, since, until)


CustomerCasesKey = tuple[uuid.UUID, int, uuid.UUID | None, str | None]


async def load_customer_cases(
    context: crmkit.RequestContext, keys: Sequence[CustomerCasesKey]
) -> list[list[Case]]:
    """``Customer.cases`` of a page: one query per distinct (first, after, status), which
    is one query for a page, ranking each customer's cases to cut its own page."""
    found: dict[CustomerCasesKey, list[Case]] = defaultdict(list)
    groups: defaultdict[tuple[int, uuid.UUID | None, str | None], list[uuid.UUID]] = defaultdict(
        list
    )
    for customer_id, size, after_id, status in keys:
        groups[(size, after_id, status)].append(customer_id)
    for (size, after_id, status), customer_ids in groups.items():
        ranked = select(
            Case.id,
            func.row_number().over(partition_by=Case.customer_id, order_by=Case.id).label("n"),
        ).where(Case.customer_id.in_(customer_ids))
        if after_id is not None:
            ranked = ranked.where(Case.id > after_id)
        if status is not None:
            ranked = ranked.where(Case.status == status)
        page = ranked.subquery()
        rows = await context.session.scalars(
            select(Case)
            .join(page, Case.id == page.c.id)
            .where(page.c.n <= size + 1)
            .order_by(Case.id)
        )
        for case in rows:
            found[(case.customer_id, size, after_id, status)].append(case)
    return [found[key] for key in keys]


async def resolve_customer_cases(
    root: crmkit.Customer,
    info: crmkit.Info,
    first: int | None = None,
    after: str | None = None,
    status: CaseStatus | None = None,
) -> crmkit.Connection[CaseType]:
    """``Customer.cases``: batched over the page's customers, never a query per row."""
    size, after_id = info.context.page(first, after)
    key = (root.id, size, after_id, status and status.value)
    rows = await info.context.load(load_customer_cases, key)
    return crmkit.connection(rows, size)


async def resolve_open_case(info: crmkit.Info, input: OpenCaseInput) -> CaseType:
    context = info.context
    case = await service.open_case(
        context.tenant_context(NAME),
        customer_id=input.customer_id,
        kind=input.kind,
        channel=input.channel,
        subject=input.subject,
        description=input.description,
        priority=input.priority,
        team=input.team,
        assignee=input.assignee,
        opened_by=context.principal.subject,
    )
    return case  # type: ignore[return-value]


async def resolve_change_case_status(info: crmkit.Info, input: ChangeCaseStatusInput) -> CaseType:
    """A transition; anything but the moves the life cycle allows is BAD_USER_INPUT, a
    stale ``expectedVersion`` is CONFLICT, and either changes nothing."""
    case = await service.change_status(
        info.context.tenant_context(NAME),
        input.id,
        input.status,
        expected_version=input.expected_version,
        resolution=input.resolution,
        resolution_code=input.resolution_code,
        root_cause_code=input.root_cause_code,
    )
    return case  # type: ignore[return-value]


async def resolve_assign_case(
    info: crmkit.Info,
    id: uuid.UUID,
    expected_version: int,
    team: str | None = None,
    assignee: str | None = None,
) -> CaseType:
    case = await service.assign(
        info.context.tenant_context(NAME),
        id,
        expected_version=expected_version,
        team=team,
        assignee=assignee,
    )
    return case  # type: ignore[return-value]


async def resolve_add_case_entry(
    info: crmkit.Info, case_id: uuid.UUID, body: str, visible_to_customer: bool = False
) -> CaseEntryType:
    """A note (``visibleToCustomer: false``) or a reply; the first reply is the case's
    first response."""
    entry = await service.add_entry(
        info.context.tenant_context(NAME),
        case_id,
        body=body,
        author=info.context.principal.subject,
        visible_to_customer=visible_to_customer,
    )
    return entry  # type: ignore[return-value]


async def resolve_link_case(
    info: crmkit.Info, case_id: uuid.UUID, target_type: str, target_id: str
) -> CaseType:
    """Link an ``activity`` of the case's customer or a ``message`` (by id) to the case."""
    context = info.context.tenant_context(NAME)
    await service.link(context, case_id, target_type=target_type, target_id=target_id)
    return await service.get_case(context, case_id)  # type: ignore[return-value]


def contribution() -> crmkit.GraphQLContribution:
    return crmkit.GraphQLContribution(
        query={
            "cases": crmkit.field(resolve_cases, scope=READ),
            "case": crmkit.field(resolve_case, scope=READ),
            "my_cases": crmkit.field(resolve_my_cases, scope=READ),
            "case_monitoring": crmkit.field(resolve_monitoring, scope=MANAGE),
        },
        mutation={
            "open_case": crmkit.field(resolve_open_case, scope=WRITE),
            "change_case_status": crmkit.field(resolve_change_case_status, scope=WRITE),
            "assign_case": crmkit.field(resolve_assign_case, scope=WRITE),
            "add_case_entry": crmkit.field(resolve_add_case_entry, scope=WRITE),
            "link_case": crmkit.field(resolve_link_case, scope=WRITE),
        },
        customer={"cases": crmkit.field(resolve_customer_cases, scope=READ)},
    )
