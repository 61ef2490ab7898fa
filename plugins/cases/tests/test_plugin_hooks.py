"""The plugin's other hooks: the demo's sample cases, and loyalty tiers for routing."""

from __future__ import annotations

import uuid

import crmkit
from cases_helpers import ok, open_case
from crmkit.testing import Env

COUNT = "{ cases(first: 100) { nodes { id status subject } } }"


async def test_the_demo_seeds_cases_once(env: Env) -> None:
    tenant = await env.tenant("cases")
    ids = [uuid.UUID((await env.create_customer(tenant, givenName=n))["id"]) for n in "AB"]
    for _ in range(2):  # the demo enables a plugin again on every run
        async with env.platform.tenant_scope(tenant) as scope:
            await scope.hooks.call_plugin("cases", "seed_demo", customer_ids=ids)
    nodes = ok(await env.gql(COUNT, tenant=tenant))["cases"]["nodes"]
    assert len(nodes) == 4 and {n["status"] for n in nodes} >= {"NEW", "RESOLVED"}


async def test_a_loyalty_tier_routes_the_customers_next_cases(env: Env) -> None:
    settings = {
        "teams": [{"name": "gold", "agents": ["user:g"]}, {"name": "desk", "agents": ["user:d"]}],
        "routing": [{"team": "gold", "tiers": ["gold"]}],
        "default_team": "desk",
    }
    tenant = await env.tenant("cases", cases=settings)
    customer = (await env.create_customer(tenant, givenName="Au"))["id"]
    assert (await open_case(env, tenant, customer))["team"] == "desk"

    event = crmkit.DomainEvent(
        id=crmkit.uuid7(),
        type="loyalty_tier_changed",
        tenant_id=tenant,
        subject_type="Customer",
        subject_id=customer,
        data={"customer_id": customer, "old_tier": "silver", "new_tier": "gold"},
        occurred_at=crmkit.utcnow(),
    )
    for _ in range(2):  # delivery is at least once
        await env.deliver(tenant, "cases", event)
    routed = await open_case(env, tenant, customer)
    assert (routed["team"], routed["assignee"]) == ("gold", "user:g")
