"""Benchmark: the surveys plugin's results over 100,000 responses on PostgreSQL, against
the same figures from hand-written SQL aggregates, in one run.

A figure, not a pass/fail test. The measured tenant holds one survey with 120,000
invitations, 100,000 of them answered over the past year (an NPS, a CSAT, a CES and a
SERVQUAL expectation/perception pair each: 500,000 answers) by 2,000 customers, half of
them in a segment; a second tenant holds 20,000 more responses, so row-level security
has rows to hide. Both sides run as a login role in ``crmkit_app`` under row-level
security, in a tenant transaction of crmkit's own, and are timed around their queries
only:

* **results**: ``crmkit_surveys.results.results``, what ``surveyResults`` answers,
  overall and by segment: three statements built with SQLAlchemy (portable to SQLite),
  through the tenant-bound ORM session;
* **plain SQL** (the ceiling): three hand-written PostgreSQL statements per query
  (``FILTER`` aggregates), the arithmetic done the same way. They name the tenant in
  their ``WHERE`` as the tenant-bound session does for the plugin's statements (without
  it, row-level security alone filters, and they run 5-40% slower).

A check first asserts that both sides give the same figures and counts the results'
statements. Then rounds alternate the sides (7 each) so the drift of a shared machine
hits both alike. Printed: median, minimum and maximum time of each side, and the ratio
plain / results of the medians (1.0: the portable queries cost nothing more).

The database (``crmkit_bench_surveys_<pid>``) and the role are dropped after the run; the
benchmark skips, with a message, when 127.0.0.1:5432 is not reachable.

Run: ``.venv/bin/python bench/survey_results.py [--responses 100000] [--rounds 7]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import postgres_setup
from crmkit_surveys import results
from sqlalchemy import event, text

from crmkit.db import Database
from crmkit.platform import Platform
from crmkit.platform.enablement import enable
from crmkit.tenants.service import create_tenant

CUSTOMERS = 2_000
NOISE_RESPONSES = 20_000
SETTINGS = {"segments": [{"name": "premium", "tag": "premium"}]}

SEED_CUSTOMERS = """INSERT INTO customers (tenant_id, id, kind, lifecycle_stage, created_at,
      updated_at, version)
    SELECT $1, gen_random_uuid(), 'person', 'active', now(), now(), 1 FROM generate_series(1, $2)"""
SEED_TAGS = """INSERT INTO customer_tags (tenant_id, customer_id, tag)
    SELECT tenant_id, id, 'premium' FROM customers WHERE tenant_id = $1
    AND ('x' || substr(md5(id::text), 1, 8))::bit(32)::int % 2 = 0"""
SEED_SURVEY = """INSERT INTO surveys (tenant_id, id, key, draft, latest_version, created_at, updated_at)
    VALUES ($1, $2, 'bench', '{}', 1, now(), now())"""
SEED_VERSION = """INSERT INTO survey_versions (tenant_id, id, survey_id, version, definition, published_at,
      published_by) VALUES ($1, $2, $2, 1, '{}', now(), 'bench')"""
SEED_INVITATIONS = """INSERT INTO survey_invitations (tenant_id, id, customer_id, survey_id,
      version_id, version, token_hash, locale, trigger, trigger_ref, channel, created_at,
      expires_at, responded_at)
    SELECT $1, gen_random_uuid(), c.ids[1 + g % array_length(c.ids, 1)], $2, $2, 1,
      decode(md5($1::text || g) || md5(g || $1::text), 'hex'), 'en', 'manual', 'bench:' || g,
      (ARRAY['app', 'branch', 'web'])[1 + g % 3], s.at, s.at + interval '14 days',
      CASE WHEN g <= $3 THEN s.at + interval '1 hour' END
    FROM generate_series(1, $3 + $3 / 5) AS g,
      (SELECT array_agg(id) AS ids FROM customers WHERE tenant_id = $1) AS c,
      LATERAL (SELECT now() - make_interval(mins => (g::bigint * 104729 % 525600)::int) AS at) s"""
SEED_RESPONSES = """INSERT INTO survey_responses (tenant_id, id, invitation_id, customer_id, survey_id,
      version_id, version, channel, locale, submitted_at, nps, csat, ces)
    SELECT tenant_id, gen_random_uuid(), id, customer_id, survey_id, version_id, 1, channel, 'en',
      responded_at, NULL, NULL, NULL
    FROM survey_invitations WHERE tenant_id = $1 AND responded_at IS NOT NULL"""
SEED_ANSWERS = """INSERT INTO survey_answers (tenant_id, id, response_id, customer_id, question_key, kind,
      dimension, facet, score)
    SELECT r.tenant_id, gen_random_uuid(), r.id, r.customer_id, q.key, q.kind, q.dimension,
      q.facet, q.low + (('x' || substr(md5(r.id::text || q.key), 1, 8))::bit(32)::int & 1023)
      % (q.high - q.low + 1)
    FROM survey_responses r, (VALUES ('nps', 'nps', NULL, NULL, 0, 10),
      ('csat', 'csat', NULL, NULL, 1, 5), ('ces', 'ces', NULL, NULL, 1, 7),
      ('exp', 'servqual', 'reliability', 'expectation', 1, 7),
      ('per', 'servqual', 'reliability', 'perception', 1, 7))
      AS q(key, kind, dimension, facet, low, high)
    WHERE r.tenant_id = $1"""

SEGMENT = """JOIN (SELECT c.id FROM customers c WHERE c.tenant_id = :tenant
  AND c.erased_at IS NULL AND c.archived_at IS NULL
  AND EXISTS (SELECT 1 FROM customer_tags t WHERE t.tenant_id = c.tenant_id
  AND t.customer_id = c.id AND t.tag = 'premium')) s ON s.id = {table}.customer_id"""
PLAIN_SCORES = """SELECT count(DISTINCT r.id),
  count(*) FILTER (WHERE a.kind = 'nps' AND a.score >= 9),
  count(*) FILTER (WHERE a.kind = 'nps' AND a.score BETWEEN 7 AND 8),
  count(*) FILTER (WHERE a.kind = 'nps' AND a.score <= 6),
  count(*) FILTER (WHERE a.kind = 'csat' AND a.score >= 4), count(*) FILTER (WHERE a.kind = 'csat'),
  sum(a.score) FILTER (WHERE a.kind = 'ces'), count(*) FILTER (WHERE a.kind = 'ces')
