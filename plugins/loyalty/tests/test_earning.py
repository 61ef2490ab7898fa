"""Earning from the core's activity_recorded event: the rules, exactly once per
activity, reversals, caps and campaigns."""

from __future__ import annotations

import dataclasses
import uuid
from decimal import Decimal

import crmkit
from crmkit.testing import Env
from loyalty_helpers import loyalty, record

RULES = {
    "rules": [
        {"kind": "transaction", "points_per_unit": "1"},
        {"kind": "transaction", "channel": "branch", "points_per_unit": "2"},
        {"kind": "login", "points_per_activity": "3"},
    ]
}


async def test_activities_earn_by_kind_and_channel_with_rounding(env: Env) -> None:
    tenant = await env.tenant("loyalty", loyalty=RULES)
    customer = (await env.create_customer(tenant, givenName="Ann"))["id"]
    await record(env, tenant, customer, amount="10.90", currency="EUR")  # 10 (rounded down)
    await record(env, tenant, customer, amount="5.50", currency="EUR", channel="BRANCH")  # 11
    await record(env, tenant, customer, kind="LOGIN", channel="WEB")  # 3
    await record(env, tenant, customer, kind="CONTACT", channel="PHONE")  # no rule
    await env.drain()
    account = await loyalty(env, tenant, customer)
    assert account["balance"] == 24
    assert sorted(e["points"] for e in account["ledger"]["nodes"]) == [3, 10, 11]


async def test_a_duplicated_event_earns_once(env: Env) -> None:
    tenant = await env.tenant("loyalty")
    customer = (await env.create_customer(tenant, givenName="Bo"))["id"]
    await record(env, tenant, customer, amount="100", currency="EUR")
    await env.drain()
    [event] = await env.events(tenant, "activity_recorded")

    await env.deliver(tenant, "loyalty", event)  # delivery is at least once
    await env.drain()
    assert (await loyalty(env, tenant, customer))["balance"] == 100

    # the handler does run again: another activity's event earns
    second = await record(env, tenant, customer, amount="5", currency="EUR")
    await env.drain()
    events = await env.events(tenant, "activity_recorded")
    assert str(events[-1].subject_id) == second
    await env.deliver(tenant, "loyalty", dataclasses.replace(events[-1], id=crmkit.uuid7()))
    assert (await loyalty(env, tenant, customer))["balance"] == 105


async def test_a_reversed_transaction_reverses_its_points(env: Env) -> None:
    tenant = await env.tenant("loyalty")
    customer = (await env.create_customer(tenant, givenName="Cy"))["id"]
    await record(env, tenant, customer, amount="70", currency="EUR", externalRef="card-1")
    await record(env, tenant, customer, amount="30", currency="EUR")
    await env.drain()
    await record(
        env, tenant, customer, amount="-70", currency="EUR", attributes={"reverses": "card-1"}
    )
    await env.drain()
    for event in await env.events(tenant, "activity_recorded"):  # all delivered again
        await env.deliver(tenant, "loyalty", event)
    account = await loyalty(env, tenant, customer)
    assert account["balance"] == 30
    assert [e["kind"] for e in account["ledger"]["nodes"]] == ["REVERSE", "EARN", "EARN"]
    assert account["ledger"]["nodes"][0]["points"] == -70


async def test_a_reversal_delivered_before_its_earning_leaves_nothing_to_earn(env: Env) -> None:
    """Deliveries may come in any order. To choose it, the two activities are written
    as rows (no event is queued) and their events handed to the plugin one by one."""
    tenant = await env.tenant("loyalty")
    customer = uuid.UUID((await env.create_customer(tenant, givenName="Dee"))["id"])
    now = crmkit.utcnow()
    original = crmkit.Activity(
        id=crmkit.uuid7(),
        customer_id=customer,
        kind=crmkit.ActivityKind.TRANSACTION,
        channel=crmkit.Channel.APP,
        amount=Decimal(40),
        currency="EUR",
        occurred_at=now,
    )
    reversal = crmkit.Activity(
        id=crmkit.uuid7(),
        customer_id=customer,
        kind=crmkit.ActivityKind.TRANSACTION,
        channel=crmkit.Channel.APP,
        amount=Decimal(-40),
        currency="EUR",
        occurred_at=now,
        attributes={"reverses": str(original.id)},
    )
    async with env.platform.db.tenant_session(tenant) as session:
        session.add_all([original, reversal])

    def recorded(activity: crmkit.Activity) -> crmkit.DomainEvent:
        data = {"customer_id": str(customer), "kind": "transaction"}
        return crmkit.DomainEvent(
            crmkit.uuid7(), "activity_recorded", tenant, "Activity", str(activity.id), data, now
        )

    await env.deliver(tenant, "loyalty", recorded(reversal))
    await env.deliver(tenant, "loyalty", recorded(original))
    account = await loyalty(env, tenant, str(customer))
    assert account["balance"] == 0
    assert [(e["kind"], e["points"]) for e in account["ledger"]["nodes"]] == [("REVERSE", 0)]


async def test_a_cap_stops_earning_at_the_cap(env: Env) -> None:
    tenant = await env.tenant("loyalty", loyalty={"cap_points": 150, "cap_period": "month"})
    customer = (await env.create_customer(tenant, givenName="Eve"))["id"]
    for amount in ("100", "100", "100"):
        await record(env, tenant, customer, amount=amount, currency="EUR")
    await env.drain()
    account = await loyalty(env, tenant, customer)
    assert account["balance"] == 150
    assert sorted(e["points"] for e in account["ledger"]["nodes"]) == [50, 100]


async def test_a_campaign_multiplies_inside_its_window(env: Env, clock: object) -> None:
    campaign = {
        "name": "Spring",
        "starts_on": "2025-01-01",
        "ends_on": "2025-01-31",
        "multiplier": "1.5",
    }
    tenant = await env.tenant("loyalty", loyalty={"campaigns": [campaign]})
    customer = (await env.create_customer(tenant, givenName="Flo"))["id"]
    await record(env, tenant, customer, amount="100", currency="EUR")  # the clock: 2025-01-06
    await record(
        env, tenant, customer, amount="100", currency="EUR", occurredAt="2024-12-31T12:00:00Z"
    )
    await env.drain()
    assert sorted(
        e["points"] for e in (await loyalty(env, tenant, customer))["ledger"]["nodes"]
    ) == [100, 150]
