"""The template plugin, tested on crmkit's own test platform (tests/conftest.py):
enabled for tenant A and not B, A sees ``notes`` and B's events never reach it."""

from __future__ import annotations

from sqlalchemy import func, select
from tests.fixtures import Env
from tests.test_customers_graphql import create

from crmkit_notes.models import Note

ADD = """mutation($id: UUID!, $body: String!) {
  addNote(customerId: $id, body: $body) { id body author }
}"""
ARCHIVE = "mutation($id: UUID!) { archiveCustomer(id: $id) { id } }"


async def test_notes_for_the_enabling_tenant_only(env: Env) -> None:
    a, b = await env.tenant("notes"), await env.tenant()
    in_a, in_b = await create(env, a, givenName="Ann"), await create(env, b, givenName="Bob")

    added = await env.gql(ADD, {"id": in_a["id"], "body": "Prefers e-mail."}, tenant=a)
    assert added["data"]["addNote"]["author"] == "user:test"
    refused = await env.gql(ADD, {"id": in_b["id"], "body": "x"}, tenant=b)
    assert refused["errors"][0]["extensions"]["code"] == "PLUGIN_NOT_ENABLED"
    foreign = await env.gql(ADD, {"id": in_b["id"], "body": "x"}, tenant=a)
    assert foreign["errors"][0]["extensions"]["code"] == "NOT_FOUND"

    for tenant, customer in ((a, in_a), (b, in_b)):
        await env.gql(ARCHIVE, {"id": customer["id"]}, tenant=tenant)
    await env.queue.drain()

    page = await env.gql(
        "{ customers(filter: {includeArchived: true}) { nodes { notes { body } } } }", tenant=a
    )
    bodies = [n["body"] for n in page["data"]["customers"]["nodes"][0]["notes"]]
    assert bodies == ["Prefers e-mail.", "Customer archived."]
    async with env.platform.db.tenant_session(b) as session:
        assert await session.scalar(select(func.count()).select_from(Note)) == 0


async def test_settings_bound_the_note_length(env: Env) -> None:
    tenant = await env.tenant("notes", notes={"max_note_length": 10})
    customer = await create(env, tenant, givenName="Cy")
    body = await env.gql(ADD, {"id": customer["id"], "body": "far too long a note"}, tenant=tenant)
    error = body["errors"][0]
    assert (
        error["extensions"]["code"] == "BAD_USER_INPUT" and error["extensions"]["field"] == "body"
    )
    async with env.platform.db.tenant_session(tenant) as session:
        assert await session.scalar(select(func.count()).select_from(Note)) == 0
