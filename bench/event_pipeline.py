"""Benchmark: events through arq to a plugin hook that does nothing, against arq's own
enqueue and execution of empty jobs, in the same run.

A figure, not a pass/fail test. On a fresh PostgreSQL database (the platform connected
as the application role, under row-level security) and a Redis database of its own:

* **arq**: ``--events`` empty jobs enqueued through an arq pool, then run by an arq
  worker in this process until the queue is empty (burst mode), with crmkit's worker
  settings (msgpack payloads, ``max_jobs``, ``poll_delay``, results kept an hour);
* **crmkit**: ``--events`` events, committed beforehand in transactions of
  ``--per-transaction`` events (as writes commit them), then relayed to the queue as
  each transaction's commit relays them (``JobRunner.relay``) and run by an arq worker
  built by ``worker_settings`` (crmkit's), in this process, until every job is done: the
  dispatch, the delivery to the bench plugin's ``customer_updated`` hook (which does
  nothing), the ``event_deliveries`` rows and the events marked relayed.

Both sides enqueue from ``--writers`` tasks at once, one figure per value: 1 is a
lone writer committing one transaction after another; 10 is ten requests in flight
committing together, whose relays crmkit groups into shared dispatch jobs (arq's side
gets the same ten enqueuers). Each side is timed from its first enqueue to its
worker's last job; the ratio is crmkit's events per second divided by arq's jobs per
second (goal: 0.6 or better). The statements per event are those the platform sent
while the events went through, divided by the events; before batching an event took
10 counted this way (a dispatch job and a delivery job of 5 each).

With 1 writer a further line, **as it goes**, has the worker running while a lone
writer commits one transaction after another (each writing one event): on crmkit's
side each commit relays its event, as in production; on arq's side the same
transactions write the same event row, unrelayed, and an empty job is enqueued after
each. Both are timed from the first commit to the worker's last job, so the ratio is
the pipeline's cost on top of the same writes, without a backlog to share.

Run: ``.venv/bin/python bench/event_pipeline.py [--events 1000] [--per-transaction 1]
[--writers 1 10]``.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import types
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import postgres_setup
from arq import Worker
from arq.connections import create_pool
from redis_setup import claim_redis, release_redis
from sqlalchemy import event, func, select

import crmkit
from crmkit.core.events import PENDING_EVENTS, OutboxEvent
from crmkit.jobs.backends import worker_settings
from crmkit.jobs.queue import pack, unpack
from crmkit.platform import Platform
from crmkit.platform.enablement import enable
from crmkit.plugins.models import EventDelivery
from crmkit.tenants.service import create_tenant

PLUGIN = "pipeline_bench"
POLL_SECONDS = 0.05
"""The workers' poll delay (both sides): arq starts at most ``max_jobs`` per poll."""
BASELINE_QUEUE = "bench:empty"
HANDLED: list[str] = []
LAST = asyncio.Event()
"""Set when ``HANDLED`` reaches ``EXPECTED[0]`` (the as-it-goes line)."""
EXPECTED = [0]


def handled(subject: str) -> None:
    HANDLED.append(subject)
    if len(HANDLED) == EXPECTED[0]:
        LAST.set()


def bench_plugin() -> types.ModuleType:
    """A plugin whose ``customer_updated`` handler only counts the event."""
    module = types.ModuleType("crmkit_pipeline_bench")

    @crmkit.hookimpl
    def customer_updated(event: crmkit.DomainEvent, ctx: crmkit.TenantContext) -> None:
        handled(event.subject_id)

    module.customer_updated = customer_updated  # type: ignore[attr-defined]
    module.plugin_info = crmkit.PluginInfo(  # type: ignore[attr-defined]
        name=PLUGIN, version="1.0", description="bench", requires=">=0"
    )
    return module


async def empty(ctx: dict[str, Any]) -> None:
    """arq's side: a job that does nothing."""


async def empty_counted(ctx: dict[str, Any]) -> None:
    """arq's side of the as-it-goes line: a job that only counts itself, as the hook does."""
    handled("")


async def by_writers(writers: int, items: list[Any], send: Callable[[Any], Awaitable[object]]) -> None:
    """``send`` every item, from ``writers`` tasks at once, each in its share's order
    (as that many requests in flight commit their transactions)."""

    async def writer(share: list[Any]) -> None:
        for item in share:
            await send(item)

    await asyncio.gather(*(writer(items[i::writers]) for i in range(writers)))


