"""Property: no argument value makes either GraphQL endpoint fail inside.

Arbitrary text (lone surrogates and NUL included), datetimes (naive, any offset, the
calendar's edges), decimals (huge, tiny, non-finite), JSON and numbers go into every
argument of every field, query and mutation, of ``/graphql`` (with every installed
plugin enabled) and ``/operator/graphql``. The fields and their argument types are read
by introspection, so a new plugin's fields are covered with no change here. Every
answer must be a 200 or a 400 with no ``INTERNAL`` error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from graphql import get_introspection_query
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crmkit.platform.operator_tokens import OperatorTokens
from crmkit.plugins.info import CORE
from crmkit.testing import Env

EXAMPLES = 1500
"""Per backend: 3,000 cases in all, about a minute on two cores."""

PLAUSIBLE_TEXT = ["EUR", "JPY", "KWD", "marketing", "2025-01", "vip", "ann@example.com", "Ann", "t-slug"]
"""Values a client would send, so that requests with one hostile value elsewhere get
past the other arguments' checks and reach the database."""
HOSTILE_TEXT = ["\ud800", "\udfff", "a\x00b", "", " ", "²", "1" * 30, "-1", "%", "\u202e", "x" * 300]
HOSTILE_DATETIMES = [
    "0001-01-01T00:00:00+05:00",
    "9999-12-31T23:59:59-05:00",
    "2024-05-01T09:00:00",
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59.999999+00:00",
]
HOSTILE_DECIMALS = ["1e999999999", "1e-1000000", "NaN", "-Infinity", "0.00001", "1" * 40, "-0"]
OFFSETS = [
    None,
    UTC,
    timezone(timedelta(hours=14)),
    timezone(-timedelta(hours=12)),
    timezone(timedelta(hours=5, minutes=30)),
]

text = st.one_of(
    st.sampled_from(PLAUSIBLE_TEXT),
    st.sampled_from(HOSTILE_TEXT),
    st.text(st.characters(exclude_categories=()), max_size=30),  # surrogates and NUL included
)
datetimes = st.one_of(
    st.datetimes(timezones=st.sampled_from(OFFSETS)).map(datetime.isoformat),
    st.sampled_from(HOSTILE_DATETIMES),
    text,
)
decimals = st.one_of(
    st.decimals().map(str),
    st.sampled_from(HOSTILE_DECIMALS),
    st.integers(),
    st.floats(),
    text,
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=8,
)
SCALARS: dict[str, st.SearchStrategy[Any]] = {
    "String": text,
    "ID": text,
    "DateTime": datetimes,
    "Date": datetimes,
    "Decimal": decimals,
    "JSON": json_values,
    "Int": st.one_of(st.integers(1, 20), st.integers()),
    "Float": st.floats(),
    "Boolean": st.booleans(),
}


@dataclass(frozen=True)
class Field:
    """A root field and what a request for it needs."""

    operation: str  # "query" or "mutation"
    name: str
    arguments: tuple[dict[str, Any], ...] = field(repr=False)  # introspected input values
    composite: bool = field(repr=False)  # its type needs a selection

    def document(self) -> str:
        declared = ", ".join(f"${a['name']}: {_type_name(a['type'])}" for a in self.arguments)
        passed = ", ".join(f"{a['name']}: ${a['name']}" for a in self.arguments)
        selection = " { __typename }" if self.composite else ""
        return f"{self.operation}({declared}) {{ {self.name}({passed}){selection} }}"


@dataclass
class Endpoint:
    path: str
    token: str = field(repr=False)
    fields: list[Field] = field(repr=False)
    types: dict[str, dict[str, Any]] = field(repr=False)
    ids: list[str] = field(repr=False)

    def takes_values(self, ref: dict[str, Any], seen: frozenset[str] = frozenset()) -> bool:
        """Whether the input type ``ref`` holds text, a datetime, a decimal or JSON
        somewhere: the arguments this property is about."""
        named = _named(ref)["name"]
        type_ = self.types[named]
        if type_["kind"] == "SCALAR":
            return named not in {"Int", "Float", "Boolean", "UUID"}
        if type_["kind"] == "INPUT_OBJECT" and named not in seen:
            return any(self.takes_values(f["type"], seen | {named}) for f in type_["inputFields"])
        return False


def _type_name(ref: dict[str, Any]) -> str:
    if ref["kind"] == "NON_NULL":
        return _type_name(ref["ofType"]) + "!"
    if ref["kind"] == "LIST":
        return f"[{_type_name(ref['ofType'])}]"
    return str(ref["name"])


