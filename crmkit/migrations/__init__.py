"""Alembic migrations: the core's chain plus one branch per installed plugin.

Each plugin's ``PluginInfo.migrations`` folder is added to alembic's version
locations; its first revision carries ``branch_labels=("<plugin>",)`` and
``depends_on="core_0001"`` (or a later core revision). ``upgrade("heads")`` applies
the core and every plugin.

Migrations run as the role that owns the tables (:func:`owner_engine`,
``CRMKIT_MIGRATION_DATABASE_URL``), never as the application's role, which owns
nothing and is subject to row-level security (see ``core_0004``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy.ext.asyncio import AsyncEngine

from crmkit.db import create_engine
from crmkit.platform.registry import PluginRegistry
from crmkit.settings import Settings

HERE = Path(__file__).parent


def alembic_config(registry: PluginRegistry) -> Config:
    config = Config()
    config.set_main_option("script_location", str(HERE))
    locations = [str(info.migrations) for info in registry.infos.values() if info.migrations]
    config.set_main_option("path_separator", "os")
    config.set_main_option("version_locations", ":".join(locations))
    return config


async def _run(engine: AsyncEngine, registry: PluginRegistry, fn: Any, *args: Any) -> None:
    config = alembic_config(registry)

    def run(connection: Any) -> None:
        config.attributes["connection"] = connection
        fn(config, *args)

    async with engine.begin() as connection:
        await connection.run_sync(run)


async def upgrade(engine: AsyncEngine, registry: PluginRegistry, target: str = "heads") -> None:
    await _run(engine, registry, command.upgrade, target)


async def downgrade(engine: AsyncEngine, registry: PluginRegistry, target: str) -> None:
    await _run(engine, registry, command.downgrade, target)


def owner_engine(settings: Settings) -> AsyncEngine:
    """An engine connected as the tables' owner: ``CRMKIT_MIGRATION_DATABASE_URL``, or
    ``CRMKIT_DATABASE_URL`` when that is not set (SQLite, or one role for everything)."""
    return create_engine(settings.resolved_migration_database_url, pool=False)


async def upgrade_as_owner(settings: Settings, registry: PluginRegistry, target: str = "heads") -> None:
    """:func:`upgrade` through :func:`owner_engine` (``crmkit db upgrade``)."""
    engine = owner_engine(settings)
    try:
        await upgrade(engine, registry, target)
    finally:
        await engine.dispose()


async def downgrade_as_owner(settings: Settings, registry: PluginRegistry, target: str) -> None:
    """:func:`downgrade` through :func:`owner_engine` (``crmkit db downgrade``)."""
    engine = owner_engine(settings)
    try:
        await downgrade(engine, registry, target)
    finally:
        await engine.dispose()
