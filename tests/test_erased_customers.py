"""An erased customer is a tombstone: every write path, the core's and a plugin's, reads it
as not found and writes nothing, so no personal data can reach a customer whose
data can no longer be exported or erased."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select

from crmkit.core.audit.models import AuditEvent
from crmkit.core.consent.models import ConsentRecord
from crmkit.core.customers.models import Activity, CustomerTag
from crmkit.testing import Env

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
