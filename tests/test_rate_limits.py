"""Rate limits (crmkit.http.rate_limits): per client address on the login and token
endpoints, per token subject on the GraphQL endpoints; a request over its limit
is answered 429 in its endpoint's error shape with ``Retry-After``. Each test builds
apps of its own with small limits and counts requests: nothing depends on timing."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from litestar import Litestar

from crmkit.app import RATE_LIMIT_STORE, create_app
from crmkit.platform.operator_tokens import OperatorTokens
from crmkit.settings import ConfigurationError, Settings
from crmkit.testing import Env, FrozenClock

CUSTOMERS = "{ customers(first: 1) { nodes { id } } }"
BASE = "https://crmkit.test"


def limited_app(env: Env, monkeypatch: pytest.MonkeyPatch, per_minute: int, **settings: Any) -> Litestar:
    """An app on the test platform whose every limit is ``per_minute``."""
    for name in ("login", "token", "graphql"):
        monkeypatch.setattr(env.platform.settings, f"rate_limit_{name}_per_minute", per_minute)
    for name, value in settings.items():
        monkeypatch.setattr(env.platform.settings, name, value)
    app = create_app(env.platform)
    monkeypatch.undo()
    return app


def client(app: Litestar, address: str = "192.0.2.1") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(address, 40000))  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=transport, base_url=BASE)


async def graphql(app: Litestar, token: str) -> httpx.Response:
    async with client(app) as c:
        return await c.post(
            "/graphql", json={"query": CUSTOMERS}, headers={"Authorization": f"Bearer {token}"}
        )


def assert_rate_limited(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    assert int(response.headers["retry-after"]) >= 1


async def test_graphql_is_limited_per_token_subject(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    app = limited_app(env, monkeypatch, 2)
    tenant = await env.tenant()
    first = env.tokens.issue(tenant_id=tenant, subject="user:a", scopes=["customers:read"])
    for _ in range(2):
        assert (await graphql(app, first)).status_code == 200
    refused = await graphql(app, first)
    assert_rate_limited(refused)
    error = refused.json()["errors"][0]
    assert error["extensions"]["code"] == "RATE_LIMITED" and error["extensions"]["requestId"]
    # a new token for the same subject buys nothing; another subject has its own count
    again = env.tokens.issue(tenant_id=tenant, subject="user:a", scopes=["customers:read"])
    assert_rate_limited(await graphql(app, again))
    other = env.tokens.issue(tenant_id=tenant, subject="user:b", scopes=["customers:read"])
    assert (await graphql(app, other)).status_code == 200


async def test_a_forged_token_spends_no_one_elses_allowance(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = limited_app(env, monkeypatch, 2)
    tenant = await env.tenant()
    token = env.tokens.issue(tenant_id=tenant, subject="user:a", scopes=["customers:read"])
    header, payload, _ = token.split(".")
    for _ in range(3):
        assert (await graphql(app, f"{header}.{payload}.forged")).status_code in {401, 429}
    assert (await graphql(app, token)).status_code == 200


async def test_the_operator_api_is_limited_per_operator(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    app = limited_app(env, monkeypatch, 1)
    token = OperatorTokens(env.tokens).issue(f"ops-{uuid.uuid4().hex[:6]}")
    async with client(app) as c:
        answers = [
            await c.post(
                "/operator/graphql",
                json={"query": "{ tenants { slug } }"},
                headers={"Authorization": f"Bearer {token}"},
            )
            for _ in range(2)
        ]
    assert answers[0].status_code == 200, answers[0].text
    assert_rate_limited(answers[1])
    assert answers[1].json()["errors"][0]["extensions"]["code"] == "RATE_LIMITED"


async def test_login_is_limited_per_client_address(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    app = limited_app(env, monkeypatch, 2)
    tenant = await env.tenant()
    form = {"step": "login", "request": "", "tenant": str(tenant), "email": "a@bank.example", "password": "x"}
    async with client(app) as c:
        answers = [await c.post("/oauth/authorize", data=form) for _ in range(3)]
    assert [a.status_code for a in answers[:2]] == [400, 400]  # an empty request: refused, but counted
    assert_rate_limited(answers[2])
    assert "Too many requests" in answers[2].text and answers[2].headers["content-type"].startswith(
        "text/html"
    )
    async with client(app, "192.0.2.2") as elsewhere:
        assert (await elsewhere.post("/oauth/authorize", data=form)).status_code == 400


async def test_the_token_endpoint_is_limited_per_client_address(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = limited_app(env, monkeypatch, 2)
    data = {"grant_type": "client_credentials", "tenant": "nowhere", "client_id": "nobody"}
    async with client(app) as c:
        answers = [await c.post("/oauth/token", data=data) for _ in range(2)]
        introspected = await c.post("/oauth/introspect", data={"token": "x"})  # the same count
    assert [a.json()["error"] for a in answers] == ["invalid_client"] * 2  # refused, but counted
    assert_rate_limited(introspected)
    assert introspected.json()["error"] == "RATE_LIMITED"


@pytest.fixture
async def shared_redis_apps(
    env: Env, monkeypatch: pytest.MonkeyPatch, redis_url: str
) -> AsyncIterator[tuple[Litestar, Litestar]]:
    apps = (
        limited_app(env, monkeypatch, 3, redis_url=redis_url),
        limited_app(env, monkeypatch, 3, redis_url=redis_url),
    )
    yield apps
    for app in apps:
        await app.stores.get(RATE_LIMIT_STORE).__aexit__(None, None, None)


@pytest.mark.redis
async def test_limits_hold_across_processes_sharing_redis(
    env: Env, shared_redis_apps: tuple[Litestar, Litestar]
) -> None:
    """Two servers on one Redis: requests to either count against one limit."""
    one, two = shared_redis_apps
    tenant = await env.tenant()
    token = env.tokens.issue(tenant_id=tenant, subject="user:shared", scopes=["customers:read"])
    assert [(await graphql(app, token)).status_code for app in (one, two, one)] == [200, 200, 200]
    assert_rate_limited(await graphql(app=two, token=token))
    assert_rate_limited(await graphql(app=one, token=token))


async def test_outside_development_mode_the_server_needs_an_https_issuer(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(env.platform.settings, "dev_mode", False)
    with pytest.raises(ConfigurationError, match="CRMKIT_ISSUER"):
        create_app(env.platform)
    for issuer in ("crmkit", "http://crm.example.com"):
        with pytest.raises(ConfigurationError):
            Settings(dev_mode=False, issuer=issuer).check_issuer()
    Settings(dev_mode=False, issuer="https://crm.example.com").check_issuer()
    Settings(dev_mode=True).check_issuer()  # development: the request's host is fine


async def test_a_limit_slides_and_keeps_at_most_a_minute_of_counts(
    env: Env, monkeypatch: pytest.MonkeyPatch, clock: FrozenClock
) -> None:
    """Two a minute is two in any sixty seconds, not two more at hh:mm:00; what is stored
    per caller is one count per second of the last minute, whatever the limit."""
    app = limited_app(env, monkeypatch, 2)
    tenant = await env.tenant()
    token = env.tokens.issue(tenant_id=tenant, subject="user:a", scopes=["customers:read"])
    clock.set(datetime(2025, 1, 6, 9, 0, 59, tzinfo=UTC))
    assert [(await graphql(app, token)).status_code for _ in range(2)] == [200, 200]
    clock.advance(seconds=2)  # 09:01:01
    refused = await graphql(app, token)
    assert_rate_limited(refused)
    assert refused.headers["retry-after"] == "58"
    clock.advance(seconds=58)
    assert (await graphql(app, token)).status_code == 200

    generous = limited_app(env, monkeypatch, 10_000)
    for _ in range(90):
        clock.advance(seconds=1)
        assert (await graphql(generous, token)).status_code == 200
    stored = await generous.stores.get(RATE_LIMIT_STORE).get(f"graphql:{tenant}/user:a")
    assert stored is not None and len(json.loads(stored)) == 60
