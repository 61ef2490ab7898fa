"""Running one job for one tenant, the same way under both backends.

A job runs inside its tenant's scope and transaction. It is skipped when its plugin
is not enabled for the tenant. A failure is recorded in ``handler_failures`` (seen
in ``crmkit plugins list``); it is retried with exponential backoff unless it raised
:class:`crmkit.PermanentJobError` or used up its tries.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import FromClause, Uuid, column, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from crmkit.clock import utcnow
from crmkit.core.audit import chain as audit_chain
from crmkit.core.audit.trail import Actor, bind_actor
from crmkit.core.events import PENDING_EVENTS, OutboxEvent, unrelayed, unrelayed_tenants
from crmkit.errors import CrmError, PermanentJobError
from crmkit.jobs.delivery import (
    DELIVER_EVENT,
    DISPATCH_BATCH,
    DISPATCH_EVENT,
    HandlerFailed,
    batch_job_id,
    dispatch_payload,
    mark_relayed,
    payload_ids,
)
from crmkit.plugins.info import CORE, CronSpec, JobSpec
from crmkit.plugins.models import HandlerFailure, TenantPlugin
from crmkit.tenants.models import Tenant, TenantStatus

if TYPE_CHECKING:
    from crmkit.platform import Platform

log = logging.getLogger(__name__)

SWEEP_BATCH = 1000
"""At most this many of a tenant's unrelayed events are re-queued per sweep."""
DISPATCH_TAKES = 50
"""At most this many batches a dispatch job takes of a backlog; a new job takes the
rest, so that no job runs for longer than a job may (arq's timeout)."""
DISPATCHED_MEMORY = 10_000
"""How many of the event ids it dispatched last a process remembers: a dispatch job
whose events are all among them (an earlier job took them) ends without a statement."""


class Outcome(enum.Enum):
    DONE = "done"
    SKIPPED = "skipped"
    RETRY = "retry"
    FAILED = "failed"


@dataclass(frozen=True)
class Result:
    outcome: Outcome
    retry_in: float = 0.0


@dataclass(frozen=True)
class PlatformCron:
    name: str
    every_seconds: int
    run: Callable[[], Awaitable[int]]


@dataclass
class _Dispatching:
    """A tenant's dispatch running in this process; ``poked`` once another dispatch job
    of the tenant ended counting on it to take its events."""

    poked: bool = False


