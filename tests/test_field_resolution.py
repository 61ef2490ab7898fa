"""Per-row field resolution: graphql-core calls plain attribute fields and personal
fields itself, not through strawberry's per-field wrapper (its ``Info``, argument
conversion and extension chain cost more per row than the field's own work); leaf
fields among them take crmkit's executor's short path, and a ``crmkit.customer_field``
is loaded once for a whole page of customers."""

from __future__ import annotations

import asyncio
import enum
import uuid
from typing import Any, cast

import pytest
import strawberry
from graphql import GraphQLObjectType

from crmkit.graphql.context import RequestContext
from crmkit.graphql.execution import DIRECT_FIELD, DirectExecutor
from crmkit.platform import schema
from crmkit.testing import Env

DIRECT = [
    ("Customer", "id"),
    ("Customer", "lifecycleStage"),
    ("Customer", "email"),
    ("Customer", "notes"),
    ("Note", "body"),
]
WRAPPED = [("Mutation", "addNote"), ("Query", "customers")]
"""Fields with a scope check (a field extension) or arguments keep strawberry's wrapper."""
NOTES_PAGE = "{ customers(first: 10) { nodes { id notes { body } } } }"


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


async def _customers_with_notes(env: Env, tenant: uuid.UUID, count: int) -> list[str]:
    ids = []
    for i in range(count):
        customer = await env.create_customer(tenant, givenName=f"Ada{i}")
        for body in (f"first {i}", f"second {i}")[: i % 3]:
            mutation = "mutation($id: UUID!, $body: String!) { addNote(customerId: $id, body: $body) { id } }"
            assert "errors" not in await env.gql(
                mutation, {"id": customer["id"], "body": body}, tenant=tenant
            )
        ids.append(customer["id"])
    return ids


