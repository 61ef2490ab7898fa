"""Migrations: the core chain plus each plugin's branch, up and down, on both backends."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import inspect

from crmkit import migrations
from crmkit.db import Model, TenantOwned, create_engine
from tests.fixtures import PG_DB, drop_pg, fresh_database_url, make_registry


async def tables(engine: object) -> set[str]:
    async with engine.connect() as conn:  # type: ignore[attr-defined]
        return set(await conn.run_sync(lambda c: inspect(c).get_table_names()))


async def test_upgrade_downgrade_upgrade(backend: str, tmp_path: Path) -> None:
    name = f"{PG_DB}_migrations"
    url = await fresh_database_url(backend, name, tmp_path)
    engine = create_engine(url)
    registry = make_registry()
    try:
        await migrations.upgrade(engine, registry)
        assert {"customers", "activities", "notes", "outbox_events"} <= await tables(engine)
        await migrations.downgrade(engine, registry, "notes@base")
        remaining = await tables(engine)
        assert "notes" not in remaining and "customers" in remaining
        await migrations.downgrade(engine, registry, "base")
        assert await tables(engine) <= {"alembic_version"}
        await migrations.upgrade(engine, registry)
        assert "notes" in await tables(engine)
    finally:
        await engine.dispose()
        if backend == "postgresql":
            await drop_pg(name)


def test_every_unique_key_of_a_tenant_table_includes_the_tenant() -> None:
    make_registry()  # imports every installed plugin's models
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
