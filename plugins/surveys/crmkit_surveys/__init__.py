"""crmkit-surveys: CSAT, NPS, CES and SERVQUAL surveys with invitations, triggers, a
public response form and results computed in SQL.

crmkit loads this module through the ``crmkit.plugins`` entry point: ``plugin_info``
and the hook implementations below are the plugin's table of contents.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import crmkit

from crmkit_surveys import demo, graphql, hookspecs, routes, service, triggers
from crmkit_surveys.settings import NAME, PURPOSE, SurveysSettings

plugin_info = crmkit.PluginInfo(
    name=NAME,
    version="0.1.0",
    description="Satisfaction and service-quality surveys: CSAT, NPS, CES, SERVQUAL.",
    requires=">=0.1,<0.2",
    settings=SurveysSettings,
    migrations=Path(__file__).parent / "migrations",
    hookspecs=hookspecs,
)


@crmkit.hookimpl
def register_scopes() -> Iterable[crmkit.Scope]:
    """Relationship managers read results and invite; only tenant administrators (who
    hold every scope) define and publish surveys."""
    managers = frozenset({crmkit.Role.RELATIONSHIP_MANAGER})
    return [
        crmkit.Scope(graphql.READ, "Read surveys, invitations, responses and results.", managers),
        crmkit.Scope(graphql.WRITE, "Invite customers to surveys.", managers),
        crmkit.Scope(graphql.MANAGE, "Define and publish surveys."),
    ]


@crmkit.hookimpl
def register_graphql() -> crmkit.GraphQLContribution:
    return graphql.contribution()


@crmkit.hookimpl
def register_routes() -> Iterable[Any]:
    return [routes.show_form, routes.submit_form]


@crmkit.hookimpl
def register_consent_purposes() -> Iterable[crmkit.ConsentPurpose]:
    return [crmkit.ConsentPurpose(PURPOSE, "Invitations to give feedback in surveys.")]


@crmkit.hookimpl
def register_jobs() -> Iterable[crmkit.JobSpec | crmkit.CronSpec]:
    """Daily, per enabled tenant: the schedule triggers."""
    return [crmkit.CronSpec("scheduled_invitations", triggers.scheduled, hour={9}, minute={0})]


@crmkit.hookimpl
async def activity_recorded(event: crmkit.DomainEvent, ctx: crmkit.TenantContext) -> None:
    await triggers.after_activity(ctx, uuid.UUID(str(event.subject_id)))


@crmkit.hookimpl
async def cases_closed(event: crmkit.DomainEvent, ctx: crmkit.TenantContext) -> None:
    """The cases plugin's event (called only where a tenant runs both plugins)."""
    await triggers.after_case_closed(ctx, str(event.subject_id), str(event.data["customer_id"]))


@crmkit.hookimpl
async def export_customer_data(ctx: crmkit.TenantContext, customer_id: uuid.UUID) -> Any:
    """Invitations (without their tokens) and every response with its answers."""
    return await service.export_of(ctx, customer_id)


@crmkit.hookimpl
async def erase_customer(ctx: crmkit.TenantContext, customer_id: uuid.UUID) -> None:
    await service.erase(ctx, customer_id)


@crmkit.hookimpl
async def seed_demo(ctx: crmkit.TenantContext, customer_ids: list[uuid.UUID]) -> None:
    await demo.seed(ctx, customer_ids)
