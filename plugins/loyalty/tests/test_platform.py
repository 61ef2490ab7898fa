"""The plugin on the platform: per-tenant schema, batched Customer fields, personal data
(encrypted reasons, export, erasure leaving no trace), the summary, the branch."""

from __future__ import annotations

import uuid
from typing import Any

from crmkit.testing import Env, MigrationDatabase, StatementCounter
from loyalty_helpers import ADJUST, CANCEL, EARN, REDEEM, gql_ok, new_reward, record
from sqlalchemy import text

FIELDS = '{ __type(name: "%s") { fields { name } } }'
TABLES = ("loyalty_accounts", "loyalty_entries", "loyalty_lots", "loyalty_redemptions")
REASON = "Zweistein disputed a fee"


async def field_names(env: Env, tenant: uuid.UUID, type_name: str) -> set[str]:
    body = await env.gql(FIELDS % type_name, tenant=tenant)
    return {field["name"] for field in body["data"]["__type"]["fields"]}


async def test_the_schema_has_loyalty_only_where_the_plugin_is_enabled(env: Env) -> None:
    enabled, other = await env.tenant("loyalty"), await env.tenant()
    assert "loyalty" in await field_names(env, enabled, "Customer")
    assert {"redeemReward", "adjustPoints"} <= await field_names(env, enabled, "Mutation")
    assert "loyalty" not in await field_names(env, other, "Customer")
    assert "redeemReward" not in await field_names(env, other, "Mutation")
    assert "loyaltySummary" not in await field_names(env, other, "Query")


async def test_a_page_costs_the_same_statements_for_5_and_50_customers(
    env: Env, sql_statements: StatementCounter
) -> None:
    page = """{ customers(first: 50) { nodes { id loyalty {
      balance tier tierSince pointsExpiringSoon
      ledger(first: 2) { nodes { points reason } } } } } }"""
    counts = {}
    for size in (5, 50):
        tenant = await env.tenant("loyalty")
        for i in range(size):
            customer = await env.create_customer(tenant, givenName=f"N{i}")
            if i % 2:
                await gql_ok(env, EARN, {"id": customer["id"], "points": 10 + i}, tenant)
        token = env.token(tenant)
        await env.gql(page, token=token)  # warm-up: connection set-up statements
        sql_statements.clear()
        body = await env.gql(page, token=token)
        nodes = body["data"]["customers"]["nodes"]
        assert len(nodes) == size and sum(n["loyalty"]["balance"] > 0 for n in nodes) == size // 2
        counts[size] = sql_statements.count
    assert counts[5] == counts[50], counts


async def raw_tables(env: Env, tenant: uuid.UUID) -> str:
    """The tenant's loyalty rows as the tables' owner reads them (a dump), dashes removed."""
    rows = []
    async with env.owner_engine.connect() as conn:
        for table in TABLES:
            query = text(f"SELECT * FROM {table}")
            rows.extend(await conn.execute(query))
    return repr(rows).replace("-", "")


async def test_reasons_are_encrypted_exported_and_erased_with_the_customer(env: Env) -> None:
    tenant = await env.tenant("loyalty")
    customer: str = (await env.create_customer(tenant, familyName="Zweistein"))["id"]
    await gql_ok(env, ADJUST, {"id": customer, "points": 40, "reason": REASON}, tenant)
    reward = await new_reward(env, tenant, costPoints=15, stock=2)
    redemption = await gql_ok(
        env, REDEEM, {"id": customer, "reward": reward["id"], "key": "k"}, tenant
    )
    await gql_ok(env, CANCEL, {"id": redemption["id"]}, tenant)
    await gql_ok(env, REDEEM, {"id": customer, "reward": reward["id"], "key": "k2"}, tenant)

    raw = await raw_tables(env, tenant)
    assert customer.replace("-", "") in raw and REASON.replace("-", "") not in raw

    masked = await env.gql(
        "query($id: UUID!) { customer(id: $id) { loyalty { ledger { nodes { reason } } } } }",
        {"id": customer},
        token=env.token(tenant, ["customers:read", "loyalty:read"]),
    )
    reasons = [n["reason"] for n in masked["data"]["customer"]["loyalty"]["ledger"]["nodes"]]
    assert reasons == [None, None, None, "***"]

    exported = await gql_ok(
        env, "query($id: UUID!) { exportCustomerData(id: $id) }", {"id": customer}, tenant
    )
    section: dict[str, Any] = exported["plugins"]["loyalty"]
    assert section["balance"] == 25
    assert [e["reason"] for e in section["ledger"]] == [REASON, None, None, None]
    assert [r["status"] for r in section["redemptions"]] == ["cancelled", "active"]

    await gql_ok(
        env,
        "mutation($id: UUID!) { eraseCustomer(id: $id) { erasedAt } }",
        {"id": customer},
        tenant,
    )
    await env.drain()
    assert customer.replace("-", "") not in await raw_tables(env, tenant)


