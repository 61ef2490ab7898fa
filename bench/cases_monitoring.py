"""Benchmark: the cases plugin's monitoring figures over 200,000 cases on PostgreSQL,
against the same figures from hand-written SQL aggregates, in one run.

A figure, not a pass/fail test. The monitored tenant holds 200,000 cases opened over
the past year (statuses, kinds, assignees, SLA results, business durations and root
causes drawn from a seeded random generator) and 1,000 customers; a second tenant holds
50,000 more cases, so row-level security has rows to hide. Both sides run as a login
role in ``crmkit_app`` under row-level security, in a tenant transaction of crmkit's own
(``Database.tenant_session``), over the period "the last 90 days":

* **monitoring**: ``crmkit_cases.monitoring.figures``, what ``caseMonitoring``
  answers: eight statements built with SQLAlchemy, through the tenant-bound ORM session
  (the tenant criterion added to each, the 90th percentiles by nearest rank through a
  ``cume_dist`` window, portable to SQLite);
* **plain SQL** (the ceiling): four hand-written PostgreSQL statements computing the
  same figures: ``FILTER`` aggregates, ``GROUPING SETS`` for the three open-case
  breakdowns, ``percentile_disc(0.9)`` for the percentiles.

A check first asserts that both sides give the same figures. Then rounds alternate the
sides (7 each, after a warm-up) so the drift of a shared machine hits both alike.
Printed: the median, minimum and maximum time of each side and the ratio plain /
monitoring of the medians (1.0 would mean the portable queries cost nothing more than
the tuned ones).

The database (``crmkit_bench_cases_<pid>``) and the role are dropped after the run; the
benchmark skips, with a message, when 127.0.0.1:5432 is not reachable.

Run: ``.venv/bin/python bench/cases_monitoring.py [--cases 200000] [--rounds 7]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import postgres_setup
from crmkit_cases import monitoring
from sqlalchemy import text

from crmkit.clock import utcnow
from crmkit.db import Database
from crmkit.platform.enablement import enable
from crmkit.tenants.service import create_tenant

CUSTOMERS = 1_000
NOISE_CASES = 50_000
PERIOD_DAYS = 90

SEED_CUSTOMERS = """
INSERT INTO customers (tenant_id, id, kind, lifecycle_stage, created_at, updated_at, version)
SELECT $1, gen_random_uuid(), 'person', 'active', now(), now(), 1 FROM generate_series(1, $2)
"""
SEED_CASES = """
INSERT INTO cases (tenant_id, id, customer_id, kind, channel, priority, status, team, assignee,
  opened_by, opened_at, updated_at, first_response_target_minutes, resolution_target_minutes,
  first_response_warn_at, first_response_due_at, resolution_warn_at, resolution_due_at,
  paused_minutes, first_response_minutes, first_response_met, resolved_at, resolution_minutes,
  resolution_met, resolution_code, root_cause_code, reopen_count, version)
SELECT $1, gen_random_uuid(), c.ids[1 + (g % array_length(c.ids, 1))],
  (ARRAY['enquiry', 'request', 'complaint'])[1 + (g % 3)], 'phone', 'normal',
  s.status, 'service', 'user:agent' || (g % 20), 'bench', s.opened, s.opened, 1440, 2880,
  s.opened, s.opened, s.opened, s.opened, 0,
  s.first, s.first <= 1440, CASE WHEN s.done THEN s.opened END,
  CASE WHEN s.done THEN s.first + (g::bigint * 7919 % 4000)::int END,
  CASE WHEN s.done THEN s.first + (g::bigint * 7919 % 4000)::int <= 2880 END,
  CASE WHEN s.done THEN 'answered' END,
  CASE WHEN g % 3 = 2 THEN (ARRAY['fees', 'process', 'staff', NULL])[1 + (g % 4)] END,
  CASE WHEN g % 23 = 0 THEN 1 ELSE 0 END, 1
