"""Recording: one mechanism audits every change to a tenant-owned row, core and
plugin alike, in the transaction that makes it; no plugin writes audit code.

``before_flush`` notes which rows change and the *names* of the changed fields;
``do_orm_execute`` does the same for bulk ``insert()``, ``update()`` and ``delete()``
statements, whose rows the session never loads: it has them return their primary keys
and notes one event per statement naming every row it inserted or changed. ``before_commit``, after
the last flush, appends them (and any reads of personal data the request noted) to
the tenant's hash chain as the transaction's last statement: it takes the chain
head's row lock and inserts every event of the transaction (a trigger advances the
head), and holds the lock only until COMMIT, which follows at once. On PostgreSQL
that is one statement, the database computing the hashes, which also inserts the
transaction's outbox events that no flush has sent
(:func:`crmkit.core.events.take_unflushed`): emitting costs an audited transaction no
round trip of its own. On SQLite two (the head's upsert, then the INSERT).

No transaction waits for the head on PostgreSQL: one that finds it taken
(``SKIP LOCKED``) writes its events to the tenant's journal (``audit_journal``), in
the same statement and its own transaction, so they are durable exactly when what
they record is, and the head's next holder moves them onto the chain before its own
(as does :func:`seal`, which ``verify``, ``checkpoint`` and ``auditEvents`` call).
SQLite runs one writing transaction at a time, so there the head is never taken and
nothing is journaled.

Raw SQL (``text()``) is not parsed, so it is not audited: change tenant-owned rows
through the ORM or SQLAlchemy statements.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import rfc8785
from sqlalchemy import (
    ARRAY,
    LargeBinary,
    String,
    Table,
    Uuid,
    bindparam,
    event,
    insert,
    inspect,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, CursorResult, Dialect, IteratorResult, Result
from sqlalchemy.orm import Mapper, ORMExecuteState, Session, UOWTransaction
from sqlalchemy.sql.elements import BindParameter, TextClause

from crmkit.clock import utcnow
from crmkit.core.audit.models import GENESIS, AuditEvent, AuditHead
from crmkit.core.events import OutboxEvent, take_unflushed
from crmkit.db import Model, TenantOwned, UTCDateTime, uuid7

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
    attrs = state.attrs  # only the attributes set since the last flush can have changed
    names = sorted(k for k in state.committed_state if k != "tenant_id" and attrs[k].history.has_changes())
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


def _set_fields(mapper: Mapper[Any], state: ORMExecuteState) -> list[str]:
    """The fields a bulk UPDATE sets, or a bulk INSERT gives its rows. A model that
    translates storage columns into the fields they carry (``audited_fields``) needs the
    rows for it, which a bulk statement never loads: setting such columns in bulk is
    refused rather than recorded wrongly."""
    statement: Any = state.statement
    # ``_values`` is where SQLAlchemy keeps the SET clause or an INSERT's one row (the
    # ORM reads it there too), ``_multi_values`` an INSERT's rows; an INSERT's rows sent
    # as many parameter sets are those parameters
    keys: Iterable[Any] = statement._values or ()
    if state.is_insert and not keys:
        rows = statement._multi_values[0] if statement._multi_values else state.parameters
        first = rows[0] if isinstance(rows, list | tuple) and rows else rows
        keys = first or ()
    names = sorted({key if isinstance(key, str) else key.key for key in keys})
    translate = getattr(mapper.class_, "audited_fields", None)
    if translate is not None and translate(mapper.class_manager.new_instance(), names) != names:
        raise UnauditedWrite(
            f"{mapper.class_.__name__}.{'/'.join(names)} cannot be written by a bulk statement: "
            "change these rows through the ORM, one object at a time"
        )
    return names


AUDITED_BY_CALLER = "crmkit_audited_by_caller"
"""An execution option: the caller records this bulk INSERT's audit event itself (the
importer's one event per batch, naming the rows of every table it wrote)."""


