"""Alembic migrations: the core's chain plus one branch per installed plugin.

Each plugin's ``PluginInfo.migrations`` folder is added to alembic's version
locations; its first revision carries ``branch_labels=("<plugin>",)`` and
``depends_on="core_0001"`` (or a later core revision). ``upgrade("heads")`` applies
the core and every plugin.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import AsyncEngine

from crmkit.plugins.registry import PluginRegistry

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


def heads(registry: PluginRegistry) -> list[str]:
    return list(ScriptDirectory.from_config(alembic_config(registry)).get_heads())