FROM generate_series(1, $2) AS g,
  (SELECT array_agg(id) AS ids FROM customers WHERE tenant_id = $1) AS c,
  LATERAL (SELECT
    now() - make_interval(mins => (g::bigint * 104729 % (365 * 24 * 60))::int) AS opened,
    (g * 31) % 3000 AS first,
    (ARRAY['new', 'in_progress', 'waiting_on_customer', 'resolved', 'closed', 'closed'])
      [1 + (g % 6)] AS status,
    g % 6 >= 3 AS done) AS s
"""

OPEN = "status IN ('new', 'in_progress', 'waiting_on_customer')"
PLAIN_TOTALS = """
SELECT count(*),
  count(first_response_met), count(*) FILTER (WHERE first_response_met),
  count(resolution_met), count(*) FILTER (WHERE resolution_met),
  count(*) FILTER (WHERE resolved_at IS NOT NULL OR reopen_count > 0),
  count(*) FILTER (WHERE reopen_count > 0),
  count(*) FILTER (WHERE kind = 'complaint'),
  count(first_response_minutes), avg(first_response_minutes),
  percentile_disc(0.9) WITHIN GROUP (ORDER BY first_response_minutes),
  count(resolution_minutes), avg(resolution_minutes),
  percentile_disc(0.9) WITHIN GROUP (ORDER BY resolution_minutes)
FROM cases WHERE opened_at >= :since AND opened_at < :until
"""
PLAIN_OPEN = f"""
SELECT status, band, assignee, GROUPING(status, band, assignee), count(*) FROM (
  SELECT status, assignee, CASE WHEN opened_at > CAST(:now AS timestamptz) - interval '1 day' THEN 'under_1d'
    WHEN opened_at > CAST(:now AS timestamptz) - interval '3 days' THEN '1d_3d'
    WHEN opened_at > CAST(:now AS timestamptz) - interval '7 days' THEN '3d_7d' ELSE 'over_7d' END AS band
  FROM cases WHERE {OPEN}) AS open_cases
GROUP BY GROUPING SETS ((status), (band), (assignee))
"""
PLAIN_CAUSES = """
SELECT root_cause_code, count(*) FROM cases
WHERE opened_at >= :since AND opened_at < :until AND kind = 'complaint'
GROUP BY root_cause_code
"""
PLAIN_CUSTOMERS = "SELECT count(*) FROM customers WHERE erased_at IS NULL"


def share(part: int, whole: int, scale: int = 100) -> Decimal | None:
    return (Decimal(part) * scale / whole).quantize(Decimal("0.01")) if whole else None


def hours(value: Any) -> Decimal | None:
    return None if value is None else (Decimal(str(value)) / 60).quantize(Decimal("0.01"))


async def plain_figures(db: Database, tenant_id: uuid.UUID, since: Any, until: Any) -> dict[str, Any]:
    """The ceiling: the same figures from four hand-written statements."""
    async with db.tenant_session(tenant_id) as session:
        period = {"since": since, "until": until}
        totals = (await session.execute(text(PLAIN_TOTALS), period)).one()
        groups = (await session.execute(text(PLAIN_OPEN), {"now": utcnow()})).all()
        causes = (await session.execute(text(PLAIN_CAUSES), period)).all()
        customers = await session.scalar(text(PLAIN_CUSTOMERS))
    opened, fr_n, fr_met, res_n, res_met, resolved, reopened, complaints = totals[:8]
    fr_cases, fr_mean, fr_p90, res_cases, res_mean, res_p90 = totals[8:]
    return {
        # GROUPING(...) has a bit set for each column a row is not grouped by
        "open_by_status": sorted((s, n) for s, _, _, g, n in groups if g == 0b011),
        "open_by_age": sorted((b, n) for _, b, _, g, n in groups if g == 0b101),
        "open_by_assignee": sorted((a, n) for _, _, a, g, n in groups if g == 0b110),
        "cases_opened": opened,
        "first_response_compliance": share(fr_met, fr_n),
        "resolution_compliance": share(res_met, res_n),
        "first_response": (fr_cases, hours(fr_mean), hours(fr_p90)),
        "resolution": (res_cases, hours(res_mean), hours(res_p90)),
        "reopen_rate": share(reopened, resolved),
        "complaints": complaints,
        "complaints_per_1000_customers": share(complaints, customers, 1000),
        "complaints_by_root_cause": sorted((c or "none", n) for c, n in causes),
    }


async def monitoring_figures(db: Database, tenant_id: uuid.UUID, since: Any, until: Any) -> dict[str, Any]:
    """What ``caseMonitoring`` answers, in the same shape as :func:`plain_figures`."""
    async with db.tenant_session(tenant_id) as session:
        f = await monitoring.figures(session, since, until)

    def pairs(counts: list[monitoring.Count], missing: str | None = None) -> list[tuple[Any, int]]:
        return sorted((None if c.key == missing else c.key, c.count) for c in counts)

    return {
        "open_by_status": pairs(f.open_by_status),
        "open_by_age": pairs(f.open_by_age),
        "open_by_assignee": pairs(f.open_by_assignee, missing="unassigned"),
        "cases_opened": f.cases_opened,
        "first_response_compliance": f.first_response_compliance,
        "resolution_compliance": f.resolution_compliance,
        "first_response": (f.first_response.cases, f.first_response.mean_hours, f.first_response.p90_hours),
        "resolution": (f.resolution.cases, f.resolution.mean_hours, f.resolution.p90_hours),
        "reopen_rate": f.reopen_rate,
        "complaints": f.complaints,
        "complaints_per_1000_customers": f.complaints_per_1000_customers,
        "complaints_by_root_cause": pairs(f.complaints_by_root_cause),
    }


async def seed(owner_url: str, tenants: list[tuple[uuid.UUID, int]]) -> None:
    """Customers and cases written in bulk by the superuser (row-level security does not
    apply to it): the plugin's write path is not what is measured."""
    conn = await asyncpg.connect(owner_url.replace("postgresql+asyncpg", "postgresql"))
    try:
        for tenant_id, cases in tenants:
            await conn.execute(SEED_CUSTOMERS, tenant_id, CUSTOMERS)
            await conn.execute(SEED_CASES, tenant_id, cases)
        await conn.execute("ANALYZE cases; ANALYZE customers")
    finally:
        await conn.close()


