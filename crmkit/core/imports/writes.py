"""Writing a batch of rows in one statement per table.

On PostgreSQL a batch is one ``INSERT ... SELECT * FROM unnest(...)`` per table: each
column travels as one array parameter, which asyncpg encodes in binary, so the rows
cost the server one statement and the driver no SQL text per row. (COPY, faster
still, is not supported under row-level security, which stays on.) Elsewhere it is
SQLAlchemy's multi-row INSERT. Either way the statement goes through the tenant
session (counted, in its transaction, the tenant wall applying) and the caller
records the audit event for the rows it wrote.
"""

from __future__ import annotations

import enum
import json
import uuid
from typing import Any, cast

from sqlalchemy import JSON, Column, Enum, Table, insert, text
from sqlalchemy.dialects import postgresql, sqlite

from crmkit.core.audit.trail import AUDITED_BY_CALLER
from crmkit.db import TenantSession

PG = postgresql.dialect()
BY_CALLER = {AUDITED_BY_CALLER: True}
"""The importer records one audit event per batch itself: its INSERTs are not audited
statement by statement (on PostgreSQL they are text, which the trail never parses)."""


def table_of(model: type) -> Table:
    return cast(Table, model.__table__)  # type: ignore[attr-defined]


def on_postgres(session: TenantSession) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _array_type(column: Column[Any]) -> str:
    return f"{column.type.compile(dialect=PG)}[]"


def _array(rows: list[dict[str, Any]], column: Column[Any]) -> list[Any]:
    """The column's values as its array parameter takes them: what the column type's
    own bind processing would make of them (JSON text, an enum's value)."""
    name = column.name
    if isinstance(column.type, JSON):
        return [None if row[name] is None else json.dumps(row[name]) for row in rows]
    if isinstance(column.type, Enum):
        return [row[name].value if isinstance(row[name], enum.Enum) else row[name] for row in rows]
    return [row[name] for row in rows]


def _unnest(table: Table, rows: list[dict[str, Any]], suffix: str = "") -> tuple[Any, dict[str, Any]]:
    names = list(rows[0])
    columns = [table.c[name] for name in names]
    arrays = ", ".join(f"CAST(:{c.name} AS {_array_type(c)})" for c in columns)
    statement = text(
        f"INSERT INTO {table.name} ({', '.join(names)}) SELECT * FROM unnest({arrays}){suffix}"  # noqa: S608
    )
    return statement, {c.name: _array(rows, c) for c in columns}


async def insert_new(
    session: TenantSession, table: Table, rows: list[dict[str, Any]], key: str
) -> set[uuid.UUID]:
    """Insert ``rows`` (with an ``id``) in one statement, skipping those whose (tenant,
    ``key``) is present (a concurrent import of the same rows); the ids inserted."""
    if not rows:
        return set()
    if on_postgres(session):
        statement, params = _unnest(table, rows, f" ON CONFLICT (tenant_id, {key}) DO NOTHING RETURNING id")
        return set(await session.scalars(statement, params))
    upsert = sqlite.insert(table).on_conflict_do_nothing(index_elements=["tenant_id", key])
    return set(await session.scalars(upsert.returning(table.c.id).execution_options(**BY_CALLER), rows))


async def insert_all(session: TenantSession, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert ``rows`` in one statement."""
    if not rows:
        return
    if on_postgres(session):
        await session.execute(*_unnest(table, rows))
    else:
        await session.execute(insert(table).execution_options(**BY_CALLER), rows)
