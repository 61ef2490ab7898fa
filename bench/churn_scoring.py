"""Benchmark: the churn plugin's scoring of 100,000 customers with a year of activities on
PostgreSQL, in customers scored per second, against a plain SQL aggregate over the same
activities, in one run.

A figure, not a pass/fail test. The scored tenant holds 100,000 customers and about 30
activities each (transactions with amounts, logins, the odd complaint) spread over the
past 365 days, a twentieth of the customers quiet for their last 60 days; a second
tenant holds 20,000 more customers with theirs, so row-level security has rows to hide.
Both sides run as a login role in ``crmkit_app`` under row-level security, in a tenant
transaction of crmkit's own:

* **scoring**: ``crmkit_churn.service.current_scores``, what each scoring run and
  ``Customer.churn`` compute: one statement built with SQLAlchemy through the
  tenant-bound ORM session, in which the database computes every customer's features
  (the activities' aggregates joined to the customers and the other plugins' signals),
  each default rule's contribution, the score and the band; Python reads the rows (the
  reasons are listed from them when asked: the run asks only for the alerts it opens);
* **plain SQL** (the ceiling): one hand-written PostgreSQL statement with ``FILTER``
  aggregates computing the same activity figures per customer over the same look-back,
  fetched, nothing more (no customers' rows, no signals, no score).

Rounds alternate the sides (5 each, after a warm-up) so the drift of a shared machine
hits both alike. Printed: customers per second of each side (median, min, max) and the
ratio scoring / plain SQL of the medians; the goal is 0.5 or better. The run that opens
alerts is not timed: it costs a fixed number of statements per alert it opens
(``crmkit.update_customer``), whatever the number of customers.

The database (``crmkit_bench_churn_<pid>``) and the role are dropped after the run; the
benchmark skips, with a message, when 127.0.0.1:5432 is not reachable.

Run: ``.venv/bin/python bench/churn_scoring.py [--customers 100000] [--rounds 5]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

import asyncpg
import postgres_setup
from crmkit_churn import service
from crmkit_churn.settings import ChurnSettings
from sqlalchemy import text

from crmkit.clock import utcnow
from crmkit.platform.enablement import enable
from crmkit.tenants.service import create_tenant

NOISE_CUSTOMERS = 20_000
ACTIVITIES = 30
SEED_CUSTOMERS = """
INSERT INTO customers (tenant_id, id, kind, lifecycle_stage, created_at, updated_at, version)
SELECT $1, gen_random_uuid(), 'person', 'active', now() - interval '2 years', now(), 1
FROM generate_series(1, $2)
"""
# Activity n of customer r: a login every third, a complaint every 97th, else a
# transaction; at a pseudo-random second of the past year (of the year before the last
# 60 days for every twentieth customer).
SEED_ACTIVITIES = """
INSERT INTO activities (tenant_id, id, customer_id, kind, channel, amount, currency,
  occurred_at, attributes, created_at)
SELECT $1, gen_random_uuid(), c.id, k.kind, 'app',
  CASE WHEN k.kind = 'transaction' THEN ((c.r * 7919 + n * 104729) % 30000) / 100.0 END,
  CASE WHEN k.kind = 'transaction' THEN 'EUR' END,
  now() - CASE WHEN c.r % 20 = 0 THEN interval '60 days' ELSE interval '0' END
        - make_interval(secs => ((c.r * 15485863 + n * 32452843) % (305 * 86400))::int
                               + CASE WHEN c.r % 20 = 0 THEN 0 ELSE ((c.r + n) % 60) * 86400 END),
  '{}', now()
FROM (SELECT id, row_number() OVER (ORDER BY id) AS r FROM customers WHERE tenant_id = $1) AS c,
  generate_series(1, $2) AS n,
  LATERAL (SELECT CASE WHEN (c.r + n) % 97 = 0 THEN 'complaint'
                       WHEN n % 3 = 0 THEN 'login' ELSE 'transaction' END AS kind) AS k