def _named(ref: dict[str, Any]) -> dict[str, Any]:
    while ref.get("ofType"):
        ref = ref["ofType"]
    return ref


def value_of(ref: dict[str, Any], endpoint: Endpoint) -> st.SearchStrategy[Any]:
    """Values for an introspected input type: mostly well-formed in shape, so requests
    reach the resolvers, with arbitrary leaves."""
    if ref["kind"] == "NON_NULL":
        return value_of(ref["ofType"], endpoint)
    if ref["kind"] == "LIST":
        return st.lists(value_of(ref["ofType"], endpoint), max_size=3)
    type_ = endpoint.types[ref["name"]]
    if type_["kind"] == "ENUM":
        return st.sampled_from([v["name"] for v in type_["enumValues"]])
    if type_["kind"] == "INPUT_OBJECT":
        return inputs(type_["inputFields"], endpoint)
    if ref["name"] == "UUID":  # mostly the shared customer, so writes reach the database
        return st.one_of(st.just(endpoint.ids[0]), st.just(endpoint.ids[0]), st.uuids().map(str), text)
    return SCALARS.get(ref["name"], text)


def inputs(values: list[dict[str, Any]], endpoint: Endpoint) -> st.SearchStrategy[dict[str, Any]]:
    """An object for ``values`` (arguments or input fields): each required one, and each
    optional one or not."""
    required = {v["name"]: value_of(v["type"], endpoint) for v in values if _required(v)}
    optional = {v["name"]: value_of(v["type"], endpoint) for v in values if not _required(v)}
    return st.fixed_dictionaries(required, optional=optional)


def _required(value: dict[str, Any]) -> bool:
    return bool(value["type"]["kind"] == "NON_NULL" and value["defaultValue"] is None)


async def introspect(env: Env, path: str, token: str, ids: list[str]) -> Endpoint:
    response = await env.client.post(
        path, json={"query": get_introspection_query()}, headers={"Authorization": f"Bearer {token}"}
    )
    schema = response.json()["data"]["__schema"]
    types = {t["name"]: t for t in schema["types"]}
    endpoint = Endpoint(path, token, [], types, ids)
    for operation, root in (("query", schema["queryType"]), ("mutation", schema["mutationType"])):
        for root_field in types[root["name"]]["fields"]:
            if any(endpoint.takes_values(a["type"]) for a in root_field["args"]):
                kind = types[_named(root_field["type"])["name"]]["kind"]
                composite = kind in {"OBJECT", "INTERFACE", "UNION"}
                endpoint.fields.append(
                    Field(operation, root_field["name"], tuple(root_field["args"]), composite)
                )
    return endpoint


SHARED: dict[str, list[tuple[Endpoint, Field]]] = {}
"""Per backend: the fields of a tenant with every installed plugin (sharing one
customer) and of the operator endpoint."""


async def cases(env: Env) -> list[tuple[Endpoint, Field]]:
    """Every field of both endpoints that takes text, datetimes, decimals or JSON."""
    if env.backend not in SHARED:
        plugins = sorted(set(env.platform.registry.declarations) - {CORE})
        tenant = await env.tenant(*plugins)
        customer = await env.create_customer(tenant, givenName="Prop")
        ids = [customer["id"]]
        operator = OperatorTokens(env.tokens).issue("property-test")
        endpoints = [
            await introspect(env, "/graphql", env.token(tenant), ids),
            await introspect(env, "/operator/graphql", operator, ids),
        ]
        SHARED[env.backend] = [(endpoint, field) for endpoint in endpoints for field in endpoint.fields]
    return SHARED[env.backend]


@settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
async def test_no_argument_value_is_an_internal_error(env: Env, data: st.DataObject) -> None:
    endpoint, root_field = data.draw(st.sampled_from(await cases(env)), label="field")
    variables = data.draw(inputs(list(root_field.arguments), endpoint), label="variables")
    query = root_field.document()
    response = await env.client.post(
        endpoint.path,
        # as a client may send them: JSON escapes lone surrogates and writes Infinity
        content=json.dumps({"query": query, "variables": variables}).encode(),
        headers={"Authorization": f"Bearer {endpoint.token}", "Content-Type": "application/json"},
    )
    assert response.status_code in {200, 400}, (query, response.text)
    codes = [e["extensions"]["code"] for e in response.json().get("errors", [])]
    assert "INTERNAL" not in codes, (query, response.text)
