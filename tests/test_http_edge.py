"""The HTTP edge of both GraphQL endpoints: one error shape, hostile documents and
bodies, introspection, and GraphiQL served from the package."""

from __future__ import annotations

import logging
import re
from importlib.resources import files
from typing import Any

import httpx
import pytest
from graphql import get_introspection_query

from crmkit.platform.operator_tokens import OperatorTokens
from crmkit.testing import Env

ENDPOINTS = ("/graphql", "/operator/graphql")
SIMPLE = {"/graphql": "{ customers(first: 1) { nodes { id } } }", "/operator/graphql": "{ tenants { slug } }"}
REQUEST_ID = re.compile(r"^[0-9a-f]{32}$")


async def token_for(env: Env, endpoint: str) -> str:
    if endpoint == "/graphql":
        return env.token(await env.tenant())
    return OperatorTokens(env.tokens).issue("edge-test")


async def post(
    env: Env, endpoint: str, *, token: str | None, json: Any = None, content: bytes | None = None
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if content is not None:
        headers["Content-Type"] = "application/json"
        return await env.client.post(endpoint, content=content, headers=headers)
    return await env.client.post(endpoint, json=json, headers=headers)


def errors_of(response: httpx.Response, status: int, code: str) -> list[dict[str, Any]]:
    """The response's errors, after checking the documented shape: every error has a
    message, ``extensions.code`` and ``extensions.requestId``."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) <= {"data", "errors"} and body["errors"], body
    for error in body["errors"]:
        assert isinstance(error["message"], str) and error["message"]
        assert isinstance(error["extensions"]["code"], str)
        assert REQUEST_ID.match(error["extensions"]["requestId"])
    assert body["errors"][0]["extensions"]["code"] == code, body
    errors: list[dict[str, Any]] = body["errors"]
    return errors


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_full_introspection_works(env: Env, endpoint: str) -> None:
    query = get_introspection_query(
        descriptions=True,
        specified_by_url=True,
        directive_is_repeatable=True,
        schema_description=True,
        input_value_deprecation=True,
        one_of=True,
    )
    response = await post(env, endpoint, token=await token_for(env, endpoint), json={"query": query})
    assert response.status_code == 200, response.text
    body = response.json()
    assert "errors" not in body, body["errors"]
    assert body["data"]["__schema"]["queryType"]["name"]


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_user_errors_are_logged_at_info_without_traceback(
    env: Env, endpoint: str, caplog: pytest.LogCaptureFixture
) -> None:
    token = await token_for(env, endpoint)
    with caplog.at_level(logging.INFO):
        response = await post(env, endpoint, token=token, json={"query": "{ nosuchfield }"})
    [error] = errors_of(response, 200, "BAD_USER_INPUT")
    request_id = error["extensions"]["requestId"]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
    assert [r for r in caplog.records if r.levelno == logging.INFO and request_id in r.getMessage()]


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize(
    ("content", "status"),
    [
        (b"{not json", 400),
        (b"[]", 400),
        (b'{"variables": {}}', 400),
        (b'{"query": 42}', 400),
        (b'{"query": "{ __typename }", "variables": [1]}', 400),
        (b'{"query": "{ __typename }", "variables": {"pad": "' + b"x" * 300_000 + b'"}}', 413),
        (b"\xff\xfe not utf-8", 400),
    ],
    ids=[
        "not-json",
        "not-an-object",
        "no-query",
        "query-not-a-string",
        "variables-list",
        "too-large",
        "bytes",
    ],
)
async def test_bodies_refused_before_graphql_have_the_error_shape(
    env: Env, endpoint: str, content: bytes, status: int
) -> None:
    response = await post(env, endpoint, token=await token_for(env, endpoint), content=content)
    assert len(errors_of(response, status, "BAD_USER_INPUT")) == 1
    assert "data" not in response.json()


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_401s_carry_www_authenticate(env: Env, endpoint: str) -> None:
    query = {"query": SIMPLE[endpoint]}
    missing = await post(env, endpoint, token=None, json=query)
    errors_of(missing, 401, "UNAUTHENTICATED")
    assert missing.headers["www-authenticate"] == "Bearer"
    bad = await post(env, endpoint, token="garbage", json=query)
    errors_of(bad, 401, "UNAUTHENTICATED")
    assert bad.headers["www-authenticate"].startswith('Bearer error="invalid_token"')


async def test_a_token_of_no_tenant_gets_www_authenticate(env: Env) -> None:
    import uuid

    response = await post(env, "/graphql", token=env.token(uuid.uuid4()), json={"query": SIMPLE["/graphql"]})
    errors_of(response, 401, "UNAUTHENTICATED")
    assert response.headers["www-authenticate"].startswith('Bearer error="invalid_token"')


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize(
    "request_body",
    [
        {"query": "query A { __typename }", "operationName": "Missing"},
        {"query": "query A { __typename }", "operationName": 5},
        {"query": ""},
        {"query": "fragment F on Query { __typename }"},
        {"query": "query A { a: __typename } query B { b: __typename }"},
        {"query": "query A { a: __typename } query B { b: __typename }", "operationName": None},
    ],
    ids=["unknown-name", "name-not-a-string", "empty-query", "only-fragments", "two-unnamed", "two-null"],
)
async def test_no_operation_to_run_is_a_400(env: Env, endpoint: str, request_body: dict[str, Any]) -> None:
    response = await post(env, endpoint, token=await token_for(env, endpoint), json=request_body)
    errors_of(response, 400, "BAD_USER_INPUT")


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_operation_name_picks_the_operation(env: Env, endpoint: str) -> None:
    token = await token_for(env, endpoint)
    document = "query A { a: __typename } query B { b: __typename }"
    response = await post(env, endpoint, token=token, json={"query": document, "operationName": "B"})
    assert response.status_code == 200 and set(response.json()["data"]) == {"b"}, response.text


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_hostile_bodies(env: Env, endpoint: str) -> None:
    nested = b"[" * 50_000
    # without a token nothing of the body is read: the answer is the same 401 as for garbage
    for content in (nested, b"{not json"):
        errors_of(await post(env, endpoint, token=None, content=content), 401, "UNAUTHENTICATED")
    token = await token_for(env, endpoint)
    errors_of(await post(env, endpoint, token=token, content=nested), 400, "BAD_USER_INPUT")
    deep_object = b'{"query": "{ __typename }", "variables": ' + b'{"a":' * 40_000 + b"1" + b"}" * 40_001
    errors_of(await post(env, endpoint, token=token, content=deep_object), 400, "BAD_USER_INPUT")
    deep_list: Any = 1
    for _ in range(900):  # within what JSON decodes; deep for coercing a variable
        deep_list = [deep_list]
    query = "query($tags: [String!]) { __typename }"
    response = await post(env, endpoint, token=token, json={"query": query, "variables": {"tags": deep_list}})
    errors_of(response, 200, "BAD_USER_INPUT")
    for levels in (50_000, 600):  # past the token limit; within it, past the parser's stack
        braces = "{ a " * levels + "}" * levels
        errors_of(await post(env, endpoint, token=token, json={"query": braces}), 200, "BAD_USER_INPUT")


SUGGESTING = {
    "/graphql": [
        "{ customers(firs: 1) { nodes { id } } }",  # argument
        "{ customers(filter: {stage: AT_RISC}) { nodes { id } } }",  # enum value
        "query($f: CustomerFilterInputt) { customers(filter: $f) { nodes { id } } }",  # type
        '{ customers(filter: {tga: "x"}) { nodes { id } } }',  # input field
        "{ customer { id } }",  # field
    ],
    "/operator/graphql": [
        "{ tenantz { slug } }",  # field
        'mutation { suspendTenant(slugg: "x") { slug } }',  # argument
        'mutation { onboardTenant(input: {slug: "x", nam: "y"}) { adminEmail } }',  # input field
        "query($i: OnboardTenantInputt) { tenants { slug } }",  # type
    ],
}


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_no_suggestions_outside_dev_mode(
    env: Env, endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = await token_for(env, endpoint)
    query = SUGGESTING[endpoint][0]
    shown = errors_of(await post(env, endpoint, token=token, json={"query": query}), 200, "BAD_USER_INPUT")
    assert "Did you mean" in shown[0]["message"]  # development mode keeps them
    monkeypatch.setattr(env.platform.settings, "dev_mode", False)
    for query in SUGGESTING[endpoint]:
        errors = errors_of(
            await post(env, endpoint, token=token, json={"query": query}), 200, "BAD_USER_INPUT"
        )
        assert "did you mean" not in str(errors).lower(), errors
    if endpoint == "/graphql":  # an enum value coerced from variables
        response = await post(
            env,
            endpoint,
            token=token,
            json={
                "query": "query($f: CustomerFilterInput) { customers(filter: $f) { nodes { id } } }",
                "variables": {"f": {"stage": "AT_RISC"}},
            },
        )
        errors = errors_of(response, 200, "BAD_USER_INPUT")
        assert "did you mean" not in str(errors).lower(), errors


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_depth_alias_and_token_limits(env: Env, endpoint: str) -> None:
    token = await token_for(env, endpoint)
    field = "tenants" if endpoint == "/operator/graphql" else "customers"
    aliases = "{ " + " ".join(f"a{i}: {field} {{ __typename }}" for i in range(20)) + " }"
    deep = "{ " + "f { " * 12 + "id" + " }" * 13
    tokens = "{ " + "__typename " * 3000 + "}"
    for query, message in [(aliases, "aliases"), (deep, "depth"), (tokens, "token")]:
        errors = errors_of(
            await post(env, endpoint, token=token, json={"query": query}), 200, "BAD_USER_INPUT"
        )
        assert any(message in e["message"] for e in errors), errors


async def test_graphiql_is_served_from_the_package(env: Env) -> None:
    page = await env.client.get("/graphql", headers={"Accept": "text/html"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert assets and not [a for a in assets if "//" in a or not a.startswith("/")], assets
    for asset in assets:
        response = await env.client.get(asset)
        assert response.status_code == 200 and response.content, asset
    shipped = files("crmkit") / "http" / "graphiql"
    for library in ("graphiql", "react", "react-dom"):
        assert (shipped / f"LICENSE.{library}").is_file()


async def test_graphiql_is_off_outside_dev_mode(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(env.platform.settings, "dev_mode", False)
    assert (await env.client.get("/graphql")).status_code == 404
    assert (await env.client.get("/graphiql/graphiql.min.js")).status_code == 404


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_an_empty_selection_set_is_refused_with_a_message_one_can_use(env: Env, endpoint: str) -> None:
    response = await post(
        env, endpoint, token=await token_for(env, endpoint), json={"query": "{ __schema { types { } } }"}
    )
    (error,) = errors_of(response, 200, "BAD_USER_INPUT")
    assert "selection set" in error["message"] and "max()" not in error["message"]