def _record_bulk(state: ORMExecuteState) -> Result[Any] | None:
    """``do_orm_execute``: run a bulk INSERT, UPDATE or DELETE of audited rows with
    ``RETURNING`` of their primary keys, and note one event naming them, in the same
    transaction.

    An ORM update or delete gets its keys from the session's own
    ``synchronize_session="fetch"`` (which also keeps loaded objects in step), a table
    update or delete from ``return_defaults``: either way the caller's result is
    unchanged (``rowcount``, its own ``returning()``). An INSERT: :func:`_record_insert`.
    """
    if not (state.is_update or state.is_delete or state.is_insert):
        return None
    mapper = _bulk_target(state)
    if mapper is None:
        return None
    table = cast(Table, mapper.local_table)
    if state.is_insert:
        return (
            None if state.execution_options.get(AUDITED_BY_CALLER) else _record_insert(state, mapper, table)
        )
    verb = "update" if state.is_update else "delete"
    what = f"a bulk {verb} of {mapper.class_.__name__}"
    if state.is_executemany:
        raise UnauditedWrite(f"{what} with many parameter sets cannot be audited; run one statement per set")
    fields = _set_fields(mapper, state) if state.is_update else []
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
    keys = [
        {c.key: row._mapping[c] for c in table.primary_key} for row in cursor.returned_defaults_rows or ()
    ]
    _note_rows(state, mapper, table, verb, keys, fields)  # no rows: none matched
    return result


def _record_insert(state: ORMExecuteState, mapper: Mapper[Any], table: Table) -> Result[Any]:
    """A bulk INSERT of audited rows (many parameter sets, multi-row ``values()``,
    ``ON CONFLICT DO NOTHING``): one ``create`` event naming the rows it inserted.

    A table statement's keys are those the driver reports inserted (its result
    unchanged; with ``ON CONFLICT`` it cannot tell which were skipped, so it is refused). A
    model's come from its ``returning()``, which must then hold the primary key (the
    tenant may be left out: it is the session's); one without ``returning()`` is given
    one of the key, whose rows its result then holds."""
    what = f"a bulk insert of {mapper.class_.__name__}"
    fields = _set_fields(mapper, state)
    statement: Any = state.statement
    primary = [c.key for c in table.primary_key]
    if not state.is_orm_statement:
        if statement.returning_column_descriptions or getattr(statement, "_post_values_clause", None):
            raise UnauditedWrite(
                f"{what} by its table cannot also use returning() or ON CONFLICT: name the model instead"
            )
        result = state.invoke_statement()
        cursor = result if isinstance(result, CursorResult) else cast(IteratorResult[Any], result).raw
        assert isinstance(cursor, CursorResult)
        keys = cursor.inserted_primary_key_rows
        if any(key is None for key in keys):
            raise UnauditedWrite(f"{what} by its table did not report its rows' keys: name the model instead")
        inserted = [dict(zip(primary, key, strict=True)) for key in keys if key is not None]
        _note_rows(state, mapper, table, "create", inserted, fields)
        return result
    if not statement.returning_column_descriptions:
        statement = statement.returning(*(getattr(mapper.class_, key) for key in primary))
    frozen = state.invoke_statement(statement=statement).freeze()
    answer = frozen()
    names = list(answer.keys())
    missing = [key for key in primary if key not in names and key != "tenant_id"]
    if missing:
        raise UnauditedWrite(
            f"{what} with returning() must return its key ({', '.join(missing)}) to be audited"
        )
    rows = [
        {"tenant_id": state.session.info.get("tenant_id"), **dict(zip(names, row, strict=True))}
        for row in answer
    ]
    _note_rows(state, mapper, table, "create", rows, fields)
    return frozen()


def _note_rows(
    state: ORMExecuteState,
    mapper: Mapper[Any],
    table: Table,
    verb: str,
    keys: Sequence[Mapping[str, Any]],
    fields: list[str],
) -> None:
    """One event per tenant naming the rows (their primary keys) a bulk statement wrote."""
    by_tenant: dict[uuid.UUID, list[str]] = defaultdict(list)
    primary = [c.key for c in table.primary_key]
    for key in keys:
        by_tenant[key["tenant_id"]].append(_row_id({name: key[name] for name in primary}))
    for tenant_id, ids in by_tenant.items():
        if tenant_id is None:
            raise UnauditedWrite(
                f"a bulk {verb} of {mapper.class_.__name__} outside a tenant cannot be audited"
            )
        note(state.session, tenant_id, f"{table.name}.{verb}", mapper.class_.__name__, ids, fields)


