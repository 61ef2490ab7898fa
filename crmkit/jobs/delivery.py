"""Event delivery: one job per event fans out to one job per enabled plugin's handler.

Each plugin's handler runs in its own job, so a plugin that raises is retried alone.
An :class:`EventDelivery` row commits with the handler's own writes: a redelivered
event is skipped for the plugins that already handled it. An event no retry can
dispatch is marked dead, with one failure recorded, and the outbox sweep leaves it.
"""

from __future__ import annotations

import uuid

from crmkit.clock import utcnow
from crmkit.core.events import DomainEvent, OutboxEvent
from crmkit.plugins.info import CORE, JobSpec, TenantContext
from crmkit.plugins.models import EventDelivery, HandlerFailure
from crmkit.webhooks import service as webhooks

DISPATCH_EVENT = "core.dispatch_event"
DELIVER_EVENT = "core.deliver_event"


async def dispatch_event(ctx: TenantContext, event_id: str) -> None:
    row = await ctx.session.get(OutboxEvent, (ctx.tenant_id, uuid.UUID(event_id)))
    if row is None or row.dead_at is not None:  # another tenant's id reads as not found
        return
    problem = _undispatchable(ctx, row)
    if problem is not None:
        row.dead_at = utcnow()
        ctx.session.add(
            HandlerFailure(
                plugin=CORE, job=DISPATCH_EVENT, event_id=row.id, attempt=1, gave_up=True, error=problem
            )
        )
        return
    for impl in ctx.hooks.plugin_set.impls(row.type):
        await ctx.jobs.enqueue(
            DELIVER_EVENT,
            tenant_id=ctx.tenant_id,
            payload={"event_id": event_id, "plugin": impl.plugin},
            job_id=f"deliver:{event_id}:{impl.plugin}",
        )
    for installation_id in await webhooks.subscribers(ctx.session, row.type):
        await ctx.jobs.enqueue(
            webhooks.DELIVER_WEBHOOK,
            tenant_id=ctx.tenant_id,
            payload={"event_id": event_id, "installation_id": str(installation_id)},
            job_id=f"webhook:{event_id}:{installation_id}",
        )
    row.relayed_at = utcnow()


def _undispatchable(ctx: TenantContext, row: OutboxEvent) -> str | None:
    """Why no retry could ever dispatch the event, or None if it can be dispatched."""
    if row.type not in ctx.registry.event_scopes():
        return f"event type {row.type!r} is not declared by any installed plugin: marked dead"
    if not isinstance(row.data, dict):
        return f"event data is {type(row.data).__name__}, not an object: marked dead"
    return None


async def deliver_event(ctx: TenantContext, event_id: str, plugin: str) -> None:
    event_uuid = uuid.UUID(event_id)
    if await ctx.session.get(EventDelivery, (ctx.tenant_id, event_uuid, plugin)) is not None:
        return
    row = await ctx.session.get(OutboxEvent, (ctx.tenant_id, event_uuid))
    if row is None:
        return
    await ctx.hooks.call_plugin(plugin, row.type, event=DomainEvent.from_row(row))
    ctx.session.add(EventDelivery(event_id=event_uuid, plugin=plugin))


JOBS = [
    *webhooks.JOBS,
    JobSpec(DISPATCH_EVENT.removeprefix("core."), dispatch_event),
    JobSpec(DELIVER_EVENT.removeprefix("core."), deliver_event),
]