FROM survey_responses r {segment}
LEFT JOIN survey_answers a ON a.tenant_id = r.tenant_id AND a.response_id = r.id
WHERE r.tenant_id = :tenant AND r.survey_id = :survey"""
PLAIN_SERVQUAL = """SELECT a.dimension, a.facet, sum(a.score), count(a.score)
FROM survey_responses r {segment}
JOIN survey_answers a ON a.tenant_id = r.tenant_id AND a.response_id = r.id
WHERE r.tenant_id = :tenant AND r.survey_id = :survey AND a.kind = 'servqual'
GROUP BY a.dimension, a.facet"""
PLAIN_INVITED = """SELECT count(*), count(responded_at) FROM survey_invitations i {segment}
WHERE i.tenant_id = :tenant AND i.survey_id = :survey"""


def figures(scores: Any, servqual: Any, invited: Any) -> dict[str, Any]:
    """The headline figures from the three rows, computed as the plugin computes them."""
    n, promoters, passives, detractors, satisfied, csat_n, ces_sum, ces_n = scores
    nps_n = promoters + passives + detractors
    means = {(d, f): Decimal(total) / count for d, f, total, count in servqual}
    return {
        "responses": n,
        "nps": results.share(promoters, nps_n) - results.share(detractors, nps_n),
        "counts": (promoters, passives, detractors),
        "csat": results.share(satisfied, csat_n),
        "ces": results.mean(ces_sum, ces_n),
        "gap": (means[("reliability", "perception")] - means[("reliability", "expectation")]).quantize(
            results.CENT
        ),
        "invitations": invited[0],
        "rate": results.share(invited[1], invited[0]),
    }


async def plain(db: Database, tenant_id: uuid.UUID, survey: uuid.UUID, segment: bool) -> Any:
    async with db.tenant_session(tenant_id) as session:
        started = time.perf_counter()
        joins = {
            "r": SEGMENT.format(table="r") if segment else "",
            "i": SEGMENT.format(table="i") if segment else "",
        }
        params = {"tenant": tenant_id, "survey": survey}
        scores = (await session.execute(text(PLAIN_SCORES.format(segment=joins["r"])), params)).one()
        servqual = (await session.execute(text(PLAIN_SERVQUAL.format(segment=joins["r"])), params)).all()
        invited = (await session.execute(text(PLAIN_INVITED.format(segment=joins["i"])), params)).one()
        elapsed = time.perf_counter() - started
    return figures(scores, servqual, invited), elapsed


async def plugin(platform: Platform, tenant_id: uuid.UUID, survey: uuid.UUID, segment: bool) -> Any:
    query = results.Query(survey, segment="premium" if segment else None)
    async with platform.tenant_scope(tenant_id) as scope:
        ctx = scope.hooks.context_for("surveys")
        started = time.perf_counter()
        [group] = await results.results(ctx, query)
        elapsed = time.perf_counter() - started
    assert group.nps and group.csat and group.ces and group.servqual
    [gap] = group.servqual
    return {
        "responses": group.responses,
        "nps": group.nps.score,
        "counts": (group.nps.promoters, group.nps.passives, group.nps.detractors),
        "csat": group.csat.percent,
        "ces": group.ces.mean,
        "gap": gap.gap,
        "invitations": group.invitations,
        "rate": group.response_rate,
    }, elapsed


async def seed(owner_url: str, tenants: list[tuple[uuid.UUID, int, uuid.UUID]]) -> None:
    """Rows written in bulk by the superuser (row-level security does not apply to it):
    the plugin's write path is not what is measured."""
    conn = await asyncpg.connect(owner_url.replace("postgresql+asyncpg", "postgresql"))
    try:
        for tenant_id, responses, survey_id in tenants:
            await conn.execute(SEED_CUSTOMERS, tenant_id, CUSTOMERS)
            await conn.execute(SEED_TAGS, tenant_id)
            await conn.execute(SEED_SURVEY, tenant_id, survey_id)
            await conn.execute(SEED_VERSION, tenant_id, survey_id)
            await conn.execute(SEED_INVITATIONS, tenant_id, survey_id, responses)
            await conn.execute(SEED_RESPONSES, tenant_id)
            await conn.execute(SEED_ANSWERS, tenant_id)
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