class JobRunner:
    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.specs = platform.registry.jobs()
        self._to_relay: dict[uuid.UUID, list[uuid.UUID]] = {}
        self._relaying: asyncio.Event | None = None
        self._relays_started = self._relays_done = 0
        self._dispatching: dict[uuid.UUID, _Dispatching] = {}
        self._dispatched: dict[uuid.UUID, None] = {}  # insertion-ordered: oldest first

    def max_tries(self, job: str) -> int:
        spec = self.specs.get(job, (None, None))[1]
        if isinstance(spec, JobSpec) and spec.max_tries:
            return spec.max_tries
        return self.platform.settings.job_max_tries

    def backoff(self, attempt: int) -> float:
        return float(self.platform.settings.job_retry_base_seconds * 2 ** (attempt - 1))

    async def run(self, job: str, tenant_id: uuid.UUID, payload: dict[str, Any], attempt: int) -> Result:
        if job == DISPATCH_EVENT:
            return await self._dispatch(tenant_id, payload, attempt)
        return (await self._run(job, tenant_id, payload, attempt))[0]

    async def _dispatch(self, tenant_id: uuid.UUID, payload: dict[str, Any], attempt: int) -> Result:
        """Run dispatch jobs of one tenant one at a time in this process, the running one
        taking the events of those queued meanwhile (a backlog shares its work).

        A job whose events this process dispatched ends at once; one that finds its
        tenant's dispatch running leaves its events to it, which takes again until a take
        started after the last such job finds less than a batch. Should that dispatch
        reach :data:`DISPATCH_TAKES`, give an event up, or fail for good after others
        counted on it, a new job takes what is left (a retry takes it itself)."""
        ids = payload_ids(payload.get("event_ids"), payload.get("event_id"))
        if ids and all(event_id in self._dispatched for event_id in ids):
            return Result(Outcome.DONE)
        running = self._dispatching.get(tenant_id)
        if running is not None:
            running.poked = True
            return Result(Outcome.DONE)
        running = self._dispatching[tenant_id] = _Dispatching()
        counted_on, more = False, False
        try:
            for _ in range(DISPATCH_TAKES):
                running.poked = more = False
                result, taken = await self._run(DISPATCH_EVENT, tenant_id, payload, attempt)
                counted_on |= running.poked
                if result.outcome is not Outcome.DONE:
                    break
                self._remember(taken)
                more = len(taken) == DISPATCH_BATCH or running.poked
                if not more:
                    break
        finally:
            del self._dispatching[tenant_id]
        if more or (result.outcome is Outcome.FAILED and (counted_on or taken)):
            await self.platform.queue.enqueue(
                DISPATCH_EVENT, tenant_id=tenant_id, payload=dispatch_payload([])
            )
        return result

    def _remember(self, dispatched: list[uuid.UUID]) -> None:
        """Note ids this process dispatched (committed), forgetting the oldest beyond
        :data:`DISPATCHED_MEMORY`."""
        self._dispatched.update(dict.fromkeys(dispatched))
        for _ in range(len(self._dispatched) - DISPATCHED_MEMORY):
            del self._dispatched[next(iter(self._dispatched))]

    async def _run(
        self, job: str, tenant_id: uuid.UUID, payload: dict[str, Any], attempt: int
    ) -> tuple[Result, Any]:
        """Run ``job`` once; with its result, what its function returned, or on failure
        the ids given up (marked relayed)."""
        entry = self.specs.get(job)
        if entry is None:
            log.error("unknown job %s dropped", job)
            return Result(Outcome.FAILED), []
        owner, spec = entry
        # an event delivery is attributed to the plugin whose handler runs
        plugin = payload.get("plugin", owner) if job == DELIVER_EVENT else owner
        try:
            async with self.platform.tenant_scope(tenant_id) as scope:
                bind_actor(scope.session, Actor("system", job))
                if plugin != CORE and plugin not in scope.state.plugins:
                    return Result(Outcome.SKIPPED), None
                ctx = scope.hooks.context_for(owner) if owner != CORE else scope.ctx
                value = await spec.function(ctx, **payload)
            return Result(Outcome.DONE), value
        except Exception as exc:
            event_id = payload.get("event_id")
            relayed: list[uuid.UUID] = []
            error: BaseException = exc
            if isinstance(exc, HandlerFailed):  # the plugin's failure, not the job's
                plugin, event_id, error = exc.plugin, str(exc.event_id), exc.__cause__ or exc
                relayed = [exc.event_id] if job == DISPATCH_EVENT else []
            permanent = isinstance(error, PermanentJobError | CrmError)
            gave_up = permanent or attempt >= self.max_tries(job)
            log.warning(
                "job %s for tenant %s failed (try %d%s): %r",
                job,
                tenant_id,
                attempt,
                ", giving up" if gave_up else "",
                error,
            )
            failure = HandlerFailure(
                plugin=plugin,
                job=job,
                event_id=uuid.UUID(event_id) if event_id else None,
                attempt=attempt,
                gave_up=gave_up,
                error=f"{type(error).__name__}: {error}"[:2000],
            )
            given_up = relayed if gave_up else []
            await self._record_failure(tenant_id, failure, given_up)
            if gave_up:
                return Result(Outcome.FAILED), given_up
            return Result(Outcome.RETRY, self.backoff(attempt)), []

    async def _record_failure(
        self, tenant_id: uuid.UUID, failure: HandlerFailure, relayed: list[uuid.UUID]
    ) -> None:
        """Record ``failure``; mark ``relayed`` the event a given-up dispatch failed on
        delivering it itself (see :mod:`crmkit.jobs.delivery`): the rest of its batch
        rolled back, and the dispatch queued next takes it again."""
        try:
            async with self.platform.db.tenant_session(tenant_id) as session:
                session.add(failure)
                if relayed:
                    await mark_relayed(session, relayed)
        except Exception:
            log.exception("could not record the failure of job %s", failure.job)

    async def relay_committed(self, session: AsyncSession) -> None:
        """After commit: queue the dispatch of the events the transaction wrote, in
        batches (one job for a transaction's events, in the order they were emitted)."""
        pending: list[OutboxEvent] = session.info.pop(PENDING_EVENTS, [])
        if pending:
            await self.relay(pending[0].tenant_id, [row.id for row in pending])

    async def relay(self, tenant_id: uuid.UUID, event_ids: list[uuid.UUID]) -> None:
        """Queue the dispatch of a tenant's committed events, in batches, in this order;
        returns once they are queued.

        One relay queues at a time and takes along every event committed while it
        waited (a group commit): under load, transactions of one event each share
        dispatch jobs; alone, a transaction's events go at once. Should queueing fail,
        the events the failing relay took are re-queued by the sweep."""
        self._to_relay.setdefault(tenant_id, []).extend(event_ids)
        mine = self._relays_started + 1  # the relay that will take these
        while self._relays_done < mine:
            if self._relaying is None:
                await self._relay_waiting()
            else:
                await self._relaying.wait()

    async def _relay_waiting(self) -> None:
        self._relaying = done = asyncio.Event()
        try:
            await asyncio.sleep(0)  # the relays woken by the last one queue their next events
            self._relays_started += 1
            waiting, self._to_relay = self._to_relay, {}
            for tenant_id, ids in waiting.items():
                for start in range(0, len(ids), DISPATCH_BATCH):
                    batch = ids[start : start + DISPATCH_BATCH]
                    await self.platform.queue.enqueue(
                        DISPATCH_EVENT,
                        tenant_id=tenant_id,
                        payload=dispatch_payload(batch),
                        job_id=batch_job_id("dispatch", batch),
                    )
        finally:
            self._relays_done, self._relaying = self._relays_started, None
            done.set()

    async def sweep_outbox(self, older_than_seconds: float | None = None) -> int:
        """Re-queue events a crash left unrelayed (dead ones excepted); runs periodically
        under both backends.

        One query finds the active tenants with such events; then one transaction per
        such tenant (a session bound to no tenant sees no outbox row)."""
        age = older_than_seconds
        if age is None:
            age = self.platform.settings.outbox_sweep_seconds
        cutoff = utcnow() - timedelta(seconds=age)
        swept = 0
        for tenant_id in await self._active_tenants_in(unrelayed_tenants(self._dialect, cutoff)):
            async with self.platform.db.tenant_session(tenant_id) as session:
                event_ids = list(
                    await session.scalars(
                        select(OutboxEvent.id)
                        .where(unrelayed(cutoff))
                        .order_by(OutboxEvent.created_at, OutboxEvent.id)
                        .limit(SWEEP_BATCH)
                    )
                )
            if event_ids:  # relayed meanwhile, by a relay that was queueing them
                for event_id in event_ids:  # unrelayed after all: dispatch them again
                    self._dispatched.pop(event_id, None)
                await self.relay(tenant_id, event_ids)
            swept += len(event_ids)
        return swept

    @property
    def _dialect(self) -> str:
        return self.platform.db.engine.dialect.name

    def _plugin_tenants(self, plugin: str) -> FromClause:
        """The tenants that enabled ``plugin`` (a ``tenant_id`` column). On PostgreSQL
        row-level security hides their ``tenant_plugins`` rows from a session bound to no
        tenant: the function ``crmkit_plugin_tenants`` (core_0011) answers with ids alone."""
        if self._dialect == "postgresql":
            return func.crmkit_plugin_tenants(plugin).table_valued(column("tenant_id", Uuid))
        enabled = (TenantPlugin.plugin == plugin) & TenantPlugin.enabled
        return select(TenantPlugin.tenant_id).where(enabled).subquery()

    async def _tenant_ids(self, *, active_only: bool = False) -> list[uuid.UUID]:
        """Tenants, from the platform table ``tenants`` (not tenant-owned)."""
        query = select(Tenant.id).order_by(Tenant.id)
        if active_only:
            query = query.where(Tenant.status == TenantStatus.ACTIVE)
        async with self.platform.db.platform_session() as session:
            return list(await session.scalars(query))

    async def _active_tenants_in(self, found: FromClause) -> list[uuid.UUID]:
        """The active tenants among those ``found`` lists, in one statement."""
        query = (
            select(Tenant.id)
            .join(found, found.c.tenant_id == Tenant.id)
            .where(Tenant.status == TenantStatus.ACTIVE)
            .order_by(Tenant.id)
        )
        async with self.platform.db.platform_session() as session:
            return list(await session.scalars(query))

    async def checkpoint_audit(self) -> int:
        """Sign the audit chain head of every active tenant whose head moved since its
        last checkpoint (one query finds them), one transaction per such tenant."""
        tenant_ids = await self._active_tenants_in(audit_chain.unsigned_tenants(self._dialect))
        for tenant_id in tenant_ids:
            async with self.platform.db.tenant_session(tenant_id) as session:
                await audit_chain.checkpoint(session, self.platform.audit_signer)
        return len(tenant_ids)

    def platform_crons(self) -> list[PlatformCron]:
        """Cross-tenant upkeep both backends schedule: the outbox sweep, audit checkpoints."""
        settings = self.platform.settings
        return [
            PlatformCron("outbox_sweep", settings.outbox_sweep_seconds, self.sweep_outbox),
            PlatformCron("audit_checkpoint", settings.audit_checkpoint_seconds, self.checkpoint_audit),
        ]

    async def fan_out_cron(self, job: str) -> int:
        """Queue a cron job once for each active tenant with its plugin enabled."""
        owner, spec = self.specs[job]
        assert isinstance(spec, CronSpec)
        if owner == CORE:
            tenant_ids = await self._tenant_ids(active_only=True)
        else:  # one query, not one transaction per tenant
            tenant_ids = await self._active_tenants_in(self._plugin_tenants(owner))
        stamp = utcnow().strftime("%Y%m%d%H%M")
        for tenant_id in tenant_ids:
            await self.platform.queue.enqueue(
                job, tenant_id=tenant_id, payload={}, job_id=f"cron:{job}:{tenant_id}:{stamp}"
            )
        return len(tenant_ids)

    def cron_specs(self) -> dict[str, CronSpec]:
        return {name: spec for name, (_, spec) in self.specs.items() if isinstance(spec, CronSpec)}
