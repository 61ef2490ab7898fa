"""A note's body is personal data: stored encrypted under the customer's key, masked for
a token without ``pii:contact``, every clear read in the access log, and nothing is
added for an erased customer."""

from __future__ import annotations

import uuid
from typing import Any

from crmkit.testing import Env
from sqlalchemy import Uuid, bindparam, text

ADD = """mutation($id: UUID!, $body: String!) {
  addNote(customerId: $id, body: $body) { id }
}"""
NOTES = "query($id: UUID!) { customer(id: $id) { notes { id body } } }"
READS = """{ auditEvents(filter: {targetType: "Note", action: "read"}) {
  nodes { targetIds fields actorId } } }"""
BODY = "Zweistein asked about a mortgage"


async def add_note(env: Env, tenant: uuid.UUID, customer: str, body: str = BODY) -> dict[str, Any]:
    added = await env.gql(ADD, {"id": customer, "body": body}, tenant=tenant)
    assert "errors" not in added, added
    note: dict[str, Any] = added["data"]["addNote"]
    return note


async def stored_notes(env: Env, tenant: uuid.UUID) -> list[Any]:
    """The tenant's rows of the notes table as the tables' owner reads them (a dump)."""
    query = text("SELECT * FROM notes WHERE tenant_id = :tenant")
    async with env.owner_engine.connect() as conn:
        return list(await conn.execute(query.bindparams(bindparam("tenant", tenant, Uuid))))


async def test_the_body_is_not_stored_in_clear(env: Env) -> None:
    tenant = await env.tenant("notes")
    customer = (await env.create_customer(tenant, familyName="Zweistein"))["id"]
    await add_note(env, tenant, customer)

    stored = await stored_notes(env, tenant)
    assert len(stored) == 1 and BODY not in repr(stored)  # neither as text nor as bytes

    shown = await env.gql(NOTES, {"id": customer}, tenant=tenant)
    assert [n["body"] for n in shown["data"]["customer"]["notes"]] == [BODY]


async def test_the_body_is_masked_without_pii_contact_and_clear_reads_are_logged(env: Env) -> None:
    tenant = await env.tenant("notes")
    customer = (await env.create_customer(tenant, familyName="Zweistein"))["id"]
    note = await add_note(env, tenant, customer)
    audit = env.token(tenant, ["audit:read"])

    masked = await env.gql(
        NOTES, {"id": customer}, token=env.token(tenant, ["customers:read", "notes:read"])
    )
    assert masked["data"]["customer"]["notes"] == [{"id": note["id"], "body": "***"}]
    assert (await env.gql(READS, token=audit))["data"]["auditEvents"]["nodes"] == []

    scopes = ["customers:read", "notes:read", "pii:contact"]
    clear = await env.gql(NOTES, {"id": customer}, token=env.token(tenant, scopes))
    assert clear["data"]["customer"]["notes"] == [{"id": note["id"], "body": BODY}]
    logged = (await env.gql(READS, token=audit))["data"]["auditEvents"]["nodes"]
    assert logged == [{"targetIds": [note["id"]], "fields": ["body"], "actorId": "test"}]


async def test_no_note_for_an_erased_customer(env: Env) -> None:
    tenant = await env.tenant("notes")
    customer = (await env.create_customer(tenant, familyName="Zweistein"))["id"]
    await add_note(env, tenant, customer)
    erased = await env.gql(
        "mutation($id: UUID!) { eraseCustomer(id: $id) { id } }", {"id": customer}, tenant=tenant
    )
    assert "errors" not in erased, erased

    refused = await env.gql(ADD, {"id": customer, "body": "After the erasure."}, tenant=tenant)
    assert refused["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    assert await stored_notes(env, tenant) == []
