"""A page of ``customers`` is read as plain rows (``crmkit.CustomerRow``), not ORM
entities: the same statements, the same walls between tenants, the same data."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from crmkit.core.customers import pages, rights
from crmkit.core.customers.personal import PAGE_KEYS
from crmkit.core.customers.service import CustomerFilter
from crmkit.testing import Env

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
