"""Expiry by lots and tiers over a rolling window with a grace period, moved by the
injected clock; both cron jobs run twice to show a second run changes nothing."""

from __future__ import annotations

import uuid
from typing import Any

from crmkit.testing import Env, FrozenClock
from loyalty_helpers import loyalty, record

PROGRAMME = {
    "expiry_days": 100,
    "expiry_warning_days": 10,
    "tier_window_days": 90,
    "downgrade_grace_days": 30,
}


async def cron(env: Env, tenant: uuid.UUID, job: str) -> None:
    """Run one of the plugin's cron jobs for the tenant, twice (idempotent)."""
    for _ in range(2):
        await env.queue.enqueue(f"loyalty.{job}", tenant_id=tenant, payload={})
        await env.drain()


async def event_data(env: Env, tenant: uuid.UUID, type: str) -> list[dict[str, Any]]:
    return [event.data for event in await env.events(tenant, type)]


async def test_points_expire_by_lot_after_a_warning(env: Env, clock: FrozenClock) -> None:
    tenant = await env.tenant("loyalty", loyalty=PROGRAMME)
    customer = (await env.create_customer(tenant, givenName="Ann"))["id"]
    await record(env, tenant, customer, amount="300", currency="EUR")
    await env.drain()
    clock.advance(days=50)
    await record(env, tenant, customer, amount="200", currency="EUR")
    await env.drain()

    clock.advance(days=41)  # day 91: the first lot expires within 10 days
    await cron(env, tenant, "expire_points")
    assert await event_data(env, tenant, "loyalty_points_expiring") == [
        {"customer_id": customer, "points": 300, "expires_on": "2025-04-16"}
    ]
    account = await loyalty(env, tenant, customer)
    assert (account["balance"], account["pointsExpiringSoon"]) == (500, 300)

    clock.advance(days=10)  # day 101: the first lot expired, the second is intact
    await cron(env, tenant, "expire_points")
    account = await loyalty(env, tenant, customer)
    assert account["balance"] == 200
    assert [(e["kind"], e["points"]) for e in account["ledger"]["nodes"]] == [
        ("EXPIRE", -300),
        ("EARN", 200),
        ("EARN", 300),
    ]
    assert len(await event_data(env, tenant, "loyalty_points_expiring")) == 1


async def test_spending_takes_the_oldest_points_first(env: Env, clock: FrozenClock) -> None:
    tenant = await env.tenant("loyalty", loyalty=PROGRAMME)
    customer = (await env.create_customer(tenant, givenName="Bo"))["id"]
    await record(env, tenant, customer, amount="100", currency="EUR")
    await env.drain()
    clock.advance(days=50)
    await record(env, tenant, customer, amount="100", currency="EUR")
    await env.drain()
    adjust = """mutation($id: UUID!) {
      adjustPoints(customerId: $id, points: -120, reason: "Duplicate credit") { id } }"""
    assert "errors" not in await env.gql(adjust, {"id": customer}, tenant=tenant)

    clock.advance(days=51)  # the first lot (spent) expires: nothing to take
    await cron(env, tenant, "expire_points")
    assert (await loyalty(env, tenant, customer))["balance"] == 80
    clock.advance(days=50)  # the second lot's 80 remaining points expire
    await cron(env, tenant, "expire_points")
    assert (await loyalty(env, tenant, customer))["balance"] == 0


async def test_tiers_rise_at_once_and_fall_after_the_grace_period(
    env: Env, clock: FrozenClock
) -> None:
    tenant = await env.tenant("loyalty", loyalty={**PROGRAMME, "expiry_days": 1000})
    customer = (await env.create_customer(tenant, givenName="Cy"))["id"]
    await record(env, tenant, customer, amount="1200", currency="EUR")
    await env.drain()
    account = await loyalty(env, tenant, customer)
    assert (account["tier"], account["tierSince"]) == ("silver", "2025-01-06T09:00:00+00:00")
    changes = [{"customer_id": customer, "old_tier": "bronze", "new_tier": "silver"}]
    assert await event_data(env, tenant, "loyalty_tier_changed") == changes

    clock.advance(days=91)  # out of the window: the grace period starts
    await cron(env, tenant, "recompute_tiers")
    assert (await loyalty(env, tenant, customer))["tier"] == "silver"
    clock.advance(days=29)
    await cron(env, tenant, "recompute_tiers")
    assert (await loyalty(env, tenant, customer))["tier"] == "silver"

    clock.advance(days=1)  # 30 days below silver: down to bronze
    await cron(env, tenant, "recompute_tiers")
    account = await loyalty(env, tenant, customer)
    assert (account["tier"], account["tierSince"]) == ("bronze", "2025-05-07T09:00:00+00:00")
    changes.append({"customer_id": customer, "old_tier": "silver", "new_tier": "bronze"})
    assert await event_data(env, tenant, "loyalty_tier_changed") == changes


async def test_earning_again_within_the_grace_period_keeps_the_tier(
    env: Env, clock: FrozenClock
) -> None:
    tenant = await env.tenant("loyalty", loyalty=PROGRAMME)
    customer = (await env.create_customer(tenant, givenName="Dee"))["id"]
    await record(env, tenant, customer, amount="1000", currency="EUR")
    await env.drain()
    clock.advance(days=91)
    await cron(env, tenant, "recompute_tiers")  # below silver since day 91
    clock.advance(days=20)
    await record(env, tenant, customer, amount="1000", currency="EUR")  # qualifies again
    await env.drain()
    clock.advance(days=20)  # 40 days after the fall, but it was cleared
    await cron(env, tenant, "recompute_tiers")
    assert (await loyalty(env, tenant, customer))["tier"] == "silver"
    assert len(await env.events(tenant, "loyalty_tier_changed")) == 1