async def measure(args: argparse.Namespace, workdir: Path) -> None:
    async with postgres_setup.migrated_platform("surveys", workdir) as ready:
        if ready is None:
            return
        platform, owner_url = ready
        tenants = []
        for slug, responses in (("bench-measured", args.responses), ("bench-other", NOISE_RESPONSES)):
            tenant = await create_tenant(platform.db, slug, slug)
            await enable(platform, slug, "surveys", SETTINGS)
            tenants.append((tenant.id, responses, uuid.uuid4()))
        started = time.monotonic()
        await seed(owner_url, tenants)
        print(
            f"seeded {args.responses:,} responses (5 answers each; +{NOISE_RESPONSES:,} "
            f"of another tenant) in {time.monotonic() - started:.0f} s"
        )
        tenant_id, _, survey = tenants[0]
        statements: list[str] = []

        def count(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
            statements.append(statement)

        for segment in (False, True):
            event.listen(platform.db.sync_engine, "before_cursor_execute", count)
            async with platform.tenant_scope(tenant_id) as scope:
                statements.clear()
                await results.results(
                    scope.hooks.context_for("surveys"),
                    results.Query(survey, segment="premium" if segment else None),
                )
                used = len(statements)
            event.remove(platform.db.sync_engine, "before_cursor_execute", count)
            ours, _ = await plugin(platform, tenant_id, survey, segment)
            theirs, _ = await plain(platform.db, tenant_id, survey, segment)
            assert ours == theirs, (ours, theirs)
            print(
                f"check ({'segment premium' if segment else 'overall'}): both sides give "
                f"NPS {ours['nps']} over {ours['responses']:,} responses; results used {used} "
                "statements"
            )
        for segment in (False, True):
            times: dict[str, list[float]] = {"results": [], "plain SQL": []}
            for _ in range(args.rounds):
                times["results"].append((await plugin(platform, tenant_id, survey, segment))[1])
                times["plain SQL"].append((await plain(platform.db, tenant_id, survey, segment))[1])
            print(f"{'segment premium' if segment else 'overall'}:")
            for name, values in times.items():
                print(
                    f"  {name:<10} median {statistics.median(values) * 1000:7.1f} ms"
                    f"  (min {min(values) * 1000:.1f}, max {max(values) * 1000:.1f}; "
                    f"{args.rounds} rounds)"
                )
            ratio = statistics.median(times["plain SQL"]) / statistics.median(times["results"])
            print(f"  ratio plain SQL / results: {ratio:.2f} (1.0: the portable queries cost nothing extra)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--responses", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=7)
    postgres_setup.run(measure, parser.parse_args())


if __name__ == "__main__":
    main()
