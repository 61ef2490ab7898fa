"""The churn branch goes up and down without touching the core's tables."""

from __future__ import annotations

from crmkit.testing import MigrationDatabase

TABLES = {"churn_signals", "churn_alerts", "churn_models"}


async def test_downgrading_the_branch_removes_the_churn_tables_only(
    empty_database: MigrationDatabase,
) -> None:
    await empty_database.upgrade()
    assert TABLES | {"customers", "activities"} <= await empty_database.tables()
    await empty_database.downgrade("churn@base")
    remaining = await empty_database.tables()
    assert not TABLES & remaining and "customers" in remaining
    await empty_database.upgrade()
    assert await empty_database.tables() >= TABLES