_SAFE_INTEGER = 2**53
_COMPACT_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def _plain(value: Any) -> bool:
    """Whether RFC 8785 writes ``value`` as ``json`` does: null, a string, an integer
    that a double holds exactly, or a list of strings (not floats, not nesting)."""
    kind = type(value)
    if kind is str or value is None:
        return True
    if kind is int:
        return -_SAFE_INTEGER < value < _SAFE_INTEGER
    return kind is list and all(type(item) is str for item in value)


def canonical(event_fields: dict[str, Any]) -> bytes:
    """RFC 8785 canonical JSON: the same bytes for the same event, whoever serialises it.

    An event's fields (ASCII keys; strings, lists of strings, null, its ``seq``) are in
    RFC 8785 what ``json``'s C encoder writes with sorted keys, no whitespace and no
    escapes beyond the required ones, at a fifth of ``rfc8785``'s cost per event; any
    other value, and a string that is not valid Unicode, goes through ``rfc8785``."""
    if all(key.isascii() and _plain(value) for key, value in event_fields.items()):
        try:
            return _COMPACT_JSON.encode(event_fields).encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: rfc8785 refuses it
            pass
    return rfc8785.dumps(event_fields)


def link_hash(prev_hash: str, event_fields: dict[str, Any]) -> str:
    return hashlib.sha256(bytes.fromhex(prev_hash) + canonical(event_fields)).hexdigest()


_HASHED = (
    "tenant_id",
    "seq",
    "occurred_at",
    "actor_type",
    "actor_id",
    "action",
    "target_type",
    "target_ids",
    "fields",
    "request_id",
)


def hashed_fields(row: AuditEvent | Mapping[str, Any]) -> dict[str, Any]:
    """Everything an event's hash covers (all but the hashes themselves), of a stored
    event or of the values of one about to be inserted."""
    values = row if isinstance(row, Mapping) else {name: getattr(row, name) for name in _HASHED}
    return {
        "tenant_id": str(values["tenant_id"]),
        "seq": values["seq"],
        "occurred_at": _iso(values["occurred_at"]),
        "actor_type": values["actor_type"],
        "actor_id": values["actor_id"],
        "action": values["action"],
        "target_type": values["target_type"],
        "target_ids": list(values["target_ids"]),
        "fields": list(values["fields"]),
        "request_id": values["request_id"],
    }


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="microseconds")


_EVENTS = cast(Table, AuditEvent.__table__)
_HEADS = cast(Table, AuditHead.__table__)


@dataclass(frozen=True)
class _Head:
    """A tenant's chain head, locked by this transaction until it commits."""

    seq: int
    hash: str


