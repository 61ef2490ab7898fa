"""Shared fixtures: one platform per database backend, built once per test session.

Every test runs on SQLite and on PostgreSQL (``backend`` is parametrised). Tests keep
apart by creating their own tenants, which is also what the platform promises. Where
PostgreSQL or Redis is not running the tests that need them skip with a message,
unless ``CRMKIT_TEST_REQUIRE_SERVICES=1`` (CI) turns the skip into a failure.

On PostgreSQL the migrations run as the superuser (the tables' owner here), and the
platform connects as a login role of this run that is a member of ``crmkit_app``, as in
production: it owns nothing and row-level security applies to it. A test that must act
as the owner (tampering with the audit trail) uses ``env.owner_engine``.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import event, make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from crmkit import migrations
from crmkit.app import create_app
from crmkit.auth.tokens import TokenService
from crmkit.db import Database, create_engine
from crmkit.jobs.backends import InlineQueue
from crmkit.platform import Platform
from crmkit.plugins.registry import load_registry
from crmkit.settings import Settings
from crmkit.tenants.service import create_tenant
from tests import recorder_plugin

PG_ADMIN_URL = os.environ.get("CRMKIT_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")
PG_DB = os.environ.get("CRMKIT_TEST_PG_DB", f"crmkit_test_{os.getpid()}")
"""One database per test run, so runs side by side never wipe each other's."""
PG_APP_ROLE = f"crmkit_app_test_{os.getpid()}"
"""This run's login role, a member of crmkit_app (roles are cluster-wide: one per run)."""
REDIS_URL = os.environ.get("CRMKIT_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
REQUIRE_SERVICES = os.environ.get("CRMKIT_TEST_REQUIRE_SERVICES") == "1"


def unavailable(what: str, exc: BaseException) -> None:
    message = f"{what} is not reachable ({exc!r}); start it to run these tests"
    if REQUIRE_SERVICES:
        pytest.fail(message + " (CRMKIT_TEST_REQUIRE_SERVICES=1)")
    pytest.skip(message)


async def pg_url(name: str) -> str:
    """Drop and create database ``name``; the async URL to it."""
    import asyncpg

    try:
        admin = await asyncio.wait_for(asyncpg.connect(PG_ADMIN_URL), 5)
    except Exception as exc:
        unavailable("PostgreSQL", exc)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    return f"{base}/{name}"


async def drop_pg(name: str) -> None:
    import asyncpg

    admin = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def create_app_login(owner_url: str, role: str = PG_APP_ROLE) -> str:
    """Create the login role ``role`` in ``crmkit_app`` (the migrations created that); the
    URL of ``owner_url``'s database as that role."""
    import asyncpg

    from crmkit.migrations.rls import APP_ROLE

    admin = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await admin.execute(f'DROP ROLE IF EXISTS "{role}"')
        await admin.execute(f'CREATE ROLE "{role}" LOGIN IN ROLE {APP_ROLE}')
    finally:
        await admin.close()
    return make_url(owner_url).set(username=role).render_as_string(hide_password=False)


async def drop_app_login(role: str = PG_APP_ROLE) -> None:
    import asyncpg

    admin = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await admin.execute(f'DROP ROLE IF EXISTS "{role}"')
    finally:
        await admin.close()


async def fresh_database_url(backend: str, name: str, tmp: Path) -> str:
    if backend == "sqlite":
        return f"sqlite+aiosqlite:///{tmp / (name + '.db')}"
    return await pg_url(name)


def make_registry() -> Any:
    registry = load_registry()
    registry.add(recorder_plugin)
    return registry


@dataclass
class Env:
    """What a test gets: the platform, an HTTP client to its app, and helpers."""

    platform: Platform
    client: httpx.AsyncClient
    tokens: TokenService
    backend: str
    owner_engine: AsyncEngine
    """Connected as the tables' owner (PostgreSQL: the superuser that migrated them)."""

    @property
    def queue(self) -> InlineQueue:
        assert isinstance(self.platform.queue, InlineQueue)
        return self.platform.queue

    async def tenant(self, *plugins: str, **settings: dict[str, Any]) -> uuid.UUID:
        """A new tenant with ``plugins`` enabled (settings by plugin name)."""
        from crmkit.plugins.enablement import enable

        slug = f"t-{uuid.uuid4().hex[:12]}"
        tenant = await create_tenant(self.platform.db, slug, f"Tenant {slug}")
        for plugin in plugins:
            await enable(self.platform, slug, plugin, settings.get(plugin))
        return tenant.id

    def token(self, tenant_id: uuid.UUID, scopes: list[str] | None = None, **kw: Any) -> str:
        if scopes is None:
            scopes = sorted(self.platform.registry.scopes())
        return self.tokens.issue(tenant_id=tenant_id, subject="user:test", scopes=scopes, **kw)

    async def gql(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        *,
        tenant: uuid.UUID | None = None,
        token: str | None = None,
        status: int = 200,
    ) -> dict[str, Any]:
        headers = {}
        if token is None and tenant is not None:
            token = self.token(tenant)
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        response = await self.client.post(
            "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
        )
        assert response.status_code == status, response.text
        body: dict[str, Any] = response.json()
        return body


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``postgres_only`` run on PostgreSQL alone (deselected, not skipped)."""
    deselected = [
        item for item in items if item.get_closest_marker("postgres_only") and "[sqlite" in item.nodeid
    ]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if item not in deselected]


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def session_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("crmkit")


@pytest.fixture(scope="session")
async def env(backend: str, session_tmp: Path) -> AsyncIterator[Env]:
    owner_url = await fresh_database_url(backend, PG_DB, session_tmp)
    registry = make_registry()
    owner_engine = create_engine(owner_url)
    await migrations.upgrade(owner_engine, registry)
    url = await create_app_login(owner_url) if backend == "postgresql" else owner_url
    settings = Settings(
        dev_mode=True,
        data_dir=session_tmp / backend,
        database_url=url,
        migration_database_url=owner_url,
        redis_url=None,
        job_retry_base_seconds=0.01,
    )
    platform = Platform(settings, registry=registry, db=Database(create_engine(url)))
    app = create_app(platform)
    tokens = app.state.tokens
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://crmkit.test") as client:
        yield Env(platform, client, tokens, backend, owner_engine)
    await platform.close()
    await owner_engine.dispose()
    if backend == "postgresql":
        await drop_pg(PG_DB)
        await drop_app_login()


class StatementCounter:
    def __init__(self) -> None:
        self.statements: list[str] = []

    def __call__(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        self.statements.append(statement)

    @property
    def count(self) -> int:
        return len(self.statements)


@pytest.fixture
def sql_statements(env: Env) -> Iterator[StatementCounter]:
    counter = StatementCounter()
    event.listen(env.platform.db.sync_engine, "before_cursor_execute", counter)
    yield counter
    event.remove(env.platform.db.sync_engine, "before_cursor_execute", counter)
