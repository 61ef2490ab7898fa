"""Event delivery: one job per event fans out to one job per enabled plugin's handler.

Each plugin's handler runs in its own job, so a plugin that raises is retried alone.
An :class:`EventDelivery` row commits with the handler's own writes: a redelivered
event is skipped for the plugins that already handled it.
"""

from __future__ import annotations

import uuid

from crmkit.clock import utcnow
from crmkit.core.events import DomainEvent, OutboxEvent
from crmkit.plugins.info import JobSpec, TenantContext
from crmkit.plugins.models import EventDelivery
from crmkit.webhooks import service as webhooks

DISPATCH_EVENT = "core.dispatch_event"
DELIVER_EVENT = "core.deliver_event"


async def dispatch_event(ctx: TenantContext, event_id: str) -> None:
    row = await ctx.session.get(OutboxEvent, (ctx.tenant_id, uuid.UUID(event_id)))
    if row is None:  # another tenant's id reads as not found
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