async def baseline(redis_url: str, count: int, max_jobs: int, writers: int) -> float:
    """Seconds for arq to enqueue (from ``writers`` tasks) and run ``count`` empty jobs."""
    settings = worker_settings_like_crmkit(redis_url, max_jobs)
    pool = await create_pool(settings["redis_settings"], job_serializer=pack, job_deserializer=unpack)
    started = time.perf_counter()
    await by_writers(
        writers, list(range(count)), lambda _: pool.enqueue_job("empty", _queue_name=BASELINE_QUEUE)
    )
    worker = Worker(functions=[empty], queue_name=BASELINE_QUEUE, burst=True, **settings)
    await worker.main()
    elapsed = time.perf_counter() - started
    assert worker.jobs_complete == count, (worker.jobs_complete, count)
    await worker.close()
    await pool.aclose()
    return elapsed


def worker_settings_like_crmkit(redis_url: str, max_jobs: int) -> dict[str, Any]:
    from arq.connections import RedisSettings

    return {
        "redis_settings": RedisSettings.from_dsn(redis_url),
        "job_serializer": pack,
        "job_deserializer": unpack,
        "max_jobs": max_jobs,
        "poll_delay": POLL_SECONDS,
        "keep_result": 3600,
    }


async def committed_events(
    platform: Platform, tenant: uuid.UUID, count: int, per_tx: int
) -> list[list[uuid.UUID]]:
    """``count`` events in transactions of ``per_tx``, committed but not relayed yet:
    each transaction's ids, as its commit would relay them."""
    batches = []
    for start in range(0, count, per_tx):
        async with platform.tenant_scope(tenant) as scope:
            rows = [
                crmkit.emit(scope.ctx, "customer_updated", "Customer", f"c{i}", changed=["given_name"])
                for i in range(start, min(count, start + per_tx))
            ]
            await scope.session.flush()
            scope.session.info.pop(PENDING_EVENTS)  # relayed in the timed part instead
        batches.append([row.id for row in rows])
    return batches


class Statements:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self, *args: Any) -> None:
        self.count += 1


async def through_crmkit(
    writers: int, platform: Platform, tenant: uuid.UUID, batches: list[list[uuid.UUID]]
) -> tuple[float, int]:
    """Seconds to relay every batch and have the worker run all that follows, and the
    statements sent meanwhile."""
    settings = {**worker_settings(platform), "cron_jobs": [], "poll_delay": POLL_SECONDS}
    counter = Statements()
    event.listen(platform.db.sync_engine, "before_cursor_execute", counter)
    started = time.perf_counter()
    await by_writers(writers, batches, lambda ids: platform.runner.relay(tenant, ids))
    worker = Worker(**settings, burst=True)
    await worker.main()
    elapsed = time.perf_counter() - started
    event.remove(platform.db.sync_engine, "before_cursor_execute", counter)
    await worker.close()
    return elapsed, counter.count


async def check(platform: Platform, tenant: uuid.UUID, count: int) -> None:
    assert len(HANDLED) == count and len(set(HANDLED)) == count, (len(HANDLED), count)
    async with platform.db.tenant_session(tenant) as session:
        unrelayed = await session.scalar(select(func.count()).where(OutboxEvent.relayed_at.is_(None)))
        delivered = await session.scalar(select(func.count()).select_from(EventDelivery))
    assert (unrelayed, delivered) == (0, count), (unrelayed, delivered)


async def one_shape(platform: Platform, redis_url: str, args: argparse.Namespace, writers: int) -> None:
    """Both sides with ``writers`` at once, on a tenant of its own; prints the figures."""
    tenant = await create_tenant(platform.db, f"bench-{uuid.uuid4().hex[:8]}", "Bench")
    await enable(platform, tenant.slug, PLUGIN, None)
    HANDLED.clear()
    max_jobs = platform.settings.worker_max_jobs
    arq_seconds = await baseline(redis_url, args.events, max_jobs, writers)
    batches = await committed_events(platform, tenant.id, args.events, args.per_transaction)
    crmkit_seconds, statements = await through_crmkit(writers, platform, tenant.id, batches)
    await check(platform, tenant.id, args.events)
    arq_rate, crmkit_rate = args.events / arq_seconds, args.events / crmkit_seconds
    print(f"{writers} writer(s) relaying at once:")
    print(f"  arq, empty jobs:           {arq_rate:8.0f} /s")
    print(f"  crmkit, events to a hook:  {crmkit_rate:8.0f} /s")
    print(f"  ratio crmkit / arq:        {crmkit_rate / arq_rate:8.2f} (goal 0.6 or better)")
    print(f"  statements per event:      {statements / args.events:8.2f} (10 before batching)")


