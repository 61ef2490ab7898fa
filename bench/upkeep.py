"""Benchmark: the outbox sweep and the audit checkpoint at 10 and at 10,000 idle tenants.

A figure, not a pass/fail test. On two fresh PostgreSQL databases, one with 10 idle
tenants and one with 10,000, the platform connected to each as the application role
(under row-level security, as in production), it times one ``sweep_outbox()`` plus one
``checkpoint_audit()`` (what the worker runs every ``CRMKIT_OUTBOX_SWEEP_SECONDS`` and
``CRMKIT_AUDIT_CHECKPOINT_SECONDS``), alternating between the two databases so that the
shared machine's noise falls on both alike. An idle tenant is what an onboarded tenant
with past activity but nothing pending looks like: its ``tenants`` row, its chain head
signed up to its last event and a few events relayed long ago. They are written with
bulk SQL as the tables' owner, not through onboarding, which would take an hour.

Each figure is the median of ``--repeats`` runs of sweep + checkpoint; the ratio is
the time at 10 tenants divided by the time at 10,000 (goal: 0.9 or better, that is,
upkeep does not grow with idle tenants). A tenant with work is added last, to show
that it is still swept and signed.

Run: ``.venv/bin/python bench/upkeep.py [--tenants 10000] [--repeats 400]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from pathlib import Path

import asyncpg
import postgres_setup

from crmkit.core.customers import service
from crmkit.core.customers.models import CustomerKind
from crmkit.core.events import PENDING_EVENTS
from crmkit.platform import Platform
from crmkit.tenants.service import create_tenant

SMALL = 10

SEED = """
WITH new AS (
    SELECT gen_random_uuid() AS id, n FROM generate_series($1::int, $2::int) AS n
), tenants AS (
    INSERT INTO tenants (id, slug, name, status, created_at)
    SELECT id, 'idle-' || n, 'Idle tenant ' || n, 'active', now() - interval '400 days' FROM new
    RETURNING id
), heads AS (
    INSERT INTO audit_heads (tenant_id, seq, hash, checkpoint_seq)
    SELECT id, 12, md5(id::text) || md5(id::text), 12 FROM tenants
)
INSERT INTO outbox_events (tenant_id, id, type, subject_type, subject_id, data, created_at, relayed_at)
SELECT t.id, gen_random_uuid(), 'customer_updated', 'Customer', gen_random_uuid()::text, '{}',
       now() - interval '30 days', now() - interval '30 days'
FROM tenants t, generate_series(1, 3)
"""
"""Tenants ``$1``..``$2``: active, chain signed up to its head, three events relayed."""


async def seed(owner_url: str, first: int, last: int) -> None:
    conn = await asyncpg.connect(owner_url.replace("postgresql+asyncpg", "postgresql"))
    try:
        await conn.execute(SEED, first, last)
        await conn.execute("VACUUM ANALYZE")  # as autovacuum would: nothing left for it mid-run
    finally:
        await conn.close()


async def upkeep(platform: Platform) -> tuple[int, int]:
    runner = platform.runner
    return await runner.sweep_outbox(), await runner.checkpoint_audit()


async def timed(platforms: list[Platform], repeats: int) -> list[float]:
    """Median seconds of one sweep + one checkpoint on each platform, taking turns;
    each must find nothing to do."""
    times: list[list[float]] = [[] for _ in platforms]
    for platform in platforms:
        await upkeep(platform)  # warm: connections, statement caches
    turns = list(zip(platforms, times, strict=True))
    for _ in range(repeats):
        turns.reverse()  # neither goes first every time
        for platform, taken in turns:
            start = time.perf_counter()
            found = await upkeep(platform)
            taken.append(time.perf_counter() - start)
            assert found == (0, 0), f"idle tenants had work: {found}"
    return [statistics.median(taken) for taken in times]


async def measure(args: argparse.Namespace, workdir: Path) -> None:
    async with (
        postgres_setup.migrated_platform("upkeep_small", workdir / "small") as small_setup,
        postgres_setup.migrated_platform("upkeep_large", workdir / "large") as setup,
    ):
        if small_setup is None or setup is None:
            return
        await seed(small_setup[1], 1, SMALL)
        platform, owner_url = setup
        await seed(owner_url, 1, args.tenants)
        small, large = await timed([small_setup[0], platform], args.repeats)
        print(f"sweep + checkpoint, median of {args.repeats}, PostgreSQL as the app role:")
        print(f"  {SMALL:>6,} idle tenants: {small * 1000:7.2f} ms")
        print(f"  {args.tenants:>6,} idle tenants: {large * 1000:7.2f} ms")
        print(f"  ratio {SMALL} / {args.tenants:,}: {small / large:.2f} (goal 0.9 or better)")

        busy = await create_tenant(platform.db, f"busy-{uuid.uuid4().hex[:8]}", "Busy")
        async with platform.tenant_scope(busy.id) as scope:
            await service.create_customer(scope.ctx, kind=CustomerKind.PERSON, given_name="Busy")
            scope.session.info.pop(PENDING_EVENTS)  # as if the process crashed before relaying
        swept = await platform.runner.sweep_outbox(older_than_seconds=0)
        signed = await platform.runner.checkpoint_audit()
        print(f"  then a tenant with work among them: events swept {swept}, chains signed {signed}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=400)
    postgres_setup.run(measure, parser.parse_args())
