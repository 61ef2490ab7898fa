"""Benchmark: what earning loyalty points through the job queue costs, against writing
the same rows directly.

A figure, not a pass/fail test: a ratio of two throughputs measured in the same run.

* **Through the queue** (what production does): 10,000 transactions of 200 customers,
  recorded beforehand through ``record_activity`` with the outbox relay switched off,
  so their ``activity_recorded`` events wait in the outbox. The clock starts, then
  their dispatch jobs are queued as the relay queues them after a commit (in batches of
  100, each drained before the next, so that no job waits for a database connection
  longer than the pool allows). Each event is then dispatched, delivered to the
  plugin in a transaction of its own (tenant scope, row-level security, the delivery
  record that makes a redelivery a no-op, the audit trail) and earned by the plugin
  (the activity loaded, the rule applied, the account locked, the earning looked
  for, the cap, the entry, the lot, the balance, the tier).
* **Directly** (the ceiling): the same rows for as many earnings, one transaction each
  through the same tenant scope: the account locked, one entry and one lot inserted,
  the balance updated. There is no event, queue, delivery record, rule or duplicate
  check. Batches of 100 run concurrently, as the queue's jobs do, and the database pool
  bounds both sides alike.

The queue is crmkit's in-process one (``InlineQueue``, the arq backend's semantics
without Redis). Printed: earnings/s for each side and the ratio queue/direct, for
each of ``--runs`` runs, then min/median/max. PostgreSQL only: the tables are
migrated by the superuser, and the platform connects as a login role in
``crmkit_app``, as in production, so row-level security applies. The run is skipped,
with a message, when 127.0.0.1:5432 is not reachable.

Run: ``.venv/bin/python bench/loyalty_earning.py [--transactions 10000] [--runs 3]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import tempfile
import time
import uuid
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import postgres_setup
from crmkit_loyalty.models import Account, EntryKind, LedgerEntry, Lot
from sqlalchemy import func, select

from crmkit import migrations
from crmkit.clock import utcnow
from crmkit.core.customers import service
from crmkit.core.customers.models import ActivityKind, Channel, CustomerKind
from crmkit.core.events import OutboxEvent
from crmkit.db import create_engine
from crmkit.jobs.delivery import DISPATCH_EVENT
from crmkit.platform import Platform
from crmkit.platform.enablement import enable
from crmkit.platform.registry import load_registry
from crmkit.plugins.models import HandlerFailure
from crmkit.settings import Settings
from crmkit.tenants.service import create_tenant

CUSTOMERS = 200
BATCH = 100


async def loyalty_tenant(platform: Platform, slug: str) -> tuple[uuid.UUID, list[uuid.UUID]]:
    """A tenant with loyalty enabled and ``CUSTOMERS`` customers."""
    tenant = await create_tenant(platform.db, slug, slug)
    await enable(platform, slug, "loyalty")
    async with platform.tenant_scope(tenant.id) as scope:
        customers = [
            (await service.create_customer(scope.ctx, kind=CustomerKind.PERSON, given_name=f"C{i}")).id
            for i in range(CUSTOMERS)
        ]
    return tenant.id, customers


async def recorded_events(
    platform: Platform, tenant_id: uuid.UUID, customers: list[uuid.UUID], count: int
) -> list[uuid.UUID]:
    """``count`` transactions recorded, their events left in the outbox (relay off)."""
    rng = random.Random(3)
    when = utcnow() - timedelta(days=1)
    for start in range(0, count, BATCH):
        async with platform.tenant_scope(tenant_id) as scope:
            for i in range(start, min(count, start + BATCH)):
                await service.record_activity(
                    scope.ctx,
                    customer_id=customers[i % len(customers)],
                    kind=ActivityKind.TRANSACTION,
                    channel=Channel.APP,
                    occurred_at=when,
                    amount=Decimal(rng.randint(5, 500)),
                    currency="EUR",
                )
    async with platform.db.tenant_session(tenant_id) as session:
        return list(
            await session.scalars(
                select(OutboxEvent.id).where(OutboxEvent.type == "activity_recorded").order_by(OutboxEvent.id)
            )
        )


async def through_the_queue(platform: Platform, tenant_id: uuid.UUID, event_ids: list[uuid.UUID]) -> float:
    """Seconds to dispatch, deliver and earn every event."""
    started = time.perf_counter()
    for start in range(0, len(event_ids), BATCH):
        for event_id in event_ids[start : start + BATCH]:
            await platform.queue.enqueue(
                DISPATCH_EVENT,
                tenant_id=tenant_id,
                payload={"event_id": str(event_id)},
                job_id=f"dispatch:{event_id}",
            )
        await platform.queue.drain()  # type: ignore[attr-defined]  # the InlineQueue
    return time.perf_counter() - started


async def directly(platform: Platform, tenant_id: uuid.UUID, customers: list[uuid.UUID], count: int) -> float:
    """Seconds to write ``count`` earnings' rows, one transaction each."""
    when = utcnow()

    async def one(i: int) -> None:
        customer_id = customers[i % len(customers)]
        async with platform.tenant_scope(tenant_id) as scope:
            session = scope.session
            account = await session.get(Account, (tenant_id, customer_id), with_for_update=True)
            assert account is not None
            entry_id = uuid.uuid4()
            session.add(
                LedgerEntry(
                    id=entry_id,
                    customer_id=customer_id,
                    kind=EntryKind.EARN,
                    points=100,
                    balance_after=account.balance + 100,
                    source=f"activity:{entry_id}",
                    activity_id=entry_id,
                    actor="bench",
                    occurred_at=when,
                )
            )
            session.add(
                Lot(
                    id=entry_id,
                    customer_id=customer_id,
                    points=100,
                    remaining=100,
                    expires_at=when + timedelta(days=730),
                )
            )
            account.balance += 100

    async with platform.tenant_scope(tenant_id) as scope:  # as the queue's first earnings make them
        scope.session.add_all([Account(customer_id=c, balance=0, tier="bronze") for c in customers])
    started = time.perf_counter()
    for start in range(0, count, BATCH):
        await asyncio.gather(*(one(i) for i in range(start, min(count, start + BATCH))))
    return time.perf_counter() - started


