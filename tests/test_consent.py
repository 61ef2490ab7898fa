"""The consent ledger: recording, the derived current state, ``allows``, append-only
storage enforced by the database, events, purposes declared by plugins, filtering."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import delete, select, text, update
from sqlalchemy.exc import DBAPIError, IntegrityError

import crmkit
from crmkit.clock import utcnow
from crmkit.core.consent.models import AppendOnly, ConsentRecord
from crmkit.core.consent.service import consent_state_criterion
from crmkit.core.customers.models import Customer
from crmkit.testing import Env, StatementCounter
from tests import recorder_plugin

RECORD = """
mutation($input: RecordConsentInput!) {
  recordConsent(input: $input) { id customerId purpose channel state source legalBasis
                                 policyVersion capturedBy capturedAt expiresAt expired }
}"""
CURRENT = """
query($id: UUID!) { customer(id: $id) { consents { purpose channel state policyVersion } } }"""
HISTORY = """
query($id: UUID!, $first: Int, $after: String) {
  consentHistory(customerId: $id, first: $first, after: $after) {
    nodes { purpose channel state } pageInfo { hasNextPage endCursor }
  }
}"""


def decision(customer_id: str, **overrides: Any) -> dict[str, Any]:
    return {
        "customerId": customer_id,
        "purpose": "marketing",
        "channel": "EMAIL",
        "state": "GRANTED",
        "source": "WEB",
        "policyVersion": "2025-01",
        "legalBasis": "CONSENT",
        **overrides,
    }


async def record(env: Env, tenant: uuid.UUID, customer_id: str, **overrides: Any) -> Any:
    body = await env.gql(RECORD, {"input": decision(customer_id, **overrides)}, tenant=tenant)
    assert "errors" not in body, body
    return body["data"]["recordConsent"]


async def record_in(env: Env, tenant: uuid.UUID, customer_id: uuid.UUID, state: str, **kw: Any) -> None:
    """Record through the plugin-facing API, in its own committed transaction."""
    async with env.platform.tenant_scope(tenant) as scope:
        await crmkit.record_consent(
            scope.ctx,
            customer_id=customer_id,
            purpose=kw.pop("purpose", "marketing"),
            channel=kw.pop("channel", "email"),
            state=state,
            source="app",
            policy_version="v1",
            legal_basis="consent",
            captured_by="app:test",
            **kw,
        )


async def allows(env: Env, tenant: uuid.UUID, customer_id: uuid.UUID, **kw: Any) -> bool:
    async with env.platform.db.tenant_session(tenant) as session:
        return await crmkit.consent_allows(session, customer_id, "marketing", "email", **kw)


async def test_record_then_read_current_state_and_history(env: Env) -> None:
    tenant = await env.tenant()
    customer = (await env.create_customer(tenant, givenName="Ada"))["id"]
    first = await record(env, tenant, customer)
    assert first["capturedBy"] == "user:test"
    assert first["expired"] is False
    await record(env, tenant, customer, channel="SMS", state="DENIED", source="BRANCH")
    await record(env, tenant, customer, state="WITHDRAWN", policyVersion="2025-02")
    await record(env, tenant, customer, purpose="profiling", legalBasis="LEGITIMATE_INTEREST")

    current = await env.gql(CURRENT, {"id": customer}, tenant=tenant)
    assert current["data"]["customer"]["consents"] == [
        {"purpose": "marketing", "channel": "EMAIL", "state": "WITHDRAWN", "policyVersion": "2025-02"},
        {"purpose": "marketing", "channel": "SMS", "state": "DENIED", "policyVersion": "2025-01"},
        {"purpose": "profiling", "channel": "EMAIL", "state": "GRANTED", "policyVersion": "2025-01"},
    ]

    page = (await env.gql(HISTORY, {"id": customer, "first": 3}, tenant=tenant))["data"]["consentHistory"]
    assert [(n["purpose"], n["channel"], n["state"]) for n in page["nodes"]] == [
        ("profiling", "EMAIL", "GRANTED"),
        ("marketing", "EMAIL", "WITHDRAWN"),
        ("marketing", "SMS", "DENIED"),
    ]
    assert page["pageInfo"]["hasNextPage"] is True
    rest = await env.gql(HISTORY, {"id": customer, "after": page["pageInfo"]["endCursor"]}, tenant=tenant)
    assert rest["data"]["consentHistory"]["nodes"] == [
        {"purpose": "marketing", "channel": "EMAIL", "state": "GRANTED"}
    ]

    async with env.platform.tenant_scope(tenant) as scope:
        from crmkit.core.consent import service

        rows = await service.current_consents(scope.session, uuid.UUID(customer))
    assert [(r.purpose, r.channel.value, r.state.value) for r in rows] == [
        ("marketing", "email", "withdrawn"),
        ("marketing", "sms", "denied"),
        ("profiling", "email", "granted"),
    ]


async def test_allows_answers_from_the_latest_record_and_honours_expiry(env: Env) -> None:
    tenant = await env.tenant()
    customer = uuid.UUID((await env.create_customer(tenant, givenName="Bo"))["id"])
    assert await allows(env, tenant, customer) is False  # never asked: no consent

    await record_in(env, tenant, customer, "granted", expires_at=utcnow() + timedelta(hours=1))
    assert await allows(env, tenant, customer) is True
    assert await allows(env, tenant, customer, at=utcnow() + timedelta(minutes=30)) is True
    assert await allows(env, tenant, customer, at=utcnow() + timedelta(hours=2)) is False

    await record_in(env, tenant, customer, "withdrawn")
    assert await allows(env, tenant, customer) is False
    await record_in(env, tenant, customer, "granted")  # no expiry
    assert await allows(env, tenant, customer, at=utcnow() + timedelta(days=3650)) is True

    async with env.platform.db.tenant_session(tenant) as session:
        # per channel and per purpose; an unknown purpose is simply not allowed
        assert await crmkit.consent_allows(session, customer, "marketing", "sms") is False
        assert await crmkit.consent_allows(session, customer, "profiling", "email") is False
        assert await crmkit.consent_allows(session, customer, "no_such_purpose", "email") is False
        assert await crmkit.consent_allows(session, uuid.uuid4(), "marketing", "email") is False
    other = await env.tenant()
    assert await allows(env, other, customer) is False  # another tenant never sees it


async def test_allows_many_answers_as_allows_for_each_in_one_query(
    env: Env, sql_statements: StatementCounter
) -> None:
    tenant = await env.tenant()
    ids = [uuid.UUID((await env.create_customer(tenant, givenName=f"M{i}"))["id"]) for i in range(6)]
    granted, for_an_hour, withdrawn, other_channel, for_a_minute, never = ids
    await record_in(env, tenant, granted, "granted")
    await record_in(env, tenant, for_an_hour, "granted", expires_at=utcnow() + timedelta(hours=1))
    await record_in(env, tenant, withdrawn, "granted")
    await record_in(env, tenant, withdrawn, "withdrawn")
    await record_in(env, tenant, other_channel, "granted", channel="sms")
    await record_in(env, tenant, for_a_minute, "granted", expires_at=utcnow() + timedelta(minutes=1))
    other_tenant = await env.tenant()
    stranger = uuid.UUID((await env.create_customer(other_tenant, givenName="S"))["id"])
    await record_in(env, other_tenant, stranger, "granted")

    await env.drain()  # the consent_changed events' deliveries query nothing meanwhile
    later = utcnow() + timedelta(minutes=30)
    async with env.platform.db.tenant_session(tenant) as session:
        await crmkit.consent_allows_many(session, ids[:1], "marketing", "email")  # warm-up
        sql_statements.clear()
        now_allowed = await crmkit.consent_allows_many(session, [*ids, stranger], "marketing", "email")
        assert sql_statements.count == 1
        later_allowed = await crmkit.consent_allows_many(session, ids, "marketing", "email", at=later)
        assert await crmkit.consent_allows_many(session, [], "marketing", "email") == set()
        singles = {i for i in ids if await crmkit.consent_allows(session, i, "marketing", "email")}
    assert now_allowed == singles == {granted, for_an_hour, for_a_minute}
    assert later_allowed == {granted, for_an_hour}
    assert never not in now_allowed and stranger not in now_allowed


async def test_a_committed_withdrawal_is_always_seen(env: Env) -> None:
    tenant = await env.tenant()
    customer = uuid.UUID((await env.create_customer(tenant, givenName="Cy"))["id"])
    await record_in(env, tenant, customer, "granted")
    assert await allows(env, tenant, customer) is True
    await record_in(env, tenant, customer, "withdrawn")  # committed in its own session
    assert await allows(env, tenant, customer) is False  # checked in a new one

    if env.backend == "postgresql":
        # READ COMMITTED: even a transaction that began before the withdrawal sees it
        await record_in(env, tenant, customer, "granted")
        async with env.platform.db.tenant_session(tenant) as session:
            assert await crmkit.consent_allows(session, customer, "marketing", "email")
            await record_in(env, tenant, customer, "withdrawn")
            assert not await crmkit.consent_allows(session, customer, "marketing", "email")


async def test_the_database_refuses_to_change_or_delete_a_record(env: Env) -> None:
    tenant = await env.tenant()
    customer = uuid.UUID((await env.create_customer(tenant, givenName="Dee"))["id"])
    await record_in(env, tenant, customer, "granted")
    async with env.platform.db.tenant_session(tenant) as session:
        record_id = await session.scalar(select(ConsentRecord.id))

    statements = {
        "UPDATE": update(ConsentRecord)
        .where(ConsentRecord.id == record_id)
        .values(state="withdrawn")
        .execution_options(synchronize_session=False),
        "DELETE": delete(ConsentRecord)
        .where(ConsentRecord.id == record_id)
        .execution_options(synchronize_session=False),
    }
    for verb, statement in statements.items():
        if env.backend == "postgresql":  # the application's role may not even try
            with pytest.raises(DBAPIError, match="permission denied"):
                async with env.platform.db.tenant_session(tenant) as session:
                    await session.execute(statement)
        # the trigger refuses whoever tries, the tables' owner included
        with pytest.raises(IntegrityError, match="append-only") as refused:
            async with env.owner_engine.begin() as conn:
                await conn.execute(statement)
        assert verb in str(refused.value)

    if env.backend == "postgresql":
        with pytest.raises(IntegrityError, match="TRUNCATE refused"):
            async with env.owner_engine.begin() as conn:
                await conn.execute(text("TRUNCATE consent_records"))

    with pytest.raises(AppendOnly):  # the ORM refuses too, before the database
        async with env.platform.db.tenant_session(tenant) as session:
            row = await session.scalar(select(ConsentRecord))
            assert row is not None
            row.state = crmkit.ConsentState.DENIED

    assert await allows(env, tenant, customer) is True  # untouched

    # erasing the customer takes its consent history along (the cascade is allowed)
    async with env.platform.db.tenant_session(tenant) as session:
        await session.execute(
            delete(Customer).where(Customer.id == customer).execution_options(synchronize_session=False)
        )
    async with env.platform.db.tenant_session(tenant) as session:
        assert (await session.scalars(select(ConsentRecord))).all() == []


async def test_unknown_purpose_and_bad_input_are_refused(env: Env) -> None:
    tenant = await env.tenant()
    customer = (await env.create_customer(tenant, givenName="Eve"))["id"]
    body = await env.gql(RECORD, {"input": decision(customer, purpose="spam")}, tenant=tenant)
    error = body["errors"][0]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "marketing" in error["message"] and "third_party_sharing" in error["message"]
    assert "recorder_offers" not in error["extensions"]["purposes"]

    past = (utcnow() - timedelta(days=1)).isoformat()
    body = await env.gql(RECORD, {"input": decision(customer, expiresAt=past)}, tenant=tenant)
    assert body["errors"][0]["extensions"]["field"] == "expiresAt"

    await record(env, tenant, customer, state="WITHDRAWN")
    body = await env.gql(RECORD, {"input": decision(customer, capturedAt=past)}, tenant=tenant)
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert body["errors"][0]["extensions"]["field"] == "capturedAt"

    history = await env.gql(HISTORY, {"id": customer}, tenant=tenant)
    assert len(history["data"]["consentHistory"]["nodes"]) == 1  # nothing else written


async def test_another_tenants_customer_is_not_found(env: Env) -> None:
    a, b = await env.tenant(), await env.tenant()
    customer = (await env.create_customer(a, givenName="Fay"))["id"]
    await record(env, a, customer)
    for query, variables in (
        (RECORD, {"input": decision(customer)}),
        (HISTORY, {"id": customer}),
    ):
        body = await env.gql(query, variables, tenant=b)
        assert body["errors"][0]["extensions"]["code"] == "NOT_FOUND", body
    assert len((await env.gql(HISTORY, {"id": customer}, tenant=a))["data"]["consentHistory"]["nodes"]) == 1


async def test_consent_needs_its_scopes(env: Env) -> None:
    tenant = await env.tenant()
    customer = (await env.create_customer(tenant, givenName="Gus"))["id"]
    token = env.token(tenant, ["customers:read", "consent:read"])
    body = await env.gql(RECORD, {"input": decision(customer)}, token=token)
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert body["errors"][0]["extensions"]["scope"] == "consent:write"
    body = await env.gql(CURRENT, {"id": customer}, token=env.token(tenant, ["customers:read"]))
    assert body["errors"][0]["extensions"]["scope"] == "consent:read"


async def test_consent_changed_reaches_enabled_plugins_after_commit(env: Env) -> None:
    tenant, quiet = await env.tenant("recorder"), await env.tenant()
    customer = (await env.create_customer(tenant, givenName="Hal"))["id"]
    await record(env, tenant, customer)
    await record(env, tenant, customer, state="WITHDRAWN", source="CALL_CENTRE")
    await env.gql(RECORD, {"input": decision(customer, purpose="spam")}, tenant=tenant)
    other = (await env.create_customer(quiet, givenName="Ian"))["id"]
    await record(env, quiet, other)
    await env.queue.drain()
    assert recorder_plugin.calls(tenant, "consent_changed") == [
        ("marketing", "email", "granted", None),
        ("marketing", "email", "withdrawn", "granted"),
    ]
    assert recorder_plugin.CALLS[quiet] == []


async def test_plugin_purposes_only_for_tenants_that_enabled_the_plugin(env: Env) -> None:
    with_plugin, without = await env.tenant("recorder"), await env.tenant()
    purposes = "{ consentPurposes { name plugin } }"
    listed = (await env.gql(purposes, tenant=with_plugin))["data"]["consentPurposes"]
    assert {"name": "recorder_offers", "plugin": "recorder"} in listed
    assert {"name": "marketing", "plugin": "core"} in listed
    listed = (await env.gql(purposes, tenant=without))["data"]["consentPurposes"]
    assert [p["name"] for p in listed] == [
        "marketing",
        "profiling",
        "service_notices",
        "third_party_sharing",
    ]

    mine = (await env.create_customer(with_plugin, givenName="Jo"))["id"]
    assert (await record(env, with_plugin, mine, purpose="recorder_offers"))["state"] == "GRANTED"
    theirs = (await env.create_customer(without, givenName="Kim"))["id"]
    body = await env.gql(RECORD, {"input": decision(theirs, purpose="recorder_offers")}, tenant=without)
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_customers_filter_by_current_consent_state(env: Env) -> None:
    tenant = await env.tenant()
    ids = {}
    for name in ("granted", "expiring", "withdrawn", "denied", "never"):
        ids[name] = uuid.UUID((await env.create_customer(tenant, givenName=name))["id"])
    await record_in(env, tenant, ids["granted"], "granted")
    await record_in(env, tenant, ids["expiring"], "granted", expires_at=utcnow() + timedelta(hours=1))
    await record_in(env, tenant, ids["withdrawn"], "granted")
    await record_in(env, tenant, ids["withdrawn"], "withdrawn")
    await record_in(env, tenant, ids["denied"], "denied")
    await record_in(env, tenant, ids["never"], "granted", channel="sms")
    names = {v: k for k, v in ids.items()}

    async def matching(state: str, channel: str = "email", **kw: Any) -> set[str]:
        async with env.platform.db.tenant_session(tenant) as session:
            found = await session.scalars(
                select(Customer.id).where(consent_state_criterion("marketing", channel, state, **kw))
            )
            return {names[i] for i in found}

    assert await matching("granted") == {"granted", "expiring"}
    assert await matching("granted", at=utcnow() + timedelta(hours=2)) == {"granted"}
    assert await matching("withdrawn") == {"withdrawn"}
    assert await matching("denied") == {"denied"}
    assert await matching("granted", channel="sms") == {"never"}
    other = await env.tenant()
    async with env.platform.db.tenant_session(other) as session:
        criterion = consent_state_criterion("marketing", "email", "granted")
        assert (await session.scalars(select(Customer.id).where(criterion))).all() == []


async def test_customer_consents_are_batched(env: Env, sql_statements: StatementCounter) -> None:
    counts = {}
    for size in (3, 12):
        tenant = await env.tenant()
        for i in range(size):
            customer = (await env.create_customer(tenant, givenName=f"C{i}"))["id"]
            await record(env, tenant, customer)
        token = env.token(tenant)
        query = "{ customers(first: 50) { nodes { id consents { purpose state } } } }"
        await env.gql(query, token=token)
        sql_statements.statements.clear()
        body = await env.gql(query, token=token)
        nodes = body["data"]["customers"]["nodes"]
        assert len(nodes) == size and all(
            n["consents"] == [{"purpose": "marketing", "state": "GRANTED"}] for n in nodes
        )
        counts[size] = sql_statements.count
    assert counts[3] == counts[12], counts


async def test_customers_query_filters_by_consent(env: Env) -> None:
    tenant = await env.tenant()
    yes = (await env.create_customer(tenant, givenName="Yes"))["id"]
    no = (await env.create_customer(tenant, givenName="No"))["id"]
    await env.create_customer(tenant, givenName="Never")
    await record(env, tenant, yes)
    await record(env, tenant, no)
    await record(env, tenant, no, state="WITHDRAWN")
    query = """query($filter: CustomerFilterInput) {
      customers(filter: $filter) { nodes { displayName } } }"""

    async def names(state: str, purpose: str = "marketing") -> Any:
        consent = {"purpose": purpose, "channel": "EMAIL", "state": state}
        body = await env.gql(query, {"filter": {"consent": consent}}, tenant=tenant)
        if "errors" in body:
            return body["errors"][0]["extensions"]["code"]
        return [n["displayName"] for n in body["data"]["customers"]["nodes"]]

    assert await names("GRANTED") == ["Yes"]
    assert await names("WITHDRAWN") == ["No"]
    assert await names("DENIED") == []
    assert await names("GRANTED", purpose="spam") == "BAD_USER_INPUT"