class LoaderCalls:
    """Counts the request context's batch calls: prefetched for a page, or through the
    data loader row by row."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.prefetched: list[int] = []
        self.loaded = 0
        prefetch, load = RequestContext.prefetch, RequestContext.load

        async def counting_prefetch(context: RequestContext, batch: Any, keys: Any) -> None:
            self.prefetched.append(len(keys))
            await prefetch(context, batch, keys)

        def counting_load(context: RequestContext, batch: Any, key: Any) -> Any:
            self.loaded += 1
            return load(context, batch, key)

        monkeypatch.setattr(RequestContext, "prefetch", counting_prefetch)
        monkeypatch.setattr(RequestContext, "load", counting_load)


async def test_a_customer_field_is_loaded_once_for_a_page_and_not_per_row(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant = await env.tenant("notes")
    ids = await _customers_with_notes(env, tenant, 4)
    calls = LoaderCalls(monkeypatch)
    body = await env.gql(NOTES_PAGE, tenant=tenant)
    assert "errors" not in body, body
    nodes = body["data"]["customers"]["nodes"]
    assert [n["id"] for n in nodes] == ids
    assert [[note["body"] for note in n["notes"]] for n in nodes] == [
        [],
        ["first 1"],
        ["first 2", "second 2"],
        [],
    ]
    assert (calls.prefetched, calls.loaded) == ([4], 0)

    single = "query($id: UUID!) { customer(id: $id) { notes { body } } }"
    body = await env.gql(single, {"id": ids[2]}, tenant=tenant)
    assert body["data"]["customer"]["notes"] == [{"body": "first 2"}, {"body": "second 2"}]
    assert (calls.prefetched, calls.loaded) == ([4], 1)  # one customer: through the data loader


async def test_a_customer_field_without_its_scope_is_forbidden_and_loads_nothing(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant = await env.tenant("notes")
    await _customers_with_notes(env, tenant, 2)
    calls = LoaderCalls(monkeypatch)
    body = await env.gql(NOTES_PAGE, tenant=tenant, scopes=["customers:read"])
    assert {(e["extensions"]["code"], e["extensions"]["scope"]) for e in body["errors"]} == {
        ("FORBIDDEN", "notes:read")
    }
    assert [e["path"] for e in body["errors"]] == [["customers", "nodes", 0, "notes"]]
    assert (calls.prefetched, calls.loaded) == ([], 0)


@strawberry.enum
class Stage(enum.Enum):
    NEW = "new"
    DONE = "done"


@strawberry.type
class Part:
    label: str


@strawberry.type
class Row:
    name: str
    count: int
    tags: list[str]
    note: str | None
    stage: Stage
    parts: list[Part]


ROWS = [
    Row(name="fine", count=1, tags=["a", "b"], note=None, stage=Stage.NEW, parts=[]),
    Row(name=None, count=2, tags=["c"], note="x", stage=Stage.DONE, parts=[Part(label="p")]),  # type: ignore[arg-type]  # null for String!
    Row(name="big", count=2**40, tags=["d"], note="y", stage=Stage.NEW, parts=[]),  # beyond GraphQL's Int
    Row(name="bad tags", count=3, tags=["e", None], note="z", stage="new", parts=[]),  # type: ignore[list-item,arg-type]
    Row(name="bad stage", count=4, tags=[], note=None, stage="later", parts=[Part(label=None)]),  # type: ignore[arg-type]
    Row(name="text tags", count=5, tags="ab", note=None, stage=Stage.DONE, parts=[]),  # type: ignore[arg-type]
]


@strawberry.type
class Query:
    @strawberry.field
    def rows(self) -> list[Row]:
        return ROWS

    @strawberry.field
    def maybe_rows(self) -> list[Row | None] | None:
        """Nullable rows: an error nulls its row, not the list."""
        return [*ROWS, None]

    @strawberry.field
    async def later_rows(self) -> list[Row | None]:
        return [*ROWS, None]


def _direct_rows_schema(executor: type | None) -> strawberry.Schema:
    schema = strawberry.Schema(Query, execution_context_class=executor)
    for graphql_field in cast(GraphQLObjectType, schema._schema.type_map["Row"]).fields.values():
        name = graphql_field.extensions[
            strawberry.schema.schema_converter.GraphQLCoreConverter.DEFINITION_BACKREF
        ]
        graphql_field.resolve = lambda source, _, attribute=name.python_name: getattr(source, attribute)
        graphql_field.extensions[DIRECT_FIELD] = True
    return schema


def test_the_short_path_answers_what_graphql_core_answers_good_values_and_bad() -> None:
    """Values the types refuse are handed back to graphql-core: the same data and the
    same errors, at the same paths, with the short path and without it."""
    for query in (
        "{ rows { name count tags note stage parts { label } } }",
        "{ maybeRows { name count tags note stage parts { label } } }",
        "{ laterRows { name count } good: maybeRows { note } }",
    ):
        plain = asyncio.run(_direct_rows_schema(None).execute(query))
        short = asyncio.run(_direct_rows_schema(DirectExecutor).execute(query))
        assert plain.errors and short.errors
        assert short.data == plain.data, query
        assert [(e.message, e.path) for e in short.errors] == [(e.message, e.path) for e in plain.errors]


async def test_a_repeated_query_is_parsed_and_validated_once(env: Env) -> None:
    """The HTTP edge and strawberry share one parsed document, and its validation (with
    the depth and alias limits) is remembered: a query asked again costs neither."""
    tenant = await env.tenant()
    query = "{ customers(first: 3) { nodes { id lifecycleStage } } }"
    await env.gql(query, tenant=tenant)
    parsed, validated = schema.parse_document.cache_info(), schema._validated.cache_info()
    for _ in range(3):
        assert "errors" not in await env.gql(query, tenant=tenant)
    assert schema.parse_document.cache_info().misses == parsed.misses
    assert schema._validated.cache_info().misses == validated.misses
    assert schema._validated.cache_info().hits == validated.hits + 3
