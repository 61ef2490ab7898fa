"""``importCustomers``, ``importActivities`` and ``importConsents``: up to 1,000 rows a
call, in the request's transaction, each row the same object as a line of a JSON Lines
import file."""

from __future__ import annotations

import uuid
from typing import Any

import strawberry
from strawberry.scalars import JSON
from strawberry.types.field import StrawberryField

from crmkit.core.imports.models import ImportKind
from crmkit.core.imports.service import MAX_ROWS, BatchResult, Refusal, Row, import_rows
from crmkit.errors import BadUserInput
from crmkit.graphql.context import Info
from crmkit.graphql.contrib import field

WRITE = "import:write"


@strawberry.type(name="ImportedRow")
class ImportedRow:
    line: int = strawberry.field(description="The row's position in the call, from 1.")
    id: uuid.UUID


@strawberry.type(name="RefusedRow")
class RefusedRow:
    line: int
    field: str | None = strawberry.field(description="The field refused, when one is to blame.")
    reason: str


@strawberry.type(name="ImportResult", description="What became of each row of an import call.")
class ImportResult:
    imported: list[ImportedRow]
    skipped: list[int] = strawberry.field(
        description="Lines already present (same externalRef, or the same consent decision): unchanged."
    )
    refused: list[RefusedRow]


def _result(result: BatchResult) -> ImportResult:
    return ImportResult(
        imported=[ImportedRow(line=line, id=id) for line, id in result.imported],
        skipped=sorted(result.skipped),
        refused=[RefusedRow(line=r.line, field=r.field, reason=r.reason) for r in result.refused],
    )


async def _import(info: Info, kind: ImportKind, rows: list[Any]) -> ImportResult:
    if len(rows) > MAX_ROWS:
        raise BadUserInput(
            f"at most {MAX_ROWS:,} rows per call; got {len(rows):,}: split them into several calls",
            field="rows",
        )
    ctx = info.context
    objects: list[Row] = []
    not_objects: list[Refusal] = []
    for line, row in enumerate(rows, start=1):
        if isinstance(row, dict):
            objects.append((line, row))
        else:
            not_objects.append(Refusal(line, None, "a row is a JSON object"))
    result = await import_rows(ctx.tenant, kind, objects, captured_by=ctx.principal.subject)
    result.refused = sorted([*not_objects, *result.refused], key=lambda r: r.line)
    return _result(result)


async def resolve_import_customers(info: Info, rows: list[JSON]) -> ImportResult:
    """Create customers; a row whose externalRef is present is skipped."""
    return await _import(info, ImportKind.CUSTOMERS, rows)


async def resolve_import_activities(info: Info, rows: list[JSON]) -> ImportResult:
    """Record activities of customers named by customerExternalRef or customerId."""
    return await _import(info, ImportKind.ACTIVITIES, rows)


async def resolve_import_consents(info: Info, rows: list[JSON]) -> ImportResult:
    """Record consent decisions made earlier (capturedAt is required)."""
    return await _import(info, ImportKind.CONSENTS, rows)


def mutation_fields() -> dict[str, StrawberryField]:
    return {
        "import_customers": field(resolve_import_customers, scope=WRITE),
        "import_activities": field(resolve_import_activities, scope=WRITE),
        "import_consents": field(resolve_import_consents, scope=WRITE),
    }