async def test_the_summary_counts_members_points_and_liability(env: Env) -> None:
    tenant = await env.tenant("loyalty", loyalty={"point_value": "0.005", "currency": "GBP"})
    ann = (await env.create_customer(tenant, givenName="Ann"))["id"]
    bo = (await env.create_customer(tenant, givenName="Bo"))["id"]
    await record(env, tenant, ann, amount="1500", currency="EUR")
    await record(env, tenant, bo, amount="300", currency="EUR")
    await env.drain()
    reward = await new_reward(env, tenant, costPoints=100)
    await gql_ok(env, REDEEM, {"id": bo, "reward": reward["id"], "key": "k"}, tenant)
    summary = await gql_ok(
        env,
        """{ loyaltySummary(months: 2) { members outstandingPoints pointValue currency liability
             tiers { tier members points } months { month earned redeemed expired } } }""",
        {},
        tenant,
    )
    assert summary["members"] == 2 and summary["outstandingPoints"] == 1700
    assert (summary["pointValue"], summary["currency"], summary["liability"]) == (
        "0.005",
        "GBP",
        "8.500",
    )
    assert summary["tiers"][:2] == [
        {"tier": "bronze", "members": 1, "points": 200},
        {"tier": "silver", "members": 1, "points": 1500},
    ]
    assert summary["months"][-1]["earned"] == 1800 and summary["months"][-1]["redeemed"] == 100


async def test_downgrading_the_branch_removes_the_plugin_tables_only(
    empty_database: MigrationDatabase,
) -> None:
    await empty_database.upgrade()
    assert {*TABLES, "loyalty_rewards", "customers"} <= await empty_database.tables()
    await empty_database.downgrade("loyalty@base")
    remaining = await empty_database.tables()
    assert not {t for t in remaining if t.startswith("loyalty_")} and "customers" in remaining
    await empty_database.upgrade()
    assert "loyalty_entries" in await empty_database.tables()


async def test_the_demo_seed_shows_points_and_is_idempotent(env: Env) -> None:
    tenant = await env.tenant("loyalty")
    ids = []
    for i in range(6):
        customer = (await env.create_customer(tenant, givenName=f"D{i}"))["id"]
        await record(env, tenant, customer, amount=str(100 * (i + 1)), currency="EUR")
        ids.append(uuid.UUID(customer))
    await env.drain()

    async def seed() -> str:
        async with env.platform.tenant_scope(tenant) as scope:
            await scope.hooks.call_plugin("loyalty", "seed_demo", customer_ids=ids)
        await env.drain()
        return await raw_tables(env, tenant)

    first = await seed()
    assert await seed() == first
    rewards = await gql_ok(env, "{ loyaltyRewards { name } }", {}, tenant)
    assert len(rewards) == 3
    page = await gql_ok(env, "{ customers { nodes { loyalty { balance tier } } } }", {}, tenant)
    assert all(node["loyalty"]["balance"] > 0 for node in page["nodes"])


async def test_the_ledger_pages_newest_first_by_cursor(env: Env) -> None:
    tenant = await env.tenant("loyalty")
    customer: str = (await env.create_customer(tenant, givenName="Pia"))["id"]
    for points in (1, 2, 3, 4, 5):
        await gql_ok(env, EARN, {"id": customer, "points": points}, tenant)
    query = """query($id: UUID!, $after: String) { customer(id: $id) { loyalty {
      ledger(first: 2, after: $after) { nodes { points } pageInfo { hasNextPage endCursor } }
    } } }"""
    seen, after, more = [], None, True
    while more:
        page = await gql_ok(env, query, {"id": customer, "after": after}, tenant)
        ledger = page["loyalty"]["ledger"]
        seen.append([node["points"] for node in ledger["nodes"]])
        more, after = ledger["pageInfo"]["hasNextPage"], ledger["pageInfo"]["endCursor"]
    assert seen == [[5, 4], [3, 2], [1]]
