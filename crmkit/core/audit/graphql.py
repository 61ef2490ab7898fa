"""``auditEvents``: the tenant's trail, for the compliance officer (scope ``audit:read``)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import strawberry
from sqlalchemy import ColumnElement, func, select

from crmkit.core.audit.models import AuditEvent
from crmkit.core.audit.trail import seal
from crmkit.errors import BadUserInput
from crmkit.graphql.context import Info
from crmkit.graphql.contrib import field
from crmkit.graphql.pagination import Connection, connection, page_size

READ = "audit:read"
MAX_SEQ = 2**63 - 1
"""The largest seq a BIGINT holds: a longer cursor is no cursor this API gave."""


@strawberry.type(name="AuditEvent")
class AuditEventType:
    seq: int
    occurred_at: datetime
    actor_type: str
    actor_id: str
    action: str
    target_type: str
    target_ids: list[str]
    fields: list[str] = strawberry.field(description="Names of the fields changed or read; never values.")
    request_id: str | None
    hash: str


@strawberry.input
class AuditFilterInput:
    target_type: str | None = None
    target_id: str | None = None
    actor_id: str | None = None
    action: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def _names_target(target: str, dialect: str) -> ColumnElement[bool]:
    """``target`` is one of the event's ``target_ids``, compared whole (no wildcards)."""
    elements = func.json_array_elements_text if dialect == "postgresql" else func.json_each
    ids = elements(AuditEvent.target_ids).table_valued("value")
    return select(ids.c.value).where(ids.c.value == target).exists()


async def resolve_audit_events(
    info: Info,
    first: int | None = None,
    after: str | None = None,
    filter: AuditFilterInput | None = None,
) -> Connection[Any]:
    """Newest first; events waiting in the journal are chained first, so none is missing."""
    ctx = info.context
    await ctx.session.run_sync(seal, ctx.tenant_id)
    size = page_size(first, ctx.settings.page_size_default, ctx.settings.page_size_max)  # seq cursors
    query = select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(size + 1)
    if after is not None:
        # isdigit() alone takes "²" and other digits int() refuses
        if not (after.isascii() and after.isdigit() and int(after) <= MAX_SEQ):
            raise BadUserInput(
                "the cursor is malformed; pass an endCursor from a previous page", field="after"
            )
        query = query.where(AuditEvent.seq < int(after))
    f = filter or AuditFilterInput()
    if f.target_type:
        query = query.where(AuditEvent.target_type == f.target_type)
    if f.target_id:
        try:
            target = str(uuid.UUID(f.target_id))
        except ValueError:
            target = f.target_id
        query = query.where(_names_target(target, ctx.session.get_bind().dialect.name))
    if f.actor_id:
        query = query.where(AuditEvent.actor_id == f.actor_id)
    if f.action:
        query = query.where(AuditEvent.action == f.action)
    if f.since:
        query = query.where(AuditEvent.occurred_at >= f.since)
    if f.until:
        query = query.where(AuditEvent.occurred_at < f.until)
    rows = (await ctx.session.scalars(query)).all()
    return connection(rows, size, cursor_of=lambda event: str(event.seq))


def query_fields() -> dict[str, Any]:
    return {"audit_events": field(resolve_audit_events, scope=READ, graphql_type=Connection[AuditEventType])}
