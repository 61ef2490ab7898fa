"""A page of ``customers`` is read as plain rows (``crmkit.CustomerRow``), not ORM
entities: the same statements, the same walls between tenants, the same data. So are
customers by id (``crmkit.customer_rows``), and ``crmkit.customer_ids`` pages ids
alone."""

from __future__ import annotations

import uuid

from sqlalchemy import select

import crmkit
from crmkit.core.customers import pages, rights
from crmkit.core.customers.personal import PAGE_KEYS
from crmkit.core.customers.service import CustomerFilter
from crmkit.testing import Env, StatementCounter

PAGE = "{ customers(first: 10) { nodes { id displayName email tags notes { body } } } }"
ADD_NOTE = "mutation($id: UUID!, $body: String!) { addNote(customerId: $id, body: $body) { id } }"


async def test_a_page_shows_the_tenants_own_customers_with_their_tags_and_personal_data(env: Env) -> None:
    mine, theirs = await env.tenant("notes"), await env.tenant("notes")
    ada = await env.create_customer(mine, givenName="Ada", email="ada@example.com", tags=["vip", "b2b"])
    await env.create_customer(theirs, givenName="Eve", email="eve@example.com", tags=["vip"])
    await env.gql(ADD_NOTE, {"id": ada["id"], "body": "call Monday"}, tenant=mine)
    body = await env.gql(PAGE, tenant=mine)
    assert body["data"]["customers"]["nodes"] == [
        {
            "id": ada["id"],
            "displayName": "Ada",
            "email": "ada@example.com",
            "tags": ["b2b", "vip"],
            "notes": [{"body": "call Monday"}],
        }
    ]


async def test_an_erasure_after_a_page_in_the_same_transaction_opens_nothing_more(env: Env) -> None:
    """The page's data keys serve the customers' other rows in the transaction (no
    second query for them), until the customer is erased."""
    from crmkit_notes.models import Note

    tenant = await env.tenant("notes")
    ada = await env.create_customer(tenant, givenName="Ada")
    await env.gql(ADD_NOTE, {"id": ada["id"], "body": "call Monday"}, tenant=tenant)
    customer_id = uuid.UUID(ada["id"])
    async with env.platform.tenant_scope(tenant) as scope:
        ctx = scope.hooks.ctx
        [row] = await pages.customer_page(ctx, CustomerFilter(), after=None, limit=10)
        assert row.display_name == "Ada"
        assert customer_id in ctx.session.info[PAGE_KEYS]
        await rights.erase_customer(ctx, customer_id)
        assert customer_id not in ctx.session.info[PAGE_KEYS]
        assert (await ctx.session.scalars(select(Note.body))).all() == []  # the plugin erased them


async def test_rows_by_id_are_the_tenants_own_living_customers(
    env: Env, sql_statements: StatementCounter
) -> None:
    """``crmkit.customer_rows`` reads what ``crmkit.get_customers`` does, as rows, in
    the same two statements (customers with their data keys, then their tags)."""
    mine, theirs = await env.tenant(), await env.tenant()
    ada = await env.create_customer(mine, givenName="Ada", phone="+447400123456", tags=["vip"])
    bob = await env.create_customer(mine, givenName="Bob")
    eve = await env.create_customer(theirs, givenName="Eve")
    ids = [uuid.UUID(c["id"]) for c in (ada, bob, eve)] + [uuid.uuid4()]
    async with env.platform.tenant_scope(mine) as scope:
        await rights.erase_customer(scope.hooks.ctx, ids[1])
    await env.drain()  # the erasure's event handled: no job's statement counted below
    async with env.platform.tenant_scope(mine) as scope:
        expected = await crmkit.get_customers(scope.hooks.ctx, ids)
        sql_statements.clear()
        rows = await crmkit.customer_rows(scope.hooks.ctx, ids)
        assert sql_statements.count == 2
        assert list(rows) == list(expected) == [ids[0]]  # Bob erased, Eve another tenant's, one unknown
        row = rows[ids[0]]
        assert (row.display_name, row.personal.phone, row.tag_names) == ("Ada", "+447400123456", ["vip"])
        assert row.personal == expected[ids[0]].personal


async def test_ids_are_those_of_list_customers_page_by_page(env: Env) -> None:
    mine, theirs = await env.tenant(), await env.tenant()
    for name in ("Ada", "Bob", "Cy"):
        await env.create_customer(mine, givenName=name, tags=["news"])
    await env.create_customer(mine, givenName="Dee")
    await env.create_customer(theirs, givenName="Eve", tags=["news"])
    wanted = CustomerFilter(tag="news")
    async with env.platform.tenant_scope(mine) as scope:
        ctx = scope.hooks.ctx
        listed = [c.id for c in await crmkit.list_customers(ctx, wanted, after=None, limit=10)]
        assert len(listed) == 3
        first = await crmkit.customer_ids(ctx, wanted, after=None, limit=2)
        rest = await crmkit.customer_ids(ctx, wanted, after=first[-1], limit=2)
        assert first + rest == listed


async def test_a_pages_statement_is_built_once_per_shape_of_filter(env: Env) -> None:
    """Building a statement and its cache key cost more than running it: pages of any
    tenant with the same kind of filter share one statement, its values sent apart."""
    mine, theirs = await env.tenant(), await env.tenant()
    for tenant in (mine, theirs):
        await env.create_customer(tenant, givenName="Ada", tags=["vip"])
    pages._statement.cache_clear()
    for tenant in (mine, theirs):
        for tag in ("vip", "gold"):
            async with env.platform.tenant_scope(tenant) as scope:
                rows = await pages.customer_page(scope.ctx, CustomerFilter(tag=tag), after=None, limit=5)
            assert len(rows) == (tag == "vip")
    assert (pages._statement.cache_info().misses, pages._statement.cache_info().hits) == (1, 3)
