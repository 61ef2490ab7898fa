"""``crmkit.testing``: the pytest plugin for crmkit's tests and every plugin's.

Installing crmkit registers it (entry point ``pytest11``, name ``crmkit``): a plugin's
tests need no conftest. The fixtures, each documented where it is defined below:

- ``env``: a running platform (:class:`Env`) on SQLite and on PostgreSQL (every test
  that uses it runs once per backend, see ``backend``). One platform per backend is
  built per test session; tests keep apart by creating tenants of their own
  (``env.tenant(...)``), which is also what the platform promises. ``env.gql(...)``
  queries it as a token of chosen scopes; ``env.drain()`` runs the queued jobs.
- ``clock``: the platform's clock, frozen at :data:`CLOCK_START` and moved by the test.
- ``sql_statements``: counts the SQL statements the platform sends.
- ``empty_database``: a database of its own, for migration tests.
- ``redis_url``: a reachable, emptied Redis database.
- ``plugin_registry`` and ``crmkit_extra_plugins``: the plugins the platform runs:
  every installed one, found through its entry point as in production, plus the
  plugin objects a suite adds in-process by overriding ``crmkit_extra_plugins``.

On PostgreSQL the migrations run as the tables' owner and the platform connects as a
login role of this run that is a member of ``crmkit_app``, as in production: it owns
nothing and row-level security applies to it. ``env.owner_engine`` is the owner.

Environment: ``CRMKIT_TEST_PG_ADMIN`` (an admin URL with CREATEDB and CREATEROLE,
default ``postgresql://postgres@127.0.0.1:5432/postgres``), ``CRMKIT_TEST_REDIS_URL``
(default ``redis://127.0.0.1:6379/15``). Where PostgreSQL or Redis is not reachable
their tests skip with a message; ``CRMKIT_TEST_REQUIRE_SERVICES=1`` makes that a
failure (CI). Markers: ``postgres_only`` runs a test on PostgreSQL alone (its SQLite
variant is deselected); ``postgres`` and ``redis`` label tests that need the server.

pytest loads this module before any test module: it imports the platform inside the
fixtures, so ``pytest --help`` works without a database. Its fixtures share one event
loop per session: the suite's pytest configuration sets ``asyncio_mode = "auto"`` and
both ``asyncio_default_*_loop_scope`` options to ``"session"``.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

try:
    import pytest_asyncio
except ModuleNotFoundError as missing:  # pragma: no cover - crmkit installed without its extra
    raise ImportError(
        "crmkit.testing needs pytest-asyncio: pip install 'crmkit[testing]' "
        "(or turn the plugin off with `pytest -p no:crmkit`)"
    ) from missing

from crmkit.clock import FrozenClock  # the clock fixture's type, for plugins' tests

if TYPE_CHECKING:
    import httpx
    from sqlalchemy.ext.asyncio import AsyncEngine

    from crmkit.auth.tokens import TokenService
    from crmkit.core.events import DomainEvent
    from crmkit.jobs.backends import InlineQueue
    from crmkit.platform import Platform
    from crmkit.platform.registry import PluginRegistry

PG_ADMIN_URL = os.environ.get("CRMKIT_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")
PG_DB = os.environ.get("CRMKIT_TEST_PG_DB", f"crmkit_test_{os.getpid()}")
"""One database per test run, so runs side by side never wipe each other's."""
PG_APP_ROLE = f"crmkit_app_test_{os.getpid()}"
"""This run's login role, a member of crmkit_app (roles are cluster-wide: one per run)."""
REDIS_URL = os.environ.get("CRMKIT_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
REQUIRE_SERVICES = os.environ.get("CRMKIT_TEST_REQUIRE_SERVICES") == "1"
BACKENDS = ("sqlite", "postgresql")
CLOCK_START = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)
"""Where the ``clock`` fixture stands: a Monday, 09:00 UTC."""
CREATE_CUSTOMER = """
mutation($input: CreateCustomerInput!) {
  createCustomer(input: $input) { id displayName kind lifecycleStage tags email version }
}"""
MARKERS = (
    "postgres: needs a PostgreSQL server",
    "redis: needs a Redis server",
    "postgres_only: runs on the PostgreSQL backend only",
)


