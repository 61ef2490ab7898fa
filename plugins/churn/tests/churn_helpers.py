"""Shared by the churn tests: a tenant populated with the seeded fixture, the scoring
run as the scheduler queues it, and GraphQL helpers."""

from __future__ import annotations

import time
import uuid
from datetime import datetime
from typing import Any

import crmkit
from crmkit.testing import CLOCK_START, Env
from sqlalchemy import insert, text

from crmkit_churn import fixture

CHUNK = 5000
CUSTOMER_CHUNK = 1000


def ok(body: dict[str, Any]) -> dict[str, Any]:
    assert "errors" not in body, body
    data: dict[str, Any] = body["data"]
    return data


async def populate(
    env: Env,
    tenant: uuid.UUID,
    customers: int,
    declining: int,
    *,
    ambiguous: bool = True,
    now: datetime = CLOCK_START,
) -> tuple[list[uuid.UUID], list[fixture.Profile]]:
    """The fixture's customers, created through ``crmkit.create_customer`` (each with a
    relationship manager), a thousand per transaction, and their activities, written as
    an import would (the activities hold no personal data), up to ``now`` (where the
    ``clock`` fixture stands). Returns the customers' ids and profiles, in order."""
    population = fixture.profiles(customers, declining, ambiguous=ambiguous)
    started = time.perf_counter()
    ids: list[uuid.UUID] = []
    for start in range(0, customers, CUSTOMER_CHUNK):  # their events drained chunk by chunk
        async with env.platform.tenant_scope(tenant) as scope:
            for index in range(start, min(customers, start + CUSTOMER_CHUNK)):
                customer = await crmkit.create_customer(
                    scope.ctx,
                    kind=crmkit.CustomerKind.PERSON,
                    lifecycle_stage=crmkit.LifecycleStage.ACTIVE,
                    relationship_manager=f"user:rm{index % 10}",
                    given_name=f"Customer {index}",
                )
                ids.append(customer.id)
        await env.drain()
    created = time.perf_counter()
    rows = fixture.activities(tenant, ids, population, now)
    await insert_activities(env, tenant, rows)
    print(
        f"fixture: {customers} customers in {created - started:.1f} s, "
        f"{len(rows)} activities in {time.perf_counter() - created:.1f} s"
    )
    await env.drain()
    return ids, population


async def insert_activities(env: Env, tenant: uuid.UUID, rows: list[dict[str, Any]]) -> None:
    """Activities written as an import would (they hold no personal data)."""
    table = crmkit.Activity.__table__
    async with env.owner_engine.begin() as conn:
        if env.backend == "postgresql":  # row-level security applies to the owner too
            await conn.execute(
                text("SELECT set_config('crmkit.tenant_id', :t, true)"), {"t": str(tenant)}
            )
        for start in range(0, len(rows), CHUNK):
            await conn.execute(insert(table), rows[start : start + CHUNK])
        if env.backend == "postgresql":
            # as autovacuum would after a bulk import: without statistics the planner
            # takes the freshly filled tables for empty and joins them row by row
            await conn.execute(text("ANALYZE customers, activities"))


async def run_scoring(env: Env, tenant: uuid.UUID) -> None:
    """The cron job for one tenant, queued as the scheduler queues it."""
    await env.queue.enqueue("churn.score_customers", tenant_id=tenant, payload={})
    await env.drain()
