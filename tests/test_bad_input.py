"""Bad input gets a clear error with a code, and changes nothing."""

from __future__ import annotations

import uuid
from types import SimpleNamespace

import pytest

from crmkit.tenants.models import TenantStatus
from crmkit.tenants.service import set_status
from crmkit.testing import CREATE_CUSTOMER, Env
from tests.test_customers_graphql import PAGE


def code(body: dict) -> str:  # type: ignore[type-arg]
    return str(body["errors"][0]["extensions"]["code"])


async def count(env: Env, tenant: uuid.UUID) -> int:
    body = await env.gql(PAGE, {"filter": {"includeArchived": True}}, tenant=tenant)
    return len(body["data"]["customers"]["nodes"])


async def test_unknown_id_is_not_found(env: Env) -> None:
    tenant = await env.tenant()
    body = await env.gql(
        "query($id: UUID!) { customer(id: $id) { id } }", {"id": str(uuid.uuid4())}, tenant=tenant
    )
    assert code(body) == "NOT_FOUND"


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"after": "not-a-cursor"}, "cursor is malformed"),
        ({"after": "YWJj"}, "cursor is malformed"),
        ({"first": 101}, "between 1 and 100"),
        ({"first": 0}, "between 1 and 100"),
        ({"filter": {"stage": "UNDEAD"}}, "UNDEAD"),
    ],
)
async def test_bad_list_arguments(env: Env, variables: dict, message: str) -> None:  # type: ignore[type-arg]
    tenant = await env.tenant()
    body = await env.gql(PAGE, variables, tenant=tenant)
    assert code(body) == "BAD_USER_INPUT"
    assert message in body["errors"][0]["message"]


async def test_malformed_id_and_invalid_enum(env: Env) -> None:
    tenant = await env.tenant()
    body = await env.gql('query { customer(id: "42") { id } }', tenant=tenant)
    assert code(body) == "BAD_USER_INPUT"
    body = await env.gql(CREATE_CUSTOMER, {"input": {"kind": "ROBOT", "givenName": "R2"}}, tenant=tenant)
    assert code(body) == "BAD_USER_INPUT"
    assert await count(env, tenant) == 0


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"givenName": "Al", "email": "not-an-email"}, "email"),
        ({"givenName": "Al", "phone": "call me"}, "phone"),
        ({"givenName": "Al", "tags": ["ok", "Not OK!"]}, "tags"),
        ({"kind": "ORGANISATION"}, "organisationName"),
        ({}, "givenName"),
        ({"givenName": "x" * 201}, "given_name"),
    ],
)
async def test_invalid_customer_changes_nothing(env: Env, fields: dict, field: str) -> None:  # type: ignore[type-arg]
    tenant = await env.tenant()
    body = await env.gql(CREATE_CUSTOMER, {"input": {"kind": "PERSON", **fields}}, tenant=tenant)
    assert code(body) == "BAD_USER_INPUT"
    assert body["errors"][0]["extensions"]["field"] == field
    assert await count(env, tenant) == 0


async def test_failed_mutation_rolls_back_the_whole_operation(env: Env) -> None:
    tenant = await env.tenant()
    body = await env.gql(
        'mutation { a: createCustomer(input: {kind: PERSON, givenName: "Kept?"}) { id } '
        'b: createCustomer(input: {kind: PERSON, givenName: "B", email: "x"}) { id } }',
        tenant=tenant,
    )
    assert body["data"] is None and code(body) == "BAD_USER_INPUT"
    assert await count(env, tenant) == 0


@pytest.mark.parametrize(
    ("amount", "currency", "field"),
    [("12.5", None, "currency"), (None, "EUR", "amount"), ("1", "euro", "currency")],
)
async def test_invalid_activity(env: Env, amount: str | None, currency: str | None, field: str) -> None:
    tenant = await env.tenant()
    customer = await env.create_customer(tenant, givenName="Tim")
    body = await env.gql(
        "mutation($input: RecordActivityInput!) { recordActivity(input: $input) { id } }",
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
    assert code(body) == "BAD_USER_INPUT" and body["errors"][0]["extensions"]["field"] == field


async def test_missing_malformed_expired_and_tampered_tokens(env: Env) -> None:
    tenant = await env.tenant()
    assert code(await env.gql(PAGE, status=401)) == "UNAUTHENTICATED"
    assert code(await env.gql(PAGE, token="garbage", status=401)) == "UNAUTHENTICATED"
    expired = env.token(tenant, lifetime_seconds=-60)
    body = await env.gql(PAGE, token=expired, status=401)
    assert code(body) == "UNAUTHENTICATED" and "expired" in body["errors"][0]["message"]
    header, claims, signature = env.token(tenant).split(".")
    tampered = ".".join([header, claims[:-4] + "AAAA", signature])
    assert code(await env.gql(PAGE, token=tampered, status=401)) == "UNAUTHENTICATED"


async def test_suspended_tenant_tokens_are_refused(env: Env) -> None:
    tenant = await env.tenant()
    token = env.token(tenant)
    assert "errors" not in await env.gql(PAGE, token=token)
    await set_status(env.platform.db, str(tenant), TenantStatus.SUSPENDED)
    body = await env.gql(PAGE, token=token, status=401)
    assert code(body) == "UNAUTHENTICATED" and "suspended" in body["errors"][0]["message"]
    await set_status(env.platform.db, str(tenant), TenantStatus.ACTIVE)
    assert "errors" not in await env.gql(PAGE, token=token)


async def test_missing_scope_is_forbidden_naming_the_scope(env: Env) -> None:
    tenant = await env.tenant()
    token = env.token(tenant, ["customers:read"])
    body = await env.gql(CREATE_CUSTOMER, {"input": {"kind": "PERSON", "givenName": "No"}}, token=token)
    assert code(body) == "FORBIDDEN" and body["errors"][0]["extensions"]["scope"] == "customers:write"
    assert await count(env, tenant) == 0


async def test_abuse_limits(env: Env) -> None:
    tenant = await env.tenant()
    aliases = " ".join(f"a{i}: customers {{ nodes {{ id }} }}" for i in range(20))
    body = await env.gql("{ " + aliases + " }", tenant=tenant)
    assert code(body) == "BAD_USER_INPUT"
    huge = "{ customers { nodes { " + "id " * 3000 + "} } }"
    body = await env.gql(huge, tenant=tenant)
    assert code(body) == "BAD_USER_INPUT"


async def test_internal_errors_are_masked(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    from crmkit.core.customers import pages

    async def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("secret stack detail")

    monkeypatch.setattr(pages, "customer_page", boom)
    tenant = await env.tenant()
    body = await env.gql(PAGE, tenant=tenant)
    error = body["errors"][0]
    assert error["extensions"]["code"] == "INTERNAL"
    assert "secret" not in str(body) and error["extensions"]["requestId"] in error["message"]


async def test_depth_limit(env: Env) -> None:
    from crmkit.platform.schema import SchemaCache
    from crmkit.settings import Settings

    schema = SchemaCache(env.platform.registry, Settings(graphql_max_depth=2)).for_plugins(frozenset())
    result = await schema.execute("{ customers { edges { node { id } } } }", context_value=SimpleNamespace())
    assert result.errors and "exceeds maximum operation depth of 2" in result.errors[0].message
