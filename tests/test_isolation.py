"""Tenant B never sees tenant A's customers or activities: by id, filter or cursor."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from crmkit.core.customers.models import Customer
from crmkit.db import CrossTenantWrite, UnscopedQuery
from crmkit.testing import Env
from tests.test_customers_graphql import PAGE


async def test_other_tenants_rows_read_as_not_found(env: Env) -> None:
    a, b = await env.tenant(), await env.tenant()
    mine = await env.create_customer(a, givenName="Alice", tags=["vip"])
    await env.gql(
        "mutation($id: UUID!) { recordActivity(input: {customerId: $id, kind: LOGIN, channel: APP}) { id } }",
        {"id": mine["id"]},
        tenant=a,
    )
    attempts = {
        "read": ("query($id: UUID!) { customer(id: $id) { displayName } }", {"id": mine["id"]}),
        "update": (
            'mutation($id: UUID!) { updateCustomer(id: $id, input: {givenName: "Mallory"}) { id } }',
            {"id": mine["id"]},
        ),
        "archive": ("mutation($id: UUID!) { archiveCustomer(id: $id) { id } }", {"id": mine["id"]}),
        "activities": (
            "query($id: UUID!) { activities(customerId: $id) { nodes { id } } }",
            {"id": mine["id"]},
        ),
        "record": (
            "mutation($id: UUID!) { recordActivity(input: {customerId: $id, kind: LOGIN, channel: APP}) { id } }",
            {"id": mine["id"]},
        ),
    }
    for name, (query, variables) in attempts.items():
        body = await env.gql(query, variables, tenant=b)
        assert body["data"] is None, name
        assert body["errors"][0]["extensions"]["code"] == "NOT_FOUND", (name, body)
        assert "Alice" not in str(body)

    # by filter and through A's own cursor, B only ever sees B's (empty) list
    cursor = (await env.gql(PAGE, {"first": 1}, tenant=a))["data"]["customers"]["edges"][0]["cursor"]
    for variables in (
        {"filter": {"tag": "vip"}},
        {"filter": {"text": "alice"}},
        {"after": cursor},
        {},
    ):
        body = await env.gql(PAGE, variables, tenant=b)
        assert body["data"]["customers"]["nodes"] == [], variables

    # A's customer is untouched
    got = await env.gql(
        "query($id: UUID!) { customer(id: $id) { displayName archivedAt } }",
        {"id": mine["id"]},
        tenant=a,
    )
    assert got["data"]["customer"] == {"displayName": "Alice", "archivedAt": None}


async def test_tenant_session_filters_queries_and_refuses_foreign_writes(env: Env) -> None:
    a, b = await env.tenant(), await env.tenant()
    await env.create_customer(a, givenName="Ann")
    async with env.platform.db.tenant_session(b) as session:
        assert (await session.scalars(select(Customer))).all() == []
    with pytest.raises(CrossTenantWrite):
        async with env.platform.db.tenant_session(b) as session:
            session.add(Customer(tenant_id=a, kind="person", external_ref="intruder"))
    async with env.platform.db.tenant_session(a) as session_a:
        row = (await session_a.scalars(select(Customer))).one()
    with pytest.raises(CrossTenantWrite):
        async with env.platform.db.tenant_session(b) as session:
            assert await session.get(Customer, (a, row.id)) is None
            merged = await session.merge(row)  # B cannot load A's row, so this is A's
            merged.relationship_manager = "Changed"
    async with env.platform.db.tenant_session(a) as session:
        assert [c.external_ref for c in (await session.scalars(select(Customer))).all()] == [None]


async def test_unscoped_session_cannot_query_tenant_tables(env: Env) -> None:
    session = env.platform.db._sessions()
    async with session:
        with pytest.raises(UnscopedQuery):
            await session.scalars(select(Customer))


async def test_unknown_tenant_in_token_is_unauthenticated(env: Env) -> None:
    body = await env.gql(PAGE, token=env.token(uuid.uuid4()), status=401)
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