_APPEND = """WITH RECURSIVE head AS (
    SELECT seq, hash FROM audit_heads WHERE tenant_id = :tenant FOR UPDATE {wait}
), waiting AS (
    DELETE FROM audit_journal WHERE tenant_id = :tenant AND EXISTS (SELECT FROM head)
    RETURNING occurred_at, id, actor_type, actor_id, action, target_type, target_ids, fields,
        request_id, before_seq, after_seq
), emitted AS (
    INSERT INTO outbox_events (tenant_id, id, type, subject_type, subject_id, data, created_at)
    SELECT :tenant, id, type, subject_type, subject_id, CAST(data AS json), created_at
    FROM unnest(:event_ids, :event_types, :event_subject_types, :event_subject_ids, :event_data,
        :event_created_at) AS emitted (id, type, subject_type, subject_id, data, created_at)
), given AS (
    SELECT * FROM unnest(:ids, :actions, :target_types, :target_ids, :fields, :before_seq, :after_seq)
        WITH ORDINALITY AS given (id, action, target_type, target_ids, fields, before_seq, after_seq, n)
), queued AS (
    SELECT row_number() OVER (ORDER BY occurred_at, id) AS i, occurred_at, actor_type, actor_id,
        action, target_type, target_ids, fields, request_id, before_seq, after_seq
    FROM waiting
    UNION ALL
    SELECT (SELECT count(*) FROM waiting) + n, :occurred_at, :actor_type, :actor_id, action,
        target_type, CAST(target_ids AS json), CAST(fields AS json), :request_id, before_seq, after_seq
    FROM given
), link (i, seq, prev_hash, hash) AS (
    SELECT 0::bigint, seq, NULL::text, hash::text FROM head
    UNION ALL
    SELECT link.i + 1, link.seq + 1, link.hash, encode(sha256(decode(link.hash, 'hex')
        || queued.before_seq || convert_to((link.seq + 1)::text, 'UTF8') || queued.after_seq), 'hex')
    FROM link JOIN queued ON queued.i = link.i + 1
), added AS (
    INSERT INTO audit_events (tenant_id, seq, occurred_at, actor_type, actor_id, action,
        target_type, target_ids, fields, request_id, prev_hash, hash)
    SELECT :tenant, link.seq, occurred_at, actor_type, actor_id, action, target_type, target_ids,
        fields, request_id, link.prev_hash, link.hash
    FROM link JOIN queued ON queued.i = link.i
    RETURNING seq
), known AS (
    SELECT EXISTS (SELECT FROM audit_heads WHERE tenant_id = :tenant) AS known
), journaled AS (
    INSERT INTO audit_journal (tenant_id, id, occurred_at, actor_type, actor_id, action,
        target_type, target_ids, fields, request_id, before_seq, after_seq)
    SELECT :tenant, id, :occurred_at, :actor_type, :actor_id, action, target_type,
        CAST(target_ids AS json), CAST(fields AS json), :request_id, before_seq, after_seq
    FROM given WHERE NOT EXISTS (SELECT FROM head) AND (SELECT known FROM known)
    RETURNING id
)
SELECT EXISTS (SELECT FROM head) OR (SELECT known FROM known) AS known,
    (SELECT count(*) FROM added) AS added, (SELECT count(*) FROM journaled) AS journaled"""
"""PostgreSQL: a whole append in one statement. Take the tenant's head (without waiting,
for a transaction's own events); if taken, put the events in the journal; else chain
the journal's events, oldest first, then the given ones. Whichever it does, insert the
transaction's unflushed outbox events (``emitted``; a data-modifying CTE runs whether
or not the query reads it), so that emitting costs an audited transaction no statement
of its own. Each event's hash is
:func:`link_hash`'s, computed by the database from the bytes of the event's canonical
JSON before and after its ``seq`` (:func:`_around_seq`). A tenant without a head yet
(``known`` false) gets it from :func:`_wait_for_head`. ``known`` looks the head up a
second time, so it is asked last, after the head taken: PostgreSQL runs a subquery only
when an expression needs its value, and every version of the head row left since the
last VACUUM makes each lookup dearer."""


@dataclass(frozen=True)
class _DriverStatement:
    """A text statement compiled once for a dialect and sent with ``exec_driver_sql``
    (the statement events fire as for any other). SQLAlchemy's per-execution work for
    :data:`_APPEND` (keying it, processing its seven arrays, building the result's
    metadata from the cursor) was 0.04 ms of the 0.3 ms of CPU an append cost, in every
    audited transaction. Its parameters reach the driver as they are, so they must be
    what the driver takes: UUIDs, strings, bytes, lists of them and timezone-aware
    datetimes, as :func:`_append_parameters` makes them."""

    sql: str
    names: tuple[str, ...] | None  # a positional paramstyle's order, else None

    @classmethod
    def compile(cls, statement: TextClause, dialect: Dialect) -> _DriverStatement:
        compiled = statement.compile(dialect=dialect)
        names = compiled.positiontup
        return cls(compiled.string, None if names is None else tuple(names))

    def execute(self, conn: Connection, parameters: dict[str, Any]) -> CursorResult[Any]:
        if self.names is None:
            return conn.exec_driver_sql(self.sql, parameters)
        return conn.exec_driver_sql(self.sql, tuple(parameters[name] for name in self.names))


