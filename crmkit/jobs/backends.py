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
from collections.abc import Awaitable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from arq import cron
from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.cron import next_cron
from arq.worker import Retry

from crmkit.clock import utcnow
from crmkit.jobs.queue import JobQueue, pack, unpack
from crmkit.jobs.runner import Outcome

if TYPE_CHECKING:
    from crmkit.platform import Platform

log = logging.getLogger(__name__)

ARQ_FUNCTION = "crmkit_job"


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

    async def _run(self, job: str, tenant_id: uuid.UUID, payload: dict[str, Any], delay: float) -> None:
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
        """The in-process cron: plugins' cron jobs and the platform's upkeep."""
        runner = self.platform.runner
        schedule: dict[str, datetime] = {}
        loop = asyncio.get_running_loop()
        upkeep_due = {cron.name: 0.0 for cron in runner.platform_crons()}
        while True:
            now = utcnow()
            for name, spec in runner.cron_specs().items():
                if name not in schedule:
                    schedule[name] = _next(now, spec)
                if schedule[name] <= now:
                    schedule[name] = _next(now, spec)
                    await _logged(name, runner.fan_out_cron(name))
            for upkeep in runner.platform_crons():
                if loop.time() >= upkeep_due[upkeep.name]:
                    upkeep_due[upkeep.name] = loop.time() + upkeep.every_seconds
                    await _logged(upkeep.name, upkeep.run())
            await asyncio.sleep(1)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def _logged(name: str, work: Awaitable[Any]) -> None:
    """One failing cron run is logged and retried at its next time; the loop goes on."""
    try:
        await work
    except Exception:
        log.exception("cron %s failed", name)


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


def _arq_upkeep(name: str) -> Any:
    async def upkeep(ctx: dict[str, Any]) -> None:
        platform: Platform = ctx["platform"]
        cron = next(c for c in platform.runner.platform_crons() if c.name == name)
        await cron.run()

    upkeep.__qualname__ = upkeep.__name__ = f"upkeep_{name}"
    return upkeep


def _every(seconds: int) -> dict[str, Any]:
    """arq ``cron`` fields for "every ``seconds``" (rounded to what a cron can say)."""
    if seconds < 60:
        return {"second": set(range(0, 60, max(1, seconds)))}
    return {"minute": set(range(0, 60, max(1, min(59, seconds // 60)))), "second": {0}}


def _arq_fan_out(name: str) -> Any:
    async def fan_out(ctx: dict[str, Any]) -> None:
        await ctx["platform"].runner.fan_out_cron(name)

    fan_out.__qualname__ = fan_out.__name__ = f"cron_{name.replace('.', '_')}"
    return fan_out


def worker_settings(platform: Platform) -> dict[str, Any]:
    """Keyword arguments for ``arq.Worker``: one generic job function, the crons, msgpack."""
    assert platform.settings.redis_url, "the arq worker needs CRMKIT_REDIS_URL"
    runner = platform.runner
    cron_jobs = [
        cron(
            _arq_upkeep(c.name),
            name=f"crmkit:{c.name}",
            run_at_startup=True,
            **_every(c.every_seconds),
        )
        for c in runner.platform_crons()
    ]
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
        "max_jobs": platform.settings.worker_max_jobs,
        "poll_delay": platform.settings.worker_poll_seconds,
        "keep_result": 3600,
    }


def _arq_function() -> Any:
    from arq.worker import func

    return func(_arq_job, name=ARQ_FUNCTION)


def _declared_tries(platform: Platform) -> list[int]:
    return [platform.runner.max_tries(name) for name in platform.runner.specs]
