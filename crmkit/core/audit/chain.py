"""Checking a tenant's chain, and signing its head.

``verify`` first chains the events waiting in the tenant's journal (committed while
another transaction held the head, see :mod:`.trail`), then walks the chain in order
and names the first event that does not hold: a missing sequence number (a deleted
row), a hash that does not cover the event (a modified or inserted row), or a head
that differs from the latest signed checkpoint (a suffix rewritten with recomputed
hashes). ``checkpoint`` chains the journal too before it signs.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import FromClause, Uuid, column, func, select, union

from crmkit.core.audit.models import GENESIS, AuditCheckpoint, AuditEvent, AuditHead, AuditJournal
from crmkit.core.audit.trail import canonical, hashed_fields, link_hash, seal
from crmkit.db import Database, TenantSession

BATCH = 1000


class Signer(Protocol):
    def sign(self, message: bytes) -> bytes: ...

    def verify(self, message: bytes, signature: bytes) -> bool: ...


def checkpoint_message(tenant_id: uuid.UUID, seq: int, head_hash: str) -> bytes:
    return canonical({"tenant_id": str(tenant_id), "seq": seq, "head_hash": head_hash})


@dataclass(frozen=True)
class Verification:
    tenant_id: uuid.UUID
    checked: int
    first_bad_seq: int | None = None
    reason: str | None = None
    checkpoint_seq: int | None = None

    @property
    def ok(self) -> bool:
        return self.first_bad_seq is None


def unsigned_tenants(dialect: str) -> FromClause:
    """The tenants whose head moved past their last checkpoint or who have events
    waiting in the journal (a ``tenant_id`` column), read from the partial index of
    such heads and from the journal, so idle tenants cost nothing. On PostgreSQL
    row-level security hides both from a session bound to no tenant: the function
    ``crmkit_unsigned_tenants`` (core_0011, core_0013) answers with ids alone."""
    if dialect == "postgresql":
        return func.crmkit_unsigned_tenants().table_valued(column("tenant_id", Uuid))
    moved = select(AuditHead.tenant_id).where(AuditHead.seq > AuditHead.checkpoint_seq)
    return union(moved, select(AuditJournal.tenant_id)).subquery()


async def checkpoint(session: TenantSession, signer: Signer) -> AuditCheckpoint | None:
    """Sign the tenant's current head (once per head); None for an empty chain. The
    head remembers the seq signed, which takes it off :func:`unsigned_tenants`."""
    if session.tenant_id is not None:  # what waits in the journal is signed with the rest
        await session.run_sync(seal, session.tenant_id)
    head = await session.scalar(select(AuditHead))
    if head is None or head.seq == 0:
        return None
    head.checkpoint_seq = head.seq
    existing = await session.get(AuditCheckpoint, (head.tenant_id, head.seq))
    if existing is not None:
        return existing
    signed = AuditCheckpoint(
        seq=head.seq,
        head_hash=head.hash,
        signature=signer.sign(checkpoint_message(head.tenant_id, head.seq, head.hash)),
    )
    session.add(signed)
    return signed


async def verify(db: Database, tenant_id: uuid.UUID, signer: Signer) -> Verification:
    """Check the whole chain, after chaining what waits in the journal."""
    async with db.tenant_session(tenant_id) as session:
        await session.run_sync(seal, tenant_id)
    async with db.tenant_session(tenant_id) as session:
        if db.engine.dialect.name == "postgresql":  # one snapshot while writers go on
            await session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        latest = await session.scalar(select(AuditCheckpoint).order_by(AuditCheckpoint.seq.desc()).limit(1))
        head = await session.scalar(select(AuditHead))
        return await _walk(session, tenant_id, latest, head, signer)


async def _walk(
    session: TenantSession,
    tenant_id: uuid.UUID,
    signed: AuditCheckpoint | None,
    head: AuditHead | None,
    signer: Signer,
) -> Verification:
    def bad(seq: int, reason: str) -> Verification:
        return Verification(tenant_id, expected - 1, seq, reason, signed.seq if signed else None)

    expected, prev = 1, GENESIS
    if signed is not None and not signer.verify(
        checkpoint_message(tenant_id, signed.seq, signed.head_hash), signed.signature
    ):
        return bad(signed.seq, "the checkpoint's signature is not valid")
    last = await session.scalar(select(func.max(AuditEvent.seq))) or 0
    while expected <= last:
        batch = (
            await session.scalars(
                select(AuditEvent)
                .where(AuditEvent.seq >= expected, AuditEvent.seq < expected + BATCH)
                .order_by(AuditEvent.seq)
            )
        ).all()
        if not batch:
            return bad(expected, "the event is missing (deleted?)")
        for row in batch:
            if row.seq != expected:
                return bad(expected, "the event is missing (deleted?)")
            if row.prev_hash != prev or link_hash(prev, hashed_fields(row)) != row.hash:
                return bad(row.seq, "the event's hash does not match its content (modified or inserted?)")
            if signed is not None and row.seq == signed.seq and row.hash != signed.head_hash:
                return bad(row.seq, "the chain differs from the signed checkpoint (rewritten?)")
            prev, expected = row.hash, expected + 1
        session.expunge_all()  # keep memory flat on long chains
    if signed is not None and last < signed.seq:
        return bad(last + 1, "the chain ends before the signed checkpoint (truncated?)")
    if head is not None and (head.seq, head.hash) != (last, prev):
        return bad(min(head.seq, last) + 1, "the chain does not end at the recorded head")
    return Verification(tenant_id, last, checkpoint_seq=signed.seq if signed else None)
