"""The five first-party plugins together, as the demo tenant runs them: a customers page
selecting every field every plugin adds to ``Customer`` costs the same SQL statements
for 5 customers and for 50 (each plugin batches its fields through data loaders)."""

from __future__ import annotations

import uuid

from crmkit.demo import customer_selection
from crmkit.testing import Env, StatementCounter

FIRST_PARTY = ("loyalty", "surveys", "channels", "cases", "churn")


async def page_statements(
    env: Env, tenant: uuid.UUID, selection: str, sql: StatementCounter, size: int
) -> int:
    query = "query($n: Int) { customers(first: $n) { nodes { id " + selection + " } } }"
    sql.clear()
    body = await env.gql(query, {"n": size}, tenant=tenant)
    assert "errors" not in body, body["errors"]
    assert len(body["data"]["customers"]["nodes"]) == size
    return sql.count


async def test_every_plugin_field_of_a_customers_page_is_batched(
    env: Env, sql_statements: StatementCounter
) -> None:
    installed = set(env.platform.registry.names)
    assert set(FIRST_PARTY) <= installed, f"first-party plugins not installed: {set(FIRST_PARTY) - installed}"
    tenant = await env.tenant(*FIRST_PARTY)
    selection = customer_selection(env.platform, frozenset(FIRST_PARTY))
    for plugin in FIRST_PARTY:  # each plugin's Customer field is in the page
        assert any(field in selection for field in (plugin, "messages")), (plugin, selection)
    ids = [(await env.create_customer(tenant, givenName=f"P{i}"))["id"] for i in range(50)]
    await env.drain()
    async with env.platform.tenant_scope(tenant) as scope:  # each plugin's sample data
        for plugin in FIRST_PARTY:
            await scope.hooks.call_plugin(plugin, "seed_demo", customer_ids=[uuid.UUID(i) for i in ids])
    await env.drain()
    five = await page_statements(env, tenant, selection, sql_statements, 5)
    fifty = await page_statements(env, tenant, selection, sql_statements, 50)
    assert five == fifty, (five, fifty)