async def as_it_goes(platform: Platform, redis_url: str, count: int, crmkit_side: bool) -> tuple[float, int]:
    """Seconds for a lone writer to commit ``count`` one-event transactions while the
    worker runs, until the worker has run the last job; and the statements sent."""
    tenant = await create_tenant(platform.db, f"bench-{uuid.uuid4().hex[:8]}", "Bench")
    await enable(platform, tenant.slug, PLUGIN, None)
    HANDLED.clear()
    LAST.clear()
    EXPECTED[0] = count
    if crmkit_side:
        worker = Worker(**{**worker_settings(platform), "cron_jobs": [], "poll_delay": POLL_SECONDS})
    else:
        settings = worker_settings_like_crmkit(redis_url, platform.settings.worker_max_jobs)
        worker = Worker(functions=[empty_counted], queue_name=BASELINE_QUEUE, **settings)
    pool = await create_pool(worker.redis_settings, job_serializer=pack, job_deserializer=unpack)
    counter = Statements()
    event.listen(platform.db.sync_engine, "before_cursor_execute", counter)
    running = asyncio.create_task(worker.main())
    started = time.perf_counter()
    for i in range(count):
        async with platform.tenant_scope(tenant.id) as scope:
            crmkit.emit(scope.ctx, "customer_updated", "Customer", f"c{i}", changed=["given_name"])
            if not crmkit_side:
                scope.session.info.pop(PENDING_EVENTS)  # the same row, not relayed
        if not crmkit_side:
            await pool.enqueue_job("empty_counted", _queue_name=BASELINE_QUEUE)
    await LAST.wait()
    elapsed = time.perf_counter() - started
    event.remove(platform.db.sync_engine, "before_cursor_execute", counter)
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)
    await worker.close()
    await pool.aclose()
    if crmkit_side:
        await check(platform, tenant.id, count)
    return elapsed, counter.count


async def one_writer_as_it_goes(platform: Platform, redis_url: str, count: int) -> None:
    arq_seconds, arq_statements = await as_it_goes(platform, redis_url, count, crmkit_side=False)
    crmkit_seconds, statements = await as_it_goes(platform, redis_url, count, crmkit_side=True)
    arq_rate, crmkit_rate = count / arq_seconds, count / crmkit_seconds
    print("1 writer committing as it goes, the worker running:")
    print(f"  arq, the same commits + empty jobs: {arq_rate:8.0f} /s")
    print(f"  crmkit, events to a hook:           {crmkit_rate:8.0f} /s")
    print(f"  ratio crmkit / arq:                 {crmkit_rate / arq_rate:8.2f}")
    pipeline = (statements - arq_statements) / count
    print(f"  statements per event:               {pipeline:8.2f} (beyond the commit's)")


async def measure(args: argparse.Namespace, workdir: Path) -> None:
    redis_url = await claim_redis()
    if redis_url is None:
        return
    try:
        async with postgres_setup.migrated_platform(
            "events", workdir, plugins=[bench_plugin()], redis_url=redis_url
        ) as setup:
            if setup is None:
                return
            platform = setup[0]
            print(
                f"{args.events:,} events, {args.per_transaction} per transaction; workers in this "
                f"process, max_jobs {platform.settings.worker_max_jobs}, poll {POLL_SECONDS} s"
            )
            await baseline(redis_url, 20, platform.settings.worker_max_jobs, 1)  # warm: connections
            for writers in args.writers:
                await one_shape(platform, redis_url, args, writers)
            if 1 in args.writers and args.per_transaction == 1:
                await one_writer_as_it_goes(platform, redis_url, args.events)
    finally:
        await release_redis(redis_url)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--per-transaction", type=int, default=1)
    parser.add_argument(
        "--writers", type=int, nargs="+", default=[1, 10], help="transactions relayed at once (each a figure)"
    )
    postgres_setup.run(measure, parser.parse_args())
