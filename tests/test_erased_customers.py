"""An erased customer is a tombstone: every write path, the core's and a plugin's, reads it
as not found and writes nothing, so no personal data can reach a customer whose
data can no longer be exported or erased; reads of many customers at once leave it out."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select

import crmkit
from crmkit.core.audit.models import AuditEvent
from crmkit.core.consent.models import ConsentRecord
from crmkit.core.customers.models import Activity, CustomerTag
from crmkit.testing import Env, StatementCounter

ERASE = "mutation($id: UUID!) { eraseCustomer(id: $id) { erasedAt } }"
WRITES = {
    "recordConsent": """mutation($id: UUID!) { recordConsent(input: {customerId: $id,
        purpose: "marketing", channel: EMAIL, state: GRANTED, source: WEB,
        policyVersion: "2025-01", legalBasis: CONSENT}) { id } }""",
    "recordActivity": """mutation($id: UUID!) {
        recordActivity(input: {customerId: $id, kind: LOGIN, channel: APP}) { id } }""",
    "updateCustomer": """mutation($id: UUID!) {
        updateCustomer(id: $id, input: {givenName: "Eve", tags: ["vip"]}) { id } }""",
    "archiveCustomer": "mutation($id: UUID!) { archiveCustomer(id: $id) { id } }",
    "eraseCustomer": ERASE,
    "exportCustomerData": "query($id: UUID!) { exportCustomerData(id: $id) }",
    "addNote": 'mutation($id: UUID!) { addNote(customerId: $id, body: "Prefers calls.") { id } }',
}


async def rows(env: Env, tenant: uuid.UUID) -> dict[str, int]:
    """How many rows the tenant holds per table a write above could add to."""
    from crmkit_notes.models import Note

    async with env.platform.db.tenant_session(tenant) as session:
        return {
            model.__name__: await session.scalar(select(func.count()).select_from(model)) or 0
            for model in (ConsentRecord, Activity, CustomerTag, Note, AuditEvent)
        }


@pytest.mark.parametrize("operation", sorted(WRITES))
async def test_every_operation_on_an_erased_customer_is_not_found(env: Env, operation: str) -> None:
    tenant = await env.tenant("notes")
    customer = (await env.create_customer(tenant, givenName="Ida"))["id"]
    assert "errors" not in await env.gql(ERASE, {"id": customer}, tenant=tenant)
    await env.drain()
    before = await rows(env, tenant)

    body = await env.gql(WRITES[operation], {"id": customer}, tenant=tenant)

    assert body["errors"][0]["extensions"]["code"] == "NOT_FOUND", body
    assert await rows(env, tenant) == before


async def test_get_customers_leaves_erased_ones_out_and_loads_the_rest_at_once(
    env: Env, sql_statements: StatementCounter
) -> None:
    tenant = await env.tenant()
    ids = [uuid.UUID((await env.create_customer(tenant, givenName=f"G{i}"))["id"]) for i in range(3)]
    erased = ids[2]
    body = await env.gql(ERASE, {"id": str(erased)}, tenant=tenant)
    assert "errors" not in body, body
    other = await env.tenant()
    stranger = uuid.UUID((await env.create_customer(other, givenName="S"))["id"])
    await env.drain()  # the erasure's event deliveries query nothing meanwhile
    async with env.platform.tenant_scope(tenant) as scope:
        assert await crmkit.get_customers(scope.ctx, [stranger]) == {}  # another tenant's
        sql_statements.clear()
        found = await crmkit.get_customers(scope.ctx, [*ids, stranger, uuid.uuid4()])
        names = {i: c.personal.given_name for i, c in found.items()}
        assert sql_statements.count == 2  # the customers with their data keys, their tags
        assert await crmkit.get_customers(scope.ctx, []) == {}
    assert names == {ids[0]: "G0", ids[1]: "G1"}


async def test_an_erased_customers_reference_can_neither_create_nor_import_them_again(env: Env) -> None:
    """The bank's record of an erased customer, sent again by a retried create or a re-run
    import, is refused: the erasure kept the reference as a blind index only."""
    from crmkit.core.customers.models import Customer
    from crmkit.core.imports.models import ImportKind
    from crmkit.core.imports.service import import_rows

    tenant = await env.tenant()
    create = "mutation($input: CreateCustomerInput!) { createCustomer(input: $input) { id } }"
    ida = {"kind": "PERSON", "givenName": "Ida", "externalRef": "core-17"}
    customer = (await env.gql(create, {"input": ida}, tenant=tenant))["data"]["createCustomer"]["id"]
    assert "errors" not in await env.gql(ERASE, {"id": customer}, tenant=tenant)
    await env.drain()

    again = await env.gql(create, {"input": ida}, tenant=tenant)
    assert again["errors"][0]["extensions"]["code"] == "CONFLICT", again
    assert again["errors"][0]["extensions"]["field"] == "externalRef"
    assert "erased" in again["errors"][0]["message"]

    rows = [
        (1, {"externalRef": "core-17", "givenName": "Ida"}),
        (2, {"externalRef": "core-18", "givenName": "Jo"}),
    ]
    for _ in range(2):  # a re-run refuses it again
        async with env.platform.tenant_scope(tenant) as scope:
            result = await import_rows(scope.ctx, ImportKind.CUSTOMERS, rows, captured_by="operator:test")
        assert [(r.line, r.field) for r in result.refused] == [(1, "externalRef")]
        assert "erased" in result.refused[0].reason
    async with env.platform.db.tenant_session(tenant) as session:
        stored = (await session.execute(select(Customer.external_ref, Customer.erased_ref_index))).all()
    assert len(stored) == 2  # the erased one and core-18, imported once
    erased = [index for ref, index in stored if ref is None]
    assert len(erased) == 1 and erased[0] is not None and b"core-17" not in erased[0]
