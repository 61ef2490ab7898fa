"""A test plugin implementing every core hook and recording each call.

It is registered on the test platform directly (not through an entry point), the way
a plugin author tests a plugin in isolation.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, Field, SecretStr
from sqlalchemy import func, select

import crmkit


class RecorderSettings(BaseModel):
    threshold: int = Field(10, ge=0, le=100)
    label: str = "rec"
    gateway_key: SecretStr | None = None  # a secret setting: stored sealed, shown masked


plugin_info = crmkit.PluginInfo(
    name="recorder",
    version="1.0",
    description="Records every hook call (tests only).",
    requires=">=0.1",
    settings=RecorderSettings,
)

CALLS: dict[uuid.UUID, list[tuple[str, Any]]] = defaultdict(list)
"""Hook calls by tenant: (hook name, detail)."""
FAIL_ONCE: set[str] = set()
"""Subject ids whose first ``customer_created`` delivery raises (a transient failure)."""
HANDLED: dict[str, int] = defaultdict(int)
"""Successful ``customer_created`` deliveries by event id."""


@crmkit.hookimpl
def register_scopes() -> Iterable[crmkit.Scope]:
    return [crmkit.Scope("recorder:read", "Read what the recorder saw.")]


@crmkit.hookimpl
def register_graphql() -> crmkit.GraphQLContribution:
    import strawberry

    async def recorder_threshold(info: strawberry.Info) -> int:
        settings = info.context.tenant_context("recorder").settings
        return int(settings.threshold)

    return crmkit.GraphQLContribution(
        query={"recorder_threshold": crmkit.field(recorder_threshold, scope="recorder:read")}
    )


@crmkit.hookimpl
def register_consent_purposes() -> Iterable[crmkit.ConsentPurpose]:
    return [crmkit.ConsentPurpose("recorder_offers", "Offers from the recorder (tests only).")]


async def count_calls(ctx: crmkit.TenantContext, marker: str) -> None:
    CALLS[ctx.tenant_id].append(("job", marker))


async def nightly(ctx: crmkit.TenantContext) -> None:
    CALLS[ctx.tenant_id].append(("job", "nightly"))


@crmkit.hookimpl
def register_jobs() -> Iterable[crmkit.JobSpec | crmkit.CronSpec]:
    return [
        crmkit.JobSpec("count_calls", count_calls),
        crmkit.CronSpec("nightly", nightly, hour={3}, minute={0}),
    ]


@crmkit.hookimpl
def plugin_enabled(ctx: crmkit.TenantContext) -> None:
    CALLS[ctx.tenant_id].append(("plugin_enabled", ctx.settings))


@crmkit.hookimpl
def plugin_settings_changed(ctx: crmkit.TenantContext, previous: Any) -> None:
    CALLS[ctx.tenant_id].append(("plugin_settings_changed", (previous, ctx.settings)))


@crmkit.hookimpl
def plugin_disabled(ctx: crmkit.TenantContext) -> None:
    CALLS[ctx.tenant_id].append(("plugin_disabled", None))


@crmkit.hookimpl
def validate_customer(ctx: crmkit.TenantContext, customer: crmkit.Customer, changed: frozenset[str]) -> None:
    if customer.personal.given_name == "Veto":
        raise crmkit.BadUserInput("the recorder refuses customers named Veto", field="givenName")
    CALLS[ctx.tenant_id].append(("validate_customer", frozenset(changed)))


@crmkit.hookimpl
async def validate_activity(ctx: crmkit.TenantContext, activity: crmkit.Activity) -> None:
    if activity.attributes.get("veto"):
        raise crmkit.BadUserInput("the recorder refuses vetoed activities", field="attributes")
    CALLS[ctx.tenant_id].append(("validate_activity", activity.kind))


@crmkit.hookimpl
async def customer_created(event: crmkit.DomainEvent, ctx: crmkit.TenantContext) -> None:
    if event.subject_id in FAIL_ONCE:
        FAIL_ONCE.discard(event.subject_id)
        raise ConnectionError("transient failure, please retry")
    HANDLED[str(event.id)] += 1
    CALLS[ctx.tenant_id].append(("customer_created", event.subject_id))


@crmkit.hookimpl
def customer_updated(event: crmkit.DomainEvent, ctx: crmkit.TenantContext) -> None:
    CALLS[ctx.tenant_id].append(("customer_updated", tuple(event.data["changed"])))


@crmkit.hookimpl
def customer_archived(event: crmkit.DomainEvent, ctx: crmkit.TenantContext) -> None:
    CALLS[ctx.tenant_id].append(("customer_archived", event.subject_id))


@crmkit.hookimpl
def activity_recorded(event: crmkit.DomainEvent, ctx: crmkit.TenantContext) -> None:
    CALLS[ctx.tenant_id].append(("activity_recorded", event.data["kind"]))


@crmkit.hookimpl
def consent_changed(event: crmkit.DomainEvent, ctx: crmkit.TenantContext) -> None:
    data = event.data
    detail = (data["purpose"], data["channel"], data["state"], data["previous_state"])
    CALLS[ctx.tenant_id].append(("consent_changed", detail))


def calls(tenant_id: uuid.UUID, hook: str) -> list[Any]:
    return [detail for name, detail in CALLS[tenant_id] if name == hook]


@crmkit.hookimpl
def export_customer_data(ctx: crmkit.TenantContext, customer_id: uuid.UUID) -> Any:
    return {"seen": [hook for hook, _ in CALLS[ctx.tenant_id]].count("customer_created")}


@crmkit.hookimpl
def erase_customer(ctx: crmkit.TenantContext, customer_id: uuid.UUID) -> None:
    CALLS[ctx.tenant_id].append(("erase_customer", str(customer_id)))


@crmkit.hookimpl
def customer_erased(event: crmkit.DomainEvent, ctx: crmkit.TenantContext) -> None:
    CALLS[ctx.tenant_id].append(("customer_erased", event.subject_id))


@crmkit.hookimpl
def register_routes() -> Iterable[Any]:
    from litestar import Request, get
    from litestar.params import FromPath

    @get("/hello/{tenant_id:uuid}")
    async def hello(request: Request[Any, Any, Any], tenant_id: FromPath[uuid.UUID]) -> dict[str, Any]:
        await crmkit.rate_limit(request, f"hello:{tenant_id}", per_minute=3)
        async with crmkit.plugin_scope(request, tenant_id) as ctx:
            customers = await ctx.session.scalar(select(func.count()).select_from(crmkit.Customer))
            return {
                "plugin": ctx.plugin,
                "threshold": ctx.settings_as(RecorderSettings).threshold,
                "customers": customers,
            }

    @get("/refuse")
    async def refuse() -> None:
        raise crmkit.BadUserInput("refused on purpose", field="x")

    return [hello, refuse]


@crmkit.hookimpl
def seed_demo(ctx: crmkit.TenantContext, customer_ids: list[uuid.UUID]) -> None:
    CALLS[ctx.tenant_id].append(("seed_demo", len(customer_ids)))
