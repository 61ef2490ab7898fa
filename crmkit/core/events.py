"""Domain events and the transactional outbox they are written to.

:func:`emit` adds the event to the current transaction, so the change and its events
commit together or not at all. A flush inserts it, or on PostgreSQL, if none did before
commit, the audit trail's append (:func:`take_unflushed`). After commit the relay hands
them to the job queue (:meth:`crmkit.jobs.runner.JobRunner.relay_committed`). An event
that can never be dispatched (its type is no longer declared, its data is not an
object) is marked dead once, with ``dead_at``, and never queued again.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, FromClause, Index, String, Uuid, column, func, inspect, select, text
from sqlalchemy.orm import Mapped, Session, mapped_column

from crmkit.clock import utcnow
from crmkit.db import Model, TenantOwned, uuid7

if TYPE_CHECKING:
    from crmkit.plugins.info import TenantContext

PENDING_EVENTS = "crmkit_pending_events"


class OutboxEvent(TenantOwned, Model):
    __tablename__ = "outbox_events"
    __audited__ = False  # the change that emitted the event is audited, not its plumbing
    # only the events in flight: what the sweep looks through, however many tenants are idle
    __table_args__ = (
        Index(
            "ix_outbox_events_unrelayed",
            "tenant_id",
            "created_at",
            postgresql_where=text("relayed_at IS NULL AND dead_at IS NULL"),
            sqlite_where=text("relayed_at IS NULL AND dead_at IS NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid7)
    type: Mapped[str] = mapped_column(String(100))
    subject_type: Mapped[str] = mapped_column(String(100))
    subject_id: Mapped[str] = mapped_column(String(100))
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    relayed_at: Mapped[datetime | None] = mapped_column()
    dead_at: Mapped[datetime | None] = mapped_column()
    """When dispatch gave the event up for good (see ``crmkit.jobs.delivery``)."""


@dataclass(frozen=True)
class DomainEvent:
    """An event as handlers see it. ``id`` is stable across redeliveries."""

    id: uuid.UUID
    type: str
    tenant_id: uuid.UUID
    subject_type: str
    subject_id: str
    data: dict[str, Any]
    occurred_at: datetime

    @classmethod
    def from_row(cls, row: OutboxEvent) -> DomainEvent:
        return cls(
            id=row.id,
            type=row.type,
            tenant_id=row.tenant_id,
            subject_type=row.subject_type,
            subject_id=row.subject_id,
            data=dict(row.data),
            occurred_at=row.created_at,
        )


class UndeclaredEvent(LookupError):
    """``emit`` of a type no event hookspec declares: a bug in the emitting code."""


def emit(ctx: TenantContext, type: str, subject_type: str, subject_id: Any, **data: Any) -> OutboxEvent:
    """Write a domain event into the tenant's transaction; ``type`` names an event hook.

    The event commits with the change that caused it, or not at all; after commit the
    job queue hands it to the enabled plugins' handlers and subscribed apps. A type no
    installed event hookspec declares raises :class:`UndeclaredEvent` here, at the call.
    The row returned has its ``id`` and ``created_at`` (the event's ``occurred_at``) at once.
    """
    check_declared(ctx, type)
    row = OutboxEvent(
        tenant_id=ctx.tenant_id,
        id=uuid7(),
        type=type,
        subject_type=subject_type,
        subject_id=str(subject_id),
        data=data,
        created_at=utcnow(),
    )
    ctx.session.add(row)
    relay_after_commit(ctx.session, [row])
    return row


def check_declared(ctx: TenantContext, type: str) -> None:
    """Raise :class:`UndeclaredEvent` unless an installed event hookspec declares ``type``."""
    declared = ctx.registry.event_scopes()
    if type not in declared:
        raise UndeclaredEvent(
            f"event type {type!r} is not declared: declare it with crmkit.event_hookspec in "
            f"the module named by your PluginInfo.hookspecs; declared are {', '.join(sorted(declared))}"
        )


def relay_after_commit(session: Any, rows: Iterable[OutboxEvent]) -> None:
    """Hand events written in ``session`` to the relay once it commits (rows carrying at
    least ``id``, ``tenant_id`` and ``type``)."""
    session.info.setdefault(PENDING_EVENTS, []).extend(rows)


def take_unflushed(session: Session) -> list[OutboxEvent]:
    """The events :func:`emit` wrote in ``session``'s tenant that no flush has sent yet,
    in the order they were emitted, taken out of the session for a statement of the
    caller's to insert: on PostgreSQL the audit append inserts them, so that emitting
    costs no round trip of its own. A query before commit still finds them, its
    autoflush having inserted them. Whatever the caller does not insert it must add
    back to the session (``session.add_all``), for commit's flush to insert."""
    tenant_id = session.info.get("tenant_id")
    rows = [
        row
        for row in session.info.get(PENDING_EVENTS, ())
        if row.tenant_id == tenant_id and inspect(row).pending
    ]
    for row in rows:
        session.expunge(row)
    return rows


def unrelayed(cutoff: datetime) -> ColumnElement[bool]:
    """Events committed by ``cutoff`` and still neither relayed nor dead: a crash left them."""
    return (
        OutboxEvent.relayed_at.is_(None) & OutboxEvent.dead_at.is_(None) & (OutboxEvent.created_at <= cutoff)
    )


def unrelayed_tenants(dialect: str, cutoff: datetime) -> FromClause:
    """The tenants with :func:`unrelayed` events (a ``tenant_id`` column), read from the
    partial index of events in flight, so idle tenants cost nothing. On PostgreSQL
    row-level security hides every event from a session bound to no tenant: the
    function ``crmkit_unrelayed_tenants`` (core_0011) answers with tenant ids alone."""
    if dialect == "postgresql":
        return func.crmkit_unrelayed_tenants(cutoff).table_valued(column("tenant_id", Uuid))
    return select(OutboxEvent.tenant_id).where(unrelayed(cutoff)).distinct().subquery()