"""
PLAIN = """
SELECT customer_id,
  max(occurred_at) FILTER (WHERE kind <> 'complaint') AS last,
  count(*) FILTER (WHERE kind = 'transaction' AND occurred_at >= :current) AS tx_now,
  count(*) FILTER (WHERE kind = 'transaction' AND occurred_at >= :previous
                     AND occurred_at < :current) AS tx_before,
  sum(amount) FILTER (WHERE kind = 'transaction' AND occurred_at >= :current) AS amt_now,
  sum(amount) FILTER (WHERE kind = 'transaction' AND occurred_at >= :previous
                        AND occurred_at < :current) AS amt_before,
  count(*) FILTER (WHERE kind = 'login' AND occurred_at >= :current) AS login_now,
  count(*) FILTER (WHERE kind = 'login' AND occurred_at >= :previous
                     AND occurred_at < :current) AS login_before,
  count(*) FILTER (WHERE kind = 'complaint' AND occurred_at >= :complaints) AS complaints
FROM activities WHERE occurred_at >= :since GROUP BY customer_id
"""


async def seed(owner_url: str, tenants: list[tuple[uuid.UUID, int]]) -> int:
    """Customers and activities written in bulk by the superuser (row-level security
    does not apply to it): the core's write path is not what is measured."""
    conn = await asyncpg.connect(owner_url.replace("postgresql+asyncpg", "postgresql"))
    try:
        for tenant_id, customers in tenants:
            await conn.execute(SEED_CUSTOMERS, tenant_id, customers)
            await conn.execute(SEED_ACTIVITIES, tenant_id, ACTIVITIES)
        await conn.execute("ANALYZE customers; ANALYZE activities")
        return int(await conn.fetchval("SELECT count(*) FROM activities WHERE tenant_id = $1", tenants[0][0]))
    finally:
        await conn.close()


async def measure(args: argparse.Namespace, workdir: Path) -> None:
    async with postgres_setup.migrated_platform("churn", workdir) as ready:
        if ready is None:
            return
        platform, owner_url = ready
        ids = []
        for slug in ("bench-scored", "bench-other"):
            ids.append((await create_tenant(platform.db, slug, slug)).id)
            await enable(platform, slug, "churn")
        tenant = ids[0]
        started = time.monotonic()
        activities = await seed(owner_url, [(tenant, args.customers), (ids[1], NOISE_CUSTOMERS)])
        print(
            f"seeded {args.customers:,} customers with {activities:,} activities "
            f"(+{NOISE_CUSTOMERS:,} customers of another tenant) in {time.monotonic() - started:.0f} s"
        )
        churn = ChurnSettings()
        now = utcnow()
        period = timedelta(days=churn.period_days)
        window = {
            "current": now - period,
            "previous": now - 2 * period,
            "complaints": now - timedelta(days=churn.complaint_window_days),
            "since": now - timedelta(days=max(2 * churn.period_days, churn.horizon_days)),
        }

        async def scoring() -> int:
            async with platform.tenant_scope(tenant) as scope:
                scores = await service.current_scores(scope.hooks.context_for("churn"))
            return len(scores)

        async def plain() -> int:
            async with platform.db.tenant_session(tenant) as session:
                return len((await session.execute(text(PLAIN), window)).all())

        sides: dict[str, Callable[[], Awaitable[int]]] = {"scoring": scoring, "plain SQL": plain}
        counts = [await side() for side in sides.values()]  # warm-up, and a check
        assert counts[0] == args.customers and 0 < counts[1] <= args.customers, counts
        async with platform.tenant_scope(tenant) as scope:
            flagged = sum(
                s.score >= churn.alert_threshold
                for s in (await service.current_scores(scope.hooks.context_for("churn"))).values()
            )
        print(
            f"check: {counts[0]:,} customers scored, {counts[1]:,} with activities in the "
            f"look-back; {flagged:,} would be flagged"
        )
        rates: dict[str, list[float]] = {name: [] for name in sides}
        for _ in range(args.rounds):
            for name, side in sides.items():
                begun = time.perf_counter()
                await side()
                rates[name].append(args.customers / (time.perf_counter() - begun))
        for name, values in rates.items():
            print(
                f"  {name:<9} median {statistics.median(values):9,.0f} customers/s"
                f"  (min {min(values):,.0f}, max {max(values):,.0f}; {args.rounds} rounds)"
            )
        ratio = statistics.median(rates["scoring"]) / statistics.median(rates["plain SQL"])
        print(f"  ratio scoring / plain SQL: {ratio:.2f} (goal: 0.5 or better)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    postgres_setup.run(measure, parser.parse_args())


if __name__ == "__main__":
    main()
