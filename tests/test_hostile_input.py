"""Hostile values in arguments are refused at the GraphQL edge, on both endpoints, as
BAD_USER_INPUT naming the field and the argument path, and change nothing: text no
database stores, datetimes without an offset or outside the calendar in UTC, malformed
cursors and amounts a column cannot hold exactly. Idempotent creation by externalRef."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest

from crmkit.platform.operator_tokens import OperatorTokens
from crmkit.testing import CREATE_CUSTOMER, Env
from tests.test_customers_graphql import PAGE

SURROGATE = "\ud800"
NUL = "a\x00b"
RECORD_ACTIVITY = "mutation($input: RecordActivityInput!) { recordActivity(input: $input) { id amount } }"
RECORD_CONSENT = "mutation($input: RecordConsentInput!) { recordConsent(input: $input) { id } }"
AUDIT = "query($filter: AuditFilterInput, $after: String) { auditEvents(filter: $filter, after: $after) { nodes { seq } } }"


async def send(
    env: Env,
    query: str,
    variables: dict[str, Any] | None = None,
    *,
    tenant: uuid.UUID | None = None,
    token: str | None = None,
    endpoint: str = "/graphql",
) -> dict[str, Any]:
    """POST as a client may: JSON escapes a lone surrogate ("\\ud800") and writes
    Infinity, where httpx's own encoding (UTF-8, no NaN) refuses to send them."""
    token = token or env.token(tenant)  # type: ignore[arg-type]
    response = await env.client.post(
        endpoint,
        content=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def refusal(body: dict[str, Any]) -> dict[str, Any]:
    """The one error of a refused request, after checking it refused as bad input."""
    assert body["data"] is None or not any(body["data"].values()), body
    (error,) = body["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT", body
    extensions: dict[str, Any] = error["extensions"]
    return extensions


async def customer_count(env: Env, tenant: uuid.UUID) -> int:
    body = await env.gql(PAGE, {"filter": {"includeArchived": True}}, tenant=tenant)
    return len(body["data"]["customers"]["nodes"])


def consent(customer_id: str, **overrides: Any) -> dict[str, Any]:
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


@pytest.mark.parametrize("bad", [SURROGATE, NUL], ids=["surrogate", "nul"])
@pytest.mark.parametrize(
    ("fields", "field", "argument"),
    [
        ({"givenName": "{bad}"}, "givenName", "createCustomer.input.givenName"),
        ({"givenName": "Al", "tags": ["ok", "{bad}"]}, "tags", "createCustomer.input.tags.1"),
        ({"givenName": "Al", "externalRef": "{bad}"}, "externalRef", "createCustomer.input.externalRef"),
        ({"givenName": "Al", "email": "a{bad}@example.com"}, "email", "createCustomer.input.email"),
    ],
)
async def test_unstorable_text_in_a_variable(
    env: Env, bad: str, fields: dict[str, Any], field: str, argument: str
) -> None:
    tenant = await env.tenant()
    values = {
        k: [x.replace("{bad}", bad) for x in v] if isinstance(v, list) else v.replace("{bad}", bad)
        for k, v in fields.items()
    }
    body = await send(env, CREATE_CUSTOMER, {"input": {"kind": "PERSON", **values}}, tenant=tenant)
    extensions = refusal(body)
    assert extensions["field"] == field and extensions["argument"] == argument
    assert await customer_count(env, tenant) == 0


async def test_unstorable_text_in_a_literal_and_in_filters(env: Env) -> None:
    tenant = await env.tenant()
    body = await env.gql(
        'mutation { createCustomer(input: {kind: PERSON, givenName: "a\\u0000b"}) { id } }', tenant=tenant
    )
    assert refusal(body)["argument"] == "createCustomer.input.givenName"
    assert await customer_count(env, tenant) == 0
    body = await send(env, PAGE, {"filter": {"text": SURROGATE}}, tenant=tenant)
    assert refusal(body)["argument"] == "customers.filter.text"
    body = await env.gql(AUDIT, {"filter": {"actorId": NUL}}, tenant=tenant)
    assert refusal(body)["argument"] == "auditEvents.filter.actorId"


async def test_unstorable_text_in_consent_users_json_and_plugin_fields(env: Env) -> None:
    tenant = await env.tenant("notes")
    customer = await env.create_customer(tenant, givenName="Ann")
    body = await send(
        env, RECORD_CONSENT, {"input": consent(customer["id"], policyVersion=NUL)}, tenant=tenant
    )
    assert refusal(body)["field"] == "policyVersion"
    create_user = "mutation($input: CreateUserInput!) { createUser(input: $input) { password } }"
    user = {"email": "clerk@example.com", "displayName": "Clerk", "role": "STAFF"}
    body = await send(env, create_user, {"input": {**user, "password": SURROGATE * 12}}, tenant=tenant)
    assert refusal(body)["argument"] == "createUser.input.password"
    body = await send(env, create_user, {"input": {**user, "email": f"{NUL}@example.com"}}, tenant=tenant)
    assert refusal(body)["field"] == "email"
    # a plugin's field, made with crmkit.field: checked with no code of its own
    add_note = "mutation($id: UUID!, $body: String!) { addNote(customerId: $id, body: $body) { id } }"
    body = await send(env, add_note, {"id": customer["id"], "body": SURROGATE}, tenant=tenant)
    assert refusal(body)["argument"] == "addNote.body"
    # JSON is stored as JSON: its keys and strings too, and no number JSON cannot write
    for attributes in ({NUL: 1}, {"x": [SURROGATE]}, {"x": float("inf")}):
        body = await send(
            env,
            RECORD_ACTIVITY,
            {
                "input": {
                    "customerId": customer["id"],
                    "kind": "LOGIN",
                    "channel": "APP",
                    "attributes": attributes,
                }
            },
            tenant=tenant,
        )
        assert refusal(body)["argument"] == "recordActivity.input.attributes"
    body = await env.gql(
        "mutation($id: UUID!) { recordActivity(input: {customerId: $id, kind: LOGIN, channel: APP, attributes: {x: 1e999}}) { id } }",
        {"id": customer["id"]},
        tenant=tenant,
    )
    assert refusal(body)["field"] == "attributes"


async def test_operator_endpoint_refuses_unstorable_text(env: Env) -> None:
    token = OperatorTokens(env.tokens).issue("hostile-test")
    cases: list[tuple[str, dict[str, Any], str]] = [
        (
            "mutation($slug: String!) { suspendTenant(slug: $slug) { slug } }",
            {"slug": SURROGATE},
            "suspendTenant.slug",
        ),
        (
            "mutation($input: OnboardTenantInput!) { onboardTenant(input: $input) { adminPassword } }",
            {"input": {"slug": "ok-slug", "name": NUL}},
            "onboardTenant.input.name",
        ),
    ]
    for query, variables, argument in cases:
        body = await send(env, query, variables, token=token, endpoint="/operator/graphql")
        assert refusal(body)["argument"] == argument


@pytest.mark.parametrize(
    "occurred_at",
    ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00", "2024-05-01T09:00:00"],
)
async def test_datetimes_without_offset_or_outside_utc_calendar(env: Env, occurred_at: str) -> None:
    tenant = await env.tenant()
    customer = await env.create_customer(tenant, givenName="Dee")
    body = await env.gql(
        RECORD_ACTIVITY,
        {
            "input": {
                "customerId": customer["id"],
                "kind": "LOGIN",
                "channel": "APP",
                "occurredAt": occurred_at,
            }
        },
        tenant=tenant,
    )
    extensions = refusal(body)
    assert extensions["field"] == "occurredAt" and extensions["argument"] == "recordActivity.input.occurredAt"
    body = await env.gql(AUDIT, {"filter": {"since": occurred_at}}, tenant=tenant)
    assert refusal(body)["argument"] == "auditEvents.filter.since"
    body = await env.gql(
        RECORD_CONSENT, {"input": consent(customer["id"], capturedAt=occurred_at)}, tenant=tenant
    )
    assert refusal(body)["field"] == "capturedAt"


@pytest.mark.parametrize("cursor", ["²", "1" * 30, "-1", " 1"])
async def test_malformed_audit_cursors(env: Env, cursor: str) -> None:
    tenant = await env.tenant()
    assert refusal(await env.gql(AUDIT, {"after": cursor}, tenant=tenant))["field"] == "after"


@pytest.mark.parametrize(
    ("amount", "currency"),
    [
        ("1e999999999", "EUR"),
        ("1e-1000000", "EUR"),
        ("NaN", "EUR"),
        ("Infinity", "EUR"),
        ("123456789012345678901234567890", "EUR"),
        ("100000000000000", "EUR"),  # 15 integer digits: the column holds 14
        ("0.00001", "EUR"),  # issue 12: was stored as 0.0000
        ("0.001", "EUR"),  # EUR has 2 minor units
        ("1.5", "JPY"),  # JPY has none
        ("0.0001", "KWD"),  # KWD has 3
    ],
)
async def test_amounts_beyond_the_column_or_the_currency(env: Env, amount: str, currency: str) -> None:
    tenant = await env.tenant()
    customer = await env.create_customer(tenant, givenName="Max")
    body = await env.gql(
        RECORD_ACTIVITY,
        {
            "input": {
                "customerId": customer["id"],
                "kind": "TRANSACTION",
                "channel": "APP",
                "amount": amount,
                "currency": currency,
            }
        },
        tenant=tenant,
    )
    assert refusal(body)["field"] == "amount"


async def test_amount_literals_are_exact_and_unknown_currencies_refused(env: Env) -> None:
    tenant = await env.tenant()
    customer = await env.create_customer(tenant, givenName="Lit")
    literal = "mutation($id: UUID!) {{ recordActivity(input: {{customerId: $id, kind: TRANSACTION, channel: APP, amount: {amount}, currency: {currency}}}) {{ amount }} }}"
    body = await env.gql(
        literal.format(amount="1e999999999", currency='"EUR"'), {"id": customer["id"]}, tenant=tenant
    )
    assert refusal(body)["argument"] == "recordActivity.input.amount"
    body = await env.gql(
        literal.format(amount="0.1", currency='"EUR"'), {"id": customer["id"]}, tenant=tenant
    )
    assert body["data"]["recordActivity"]["amount"] == "0.1000", body
    body = await env.gql(
        literal.format(amount='"1"', currency='"XYZ"'), {"id": customer["id"]}, tenant=tenant
    )
    assert refusal(body)["field"] == "currency"


@pytest.mark.parametrize(
    ("amount", "currency", "stored"),
    [
        ("12.5", "EUR", "12.5000"),
        ("-0.01", "EUR", "-0.0100"),
        ("1500", "JPY", "1500.0000"),
        ("1.234", "KWD", "1.2340"),
        ("12.50000", "EUR", "12.5000"),  # trailing zeros are no precision
        ("99999999999.99", "EUR", "99999999999.9900"),
    ],
)
async def test_amounts_answer_what_was_stored(env: Env, amount: str, currency: str, stored: str) -> None:
    tenant = await env.tenant()
    customer = await env.create_customer(tenant, givenName="Sto")
    body = await env.gql(
        RECORD_ACTIVITY,
        {
            "input": {
                "customerId": customer["id"],
                "kind": "TRANSACTION",
                "channel": "APP",
                "amount": amount,
                "currency": currency,
            }
        },
        tenant=tenant,
    )
    assert body["data"]["recordActivity"]["amount"] == stored, body
    listed = await env.gql(
        "query($id: UUID!) { activities(customerId: $id) { nodes { amount } } }",
        {"id": customer["id"]},
        tenant=tenant,
    )
    assert [n["amount"] for n in listed["data"]["activities"]["nodes"]] == [stored]


@pytest.mark.postgres_only  # concurrent writers: SQLite serialises them anyway
async def test_create_customer_is_idempotent_under_50_concurrent_retries(env: Env) -> None:
    """Security issue, item 14: every caller gets the one customer, none a CONFLICT."""
    tenant = await env.tenant()
    token = env.token(tenant)
    variables = {"input": {"kind": "PERSON", "givenName": "Once", "tags": ["vip"], "externalRef": "ext-50"}}
    bodies = await asyncio.gather(*(env.gql(CREATE_CUSTOMER, variables, token=token) for _ in range(50)))
    assert all("errors" not in b for b in bodies), [b["errors"] for b in bodies if "errors" in b]
    assert len({b["data"]["createCustomer"]["id"] for b in bodies}) == 1
    assert await customer_count(env, tenant) == 1
    assert len(await env.events(tenant, "customer_created")) == 1


async def test_create_customer_retry_with_different_input_is_a_conflict(env: Env) -> None:
    tenant = await env.tenant()
    first = await env.create_customer(tenant, givenName="Bo", tags=["vip"], externalRef="ref-1")
    again = await env.create_customer(tenant, givenName="  Bo ", tags=["VIP"], externalRef="ref-1")
    assert again["id"] == first["id"]  # the same input, as the service cleans it
    changes: list[tuple[dict[str, Any], str]] = [
        ({"givenName": "Bob"}, "givenName"),
        ({"tags": []}, "tags"),
        ({"kind": "ORGANISATION", "organisationName": "Bo Ltd"}, "kind"),
    ]
    for change, field in changes:
        body = await env.gql(
            CREATE_CUSTOMER,
            {
                "input": {
                    "kind": "PERSON",
                    "givenName": "Bo",
                    "tags": ["vip"],
                    "externalRef": "ref-1",
                    **change,
                }
            },
            tenant=tenant,
        )
        assert body["errors"][0]["extensions"]["code"] == "CONFLICT", body
        assert body["errors"][0]["extensions"]["field"] == field
    assert await customer_count(env, tenant) == 1
