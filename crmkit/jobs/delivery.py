"""Event delivery in batches: a dispatch job takes a batch of the tenant's events, and
each plugin gets one job for its share of them.

A plugin's job runs its handler for each of its events in order, in one transaction
with one :class:`EventDelivery` row per event, recorded together: a plugin that raises
is retried alone, with its events only, and a redelivered event is skipped for the
plugins that already handled it. When a batch has a single target (one plugin, no
webhook), the dispatch job delivers it itself: retrying that job retries that plugin
alone, and giving it up marks the event it failed on relayed (given up, recorded) while
the rest of the batch, rolled back, is taken by the dispatch queued next. An event
no retry can dispatch is marked dead, with one failure recorded, and the outbox sweep
leaves it.

A dispatch job does not look up its own events: it takes the tenant's oldest events
not yet relayed (at most :data:`DISPATCH_BATCH`, in emitted order), locking them, so
that jobs queued while a worker was behind share the work, and a job whose events
another took finds nothing. A job waits on the rows another dispatch of the tenant
has locked and then skips those it relayed, so no job delivers a later event to a
plugin while an earlier one is still being delivered, in any process.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Select, and_, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from crmkit.clock import utcnow
from crmkit.core.events import DomainEvent, OutboxEvent
from crmkit.plugins.info import CORE, JobSpec, TenantContext
from crmkit.plugins.models import EventDelivery, HandlerFailure
from crmkit.webhooks import service as webhooks
from crmkit.webhooks.models import WebhookSubscription

DISPATCH_EVENT = "core.dispatch_event"
DELIVER_EVENT = "core.deliver_event"
DISPATCH_BATCH = 100
"""At most this many events per dispatch job: a transaction or a backlog with more is
split, so one failing handler holds back (and retries) no more than these."""


class HandlerFailed(Exception):
    """A plugin's event handler raised (the cause): names the plugin and the event, so
    the failure is recorded as theirs and not as the job's."""

    def __init__(self, plugin: str, event_id: uuid.UUID) -> None:
        super().__init__(f"{plugin} failed on event {event_id}")
        self.plugin = plugin
        self.event_id = event_id


def batch_job_id(kind: str, event_ids: Sequence[uuid.UUID | str], suffix: str = "") -> str:
    """One id per batch, the same whenever the same events are queued again (a job id
    is queued once while pending); a single event keeps its plain ``kind:id``."""
    head = f"{kind}:{event_ids[0]}"
    if len(event_ids) > 1:
        digest = hashlib.blake2b("".join(map(str, event_ids)).encode(), digest_size=8).hexdigest()
        head = f"{head}+{len(event_ids) - 1}:{digest}"
    return f"{head}:{suffix}" if suffix else head


def dispatch_payload(event_ids: Sequence[uuid.UUID]) -> dict[str, Any]:
    return {"event_ids": [str(event_id) for event_id in event_ids]}


def payload_ids(event_ids: list[str] | None, event_id: str | None) -> list[uuid.UUID]:
    """The batch's ids; ``event_id`` alone is a job queued before batching (one event)."""
    values = event_ids if event_ids is not None else [event_id] if event_id else []
    return [uuid.UUID(value) for value in values]


def _undispatched() -> Select[OutboxEvent]:
    """The tenant's oldest events neither relayed nor dead, locked (on PostgreSQL)
    until the transaction ends: a rival dispatch waits for them, then passes over
    those this one relayed."""
    return (
        select(OutboxEvent)
        .where(OutboxEvent.relayed_at.is_(None), OutboxEvent.dead_at.is_(None))
        .order_by(OutboxEvent.created_at, OutboxEvent.id)
        .limit(DISPATCH_BATCH)
        .with_for_update()
    )


async def _load(
    session: AsyncSession, event_ids: list[uuid.UUID] | None, plugin: str | None = None
) -> tuple[list[tuple[OutboxEvent, set[str]]], bool]:
    """The batch's live events in order (``None``: the tenant's undispatched ones),
    each with the plugins it was delivered to (``plugin``'s only, if named), and
    whether the tenant has webhook subscriptions: one statement."""
    # the undispatched events are read from the locking subquery itself, not looked up
    # again by id (a join the planner may turn into a rescan of the subquery per row)
    event = OutboxEvent if event_ids is not None else aliased(OutboxEvent, _undispatched().subquery())
    delivered = and_(EventDelivery.tenant_id == event.tenant_id, EventDelivery.event_id == event.id)
    if plugin is not None:
        delivered = and_(delivered, EventDelivery.plugin == plugin)
    subscriptions = select(WebhookSubscription.installation_id).exists()
    query = select(event, EventDelivery.plugin, subscriptions).outerjoin(EventDelivery, delivered)
    if event_ids is not None:
        query = query.where(OutboxEvent.id.in_(event_ids), OutboxEvent.dead_at.is_(None))
    rows = await session.execute(query.order_by(event.created_at, event.id))
    events: dict[uuid.UUID, tuple[OutboxEvent, set[str]]] = {}
    subscribed = []
    for row, done, any_subscription in rows:  # another tenant's ids read as not found
        plugins = events.setdefault(row.id, (row, set()))[1]
        if done is not None:
            plugins.add(done)
        subscribed.append(any_subscription)
    return list(events.values()), any(subscribed)