Side = Callable[[Database, uuid.UUID, Any, Any], Awaitable[dict[str, Any]]]


async def measure(args: argparse.Namespace, workdir: Path) -> None:
    async with postgres_setup.migrated_platform("cases", workdir) as ready:
        if ready is None:
            return
        platform, owner_url = ready
        ids = []
        for slug in ("bench-monitored", "bench-other"):
            ids.append((await create_tenant(platform.db, slug, slug)).id)
            await enable(platform, slug, "cases")
        started = time.monotonic()
        await seed(owner_url, [(ids[0], args.cases), (ids[1], NOISE_CASES)])
        print(
            f"seeded {args.cases:,} cases (+{NOISE_CASES:,} of another tenant) "
            f"in {time.monotonic() - started:.0f} s"
        )
        until = utcnow()
        since = until - timedelta(days=PERIOD_DAYS)
        sides: dict[str, Side] = {"monitoring": monitoring_figures, "plain SQL": plain_figures}
        answers = [await side(platform.db, ids[0], since, until) for side in sides.values()]
        assert answers[0] == answers[1], answers
        print(f"check: both sides give the same figures ({answers[0]['cases_opened']:,} cases in the period)")
        times: dict[str, list[float]] = {name: [] for name in sides}
        for _ in range(args.rounds):
            for name, side in sides.items():
                begun = time.perf_counter()
                await side(platform.db, ids[0], since, until)
                times[name].append(time.perf_counter() - begun)
        for name, values in times.items():
            print(
                f"  {name:<11} median {statistics.median(values) * 1000:7.1f} ms"
                f"  (min {min(values) * 1000:.1f}, max {max(values) * 1000:.1f}; {args.rounds} rounds)"
            )
        ratio = statistics.median(times["plain SQL"]) / statistics.median(times["monitoring"])
        print(f"  ratio plain SQL / monitoring: {ratio:.2f} (1.0: the portable queries cost nothing extra)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=7)
    postgres_setup.run(measure, parser.parse_args())


if __name__ == "__main__":
    main()
