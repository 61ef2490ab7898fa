"""Migrations: the core chain plus each plugin's branch, up and down, on both backends."""

from __future__ import annotations

from crmkit.db import Model, TenantOwned
from crmkit.platform.registry import PluginRegistry
from crmkit.testing import MigrationDatabase


async def test_upgrade_downgrade_upgrade(empty_database: MigrationDatabase) -> None:
    await empty_database.upgrade()
    assert {"customers", "activities", "notes", "outbox_events"} <= await empty_database.tables()
    await empty_database.downgrade("notes@base")
    remaining = await empty_database.tables()
    assert "notes" not in remaining and "customers" in remaining
    await empty_database.downgrade("base")
    assert await empty_database.tables() <= {"alembic_version"}
    await empty_database.upgrade()
    assert "notes" in await empty_database.tables()


def test_every_unique_key_of_a_tenant_table_includes_the_tenant(plugin_registry: PluginRegistry) -> None:
    """``plugin_registry`` has imported every installed plugin's models."""
    for mapper in Model.registry.mappers:
        if not issubclass(mapper.class_, TenantOwned):
            continue
        table = mapper.local_table
        keys = [
            table.primary_key,
            *[c for c in table.constraints if c.__class__.__name__ == "UniqueConstraint"],
        ]
        keys += [i for i in table.indexes if i.unique]
        for key in keys:
            assert "tenant_id" in {c.name for c in key.columns}, f"{table.name}: {key}"