def pytest_configure(config: pytest.Config) -> None:
    """Register the markers, so a plugin's pytest configuration (``--strict-markers``
    included) needs nothing for them."""
    for marker in MARKERS:
        config.addinivalue_line("markers", marker)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``postgres_only`` run on PostgreSQL alone (deselected, not skipped)."""
    deselected = [
        item
        for item in items
        if item.get_closest_marker("postgres_only")
        and getattr(item, "callspec", None) is not None
        and item.callspec.params.get("backend") == "sqlite"  # type: ignore[attr-defined]
    ]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if item not in deselected]


def unavailable(what: str, exc: BaseException) -> None:
    """Skip the test because service ``what`` is not reachable; fail it in CI."""
    message = f"{what} is not reachable ({exc!r}); start it to run these tests"
    if REQUIRE_SERVICES:
        pytest.fail(message + " (CRMKIT_TEST_REQUIRE_SERVICES=1)")
    pytest.skip(message)


async def pg_url(name: str) -> str:
    """Drop and create PostgreSQL database ``name``; the async URL to it as the admin."""
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
    """Drop PostgreSQL database ``name``, connections and all."""
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
    from sqlalchemy import make_url

    from crmkit.migrations.rls import APP_ROLE

    admin = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await admin.execute(f'DROP ROLE IF EXISTS "{role}"')
        await admin.execute(f'CREATE ROLE "{role}" LOGIN IN ROLE {APP_ROLE}')
    finally:
        await admin.close()
    return make_url(owner_url).set(username=role).render_as_string(hide_password=False)


async def drop_app_login(role: str = PG_APP_ROLE) -> None:
    """Drop the login role ``role``."""
    import asyncpg

    admin = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await admin.execute(f'DROP ROLE IF EXISTS "{role}"')
    finally:
        await admin.close()


async def fresh_database_url(backend: str, name: str, folder: Path) -> str:
    """An empty database ``name`` on ``backend`` (SQLite: a file in ``folder``)."""
    if backend == "sqlite":
        return f"sqlite+aiosqlite:///{folder / (name + '.db')}"
    return await pg_url(name)


@dataclass
class Env:
    """What a test gets: the platform, an HTTP client to its app, and helpers."""

    platform: Platform
    client: httpx.AsyncClient
    tokens: TokenService
    backend: str
    owner_engine: AsyncEngine
    """Connected as the tables' owner (PostgreSQL: the role that migrated them)."""

    @property
    def queue(self) -> InlineQueue:
        """The in-process job queue: jobs run as asyncio tasks of the test's loop."""
        from crmkit.jobs.backends import InlineQueue

        assert isinstance(self.platform.queue, InlineQueue)
        return self.platform.queue

    async def drain(self) -> None:
        """Wait until every queued job (event deliveries included), and every job those
        queued, has run: what the platform does after a commit is then done."""
        await self.queue.drain()

    async def tenant(self, *plugins: str, **settings: dict[str, Any]) -> uuid.UUID:
        """A new tenant with ``plugins`` enabled, each with its ``settings`` by plugin
        name: ``await env.tenant("notes", notes={"max_note_length": 10})``."""
        from crmkit.platform.enablement import enable
        from crmkit.tenants.service import create_tenant

        slug = f"t-{uuid.uuid4().hex[:12]}"
        tenant = await create_tenant(self.platform.db, slug, f"Tenant {slug}")
        for plugin in plugins:
            await enable(self.platform, slug, plugin, settings.get(plugin))
        return tenant.id

    async def enable(self, tenant: uuid.UUID, plugin: str, settings: dict[str, Any] | None = None) -> None:
        """Enable ``plugin`` for a tenant that already has data, as ``crmkit plugins
        enable`` does: a test shows what enabling it changes for the same rows."""
        from crmkit.platform.enablement import enable

        await enable(self.platform, str(tenant), plugin, settings)

    def token(self, tenant_id: uuid.UUID, scopes: Sequence[str] | None = None, **claims: Any) -> str:
        """An access token of ``tenant_id`` for subject ``user:test`` with ``scopes``
        (default: every scope of every installed plugin)."""
        if scopes is None:
            scopes = sorted(self.platform.registry.scopes())
        return self.tokens.issue(tenant_id=tenant_id, subject="user:test", scopes=scopes, **claims)

    async def gql(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        *,
        tenant: uuid.UUID | None = None,
        scopes: Sequence[str] | None = None,
        token: str | None = None,
        status: int = 200,
    ) -> dict[str, Any]:
        """POST ``query`` to ``/graphql``; the response body (``data`` and ``errors``).

        It is sent with ``token``, or as ``tenant`` with a token of ``scopes`` (default:
        all), or without a token when neither is given. Asserts the HTTP ``status``."""
        if token is None and tenant is not None:
            token = self.token(tenant, scopes)
        elif scopes is not None:
            raise TypeError("scopes apply to the token env.gql makes for tenant=...")
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        response = await self.client.post(
            "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
        )
        assert response.status_code == status, response.text
        body: dict[str, Any] = response.json()
        return body

    async def create_customer(self, tenant: uuid.UUID, **fields: Any) -> dict[str, Any]:
        """Create a customer of ``tenant`` through GraphQL (``kind`` defaults to
        ``PERSON``; camelCase input fields); its ``id``, ``displayName``, ``kind``,
        ``lifecycleStage``, ``tags``, ``email`` and ``version``."""
        body = await self.gql(CREATE_CUSTOMER, {"input": {"kind": "PERSON", **fields}}, tenant=tenant)
        assert "errors" not in body, body
        customer: dict[str, Any] = body["data"]["createCustomer"]
        return customer

    async def events(self, tenant: uuid.UUID, type: str) -> list[DomainEvent]:
        """The events of ``type`` the tenant's changes emitted, oldest first, as
        handlers receive them."""
        from sqlalchemy import select

        from crmkit.core.events import DomainEvent, OutboxEvent

        async with self.platform.db.tenant_session(tenant) as session:
            rows = await session.scalars(
                select(OutboxEvent).where(OutboxEvent.type == type).order_by(OutboxEvent.created_at)
            )
            return [DomainEvent.from_row(row) for row in rows]

    async def deliver(self, tenant: uuid.UUID, plugin: str, event: DomainEvent) -> None:
        """Hand ``event`` to ``plugin``'s handler once more, in a transaction of its own,
        as the platform does when a delivery is repeated (delivery is at least once):
        the platform's record of earlier deliveries is not consulted."""
        async with self.platform.tenant_scope(tenant) as scope:
            await scope.hooks.call_plugin(plugin, event.type, event=event)


