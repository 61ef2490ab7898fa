"""Recording: one mechanism audits every change to a tenant-owned row, core and
plugin alike, in the transaction that makes it; no plugin writes audit code.

``before_flush`` notes which rows change and the *names* of the changed fields;
``before_commit`` appends them (and any reads of personal data the request noted) to
the tenant's hash chain, holding the chain head's row lock until commit.
"""

from __future__ import annotations

import hashlib
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import rfc8785
from sqlalchemy import event, inspect
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, UOWTransaction

from crmkit.clock import utcnow
from crmkit.core.audit.models import GENESIS, AuditEvent, AuditHead
from crmkit.db import TenantOwned

PENDING = "crmkit_audit_pending"
ACTOR = "crmkit_actor"
REQUEST_ID = "crmkit_request_id"


@dataclass(frozen=True)
class Actor:
    """Who acted: ``user``, ``app``, ``operator`` or ``system`` (jobs), and an id."""

    type: str
    id: str

    @classmethod
    def from_subject(cls, subject: str) -> Actor:
        """``"user:42"`` → Actor("user", "42"); a subject without a kind is a user."""
        kind, sep, rest = subject.partition(":")
        return (
            cls(kind, rest) if sep and kind in {"user", "app", "operator", "system"} else cls("user", subject)
        )


SYSTEM = Actor("system", "crmkit")


@dataclass
class Entry:
    """An audit event waiting for its transaction to commit."""

    tenant_id: uuid.UUID
    action: str
    target_type: str
    target_ids: list[str]
    fields: list[str] = field(default_factory=list)
    row: Any = None  # a new row's id is known only after the flush


def bind_actor(session: Any, actor: Actor, request_id: str | None = None) -> None:
    """Name who acts in ``session`` (an AsyncSession or Session) for its audit events."""
    session.info[ACTOR] = actor
    session.info[REQUEST_ID] = request_id


def note(
    session: Any,
    tenant_id: uuid.UUID,
    action: str,
    target_type: str,
    ids: list[str],
    fields: Sequence[str] = (),
) -> None:
    """Record an act that changes no row of its own (a read of personal data in clear, an
    export, an erasure) as one audit event, appended when the transaction commits."""
    session.info.setdefault(PENDING, []).append(
        Entry(tenant_id, action, target_type, sorted(set(ids)), sorted(set(fields)))
    )


def _audited(obj: object) -> bool:
    return isinstance(obj, TenantOwned) and getattr(obj, "__audited__", True)


def _target_ids(obj: Any) -> list[str]:
    mapper = inspect(obj).mapper
    values = [getattr(obj, c.key) for c in mapper.primary_key if c.key != "tenant_id"]
    return ["/".join(str(v) for v in values)]


def _changed_fields(obj: Any) -> list[str]:
    """Names of the changed attributes; a model may translate storage columns into the
    fields they carry (``audited_fields``), as customers do for encrypted data."""
    state = inspect(obj)
    names = sorted(a.key for a in state.attrs if a.key != "tenant_id" and a.history.has_changes())
    translate = getattr(obj, "audited_fields", None)
    return translate(names) if translate is not None else names


def _collect(session: Session, flush_context: UOWTransaction, instances: Any) -> None:
    pending: list[Entry] = session.info.setdefault(PENDING, [])
    for verb, objects in (
        ("create", session.new),
        ("update", session.dirty),
        ("delete", session.deleted),
    ):
        for obj in objects:
            if not _audited(obj):
                continue
            fields = _changed_fields(obj) if verb != "delete" else []
            if verb == "update" and not fields:
                continue
            table = obj.__table__.name
            entry = Entry(obj.tenant_id, f"{table}.{verb}", type(obj).__name__, [], fields, row=obj)
            pending.append(entry)


def canonical(event_fields: dict[str, Any]) -> bytes:
    """RFC 8785 canonical JSON: the same bytes for the same event, whoever serialises it."""
    return rfc8785.dumps(event_fields)


def link_hash(prev_hash: str, event_fields: dict[str, Any]) -> str:
    return hashlib.sha256(bytes.fromhex(prev_hash) + canonical(event_fields)).hexdigest()


def hashed_fields(row: AuditEvent) -> dict[str, Any]:
    """Everything an event's hash covers (all but the hashes themselves)."""
    return {
        "tenant_id": str(row.tenant_id),
        "seq": row.seq,
        "occurred_at": _iso(row.occurred_at),
        "actor_type": row.actor_type,
        "actor_id": row.actor_id,
        "action": row.action,
        "target_type": row.target_type,
        "target_ids": list(row.target_ids),
        "fields": list(row.fields),
        "request_id": row.request_id,
    }


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def _lock_head(session: Session, tenant_id: uuid.UUID) -> AuditHead:
    """The tenant's chain head, created if new and locked until commit, in one statement.

    An upsert that changes nothing takes the row lock on PostgreSQL (and the write lock
    on SQLite, whose driver begins a transaction only at a write), so concurrent
    appenders take turns and always read the latest head.
    """
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    statement = (
        insert(AuditHead)
        .values(tenant_id=tenant_id, seq=0, hash=GENESIS)
        .on_conflict_do_update(index_elements=["tenant_id"], set_={"seq": AuditHead.seq})
        .returning(AuditHead)
    )
    # populate_existing: sessions keep objects across commits; the head must be fresh
    head = session.scalar(statement, execution_options={"populate_existing": True})
    assert head is not None
    return head


def _append(session: Session) -> None:
    session.flush()  # before_commit runs before commit's own flush: collect everything first
    pending: list[Entry] = session.info.pop(PENDING, [])
    if not pending:
        return
    actor: Actor = session.info.get(ACTOR, SYSTEM)
    request_id = session.info.get(REQUEST_ID)
    by_tenant: dict[uuid.UUID, list[Entry]] = defaultdict(list)
    for entry in pending:
        if entry.row is not None:
            entry.tenant_id = entry.row.tenant_id
            entry.target_ids = _target_ids(entry.row)
        by_tenant[entry.tenant_id].append(entry)
    now = utcnow()
    for tenant_id, entries in by_tenant.items():
        head = _lock_head(session, tenant_id)
        for entry in entries:
            row = AuditEvent(
                tenant_id=tenant_id,
                seq=head.seq + 1,
                occurred_at=now,
                actor_type=actor.type,
                actor_id=actor.id,
                action=entry.action,
                target_type=entry.target_type,
                target_ids=entry.target_ids,
                fields=entry.fields,
                request_id=request_id,
                prev_hash=head.hash,
            )
            row.hash = link_hash(head.hash, hashed_fields(row))
            session.add(row)
            head.seq, head.hash = row.seq, row.hash


def _forget(session: Session, *args: Any) -> None:
    session.info.pop(PENDING, None)


def install() -> None:
    """Attach the recorder to every ORM session (idempotent; the platform calls it)."""
    for name, listener in (
        ("before_flush", _collect),
        ("before_commit", _append),
        ("after_soft_rollback", _forget),
    ):
        if not event.contains(Session, name, listener):
            event.listen(Session, name, listener)