async def dispatch_event(
    ctx: TenantContext, event_ids: list[str] | None = None, event_id: str | None = None
) -> list[uuid.UUID]:
    """Take the tenant's undispatched events (whichever job queued them), fan them out
    to their plugins and subscribed apps, mark them relayed; returns the ids taken
    (the job's own are among them, or were taken by another dispatch)."""
    loaded, subscribed = await _load(ctx.session, None)
    live: list[tuple[OutboxEvent, set[str]]] = []
    for row, delivered in loaded:
        problem = _undispatchable(ctx, row)
        if problem is None:
            live.append((row, delivered))
            continue
        row.dead_at = utcnow()
        ctx.session.add(
            HandlerFailure(
                plugin=CORE, job=DISPATCH_EVENT, event_id=row.id, attempt=1, gave_up=True, error=problem
            )
        )
    targets: dict[str, list[OutboxEvent]] = {}
    for row, delivered in live:
        for impl in ctx.hooks.plugin_set.impls(row.type):
            if impl.plugin not in delivered:
                targets.setdefault(impl.plugin, []).append(row)
    installations = (
        await webhooks.subscribers(ctx.session, {row.type for row, _ in live}) if subscribed else {}
    )
    hooks = [(row, installation) for row, _ in live for installation in installations.get(row.type, ())]
    if len(targets) == 1 and not hooks:  # one target: deliver here, in this transaction
        ((plugin, rows),) = targets.items()
        await _deliver(ctx, plugin, rows)
    else:
        for plugin, rows in targets.items():
            ids = [row.id for row in rows]
            await ctx.jobs.enqueue(
                DELIVER_EVENT,
                tenant_id=ctx.tenant_id,
                payload={**dispatch_payload(ids), "plugin": plugin},
                job_id=batch_job_id("deliver", ids, plugin),
            )
        for row, installation_id in hooks:
            await ctx.jobs.enqueue(
                webhooks.DELIVER_WEBHOOK,
                tenant_id=ctx.tenant_id,
                payload={"event_id": str(row.id), "installation_id": str(installation_id)},
                job_id=f"webhook:{row.id}:{installation_id}",
            )
    await mark_relayed(ctx.session, [row.id for row, _ in live])
    return [row.id for row, _ in loaded]


def _undispatchable(ctx: TenantContext, row: OutboxEvent) -> str | None:
    """Why no retry could ever dispatch the event, or None if it can be dispatched."""
    if row.type not in ctx.registry.event_scopes():
        return f"event type {row.type!r} is not declared by any installed plugin: marked dead"
    if not isinstance(row.data, dict):
        return f"event data is {type(row.data).__name__}, not an object: marked dead"
    return None


async def deliver_event(
    ctx: TenantContext, plugin: str, event_ids: list[str] | None = None, event_id: str | None = None
) -> None:
    """One plugin's share of a batch: the events it has not handled yet, in order."""
    loaded, _ = await _load(ctx.session, payload_ids(event_ids, event_id), plugin)
    await _deliver(ctx, plugin, [row for row, delivered in loaded if not delivered])


async def _deliver(ctx: TenantContext, plugin: str, rows: list[OutboxEvent]) -> None:
    """Run ``plugin``'s handler on each event in order; their deliveries are recorded
    together, committing with the handler's writes."""
    for row in rows:
        try:
            await ctx.hooks.call_plugin(plugin, row.type, event=DomainEvent.from_row(row))
        except Exception as exc:
            raise HandlerFailed(plugin, row.id) from exc
    if rows:  # one multi-row INSERT, without the unit of work's bookkeeping per row
        await ctx.session.execute(
            insert(EventDelivery),
            [{"tenant_id": ctx.tenant_id, "event_id": row.id, "plugin": plugin} for row in rows],
        )


async def mark_relayed(session: AsyncSession, event_ids: Sequence[uuid.UUID]) -> None:
    """Mark a batch relayed in one statement: once dispatched, or when its only
    delivery was given up (the sweep must not hand it over again: a given-up delivery
    is recorded, not retried)."""
    if event_ids:
        await session.execute(
            update(OutboxEvent)
            .where(OutboxEvent.id.in_(event_ids), OutboxEvent.relayed_at.is_(None))
            .values(relayed_at=utcnow())
            .execution_options(synchronize_session=False)
        )


JOBS = [
    *webhooks.JOBS,
    JobSpec(DISPATCH_EVENT.removeprefix("core."), dispatch_event),
    JobSpec(DELIVER_EVENT.removeprefix("core."), deliver_event),
]
