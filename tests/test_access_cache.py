"""The access cache (:mod:`crmkit.tenants.cache`) and the data key cache
(:class:`crmkit.crypto.DataKeyCache`): answered from memory, never wider than the database.

A second platform with an engine of its own on the same database stands for a second
process (``tests/test_scale_out.py`` runs real ones): it hears of a change made through
the first only through the database (PostgreSQL's notification, SQLite's stamp file).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from sqlalchemy import event, select, text

from crmkit.app import create_app
from crmkit.core.customers.models import CustomerKey
from crmkit.db import Database, create_engine
from crmkit.errors import Unauthenticated
from crmkit.platform import Platform, lifecycle
from crmkit.platform.operator_tokens import revoke_token
from crmkit.tenants.service import get_tenant
from crmkit.testing import Env, StatementCounter

QUERY = "{ customers(first: 5) { nodes { id displayName } } }"


class Other:
    """The second platform and an HTTP client to its app."""

    def __init__(self, platform: Platform, client: httpx.AsyncClient) -> None:
        self.platform = platform
        self.client = client

    async def status(self, token: str) -> int:
        response = await self.client.post(
            "/graphql", json={"query": QUERY}, headers={"Authorization": f"Bearer {token}"}
        )
        return response.status_code


@pytest.fixture
async def other(env: Env) -> AsyncIterator[Other]:
    url = env.platform.settings.resolved_database_url
    platform = Platform(
        env.platform.settings, registry=env.platform.registry, db=Database(create_engine(url))
    )
    transport = httpx.ASGITransport(app=create_app(platform))  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://other.test") as client:
        yield Other(platform, client)
    await platform.close()


async def until(condition: Callable[[], bool], what: str) -> None:
    """Wait for a notification to arrive (PostgreSQL delivers it after the commit)."""
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"waited 5 s for {what}")


async def served_from_memory(other: Other, token: str) -> None:
    """The other platform has the tenant's state and the token in its cache: a request
    asks the database for neither."""
    assert await other.status(token) == 200
    sql = StatementCounter()
    event.listen(other.platform.db.sync_engine, "before_cursor_execute", sql)
    try:
        assert await other.status(token) == 200
    finally:
        event.remove(other.platform.db.sync_engine, "before_cursor_execute", sql)
    asked = [s for s in sql.statements if "FROM tenants" in s or "oauth_revocations" in s]
    assert asked == [], asked


def cached(platform: Platform, tenant: uuid.UUID) -> bool:
    return tenant in platform.access


async def test_a_suspension_through_one_platform_is_refused_by_the_other(env: Env, other: Other) -> None:
    tenant = await env.tenant()
    token = env.token(tenant)
    await served_from_memory(other, token)
    await lifecycle.suspend(env.platform, str(tenant))
    if env.backend == "postgresql":
        await until(lambda: not cached(other.platform, tenant), "the suspension's notification")
    assert await other.status(token) == 401
    await lifecycle.reactivate(env.platform, str(tenant))
    fresh = env.token(tenant)
    if env.backend == "postgresql":
        await until(lambda: not cached(other.platform, tenant), "the reactivation's notification")
    assert await other.status(fresh) == 200


async def test_a_revocation_through_one_platform_is_refused_by_the_other(env: Env, other: Other) -> None:
    tenant = await env.tenant()
    token, kept = env.token(tenant), env.token(tenant)
    await served_from_memory(other, token)
    assert await other.status(kept) == 200
    await revoke_token(env.platform, token)
    if env.backend == "postgresql":
        await until(lambda: not cached(other.platform, tenant), "the revocation's notification")
    assert await other.status(token) == 401
    assert await other.status(kept) == 200


@pytest.mark.postgres_only
async def test_a_revocation_made_while_the_listener_is_down_is_not_missed(env: Env, other: Other) -> None:
    """Notifications sent while the listening connection is down are lost: the cache
    is forgotten when it drops, and unused until it listens again (then forgotten anew)."""
    tenant = await env.tenant()
    token = env.token(tenant)
    await served_from_memory(other, token)
    listener = other.platform.access.listener
    assert listener is not None and listener.pid is not None
    async with env.owner_engine.connect() as owner:
        await owner.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": listener.pid})
    await until(lambda: not listener.listening, "the listener to notice its connection dropped")
    assert not cached(other.platform, tenant)
    await revoke_token(env.platform, token)  # no notification reaches the other platform
    assert await other.status(token) == 401
    await until(lambda: listener.listening, "the listener to reconnect")
    assert await other.status(env.token(tenant)) == 200


async def test_a_transaction_reads_its_own_change_of_a_tenant(env: Env) -> None:
    """Enabling a plugin binds the tenant again in the same transaction: it must see the
    plugin it just enabled, not the cached state."""
    tenant = await env.tenant()
    assert await env.gql(QUERY, tenant=tenant)
    await env.enable(tenant, "notes")
    body = await env.gql("{ customers(first: 1) { nodes { id notes { body } } } }", tenant=tenant)
    assert "errors" not in body, body


async def test_data_keys_are_unwrapped_once_and_dropped_at_erasure(env: Env) -> None:
    tenant = await env.tenant()
    customer = uuid.UUID((await env.create_customer(tenant, givenName="Ada", email="ada@example.com"))["id"])
    cache = env.platform.keyring.data_keys
    assert await env.gql(QUERY, tenant=tenant)
    assert (tenant, customer) in cache
    async with env.platform.tenant_scope(tenant) as scope:
        wrapped = await scope.session.scalar(select(CustomerKey.wrapped_key))
    assert wrapped is not None
    held = cache.get(tenant, customer, wrapped)
    assert held is not None
    assert await env.gql(QUERY, tenant=tenant)
    assert cache.get(tenant, customer, wrapped) is held  # not unwrapped again
    erased = await env.gql(
        "mutation($id: UUID!) { eraseCustomer(id: $id) { id } }", {"id": str(customer)}, tenant=tenant
    )
    assert "errors" not in erased, erased
    assert (tenant, customer) not in cache  # crypto-shredding does not wait for the window


async def test_offboarding_drops_the_tenants_data_keys(env: Env) -> None:
    tenant = await env.tenant()
    customer = uuid.UUID((await env.create_customer(tenant, givenName="Bo"))["id"])
    assert await env.gql(QUERY, tenant=tenant)
    assert (tenant, customer) in env.platform.keyring.data_keys
    slug = (await get_tenant(env.platform.db, str(tenant))).slug
    await lifecycle.offboard(env.platform, slug, confirm=slug)
    assert (tenant, customer) not in env.platform.keyring.data_keys


async def test_a_verified_token_is_known_until_it_expires(env: Env) -> None:
    token = env.tokens.issue(tenant_id=uuid.uuid4(), subject="user:test", scopes=[], lifetime_seconds=1)
    first = env.tokens.verify(token)
    assert env.tokens.verify(token) is first  # not verified again
    await asyncio.sleep(max(0.0, first.expires_at - time.time()) + 0.05)
    with pytest.raises(Unauthenticated, match=r"expired|not valid"):
        env.tokens.verify(token)