class _Statements:
    """The trail's statements for one dialect, built once: building and keying a
    statement for every append cost more CPU than running it."""

    def __init__(self, dialect: Dialect) -> None:
        tenant = bindparam("tenant", type_=Uuid())
        insert_head = (postgresql.insert if dialect.name == "postgresql" else sqlite.insert)(_HEADS).values(
            tenant_id=tenant, seq=0, hash=GENESIS
        )
        # an upsert that changes nothing takes the row lock on PostgreSQL (and the write
        # lock on SQLite, whose driver begins a transaction only at a write)
        self.wait_for_head = insert_head.on_conflict_do_update(
            index_elements=["tenant_id"], set_={"seq": _HEADS.c.seq}
        ).returning(_HEADS.c.seq, _HEADS.c.hash)
        self.insert_events = insert(_EVENTS)
        arrays: list[BindParameter[Any]] = [
            bindparam("ids", type_=ARRAY(Uuid())),
            *(bindparam(name, type_=ARRAY(String())) for name in _GIVEN_TEXT),
            bindparam("before_seq", type_=ARRAY(LargeBinary())),
            bindparam("after_seq", type_=ARRAY(LargeBinary())),
            bindparam("event_ids", type_=ARRAY(Uuid())),
            *(bindparam(name, type_=ARRAY(String())) for name in _EMITTED_TEXT),
            bindparam("event_created_at", type_=ARRAY(UTCDateTime())),
        ]
        scalars: list[BindParameter[Any]] = [tenant, bindparam("occurred_at", type_=UTCDateTime())]
        self.try_append = _DriverStatement.compile(
            text(_APPEND.format(wait="SKIP LOCKED")).bindparams(*scalars, *arrays), dialect
        )
        self.seal = _DriverStatement.compile(
            text(_APPEND.format(wait="")).bindparams(*scalars, *arrays), dialect
        )


_GIVEN_TEXT = ("actions", "target_types", "target_ids", "fields")
_EMITTED_TEXT = ("event_types", "event_subject_types", "event_subject_ids", "event_data")
_BUILT: dict[tuple[str, str], _Statements] = {}


def _statements(dialect: Dialect) -> _Statements:
    """The trail's statements for ``dialect`` (per database and driver: the compiled
    append is in the driver's parameter style)."""
    key = (dialect.name, dialect.driver)
    built = _BUILT.get(key)
    if built is None:
        built = _BUILT[key] = _Statements(dialect)
    return built


def _around_seq(record: dict[str, Any]) -> tuple[bytes, bytes]:
    """The event's canonical JSON before and after the digits of its ``seq``, for the
    database to fill in. ``"seq":`` occurs once: a quote inside a string is escaped."""
    data = canonical(hashed_fields({**record, "seq": 0}))
    at = data.index(b'"seq":0') + len(b'"seq":')
    return data[:at], data[at + 1 :]


def _append_parameters(
    tenant_id: uuid.UUID, records: list[dict[str, Any]], emitted: Sequence[OutboxEvent] = ()
) -> dict[str, Any]:
    """The parameters of :data:`_APPEND`: what the transaction's audit events share, once,
    and the rest as arrays, one element per event; the outbox events ``emitted`` as
    arrays too (their ``data`` as the JSON the ORM would send)."""
    first = records[0] if records else {"occurred_at": utcnow(), "actor_type": "", "actor_id": ""}
    around = [_around_seq(record) for record in records]
    return {
        "tenant": tenant_id,
        "occurred_at": first["occurred_at"],
        "actor_type": first["actor_type"],
        "actor_id": first["actor_id"],
        "request_id": first.get("request_id"),
        "ids": [uuid7() for _ in records],
        "actions": [record["action"] for record in records],
        "target_types": [record["target_type"] for record in records],
        "target_ids": [json.dumps(record["target_ids"]) for record in records],
        "fields": [json.dumps(record["fields"]) for record in records],
        "before_seq": [before for before, _ in around],
        "after_seq": [after for _, after in around],
        "event_ids": [row.id for row in emitted],
        "event_types": [row.type for row in emitted],
        "event_subject_types": [row.subject_type for row in emitted],
        "event_subject_ids": [row.subject_id for row in emitted],
        "event_data": [json.dumps(row.data) for row in emitted],
        "event_created_at": [row.created_at for row in emitted],
    }


