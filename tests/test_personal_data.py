"""Personal data: encrypted at rest, masked by information class, every clear read
logged, exported and erased on request, activities purged after retention."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import inspect, select, text

from crmkit.clock import utcnow
from crmkit.core.audit.models import AuditEvent
from crmkit.core.customers import service
from crmkit.core.customers.models import Customer
from crmkit.crypto import DecryptionError
from crmkit.tenants.retention import purge_activities
from crmkit.tenants.service import set_retention
from crmkit.testing import Env
from tests import recorder_plugin

ALICE = {
    "givenName": "Alicia",
    "familyName": "Zweistein",
    "email": "alicia.zweistein@example.org",
    "phone": "+41 79 555 12 34",
    "nationalId": "756.1234.5678.97",
    "dateOfBirth": "1984-02-29",
    "postalAddress": "Bahnhofstrasse 1, Zürich",
}
SECRETS = [
    "Alicia",
    "Zweistein",
    "alicia.zweistein",
    "555 12 34",
    "756.1234.5678.97",
    "Bahnhofstrasse",
    "1984-02-29",
]
"""Values that must not appear anywhere in the database (short digit runs would match hashes)."""
READ = "query($id: UUID!) { customer(id: $id) { displayName email phone nationalId dateOfBirth } }"
ANALYST = ["customers:read", "pii:identity"]


async def dump(env: Env) -> str:
    """Every row of every table, as text, the way a stolen backup would read."""
    async with env.owner_engine.connect() as conn:  # the owner: no row hidden from it
        tables = await conn.run_sync(lambda c: inspect(c).get_table_names())
        parts = []
        for table in tables:
            rows = (await conn.execute(text(f"SELECT * FROM {table}"))).all()
            parts.append(repr(rows))
    return "\n".join(parts)


async def reads(env: Env, tenant: uuid.UUID) -> list[AuditEvent]:
    """The tenant's access-log events in the order they were written (their chain's)."""
    async with env.platform.db.tenant_session(tenant) as session:
        return list(
            await session.scalars(
                select(AuditEvent).where(AuditEvent.action == "read").order_by(AuditEvent.seq)
            )
        )


async def test_no_personal_value_is_stored_in_clear_and_exact_search_works(env: Env) -> None:
    tenant = await env.tenant("notes")
    customer = await env.create_customer(tenant, **ALICE)
    raw = await dump(env)
    for secret in SECRETS:
        assert secret not in raw and secret.lower() not in raw.lower(), secret
    page = "query($f: CustomerFilterInput) { customers(filter: $f) { nodes { id } } }"
    for criterion in (
        {"email": "  Alicia.Zweistein@EXAMPLE.org "},
        {"phone": "+41795551234"},
        {"nationalId": "756 1234 5678 97"},
        {"text": "zweistein"},
    ):
        body = await env.gql(page, {"f": criterion}, tenant=tenant)
        assert [n["id"] for n in body["data"]["customers"]["nodes"]] == [customer["id"]], criterion
    other = await env.tenant()
    body = await env.gql(page, {"f": {"email": ALICE["email"]}}, tenant=other)
    assert body["data"]["customers"]["nodes"] == []


async def test_ciphertext_moved_to_another_row_does_not_decrypt(env: Env) -> None:
    tenant = await env.tenant()
    first = await env.create_customer(tenant, **ALICE)
    second = await env.create_customer(tenant, givenName="Bob")
    async with env.platform.tenant_scope(tenant) as scope:
        a = await scope.session.get(Customer, (tenant, uuid.UUID(first["id"])))
        b = await scope.session.get(Customer, (tenant, uuid.UUID(second["id"])))
        assert a is not None and b is not None
        b.__dict__.pop("_personal", None)
        b.pii = a.pii  # as if copied in the database
        with pytest.raises(DecryptionError):
            _ = b.personal
        await scope.session.rollback()


async def test_masking_follows_the_information_class(env: Env) -> None:
    tenant = await env.tenant()
    customer = await env.create_customer(tenant, **ALICE)
    analyst = await env.gql(READ, {"id": customer["id"]}, token=env.token(tenant, ANALYST))
    seen = analyst["data"]["customer"]
    assert seen["displayName"] == "Alicia Zweistein"  # identity is unmasked for this token
    assert seen["email"] == "a***@example.org" and seen["phone"] == "***34"
    manager = await env.gql(READ, {"id": customer["id"]}, tenant=tenant)
    assert manager["data"]["customer"]["email"] == ALICE["email"]
    nobody = await env.gql(READ, {"id": customer["id"]}, token=env.token(tenant, ["customers:read"]))
    assert nobody["data"]["customer"]["displayName"] == "A*** Z***"
    assert nobody["data"]["customer"]["nationalId"] == "***"


async def test_each_request_reading_personal_data_leaves_one_access_record(env: Env) -> None:
    tenant = await env.tenant()
    ids = [
        (await env.create_customer(tenant, givenName=f"R{i}", email=f"r{i}@example.com"))["id"]
        for i in range(3)
    ]
    before = len(await reads(env, tenant))
    page = "{ customers { nodes { id displayName email phone } } }"
    await env.gql(page, tenant=tenant)
    logged = (await reads(env, tenant))[before:]
    assert len(logged) == 1
    assert sorted(logged[0].target_ids) == sorted(ids)
    assert logged[0].fields == ["display_name", "email"]  # phone was null: nothing disclosed
    assert (logged[0].actor_type, logged[0].actor_id) == ("user", "test")
    await env.gql(page, token=env.token(tenant, ["customers:read"]))  # all masked
    await env.gql("{ customers { nodes { id tags } } }", tenant=tenant)  # no personal field
    assert len(await reads(env, tenant)) == before + 1


async def test_filtering_by_a_personal_value_needs_its_scope_and_is_logged(env: Env) -> None:
    """A filter confirms the value it matches: it needs the scope that would show the
    field unmasked, and a match is a disclosure, logged like a read."""
    tenant = await env.tenant()
    customer = await env.create_customer(tenant, **ALICE)
    page = "query($f: CustomerFilterInput) { customers(filter: $f) { nodes { id } } }"
    refused = {
        "email": (ALICE["email"], "pii:contact"),
        "phone": (ALICE["phone"], "pii:contact"),
        "nationalId": (ALICE["nationalId"], "pii:identity"),
        "text": ("zweistein", "pii:identity"),
    }
    before = len(await reads(env, tenant))
    for name, (value, scope) in refused.items():
        body = await env.gql(page, {"f": {name: value}}, token=env.token(tenant, ["customers:read"]))
        error = body["errors"][0]
        assert error["extensions"]["code"] == "FORBIDDEN", body
        assert error["extensions"]["field"] == name and scope in error["message"]
    assert len(await reads(env, tenant)) == before  # nothing was confirmed, nothing logged

    allowed = await env.gql(page, {"f": {"phone": ALICE["phone"]}}, tenant=tenant)
    assert [n["id"] for n in allowed["data"]["customers"]["nodes"]] == [customer["id"]]
    logged = (await reads(env, tenant))[before:]
    assert len(logged) == 1 and logged[0].target_ids == [customer["id"]] and logged[0].fields == ["phone"]


async def test_export_gathers_core_and_plugin_data(env: Env) -> None:
    tenant = await env.tenant("notes", "recorder")
    customer = await env.create_customer(tenant, **ALICE)
    await env.gql(
        'mutation($id: UUID!) { addNote(customerId: $id, body: "Asked about mortgages") { id } }',
        {"id": customer["id"]},
        tenant=tenant,
    )
    await env.gql(
        "mutation($id: UUID!) { recordActivity(input: {customerId: $id, kind: LOGIN, channel: APP}) { id } }",
        {"id": customer["id"]},
        tenant=tenant,
    )
    body = await env.gql(
        "query($id: UUID!) { exportCustomerData(id: $id) }", {"id": customer["id"]}, tenant=tenant
    )
    export = body["data"]["exportCustomerData"]
    assert export["customer"]["email"] == ALICE["email"]
    assert [a["kind"] for a in export["activities"]] == ["login"]
    assert export["plugins"]["notes"][0]["body"] == "Asked about mortgages"
    assert "recorder" in export["plugins"]
    async with env.platform.db.tenant_session(tenant) as session:
        actions = list(await session.scalars(select(AuditEvent.action)))
    assert "customers.export" in actions


async def test_erasure_removes_personal_data_everywhere_and_keeps_the_chain(env: Env) -> None:
    tenant = await env.tenant("notes", "recorder")
    customer = await env.create_customer(tenant, **ALICE)
    await env.gql(
        'mutation($id: UUID!) { addNote(customerId: $id, body: "Zweistein prefers calls") { id } }',
        {"id": customer["id"]},
        tenant=tenant,
    )
    forbidden = await env.gql(
        "mutation($id: UUID!) { eraseCustomer(id: $id) { erasedAt } }",
        {"id": customer["id"]},
        token=env.token(tenant, ["customers:read", "customers:write"]),
    )
    assert forbidden["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    erased = await env.gql(
        "mutation($id: UUID!) { eraseCustomer(id: $id) { id erasedAt } }",
        {"id": customer["id"]},
        tenant=tenant,
    )
    assert erased["data"]["eraseCustomer"]["erasedAt"]
    await env.queue.drain()

    gone = await env.gql(READ, {"id": customer["id"]}, tenant=tenant)
    assert gone["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    assert recorder_plugin.calls(tenant, "erase_customer") == [customer["id"]]
    assert recorder_plugin.calls(tenant, "customer_erased") == [customer["id"]]
    async with env.platform.db.tenant_session(tenant) as session:
        row = await session.get(Customer, (tenant, uuid.UUID(customer["id"])))
        assert row is not None and row.key is None and row.pii is None and row.erased_at
        actions = list(await session.scalars(select(AuditEvent.action)))
    assert "customers.erase" in actions and "notes.delete" in actions  # the plugin's bulk delete too
    raw = await dump(env)
    assert "Zweistein prefers calls" not in raw
    result = await env.gql('{ customers(filter: {text: "zweistein"}) { nodes { id } } }', tenant=tenant)
    assert result["data"]["customers"]["nodes"] == []
    from crmkit.core.audit.chain import verify

    assert (await verify(env.platform.db, tenant, env.platform.audit_signer)).ok


async def test_retention_purges_old_activities(env: Env) -> None:
    tenant = await env.tenant()
    customer = await env.create_customer(tenant, givenName="Old")
    async with env.platform.tenant_scope(tenant) as scope:
        for days in (400, 10):
            await service.record_activity(
                scope.ctx,
                customer_id=uuid.UUID(customer["id"]),
                kind=service.ActivityKind.LOGIN,
                channel=service.Channel.APP,
                occurred_at=utcnow() - timedelta(days=days),
            )
    await set_retention(env.platform.db, str(tenant), 365)
    async with env.platform.tenant_scope(tenant) as scope:
        assert await purge_activities(scope.ctx) == 1
    body = await env.gql(
        "query($id: UUID!) { activities(customerId: $id) { nodes { id } } }",
        {"id": customer["id"]},
        tenant=tenant,
    )
    assert len(body["data"]["activities"]["nodes"]) == 1
    async with env.platform.db.tenant_session(tenant) as session:
        assert "activities.purge" in list(await session.scalars(select(AuditEvent.action)))
