"""Per-row field resolution: graphql-core calls plain attribute fields and personal
fields itself, not through strawberry's per-field wrapper (its ``Info``, argument
conversion and extension chain cost more per row than the field's own work)."""

from __future__ import annotations

from typing import cast

from graphql import GraphQLObjectType

from crmkit.testing import Env

DIRECT = [("Customer", "id"), ("Customer", "lifecycleStage"), ("Customer", "email"), ("Note", "body")]
WRAPPED = [("Customer", "notes"), ("Query", "customers")]
"""Fields with a scope check (a field extension) or arguments keep strawberry's wrapper."""


async def test_plain_and_personal_fields_are_resolved_without_strawberrys_wrapper(env: Env) -> None:
    schema = env.platform.schemas.for_plugins(frozenset({"notes"}))._schema
    for type_name, field in DIRECT + WRAPPED:
        resolve = cast(GraphQLObjectType, schema.type_map[type_name]).fields[field].resolve
        wrapped = resolve is not None and resolve.__module__.startswith("strawberry")
        assert wrapped == ((type_name, field) in WRAPPED), (type_name, field, resolve)


async def test_a_directly_resolved_personal_field_is_masked_by_the_callers_scopes(env: Env) -> None:
    tenant = await env.tenant("notes")
    await env.create_customer(tenant, givenName="Ada", email="ada@example.com")
    query = "{ customers(first: 5) { nodes { email displayName } } }"
    masked = await env.gql(query, tenant=tenant, scopes=["customers:read"])
    assert masked["data"]["customers"]["nodes"] == [{"email": "a***@example.com", "displayName": "A***"}]
    shown = await env.gql(query, tenant=tenant, scopes=["customers:read", "pii:contact"])
    assert shown["data"]["customers"]["nodes"] == [{"email": "ada@example.com", "displayName": "A***"}]


async def test_a_literal_refused_once_is_refused_again(env: Env) -> None:
    """A document whose literal arguments passed is not walked again; one that failed
    is, every time."""
    tenant = await env.tenant()
    refused = '{ customers(first: 1, filter: { tag: "a\\u0000b" }) { nodes { id } } }'
    for _ in range(2):
        body = await env.gql(refused, tenant=tenant)
        assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", body
    passed = '{ customers(first: 1, filter: { tag: "ab" }) { nodes { id } } }'
    for _ in range(2):
        assert "errors" not in await env.gql(passed, tenant=tenant)
