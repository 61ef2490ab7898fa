"""The demo's sample data: a welcome template and one in-app message per customer, and
the surveys plugin's invitation template, seeded once however often the demo enables
the plugin."""

from __future__ import annotations

import uuid

from channels_helpers import messages, ok
from crmkit.testing import Env

TEMPLATES = "{ channelTemplates { key channel version } }"


async def test_the_demo_seeds_a_welcome_once(env: Env) -> None:
    tenant = await env.tenant("channels")
    ids = [uuid.UUID((await env.create_customer(tenant, givenName=n))["id"]) for n in "AB"]
    for _ in range(2):
        async with env.platform.tenant_scope(tenant) as scope:
            await scope.hooks.call_plugin("channels", "seed_demo", customer_ids=ids)
    await env.drain()
    templates = ok(await env.gql(TEMPLATES, tenant=tenant))["channelTemplates"]
    assert sorted(templates, key=lambda t: t["key"]) == [
        {"key": "demo.welcome", "channel": "in_app", "version": 1},
        {"key": "surveys.invitation", "channel": "email", "version": 1},
    ]
    for customer in ids:
        [welcome] = await messages(env, tenant, str(customer))
        assert welcome["channel"] == "in_app"
