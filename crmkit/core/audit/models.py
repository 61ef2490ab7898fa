"""Audit tables. ``audit_events`` is append-only: on PostgreSQL a trigger refuses
UPDATE, DELETE and TRUNCATE, and on SQLite triggers refuse UPDATE and DELETE.
``audit_journal`` holds events committed but not chained yet (see :mod:`.trail`)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import JSON, BigInteger, Index, LargeBinary, String, Uuid, text
from sqlalchemy.orm import Mapped, mapped_column

from crmkit.clock import utcnow
from crmkit.db import Model, TenantOwned

GENESIS = "0" * 64
"""The ``prev_hash`` of a tenant's first event."""


class Recorded:
    """What an event says: who did what to which rows, when. Ids and field *names*,
    never personal values, so erasing a customer never has to touch (and break) the chain."""

    occurred_at: Mapped[datetime] = mapped_column(default=utcnow)
    actor_type: Mapped[str] = mapped_column(String(20))
    actor_id: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(100))
    target_type: Mapped[str] = mapped_column(String(100))
    target_ids: Mapped[list[str]] = mapped_column(JSON)
    fields: Mapped[list[str]] = mapped_column(JSON)
    request_id: Mapped[str | None] = mapped_column(String(64))


class AuditEvent(Recorded, TenantOwned, Model):
    """One link of a tenant's chain."""

    __tablename__ = "audit_events"
    __audited__ = False
    __table_args__ = (Index("ix_audit_events_tenant_id_occurred_at", "tenant_id", "occurred_at"),)

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))

    @property
    def target_id(self) -> str | None:
        return self.target_ids[0] if len(self.target_ids) == 1 else None


class AuditJournal(Recorded, TenantOwned, Model):
    """Events of a transaction that found the tenant's chain head taken by another: they
    are committed here with their transaction instead of waiting for the head, and the
    next transaction to take the head moves them onto the chain (deleting them here)."""

    __tablename__ = "audit_journal"
    __audited__ = False

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    # the event's canonical JSON around its seq, for the database to hash it once chained
    before_seq: Mapped[bytes] = mapped_column(LargeBinary)
    after_seq: Mapped[bytes] = mapped_column(LargeBinary)


class AuditHead(TenantOwned, Model):
    """The end of a tenant's chain: the transaction appending to it holds its row lock
    until commit, so the chain never forks. A trigger on ``audit_events`` advances it
    with every insert."""

    __tablename__ = "audit_heads"
    __audited__ = False
    # only heads past their last checkpoint: what the checkpoint looks through
    __table_args__ = (
        Index(
            "ix_audit_heads_unsigned",
            "tenant_id",
            postgresql_where=text("seq > checkpoint_seq"),
            sqlite_where=text("seq > checkpoint_seq"),
        ),
    )

    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))
    checkpoint_seq: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    """The seq of the head's latest signed checkpoint (set by the checkpoint)."""


class AuditCheckpoint(TenantOwned, Model):
    """A chain head signed with a key held outside the database: whoever controls the
    database can rewrite a suffix of the chain but cannot sign the rewritten head."""

    __tablename__ = "audit_checkpoints"
    __audited__ = False

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    head_hash: Mapped[str] = mapped_column(String(64))
    signature: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
