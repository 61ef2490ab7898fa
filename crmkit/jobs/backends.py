"""The two job backends, with the same semantics: at-least-once, a job id queued once,
retries with backoff for transient failures, failures recorded, cron per tenant.

* :class:`ArqQueue` (``CRMKIT_REDIS_URL`` set): jobs go to Redis; ``crmkit worker``
  runs them (:func:`worker_settings`).
* :class:`InlineQueue` (no Redis): jobs run as tasks of the serving process.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

from arq import cron
from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.cron import next_cron
from arq.worker import Retry

from crmkit.db import utcnow
from crmkit.jobs.queue import JobQueue, pack, unpack
from crmkit.jobs.runner import Outcome

if TYPE_CHECKING:
    from crmkit.platform import Platform

log = logging.getLogger(__name__)

ARQ_FUNCTION = "crmkit_job"
SWEEP_CRON = "crmkit_sweep_outbox"


def make_queue(platform: Platform) -> JobQueue:
    if platform.settings.redis_url:
        return ArqQueue(platform, platform.settings.redis_url)
    return InlineQueue(platform)


class InlineQueue:
    """Runs jobs in this process, as asyncio tasks, with the arq backend's semantics."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self._tasks: set[asyncio.Task[None]] = set()
        self._queued: set[str] = set()

    async def enqueue(
        self,
        job: str,
        *,
        tenant_id: uuid.UUID,
        payload: dict[str, Any],
        job_id: str | None = None,
        defer_seconds: float = 0,
    ) -> None:
        job_id = job_id or uuid.uuid4().hex
        if job_id in self._queued:
            return
        self._queued.add(job_id)
        payload = unpack(pack(payload))  # the same plain-data contract as Redis
        task = asyncio.create_task(self._run(job, tenant_id, payload, defer_seconds))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        # like arq, a job id is refused while its job is pending; later deliveries of the
        # same event are skipped by their EventDelivery rows instead
        task.add_done_callback(lambda _: self._queued.discard(job_id))

    async def _run(
        self, job: str, tenant_id: uuid.UUID, payload: dict[str, Any], delay: float
    ) -> None:
        attempt = 1
        while True:
            if delay:
                await asyncio.sleep(delay)
            result = await self.platform.runner.run(job, tenant_id, payload, attempt)
            if result.outcome is not Outcome.RETRY:
                return
            attempt, delay = attempt + 1, result.retry_in

    async def drain(self) -> None:
        """Wait until every queued job, and every job those queued, has finished."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks))

    async def run_scheduler(self) -> None:
        """The in-process cron: each cron job and the outbox sweep, on their schedules."""
        runner = self.platform.runner
        schedule: dict[str, datetime] = {}
        sweep_every = self.platform.settings.outbox_sweep_seconds
        next_sweep = 0.0
        loop = asyncio.get_running_loop()
        while True:
            now = utcnow()
            for name, spec in runner.cron_specs().items():
                due = schedule.setdefault(name, _next(now, spec))
                if due <= now:
                    await runner.fan_out_cron(name)
                    schedule[name] = _next(now, spec)
            if loop.time() >= next_sweep:
                await runner.sweep_outbox()
                next_sweep = loop.time() + sweep_every
            await asyncio.sleep(1)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _next(now: datetime, spec: Any) -> datetime:
    return next_cron(
        now.replace(tzinfo=None),
        minute=spec.minute,
        hour=spec.hour,
        weekday=spec.weekday,
        second=spec.second,
        microsecond=0,
    ).replace(tzinfo=now.tzinfo)


def _redis_settings(url: str) -> RedisSettings:
    return RedisSettings.from_dsn(url)


class ArqQueue:
    """Queues jobs in Redis for ``crmkit worker``; payloads as msgpack, never pickle."""

    def __init__(self, platform: Platform, url: str) -> None:
        self.platform = platform
        self.url = url
        self._pool: ArqRedis | None = None

    async def pool(self) -> ArqRedis:
        if self._pool is None:
            self._pool = await create_pool(
                _redis_settings(self.url), job_serializer=pack, job_deserializer=unpack
            )
        return self._pool

    async def enqueue(
        self,
        job: str,
        *,
        tenant_id: uuid.UUID,
        payload: dict[str, Any],
        job_id: str | None = None,
        defer_seconds: float = 0,
    ) -> None:
        pool = await self.pool()
        await pool.enqueue_job(
            ARQ_FUNCTION,
            job,
            str(tenant_id),
            payload,
            _job_id=job_id,
            _defer_by=defer_seconds or None,
        )

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.aclose()
            self._pool = None


async def _arq_job(ctx: dict[str, Any], job: str, tenant_id: str, payload: dict[str, Any]) -> None:
    platform: Platform = ctx["platform"]
    result = await platform.runner.run(job, uuid.UUID(tenant_id), payload, ctx["job_try"])
    if result.outcome is Outcome.RETRY:
        raise Retry(defer=result.retry_in)


async def _arq_sweep(ctx: dict[str, Any]) -> None:
    await ctx["platform"].runner.sweep_outbox()


def _arq_fan_out(name: str) -> Any:
    async def fan_out(ctx: dict[str, Any]) -> None:
        await ctx["platform"].runner.fan_out_cron(name)

    fan_out.__qualname__ = fan_out.__name__ = f"cron_{name.replace('.', '_')}"
    return fan_out


def worker_settings(platform: Platform) -> dict[str, Any]:
    """Keyword arguments for ``arq.Worker``: one generic job function, the crons, msgpack."""
    assert platform.settings.redis_url, "the arq worker needs CRMKIT_REDIS_URL"
    runner = platform.runner
    sweep_seconds = set(range(0, 60, max(1, min(59, platform.settings.outbox_sweep_seconds))))
    cron_jobs = [cron(_arq_sweep, name=SWEEP_CRON, second=sweep_seconds, run_at_startup=True)]
    for name, spec in runner.cron_specs().items():
        cron_jobs.append(
            cron(
                _arq_fan_out(name),
                name=f"cron:{name}",
                minute=spec.minute,
                hour=spec.hour,
                weekday=spec.weekday,
                second=spec.second,
            )
        )

    async def on_startup(ctx: dict[str, Any]) -> None:
        ctx["platform"] = platform

    return {
        "functions": [_arq_function()],
        "cron_jobs": cron_jobs,
        "redis_settings": _redis_settings(platform.settings.redis_url),
        "job_serializer": pack,
        "job_deserializer": unpack,
        "on_startup": on_startup,
        "max_tries": max([platform.settings.job_max_tries, *_declared_tries(platform)]) + 1,
        "keep_result": 3600,
    }


def _arq_function() -> Any:
    from arq.worker import func

    return func(_arq_job, name=ARQ_FUNCTION)


def _declared_tries(platform: Platform) -> list[int]:
    return [platform.runner.max_tries(name) for name in platform.runner.specs]
