"""PostgreSQL for the benchmarks: a database of their own, dropped after the run, and a
login role in crmkit's application role for benchmarks that run the platform as
production does (owning nothing, under row-level security).

The server is the local one (``127.0.0.1:5432``, user ``postgres``, trust), as for the
tests; a benchmark skips its PostgreSQL figures when it is not reachable.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg

from crmkit import migrations
from crmkit.db import create_engine
from crmkit.migrations.rls import APP_ROLE
from crmkit.platform import Platform
from crmkit.platform.registry import load_registry
from crmkit.settings import Settings

ADMIN = {"user": "postgres", "host": "127.0.0.1", "port": 5432, "database": "postgres"}


def url(database: str, user: str = "postgres") -> str:
    """The SQLAlchemy async URL of ``database`` on the local server, as ``user``."""
    return f"postgresql+asyncpg://{user}@{ADMIN['host']}:{ADMIN['port']}/{database}"


@asynccontextmanager
async def _admin() -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(**ADMIN, timeout=3)
    try:
        yield conn
    finally:
        await conn.close()


async def create_database(name: str) -> bool:
    """A fresh database ``name``; False, saying why, when PostgreSQL is unreachable."""
    try:
        async with _admin() as conn:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await conn.execute(f'CREATE DATABASE "{name}"')
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        print(f"PostgreSQL skipped: cannot use {ADMIN['host']}:{ADMIN['port']} as postgres ({exc})")
        return False
    return True


async def drop_database(name: str) -> None:
    async with _admin() as conn:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def create_app_login(role: str) -> None:
    """A login role in ``crmkit_app`` (which the migrations create). Roles are
    cluster-wide: name it per run so runs side by side keep apart."""
    async with _admin() as conn:
        await conn.execute(f'DROP ROLE IF EXISTS "{role}"')
        await conn.execute(f'CREATE ROLE "{role}" LOGIN IN ROLE {APP_ROLE}')


async def drop_role(role: str) -> None:
    async with _admin() as conn:
        await conn.execute(f'DROP ROLE IF EXISTS "{role}"')


@asynccontextmanager
async def migrated_platform(
    name: str, workdir: Path, *, plugins: Sequence[object] = (), **settings: Any
) -> AsyncIterator[tuple[Platform, str] | None]:
    """A platform on a fresh database ``crmkit_bench_<name>_<pid>``, migrated by its
    owner, the platform connecting as a login role in ``crmkit_app`` (under row-level
    security, as in production); the platform and the owner's URL (for bulk seeding),
    or None when PostgreSQL is unreachable. Everything is dropped afterwards.
    ``plugins`` are registered besides the installed ones (a bench's own, without
    migrations); ``settings`` override the platform's (``redis_url=...``)."""
    database, role = f"crmkit_bench_{name}_{os.getpid()}", f"crmkit_bench_{name}_app_{os.getpid()}"
    if not await create_database(database):
        yield None
        return
    owner_url = url(database)
    try:
        owner = create_engine(owner_url, pool=False)
        await migrations.upgrade(owner, load_registry())
        await owner.dispose()
        await create_app_login(role)
        registry = load_registry()
        for plugin in plugins:
            if registry.add(plugin) is None:
                raise SystemExit(f"plugin refused: {registry.refused[-1].reason}")
        configured = Settings(database_url=url(database, role), data_dir=workdir, dev_mode=True, **settings)
        platform = Platform(configured, registry=registry)
        try:
            yield platform, owner_url
        finally:
            await platform.close()
    finally:
        await drop_database(database)
        await drop_role(role)


def run(
    measure: Callable[[argparse.Namespace, Path], Coroutine[Any, Any, None]], args: argparse.Namespace
) -> None:
    """Run ``measure`` with a scratch folder and no ``CRMKIT_`` variable of the caller's:
    the bench sets up what it measures itself."""
    for name in [k for k in os.environ if k.startswith("CRMKIT_")]:
        del os.environ[name]
    with tempfile.TemporaryDirectory(prefix="crmkit-bench-") as tmp:
        asyncio.run(measure(args, Path(tmp)))
