"""PostgreSQL for the benchmarks: a database of their own, dropped after the run, and a
login role in crmkit's application role for benchmarks that run the platform as
production does (owning nothing, under row-level security).

The server is the local one (``127.0.0.1:5432``, user ``postgres``, trust), as for the
tests; a benchmark skips its PostgreSQL figures when it is not reachable.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from crmkit.migrations.rls import APP_ROLE

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
