"""The plugin's alembic branch goes up and down without touching the core's tables."""

from __future__ import annotations

from crmkit.testing import MigrationDatabase


async def test_downgrading_the_branch_removes_the_plugin_tables_only(
    empty_database: MigrationDatabase,
) -> None:
    await empty_database.upgrade()  # `crmkit db upgrade`: the core and every plugin
    assert {"notes", "customers"} <= await empty_database.tables()

    await empty_database.downgrade("notes@base")  # `crmkit db downgrade notes@base`
    remaining = await empty_database.tables()
    assert "notes" not in remaining and "customers" in remaining

    await empty_database.upgrade()
    assert "notes" in await empty_database.tables()