@pytest.fixture(scope="session")
def crmkit_extra_plugins() -> Sequence[object]:
    """Plugin objects to register besides the installed plugins; none by default.

    Override it in a ``conftest.py`` to run test doubles in-process, next to the
    installed plugins (a module or object with ``plugin_info`` and hook functions)::

        @pytest.fixture(scope="session")
        def crmkit_extra_plugins() -> list[object]:
            return [recorder_plugin]
    """
    return ()


@pytest.fixture(scope="session")
def plugin_registry(crmkit_extra_plugins: Sequence[object]) -> PluginRegistry:
    """The core, every installed plugin (through its ``crmkit.plugins`` entry point, as
    in production) and ``crmkit_extra_plugins``. A refused plugin fails the tests with
    the reason, as ``crmkit plugins list`` would show it."""
    from crmkit.platform.registry import load_registry

    registry = load_registry()
    for plugin in crmkit_extra_plugins:
        registry.add(plugin)
    if registry.refused:
        pytest.fail(f"plugins refused: {registry.refused}")
    return registry


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """``sqlite`` or ``postgresql``: a test that uses it (``env`` does) runs on both."""
    return str(request.param)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def env(
    backend: str, plugin_registry: PluginRegistry, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Env]:
    """The platform on ``backend``, migrated, with the in-process job queue, shared by the
    session's tests on that backend. Development mode: no key files needed."""
    import httpx

    from crmkit import migrations
    from crmkit.app import create_app
    from crmkit.db import Database, create_engine
    from crmkit.platform import Platform
    from crmkit.settings import Settings

    folder = tmp_path_factory.mktemp(f"crmkit-{backend}")
    owner_url = await fresh_database_url(backend, PG_DB, folder)
    owner_engine = create_engine(owner_url)
    await migrations.upgrade(owner_engine, plugin_registry)
    url = await create_app_login(owner_url) if backend == "postgresql" else owner_url
    settings = Settings(
        dev_mode=True,
        data_dir=folder,
        database_url=url,
        migration_database_url=owner_url,
        redis_url=None,
        job_retry_base_seconds=0.01,
        # every test calls from one address: the limits' own tests set small ones
        rate_limit_login_per_minute=100_000,
        rate_limit_token_per_minute=100_000,
        rate_limit_graphql_per_minute=100_000,
    )
    platform = Platform(settings, registry=plugin_registry, db=Database(create_engine(url)))
    app = create_app(platform)
    # litestar's precise ASGI types are narrower than httpx's generic ones
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://crmkit.test") as client:
        yield Env(platform, client, app.state.tokens, backend, owner_engine)
    await platform.close()
    await owner_engine.dispose()
    if backend == "postgresql":
        await drop_pg(PG_DB)
        await drop_app_login()