def _wait_for_head(conn: Connection, tenant_id: uuid.UUID) -> _Head:
    """The tenant's head, created if new and locked until commit, in one statement,
    waiting for a transaction that holds it."""
    row = conn.execute(_statements(conn.dialect).wait_for_head, {"tenant": tenant_id}).one()
    return _Head(*row)


def _chain(conn: Connection, head: _Head, records: list[dict[str, Any]]) -> None:
    """Append ``records`` to the locked head in one INSERT; the database's trigger
    advances the head to the last of them. (No journal to chain first: SQLite never
    journals, and a new head has none.)"""
    seq, prev = head.seq, head.hash
    for record in records:
        seq += 1
        record["seq"], record["prev_hash"] = seq, prev
        record["hash"] = prev = link_hash(prev, hashed_fields(record))
    conn.execute(_statements(conn.dialect).insert_events, records)


def _append_records(
    conn: Connection, tenant_id: uuid.UUID, records: list[dict[str, Any]], emitted: list[OutboxEvent]
) -> None:
    """One tenant's events: on PostgreSQL in one statement (chained, or journaled if the
    head is taken), which also inserts the outbox events ``emitted``; on SQLite, which
    runs one writing transaction at a time and so never finds the head taken, the
    head's upsert and the INSERT (``emitted`` is empty there: the flush inserted them)."""
    if conn.dialect.name == "postgresql":
        append = _statements(conn.dialect).try_append
        if append.execute(conn, _append_parameters(tenant_id, records, emitted)).one().known:
            return
    _chain(conn, _wait_for_head(conn, tenant_id), records)


def _append(session: Session) -> None:
    """``before_commit``: the transaction's events onto each tenant's chain, as the last
    statements before COMMIT, so the head is held for as short a time as can be. A
    tenant whose head another transaction holds gets the events in its journal instead,
    committed with this transaction, for the head's next holder to chain.

    On PostgreSQL the append's statement also inserts the outbox events still unflushed
    (:func:`take_unflushed`): taken out of the session before the last flush, put back
    for commit's flush if the transaction has no audit event of their tenant."""
    bind = session.bind  # None for a session of several binds: its events are flushed
    emitted = take_unflushed(session) if bind is not None and bind.dialect.name == "postgresql" else []
    session.flush()  # before_commit runs before commit's own flush: collect everything first
    pending: list[Entry] = session.info.pop(PENDING, [])
    if not pending:
        session.add_all(emitted)
        return
    actor: Actor = session.info.get(ACTOR) or _ACTING.get()
    request_id = session.info.get(REQUEST_ID)
    now = utcnow()
    by_tenant: dict[uuid.UUID, list[dict[str, Any]]] = defaultdict(list)
    for entry in pending:
        if entry.row is not None:
            entry.tenant_id = entry.row.tenant_id
            entry.target_ids = _target_ids(entry.row)
        by_tenant[entry.tenant_id].append(
            {
                "tenant_id": entry.tenant_id,
                "occurred_at": now,
                "actor_type": actor.type,
                "actor_id": actor.id,
                "action": entry.action,
                "target_type": entry.target_type,
                "target_ids": entry.target_ids,
                "fields": entry.fields,
                "request_id": request_id,
            }
        )
    conn = session.connection()
    for tenant_id, records in by_tenant.items():
        _append_records(conn, tenant_id, records, [row for row in emitted if row.tenant_id == tenant_id])
    session.add_all(row for row in emitted if row.tenant_id not in by_tenant)


def seal(session: Session, tenant_id: uuid.UUID) -> None:
    """Chain the events waiting in the tenant's journal, waiting for the head if need be:
    before the chain is read whole (``verify``, ``auditEvents``) or signed. Call it on an
    AsyncSession with ``await session.run_sync(seal, tenant_id)``. (SQLite never
    journals: nothing to do there.)"""
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        _statements(conn.dialect).seal.execute(conn, _append_parameters(tenant_id, []))


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
