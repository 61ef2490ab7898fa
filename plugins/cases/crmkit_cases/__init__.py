"""crmkit-cases: service requests and complaints with SLAs in business hours, routing
and process monitoring (the guide's service-process chapter).

The table of contents: ``plugin_info`` and the hook implementations below.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import crmkit
from sqlalchemy import select

from crmkit_cases import graphql, hookspecs, retention, service, sla
from crmkit_cases.models import Case
from crmkit_cases.settings import NAME, CaseKind, CasePriority, CasesSettings, CaseStatus

plugin_info = crmkit.PluginInfo(
    name=NAME,
    version="0.1.0",
    description="Service requests and complaints with SLAs, routing and process monitoring.",
    requires=">=0.1,<0.2",
    settings=CasesSettings,
    migrations=Path(__file__).parent / "migrations",
    hookspecs=hookspecs,
)

AGENTS = frozenset({crmkit.Role.SERVICE_AGENT})


@crmkit.hookimpl
def register_scopes() -> Iterable[crmkit.Scope]:
    """Agents work cases; relationship managers read them; monitoring is for managers
    (tenant admins hold every scope)."""
    return [
        crmkit.Scope(
            graphql.READ,
            "Read service cases, their entries and the team queue.",
            roles=frozenset({crmkit.Role.SERVICE_AGENT, crmkit.Role.RELATIONSHIP_MANAGER}),
        ),
        crmkit.Scope(graphql.WRITE, "Open, answer, assign and move service cases.", roles=AGENTS),
        crmkit.Scope(graphql.MANAGE, "See the service-process monitoring figures."),
    ]


@crmkit.hookimpl
def register_graphql() -> crmkit.GraphQLContribution:
    return graphql.contribution()


@crmkit.hookimpl
def register_jobs() -> Iterable[crmkit.JobSpec | crmkit.CronSpec]:
    """The SLA check runs every minute: a breach is marked within the minute it happens."""
    return [crmkit.CronSpec("check_slas", sla.check_slas)]


@crmkit.hookimpl
async def loyalty_tier_changed(event: crmkit.DomainEvent, ctx: crmkit.TenantContext) -> None:
    """Keep the tier for routing rules; setting the same tier twice changes nothing."""
    await service.remember_tier(
        ctx, uuid.UUID(event.data["customer_id"]), str(event.data["new_tier"])
    )


@crmkit.hookimpl
async def churn_action_requested(event: crmkit.DomainEvent, ctx: crmkit.TenantContext) -> None:
    """The churn plugin's retention case (called only where a tenant runs both plugins):
    one case per alert."""
    await retention.open_for_alert(ctx, event)


@crmkit.hookimpl
async def export_customer_data(ctx: crmkit.TenantContext, customer_id: uuid.UUID) -> Any:
    cases = await service.cases_of(ctx, customer_id)
    if not cases:
        return None
    entries = await service.entries_of(ctx, [case.id for case in cases])
    return [
        {
            "id": str(case.id),
            "kind": case.kind,
            "channel": case.channel,
            "priority": case.priority,
            "status": case.status,
            "subject": case.subject,
            "description": case.description,
            "opened_at": case.opened_at.isoformat(),
            "resolution": case.resolution,
            "resolution_code": case.resolution_code,
            "closed_at": case.closed_at and case.closed_at.isoformat(),
            "entries": [
                {
                    "body": entry.body,
                    "author": entry.author,
                    "visible_to_customer": entry.visible_to_customer,
                    "created_at": entry.created_at.isoformat(),
                }
                for entry in entries
                if entry.case_id == case.id
            ],
        }
        for case in cases
    ]


@crmkit.hookimpl
async def erase_customer(ctx: crmkit.TenantContext, customer_id: uuid.UUID) -> None:
    await service.erase(ctx, customer_id)


DEMO_SUBJECTS = (
    (CaseKind.COMPLAINT, "Card fee charged twice"),
    (CaseKind.REQUEST, "New debit card"),
    (CaseKind.ENQUIRY, "Mortgage rates"),
    (CaseKind.COMPLAINT, "Branch queue too long"),
)


@crmkit.hookimpl
async def seed_demo(ctx: crmkit.TenantContext, customer_ids: list[uuid.UUID]) -> None:
    """A few cases in different states; none when the demo already has cases."""
    if not customer_ids or await ctx.session.scalar(select(Case.id).limit(1)):
        return
    rng = random.Random(12)  # noqa: S311 - sample data, not security
    for index, (kind, subject) in enumerate(DEMO_SUBJECTS):
        case = await service.open_case(
            ctx,
            customer_id=rng.choice(customer_ids),
            kind=kind,
            channel=rng.choice([crmkit.Channel.PHONE, crmkit.Channel.EMAIL, crmkit.Channel.APP]),
            subject=subject,
            description=f"{subject}: reported by the customer.",
            priority=rng.choice(list(CasePriority)),
            opened_by="crmkit:demo",
        )
        if index % 2 == 0:
            await service.add_entry(
                ctx,
                case.id,
                body="We are looking into it.",
                author="crmkit:demo",
                visible_to_customer=True,
            )
        if index == 0:
            await service.change_status(
                ctx,
                case.id,
                CaseStatus.RESOLVED,
                expected_version=None,
                resolution="Refunded the second fee.",
                resolution_code="refunded",
                root_cause_code="fees",
            )
