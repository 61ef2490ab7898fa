"""``Customer.cases``: batched (a page of 5 and of 50 customers cost the same
statements), paginated per customer, filtered by status."""

from __future__ import annotations

from cases_helpers import change, ok, open_case
from crmkit.testing import Env, StatementCounter

PAGE = """{ customers(first: 50) { nodes { id
  cases(first: 2) { nodes { id status subject entries { body } } pageInfo { hasNextPage } } } } }"""
ONE = """query($id: UUID!, $after: String, $status: CaseStatus) { customer(id: $id) {
  cases(first: 2, after: $after, status: $status) {
    nodes { id } pageInfo { hasNextPage endCursor } } } }"""


async def test_cases_of_a_page_cost_the_same_statements_for_5_and_50_customers(
    env: Env, sql_statements: StatementCounter
) -> None:
    counts = {}
    for size in (5, 50):
        tenant = await env.tenant("cases")
        for i in range(size):
            customer = await env.create_customer(tenant, givenName=f"N{i}")
            await open_case(env, tenant, customer["id"], kind="ENQUIRY")
        token = env.token(tenant)
        await env.gql(PAGE, token=token)  # warm-up: connection set-up statements
        sql_statements.clear()
        nodes = ok(await env.gql(PAGE, token=token))["customers"]["nodes"]
        assert len(nodes) == size and all(len(n["cases"]["nodes"]) == 1 for n in nodes)
        counts[size] = sql_statements.count
    assert counts[5] == counts[50], counts


async def test_a_customers_cases_page_by_page_and_by_status(env: Env) -> None:
    tenant = await env.tenant("cases")
    customer = (await env.create_customer(tenant, givenName="Pat"))["id"]
    other = (await env.create_customer(tenant, givenName="Sam"))["id"]
    ids = [(await open_case(env, tenant, customer, kind="ENQUIRY"))["id"] for _ in range(3)]
    await open_case(env, tenant, other, kind="ENQUIRY")
    first = ok(await env.gql(ONE, {"id": customer}, tenant=tenant))["customer"]["cases"]
    assert [n["id"] for n in first["nodes"]] == ids[:2] and first["pageInfo"]["hasNextPage"]
    after = {"id": customer, "after": first["pageInfo"]["endCursor"]}
    rest = ok(await env.gql(ONE, after, tenant=tenant))["customer"]["cases"]
    assert [n["id"] for n in rest["nodes"]] == ids[2:] and not rest["pageInfo"]["hasNextPage"]

    resolve = {"resolution": "Ok.", "resolutionCode": "answered"}
    ok(await change(env, tenant, {"id": ids[1], "version": 1}, "RESOLVED", **resolve))
    resolved = ok(await env.gql(ONE, {"id": customer, "status": "RESOLVED"}, tenant=tenant))
    assert [n["id"] for n in resolved["customer"]["cases"]["nodes"]] == [ids[1]]