@pytest.fixture
def clock() -> Iterator[FrozenClock]:
    """The platform's clock, frozen at :data:`CLOCK_START` for the test and restored
    after it: ``clock.advance(days=30)`` moves it (expiry, retention, cron, SLAs)."""
    from crmkit.clock import use_clock

    frozen = FrozenClock(CLOCK_START)
    with use_clock(frozen):
        yield frozen


class StatementCounter:
    """The SQL statements the platform sent while counting."""

    def __init__(self) -> None:
        self.statements: list[str] = []

    def __call__(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        self.statements.append(statement)

    @property
    def count(self) -> int:
        return len(self.statements)

    def clear(self) -> None:
        """Start counting afresh (after a warm-up request, say)."""
        self.statements.clear()


@pytest.fixture
def sql_statements(env: Env) -> Iterator[StatementCounter]:
    """Counts every SQL statement the platform's connections send during the test:
    compare ``sql_statements.count`` for 5 and 50 rows to prove a field is batched."""
    from sqlalchemy import event

    counter = StatementCounter()
    event.listen(env.platform.db.sync_engine, "before_cursor_execute", counter)
    yield counter
    event.remove(env.platform.db.sync_engine, "before_cursor_execute", counter)


@dataclass
class MigrationDatabase:
    """An empty database of the test's own, migrated on demand as the tables' owner."""

    engine: AsyncEngine
    registry: PluginRegistry

    async def upgrade(self, target: str = "heads") -> None:
        """Migrate up: by default the core and every plugin's branch (``crmkit db upgrade``)."""
        from crmkit import migrations

        await migrations.upgrade(self.engine, self.registry, target)

    async def downgrade(self, target: str) -> None:
        """Migrate down to ``target``: ``"<plugin>@base"`` removes one plugin's tables
        (``crmkit db downgrade <plugin>@base``), ``"base"`` everything."""
        from crmkit import migrations

        await migrations.downgrade(self.engine, self.registry, target)

    async def tables(self) -> set[str]:
        """The names of the tables the database holds now."""
        from sqlalchemy import inspect

        async with self.engine.connect() as conn:
            return set(await conn.run_sync(lambda sync: inspect(sync).get_table_names()))


@pytest_asyncio.fixture(loop_scope="session")
async def empty_database(
    backend: str, plugin_registry: PluginRegistry, tmp_path: Path
) -> AsyncIterator[MigrationDatabase]:
    """A new, empty database on ``backend`` for a migration test, dropped after it."""
    from crmkit.db import create_engine

    name = f"{PG_DB}_{uuid.uuid4().hex[:8]}"
    engine = create_engine(await fresh_database_url(backend, name, tmp_path))
    try:
        yield MigrationDatabase(engine, plugin_registry)
    finally:
        await engine.dispose()
        if backend == "postgresql":
            await drop_pg(name)


@pytest_asyncio.fixture(loop_scope="session")
async def redis_url() -> str:
    """The URL of the test Redis database, emptied; skips (fails in CI) when Redis is
    not reachable."""
    import redis.asyncio as redis

    client = redis.from_url(REDIS_URL)
    try:
        try:
            await asyncio.wait_for(client.ping(), 3)
        except Exception as exc:
            unavailable("Redis", exc)
        await client.flushdb()
    finally:
        await client.aclose()
    return REDIS_URL