async def count_rows(platform: Platform, tenant_id: uuid.UUID) -> tuple[int, int]:
    """Ledger entries, and handler failures (retries included)."""
    async with platform.db.tenant_session(tenant_id) as session:
        entries = await session.scalar(select(func.count()).select_from(LedgerEntry))
        failures = await session.scalar(select(func.count()).select_from(HandlerFailure))
    return int(entries or 0), int(failures or 0)


async def one_run(platform: Platform, run: int, count: int) -> float:
    queued_tenant, queued_customers = await loyalty_tenant(platform, f"queued-{run}")
    direct_tenant, direct_customers = await loyalty_tenant(platform, f"direct-{run}")
    event_ids = await recorded_events(platform, queued_tenant, queued_customers, count)
    queued = await through_the_queue(platform, queued_tenant, event_ids)
    direct = await directly(platform, direct_tenant, direct_customers, count)
    earned, failures = await count_rows(platform, queued_tenant)
    written, _ = await count_rows(platform, direct_tenant)
    assert earned == written == count, (earned, written, count)
    ratio = direct / queued
    print(
        f"  run {run}: through the queue {count / queued:7.0f} earnings/s ({failures} retried),"
        f" directly {count / direct:7.0f}/s, ratio queue/direct {ratio:.2f}",
        flush=True,
    )
    return ratio


async def run_postgres(args: argparse.Namespace, workdir: Path) -> None:
    database, role = f"crmkit_bench_loyalty_{os.getpid()}", f"crmkit_bench_app_{os.getpid()}"
    if not await postgres_setup.create_database(database):
        return
    try:
        owner = create_engine(postgres_setup.url(database), pool=False)
        try:
            await migrations.upgrade(owner, load_registry())
        finally:
            await owner.dispose()
        await postgres_setup.create_app_login(role)
        settings = Settings(database_url=postgres_setup.url(database, role), data_dir=workdir, dev_mode=True)
        platform = Platform(settings)
        platform.db.after_commit = None  # events stay in the outbox until the bench queues them
        print(
            f"PostgreSQL (as a crmkit_app login role), {args.transactions} transactions per run",
            flush=True,
        )
        try:
            ratios = [await one_run(platform, run, args.transactions) for run in range(args.runs)]
        finally:
            await platform.close()
        print(
            f"  ratio queue/direct: min {min(ratios):.2f}, median {statistics.median(ratios):.2f},"
            f" max {max(ratios):.2f}"
        )
    finally:
        await postgres_setup.drop_database(database)
        await postgres_setup.drop_role(role)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transactions", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    for name in [k for k in os.environ if k.startswith("CRMKIT_")]:  # the bench sets its own
        del os.environ[name]
    with tempfile.TemporaryDirectory(prefix="crmkit-bench-") as tmp:
        asyncio.run(run_postgres(args, Path(tmp)))


if __name__ == "__main__":
    main()
