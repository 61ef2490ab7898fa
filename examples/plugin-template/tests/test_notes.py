"""The plugin on a running crmkit platform (the ``env`` fixture of ``crmkit.testing``),
on SQLite and on PostgreSQL, with the plugin installed as it is in production.

Each test makes tenants of its own: ``env.tenant("notes")`` enables the plugin,
``env.tenant()`` leaves it off.
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

import crmkit
from crmkit.testing import Env, StatementCounter
from sqlalchemy import func, select, text

from crmkit_notes.jobs import SYSTEM_AUTHOR
from crmkit_notes.models import Note

ADD = """mutation($id: UUID!, $body: String!) {
  addNote(customerId: $id, body: $body) { id body author }
}"""
ARCHIVE = "mutation($id: UUID!) { archiveCustomer(id: $id) { id } }"
NOTES = "query($id: UUID!) { customer(id: $id) { notes { body author } } }"
FIELDS = '{ __type(name: "%s") { fields { name } } }'


async def field_names(env: Env, tenant: uuid.UUID, type_name: str) -> set[str]:
    body = await env.gql(FIELDS % type_name, tenant=tenant)
    return {field["name"] for field in body["data"]["__type"]["fields"]}


async def notes_of(env: Env, tenant: uuid.UUID, customer: dict[str, Any]) -> list[dict[str, Any]]:
    body = await env.gql(NOTES, {"id": customer["id"]}, tenant=tenant)
    notes: list[dict[str, Any]] = body["data"]["customer"]["notes"]
    return notes


async def test_the_schema_has_notes_only_where_the_plugin_is_enabled(env: Env) -> None:
    enabled, other = await env.tenant("notes"), await env.tenant()
    assert "notes" in await field_names(env, enabled, "Customer")
    assert "addNote" in await field_names(env, enabled, "Mutation")
    assert "notes" not in await field_names(env, other, "Customer")
    assert "addNote" not in await field_names(env, other, "Mutation")


async def test_notes_stay_in_their_tenant(env: Env) -> None:
    a, b = await env.tenant("notes"), await env.tenant()
    ann = await env.create_customer(a, givenName="Ann")
    bob = await env.create_customer(b, givenName="Bob")

    added = await env.gql(ADD, {"id": ann["id"], "body": "Prefers e-mail."}, tenant=a)
    assert added["data"]["addNote"]["author"] == "user:test"
    refused = await env.gql(ADD, {"id": bob["id"], "body": "x"}, tenant=b)
    assert refused["errors"][0]["extensions"]["code"] == "PLUGIN_NOT_ENABLED"
    foreign = await env.gql(ADD, {"id": bob["id"], "body": "x"}, tenant=a)
    assert foreign["errors"][0]["extensions"]["code"] == "NOT_FOUND"

    for tenant, customer in ((a, ann), (b, bob)):
        await env.gql(ARCHIVE, {"id": customer["id"]}, tenant=tenant)
    await env.drain()

    assert [n["body"] for n in await notes_of(env, a, ann)] == [
        "Prefers e-mail.",
        "Customer archived.",
    ]
    async with env.platform.db.tenant_session(b) as session:  # B's events never reached it
        assert await session.scalar(select(func.count()).select_from(Note)) == 0


async def test_each_field_needs_its_scope(env: Env) -> None:
    tenant = await env.tenant("notes")
    customer = await env.create_customer(tenant, givenName="Di")
    denied = await env.gql(
        ADD, {"id": customer["id"], "body": "hello"}, tenant=tenant, scopes=["notes:read"]
    )
    assert denied["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    unread = await env.gql(NOTES, {"id": customer["id"]}, tenant=tenant, scopes=["customers:read"])
    assert unread["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert await notes_of(env, tenant, customer) == []


async def test_a_bad_body_is_refused_and_nothing_is_written(env: Env) -> None:
    tenant = await env.tenant("notes", notes={"max_note_length": 10})
    customer = await env.create_customer(tenant, givenName="Cy")
    for body in ("far too long a note", "   "):
        answer = await env.gql(ADD, {"id": customer["id"], "body": body}, tenant=tenant)
        error = answer["errors"][0]
        assert (error["extensions"]["code"], error["extensions"]["field"]) == (
            "BAD_USER_INPUT",
            "body",
        )
    assert await notes_of(env, tenant, customer) == []


async def test_notes_of_a_page_cost_the_same_statements_for_5_and_50_customers(
    env: Env, sql_statements: StatementCounter
) -> None:
    page = "{ customers(first: 50) { nodes { id notes { body } } } }"
    counts = {}
    for size in (5, 50):
        tenant = await env.tenant("notes")
        for i in range(size):
            customer = await env.create_customer(tenant, givenName=f"N{i}")
            await env.gql(ADD, {"id": customer["id"], "body": f"note {i}"}, tenant=tenant)
        token = env.token(tenant)
        await env.gql(page, token=token)  # warm-up: connection set-up statements
        sql_statements.clear()
        body = await env.gql(page, token=token)
        nodes = body["data"]["customers"]["nodes"]
        assert len(nodes) == size and all(len(node["notes"]) == 1 for node in nodes)
        counts[size] = sql_statements.count
    assert counts[5] == counts[50], counts


async def test_the_same_event_delivered_twice_adds_one_note(env: Env) -> None:
    tenant = await env.tenant("notes")
    customer = await env.create_customer(tenant, givenName="Eve")
    await env.gql(ARCHIVE, {"id": customer["id"]}, tenant=tenant)
    await env.drain()
    [archived] = await env.events(tenant, "customer_archived")

    await env.deliver(tenant, "notes", archived)  # delivery is at least once
    await env.drain()
    assert [n["author"] for n in await notes_of(env, tenant, customer)] == [SYSTEM_AUTHOR]

    # the handler did run again: an event of another id adds its note
    await env.deliver(tenant, "notes", dataclasses.replace(archived, id=crmkit.uuid7()))
    await env.drain()
    assert len(await notes_of(env, tenant, customer)) == 2


async def test_export_holds_the_notes_and_erasure_leaves_no_trace(env: Env) -> None:
    tenant = await env.tenant("notes")
    customer = await env.create_customer(tenant, givenName="Fay")
    secret = "Fay asked about a mortgage in March."
    await env.gql(ADD, {"id": customer["id"], "body": secret}, tenant=tenant)

    exported = await env.gql(
        "query($id: UUID!) { exportCustomerData(id: $id) }", {"id": customer["id"]}, tenant=tenant
    )
    assert [n["body"] for n in exported["data"]["exportCustomerData"]["plugins"]["notes"]] == [
        secret
    ]

    async def raw_notes_table() -> str:
        """The notes table as a stolen backup shows it (the owner: no row hidden)."""
        async with env.owner_engine.connect() as conn:
            return repr((await conn.execute(text("SELECT * FROM notes"))).all()).replace("-", "")

    customer_key = customer["id"].replace("-", "")
    assert customer_key in await raw_notes_table()  # the scan sees the customer's note
    erased = await env.gql(
        "mutation($id: UUID!) { eraseCustomer(id: $id) { erasedAt } }",
        {"id": customer["id"]},
        tenant=tenant,
    )
    assert erased["data"]["eraseCustomer"]["erasedAt"]
    await env.drain()
    raw = await raw_notes_table()
    assert customer_key not in raw and secret.replace("-", "") not in raw
