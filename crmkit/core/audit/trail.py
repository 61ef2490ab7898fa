"""Recording: one mechanism audits every change to a tenant-owned row, core and
plugin alike, in the transaction that makes it; no plugin writes audit code.

``before_flush`` notes which rows change and the *names* of the changed fields;
``do_orm_execute`` does the same for bulk ``update()`` and ``delete()`` statements,
whose rows the session never loads: it adds ``RETURNING`` of their primary keys and
notes one event per statement naming every row it changed. ``before_commit`` appends
them (and any reads of personal data the request noted) to the tenant's hash chain,
holding the chain head's row lock until commit.

Raw SQL (``text()``) is not parsed, so it is not audited: change tenant-owned rows
through the ORM or SQLAlchemy statements.
"""

from __future__ import annotations

import hashlib
import uuid
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import rfc8785
from sqlalchemy import Table, event, inspect
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import CursorResult, IteratorResult, Result
from sqlalchemy.orm import Mapper, ORMExecuteState, Session, UOWTransaction

from crmkit.clock import utcnow
from crmkit.core.audit.models import GENESIS, AuditEvent, AuditHead
from crmkit.db import Model, TenantOwned

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


class UnauditedWrite(RuntimeError):
    """A bulk statement would change audited rows in a way the trail cannot record."""


_ACTING: ContextVar[Actor] = ContextVar("crmkit_acting", default=SYSTEM)


@contextmanager
def acting_as(actor: Actor) -> Iterator[None]:
    """Attribute to ``actor`` the audit events of every session in this context that
    names no actor itself: one actor for a whole CLI run or operator request, however
    many services and transactions it goes through."""
    token = _ACTING.set(actor)
    try:
        yield
    finally:
        _ACTING.reset(token)


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


def _audited(model: type) -> bool:
    return issubclass(model, TenantOwned) and getattr(model, "__audited__", True)


def _row_id(key: dict[str, Any]) -> str:
    """A row's id in the trail: its primary key without the tenant, ``/``-joined."""
    return "/".join(str(v) for name, v in key.items() if name != "tenant_id")


def _target_ids(obj: Any) -> list[str]:
    mapper = inspect(obj).mapper
    return [_row_id({c.key: getattr(obj, c.key) for c in mapper.primary_key})]


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
            if not _audited(type(obj)):
                continue
            fields = _changed_fields(obj) if verb != "delete" else []
            if verb == "update" and not fields:
                continue
            table = obj.__table__.name
            entry = Entry(obj.tenant_id, f"{table}.{verb}", type(obj).__name__, [], fields, row=obj)
            pending.append(entry)


def _bulk_target(state: ORMExecuteState) -> Mapper[Any] | None:
    """The audited model a bulk UPDATE or DELETE writes, whether the statement names it
    (``update(Note)``) or only its table (``update(Note.__table__)``); else None."""
    description = state.statement.entity_description  # type: ignore[attr-defined]
    entity = description.get("entity")
    if entity is not None:
        mapper: Mapper[Any] = inspect(entity)
    else:
        table = description["table"]
        found = [m for m in Model.registry.mappers if m.local_table is table]
        if not found:
            return None
        mapper = found[0].base_mapper
    return mapper if _audited(mapper.class_) else None


def _set_fields(mapper: Mapper[Any], statement: Any) -> list[str]:
    """The fields a bulk UPDATE sets. A model that translates storage columns into the
    fields they carry (``audited_fields``) needs the rows for it, which a bulk statement
    never loads: setting such columns in bulk is refused rather than recorded wrongly."""
    # ``_values`` is where SQLAlchemy keeps the SET clause (the ORM reads it there too)
    names = sorted({key if isinstance(key, str) else key.key for key in statement._values or ()})
    translate = getattr(mapper.class_, "audited_fields", None)
    if translate is not None and translate(mapper.class_manager.new_instance(), names) != names:
        raise UnauditedWrite(
            f"{mapper.class_.__name__}.{'/'.join(names)} cannot be written by a bulk statement: "
            "change these rows through the ORM, one object at a time"
        )
    return names


def _record_bulk(state: ORMExecuteState) -> Result[Any] | None:
    """``do_orm_execute``: run a bulk UPDATE or DELETE of audited rows with ``RETURNING``
    of their primary keys, and note one event naming them, in the same transaction.

    An ORM statement gets its keys from the session's own ``synchronize_session="fetch"``
    (which also keeps loaded objects in step); a table statement from ``return_defaults``.
    Either way the caller's result is unchanged (``rowcount``, its own ``returning()``).
    """
    if not (state.is_update or state.is_delete):
        return None
    mapper = _bulk_target(state)
    if mapper is None:
        return None
    table = cast(Table, mapper.local_table)
    verb = "update" if state.is_update else "delete"
    what = f"a bulk {verb} of {mapper.class_.__name__}"
    if state.is_executemany:
        raise UnauditedWrite(f"{what} with many parameter sets cannot be audited; run one statement per set")
    fields = _set_fields(mapper, state.statement) if state.is_update else []
    if state.is_orm_statement:
        result = state.invoke_statement(execution_options={"synchronize_session": "fetch"})
    elif state.statement.returning_column_descriptions:  # type: ignore[attr-defined]
        raise UnauditedWrite(f"{what} by its table cannot also use returning(): name the model instead")
    else:
        keys = state.statement.return_defaults(*table.primary_key)  # type: ignore[attr-defined]
        result = state.invoke_statement(statement=keys)
    cursor = result if isinstance(result, CursorResult) else cast(IteratorResult[Any], result).raw
    assert isinstance(cursor, CursorResult)
    if not cursor.context.compiled.effective_returning:  # type: ignore[union-attr]
        raise UnauditedWrite(
            f"{what} cannot return the keys of its rows on this database (joins another table?)"
        )
    by_tenant: dict[uuid.UUID, list[str]] = defaultdict(list)
    for row in cursor.returned_defaults_rows or ():  # None when no row matched
        key = {c.key: row._mapping[c] for c in table.primary_key}
        by_tenant[key["tenant_id"]].append(_row_id(key))
    for tenant_id, ids in by_tenant.items():
        note(state.session, tenant_id, f"{table.name}.{verb}", mapper.class_.__name__, ids, fields)
    return result


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
    actor: Actor = session.info.get(ACTOR) or _ACTING.get()
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


_LISTENERS = (
    ("before_flush", _collect),
    ("before_commit", _append),
    ("after_soft_rollback", _forget),
    ("do_orm_execute", _record_bulk),
)


def install() -> None:
    """Attach the recorder to every ORM session (idempotent; the platform calls it)."""
    for name, listener in _LISTENERS:
        if not event.contains(Session, name, listener):
            event.listen(Session, name, listener)


def uninstall() -> None:
    """Detach the recorder from every ORM session of the process: nothing is audited
    until :func:`install` runs again (which puts it back after the encryption step).
    crmkit itself never calls this; ``bench/audit_overhead.py`` does, to measure what
    the recorder costs."""
    for name, listener in _LISTENERS:
        if event.contains(Session, name, listener):
            event.remove(Session, name, listener)
