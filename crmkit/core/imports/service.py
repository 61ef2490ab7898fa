"""Importing one batch of rows of one kind into a tenant, in the caller's transaction.

Each row is checked with the single-row API's own checks (``clean_customer``,
``clean_activity``, ``check_decision`` and the plugins' validation hooks); a refused
row is reported with its line, field and reason and the others are imported. The
rows are written with a fixed number of multi-row statements per batch, whatever its
size: personal data encrypted and blind-indexed by the same ``protect`` as a flush,
one audit event per table naming every row created, and one domain event per row,
inserted together.

Idempotent: customers and activities by ``externalRef`` (required here), consent
decisions by customer, purpose, channel and ``capturedAt`` (the ledger has no
reference of its own; a decision is what the customer decided for a purpose and
channel at a moment, so the same four values are the same decision). A row already
present is skipped, never changed.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import LargeBinary, Result, String, literal, or_, select, text, union_all
from strawberry.utils.str_converters import to_camel_case

from crmkit.clock import utcnow
from crmkit.core.audit.trail import note
from crmkit.core.consent.models import ConsentRecord, ConsentSource, ConsentState
from crmkit.core.consent.service import (
    Decision,
    changed_data,
    check_decision,
    check_in_force,
    current_consents_of,
)
from crmkit.core.customers.models import (
    Activity,
    ActivityKind,
    Channel,
    Customer,
    CustomerKey,
    CustomerKind,
    CustomerNameToken,
    CustomerTag,
    LifecycleStage,
)
from crmkit.core.customers.personal import FIELDS, TENANT_KEYS
from crmkit.core.customers.protection import Protected, protect
from crmkit.core.customers.service import (
    ERASED_REF,
    NewCustomer,
    clean_activity,
    clean_customer,
    erased_ref_index,
    lock_external_ref,
    validate_new_customer,
)
from crmkit.core.events import OutboxEvent, check_declared, relay_after_commit
from crmkit.core.imports.models import ImportKind
from crmkit.core.imports.writes import insert_all, insert_new, on_postgres, table_of
from crmkit.crypto import TenantKeys
from crmkit.db import TenantSession, uuid7
from crmkit.errors import BadUserInput, Conflict, CrmError
from crmkit.inputs import enum_value
from crmkit.plugins.info import TenantContext

MAX_ROWS = 1000
"""Rows per batch, and per GraphQL call."""

Row = tuple[int, dict[str, Any]]
"""A row's line (in the file, or its position in a GraphQL call) and its fields."""


@dataclass(frozen=True)
class Refusal:
    line: int
    field: str | None
    reason: str


@dataclass
class BatchResult:
    imported: list[tuple[int, uuid.UUID]] = field(default_factory=list)
    """The line and new id of each row imported."""
    skipped: list[int] = field(default_factory=list)
    """Lines already present (imported before, or earlier in the batch)."""
    refused: list[Refusal] = field(default_factory=list)

    def refuse(self, line: int, exc: CrmError) -> None:
        self.refused.append(Refusal(line, exc.extensions.get("field"), exc.message))


PERSONAL = {to_camel_case(name): name for name in FIELDS}
CUSTOMER_FIELDS = {
    "externalRef",
    "kind",
    "lifecycleStage",
    "relationshipManager",
    "timeZone",
    "tags",
    *PERSONAL,
}
CUSTOMER_REF = ("customerExternalRef", "customerId")
ACTIVITY_FIELDS = {
    *CUSTOMER_REF,
    "externalRef",
    "kind",
    "channel",
    "occurredAt",
    "amount",
    "currency",
    "attributes",
}
CONSENT_FIELDS = {
    *CUSTOMER_REF,
    "purpose",
    "channel",
    "state",
    "source",
    "policyVersion",
    "legalBasis",
    "capturedAt",
    "capturedBy",
    "expiresAt",
}


def _fields(row: dict[str, Any], known: set[str]) -> dict[str, Any]:
    """The row's values by field (absent, null and empty ones left out); an unknown
    field is refused, so a misspelt column never passes silently."""
    for name in row:
        if name not in known:
            raise BadUserInput(f"unknown field {name!r}; known are: {', '.join(sorted(known))}", field=name)
    return {k: v for k, v in row.items() if v is not None and v != ""}


def _text(values: dict[str, Any], name: str) -> str | None:
    value = values.get(name)
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise BadUserInput(f"{name} must be text", field=name)


def _required(values: dict[str, Any], name: str, why: str) -> str:
    value = _text(values, name)
    if value is None or not value.strip():
        raise BadUserInput(f"{name} is required to import: {why}", field=name)
    return value


def _time(values: dict[str, Any], name: str) -> datetime | None:
    text = _text(values, name)
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise BadUserInput(f"{name} must be an ISO 8601 date and time", field=name) from None


def _enum(values: dict[str, Any], name: str, enum_cls: Any, default: Any = None) -> Any:
    value = _text(values, name)
    return default if value is None else enum_value(enum_cls, value.lower(), name)


def _tags(value: Any) -> list[str]:
    """A list, or text of tags separated by commas or spaces (a CSV cell)."""
    if isinstance(value, str):
        return value.replace(",", " ").split()
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise BadUserInput("tags must be a list of text", field="tags")


EXTERNAL_REF_WHY = "it identifies the row, so a re-run imports nothing twice"


def parse_customer(row: dict[str, Any]) -> NewCustomer:
    values = _fields(row, CUSTOMER_FIELDS)
    return clean_customer(
        kind=_enum(values, "kind", CustomerKind, CustomerKind.PERSON),
        tags=_tags(values.get("tags", [])),
        lifecycle_stage=_enum(values, "lifecycleStage", LifecycleStage, LifecycleStage.NEW),
        external_ref=_required(values, "externalRef", EXTERNAL_REF_WHY),
        relationship_manager=_text(values, "relationshipManager"),
        time_zone=_text(values, "timeZone"),
        **{snake: _text(values, camel) for camel, snake in PERSONAL.items() if camel in values},
    )


def _customer_ref(values: dict[str, Any]) -> str | uuid.UUID:
    """The customer a row belongs to: their ``customerExternalRef`` or ``customerId``."""
    ref = _text(values, "customerExternalRef")
    if ref is not None:
        return ref.strip()
    customer_id = _text(values, "customerId")
    if customer_id is None:
        raise BadUserInput(
            "name the customer: customerExternalRef or customerId", field="customerExternalRef"
        )
    try:
        return uuid.UUID(customer_id)
    except ValueError:
        raise BadUserInput("customerId is not a UUID", field="customerId") from None


_CUSTOMERS_NAMED_PG = text(
    "SELECT c.id, c.external_ref FROM unnest(CAST(:refs AS varchar[])) AS w(v)"
    " JOIN customers c ON c.tenant_id = :tenant AND c.external_ref = w.v WHERE c.erased_at IS NULL"
    " UNION ALL SELECT c.id, c.external_ref FROM unnest(CAST(:ids AS uuid[])) AS w(v)"
    " JOIN customers c ON c.tenant_id = :tenant AND c.id = w.v WHERE c.erased_at IS NULL"
)
_ACTIVITIES_PRESENT_PG = text(
    "SELECT a.external_ref, a.customer_id FROM unnest(CAST(:refs AS varchar[])) AS w(v)"
    " JOIN activities a ON a.tenant_id = :tenant AND a.external_ref = w.v"
)


async def _customer_ids(
    session: TenantSession, refs: Iterable[str | uuid.UUID]
) -> dict[str | uuid.UUID, uuid.UUID]:
    """The customers (not erased) the rows name, by reference or id, in one query."""
    wanted = set(refs)
    by_ref = [r for r in wanted if isinstance(r, str)]
    by_id = [r for r in wanted if isinstance(r, uuid.UUID)]
    found: dict[str | uuid.UUID, uuid.UUID] = {}
    if not wanted:
        return found
    if on_postgres(session):  # arrays joined to the table, as in _known_refs
        params = {"refs": by_ref, "ids": by_id, "tenant": session.tenant_id}
        rows: Result[uuid.UUID, str | None] = await session.execute(_CUSTOMERS_NAMED_PG, params)
    else:
        rows = await session.execute(
            select(Customer.id, Customer.external_ref).where(
                Customer.erased_at.is_(None), or_(Customer.external_ref.in_(by_ref), Customer.id.in_(by_id))
            )
        )
    for customer_id, external_ref in rows:
        found[customer_id] = customer_id
        if external_ref is not None:
            found[external_ref] = customer_id
    return found


def _no_customer(ref: str | uuid.UUID) -> BadUserInput:
    if isinstance(ref, uuid.UUID):
        return BadUserInput(f"no customer {ref}", field="customerId")
    return BadUserInput(f"no customer with externalRef {ref!r}", field="customerExternalRef")


def _emit_each(
    ctx: TenantContext, type: str, subject_type: str, items: list[tuple[uuid.UUID, dict[str, Any]]]
) -> list[dict[str, Any]]:
    """One domain event per row, as ``emit`` writes them, in one INSERT (see :func:`_outbox`)."""
    check_declared(ctx, type)
    now = utcnow()
    return [
        {
            "tenant_id": ctx.tenant_id,
            "id": uuid7(),
            "type": type,
            "subject_type": subject_type,
            "subject_id": str(subject_id),
            "data": data,
            "created_at": now,
            "relayed_at": None,
            "dead_at": None,
        }
        for subject_id, data in items
    ]


async def _outbox(ctx: TenantContext, rows: list[dict[str, Any]]) -> None:
    """Write the events and hand them to the relay after commit, as ``emit`` does."""
    if not rows:
        return
    await insert_all(ctx.session, table_of(OutboxEvent), rows)
    relay_after_commit(
        ctx.session, (OutboxEvent(id=row["id"], tenant_id=row["tenant_id"], type=row["type"]) for row in rows)
    )


async def _plugin_checks(
    rows: list[tuple[int, Any]], result: BatchResult, check: Callable[[Any], Any]
) -> list[tuple[int, Any]]:
    """The rows the plugins' validation hooks accept."""
    accepted = []
    for line, value in rows:
        try:
            await check(value)
        except CrmError as exc:
            result.refuse(line, exc)
        else:
            accepted.append((line, value))
    return accepted


def _has_hook(ctx: TenantContext, hook: str) -> bool:
    return bool(ctx.hooks.plugin_set.impls(hook))


_KNOWN_REFS_PG = text(
    "SELECT c.external_ref, NULL::bytea FROM unnest(CAST(:refs AS varchar[])) AS r(ref)"
    " JOIN customers c ON c.tenant_id = :tenant AND c.external_ref = r.ref"
    " UNION ALL SELECT NULL, c.erased_ref_index FROM unnest(CAST(:indexes AS bytea[])) AS e(ix)"
    " JOIN customers c ON c.tenant_id = :tenant AND c.erased_ref_index = e.ix"
)


async def _known_refs(session: TenantSession, by_index: dict[bytes, str]) -> Result[str | None, bytes | None]:
    """The batch's references (the values of ``by_index``, keyed by their erased index)
    already present (external_ref, NULL) and those of erased customers (NULL,
    erased_ref_index), in one statement, each side through its own index (an OR of the
    two read every customer of the tenant). On PostgreSQL the references
    go as arrays joined to the table: in a prepared statement's generic plan a list of a
    thousand parameters was searched row by row over every customer of the tenant, so
    each batch of an import took longer than the last (840 ms a batch at 49,000)."""
    refs = list(by_index.values())
    if on_postgres(session):
        params = {"refs": refs, "indexes": list(by_index), "tenant": session.tenant_id}
        return await session.execute(_KNOWN_REFS_PG, params)
    return await session.execute(
        union_all(
            select(Customer.external_ref, literal(None, LargeBinary)).where(Customer.external_ref.in_(refs)),
            select(literal(None, String), Customer.erased_ref_index).where(
                Customer.erased_ref_index.in_(by_index)
            ),
        )
    )


async def import_customers(ctx: TenantContext, rows: Sequence[Row]) -> BatchResult:
    session, tenant_id = ctx.session, ctx.tenant_id
    result = BatchResult()
    cleaned: list[tuple[int, NewCustomer]] = []
    for line, row in rows:
        try:
            cleaned.append((line, parse_customer(row)))
        except CrmError as exc:
            result.refuse(line, exc)
    refs = [c.external_ref for _, c in cleaned]
    keys: TenantKeys = session.info[TENANT_KEYS]
    by_index = {erased_ref_index(keys, ref): ref for ref in refs if ref is not None}
    known = await _known_refs(session, by_index)
    present: set[str | None] = set()
    erased: set[str] = set()
    for external_ref, index in known:
        if index is None:
            present.add(external_ref)
        else:
            erased.add(by_index[index])
    fresh: list[tuple[int, NewCustomer]] = []
    for line, new in cleaned:
        if new.external_ref in present:
            result.skipped.append(line)
        elif new.external_ref in erased:
            result.refuse(line, Conflict(ERASED_REF, field="externalRef"))
        else:
            present.add(new.external_ref)
            fresh.append((line, new))
    if _has_hook(ctx, "validate_customer"):
        fresh = await _plugin_checks(fresh, result, lambda new: validate_new_customer(ctx, new.customer()))
    now = utcnow()
    customers: list[dict[str, Any]] = []
    customer_id: uuid.UUID
    protected: dict[uuid.UUID, tuple[NewCustomer, bytes, Protected]] = {}
    for _, new in fresh:
        customer_id = uuid7()
        data_key, wrapped = keys.new_data_key(customer_id)
        found = protect(keys, data_key, customer_id, new.data)
        protected[customer_id] = (new, wrapped, found)
        email_index, phone_index, national_id_index = found.indexes
        customers.append(
            {
                "tenant_id": tenant_id,
                "id": customer_id,
                "external_ref": new.external_ref,
                "kind": new.kind,
                "pii": found.pii,
                "email_index": email_index,
                "phone_index": phone_index,
                "national_id_index": national_id_index,
                "lifecycle_stage": new.lifecycle_stage,
                "relationship_manager": new.relationship_manager,
                "time_zone": new.time_zone,
                "created_at": now,
                "updated_at": now,
                "archived_at": None,
                "erased_at": None,
                "version": 1,
            }
        )
    inserted = await insert_new(session, table_of(Customer), customers, "external_ref")
    keys_rows: list[dict[str, Any]] = []
    tokens: list[dict[str, Any]] = []
    tags: list[dict[str, Any]] = []
    events: list[tuple[uuid.UUID, dict[str, Any]]] = []
    fields = {"kind", "lifecycle_stage", "tags"}
    for (line, _), row in zip(fresh, customers, strict=True):
        customer_id = row["id"]
        if customer_id not in inserted:  # a concurrent import inserted it first
            result.skipped.append(line)
            continue
        new, wrapped, found = protected[customer_id]
        result.imported.append((line, customer_id))
        keys_rows.append({"tenant_id": tenant_id, "customer_id": customer_id, "wrapped_key": wrapped})
        tokens += [
            {"tenant_id": tenant_id, "customer_id": customer_id, "token": t} for t in found.name_tokens
        ]
        tags += [{"tenant_id": tenant_id, "customer_id": customer_id, "tag": t} for t in new.tags]
        fields.update(name for name in FIELDS if getattr(new.data, name) is not None)
        events.append((customer_id, {}))
    await insert_all(session, table_of(CustomerKey), keys_rows)
    await insert_all(session, table_of(CustomerNameToken), tokens)
    await insert_all(session, table_of(CustomerTag), tags)
    await _outbox(ctx, _emit_each(ctx, "customer_created", "Customer", events))
    _audit(session, tenant_id, "customers.create", "Customer", result, sorted(fields))
    return result


def _audit(
    session: TenantSession, tenant_id: Any, action: str, target: str, result: BatchResult, fields: list[str]
) -> None:
    """One audit event for the batch, naming every row it created."""
    if result.imported:
        note(session, tenant_id, action, target, [str(i) for _, i in result.imported], fields)


@dataclass(frozen=True)
class _ActivityRow:
    customer: str | uuid.UUID
    values: dict[str, Any]


def _parse_activity(row: dict[str, Any]) -> _ActivityRow:
    values = _fields(row, ACTIVITY_FIELDS)
    attributes = values.get("attributes")
    if isinstance(attributes, str):  # a CSV cell holds the object as JSON text
        try:
            values["attributes"] = json.loads(attributes)
        except ValueError:
            raise BadUserInput("attributes must be a JSON object", field="attributes") from None
    amount = values.get("amount")
    if (amount is not None and not isinstance(amount, str | int | float)) or isinstance(amount, bool):
        raise BadUserInput("amount must be a decimal number", field="amount")
    return _ActivityRow(
        _customer_ref(values),
        {
            "external_ref": _required(values, "externalRef", EXTERNAL_REF_WHY),
            "kind": _enum(values, "kind", ActivityKind) or _missing("kind"),
            "channel": _enum(values, "channel", Channel) or _missing("channel"),
            "occurred_at": _time(values, "occurredAt"),
            "amount": None if amount is None else str(amount),
            "currency": _text(values, "currency"),
            "attributes": values.get("attributes"),
        },
    )


def _missing(name: str) -> Any:
    raise BadUserInput(f"{name} is required", field=name)


async def import_activities(ctx: TenantContext, rows: Sequence[Row]) -> BatchResult:
    session, tenant_id = ctx.session, ctx.tenant_id
    result = BatchResult()
    parsed: list[tuple[int, _ActivityRow]] = []
    for line, row in rows:
        try:
            parsed.append((line, _parse_activity(row)))
        except CrmError as exc:
            result.refuse(line, exc)
    customer_ids = await _customer_ids(session, (p.customer for _, p in parsed))
    refs = [p.values["external_ref"] for _, p in parsed]
    found: Result[str | None, uuid.UUID]
    if on_postgres(session):  # arrays joined to the table, as in _known_refs
        found = await session.execute(_ACTIVITIES_PRESENT_PG, {"refs": refs, "tenant": session.tenant_id})
    else:
        found = await session.execute(
            select(Activity.external_ref, Activity.customer_id).where(Activity.external_ref.in_(refs))
        )
    present = {ref: owner for ref, owner in found}
    now = utcnow()
    fresh: list[tuple[int, Activity]] = []
    for line, p in parsed:
        try:
            customer_id = customer_ids.get(p.customer) or _raise(_no_customer(p.customer))
            owner = present.get(p.values["external_ref"])
            if owner is not None:
                if owner != customer_id:
                    raise BadUserInput(
                        "externalRef already names an activity of another customer", field="externalRef"
                    )
                result.skipped.append(line)
                continue
            activity = clean_activity(session, customer_id=customer_id, now=now, **p.values)
        except CrmError as exc:
            result.refuse(line, exc)
            continue
        present[activity.external_ref] = customer_id
        fresh.append((line, activity))
    if _has_hook(ctx, "validate_activity"):
        fresh = await _plugin_checks(
            fresh, result, lambda activity: ctx.hooks.call("validate_activity", activity=activity)
        )
    rows_out: list[dict[str, Any]] = [
        {
            "tenant_id": tenant_id,
            "id": uuid7(),
            "customer_id": a.customer_id,
            "external_ref": a.external_ref,
            "kind": a.kind,
            "channel": a.channel,
            "amount": a.amount,
            "currency": a.currency,
            "occurred_at": a.occurred_at,
            "attributes": a.attributes,
            "created_at": now,
        }
        for _, a in fresh
    ]
    inserted = await insert_new(session, table_of(Activity), rows_out, "external_ref")
    events: list[tuple[uuid.UUID, dict[str, Any]]] = []
    for (line, activity), row in zip(fresh, rows_out, strict=True):
        activity_id: uuid.UUID = row["id"]
        if activity_id not in inserted:
            result.skipped.append(line)
            continue
        result.imported.append((line, activity_id))
        events.append((activity_id, {"customer_id": str(activity.customer_id), "kind": activity.kind.value}))
    await _outbox(ctx, _emit_each(ctx, "activity_recorded", "Activity", events))
    _audit(
        session,
        tenant_id,
        "activities.create",
        "Activity",
        result,
        sorted(set(rows_out[0]) - {"tenant_id", "id"}) if rows_out else [],
    )
    return result


def _raise(exc: Exception) -> Any:
    raise exc


@dataclass(frozen=True)
class _ConsentRow:
    customer: str | uuid.UUID
    decision: Decision


def _parse_consent(ctx: TenantContext, row: dict[str, Any], captured_by: str, now: datetime) -> _ConsentRow:
    values = _fields(row, CONSENT_FIELDS)
    customer = _customer_ref(values)
    captured_at = _time(values, "capturedAt")
    if captured_at is None:
        _required(values, "capturedAt", "with the customer, purpose and channel it identifies the decision")
    decision = check_decision(
        ctx,
        purpose=_text(values, "purpose") or _missing("purpose"),
        channel=(_text(values, "channel") or _missing("channel")).lower(),
        state=(_text(values, "state") or _missing("state")).lower(),
        source=(_text(values, "source") or ConsentSource.IMPORT).lower(),
        policy_version=_text(values, "policyVersion") or _missing("policyVersion"),
        legal_basis=(_text(values, "legalBasis") or _missing("legalBasis")).lower(),
        captured_by=_text(values, "capturedBy") or captured_by,
        captured_at=captured_at,
        expires_at=_time(values, "expiresAt"),
        now=now,
    )
    return _ConsentRow(customer, decision)


async def import_consents(ctx: TenantContext, rows: Sequence[Row], *, captured_by: str) -> BatchResult:
    """``captured_by`` is who captured a decision whose row does not say (the importer)."""
    session, tenant_id = ctx.session, ctx.tenant_id
    result = BatchResult()
    now = utcnow()
    parsed: list[tuple[int, _ConsentRow]] = []
    for line, row in rows:
        try:
            parsed.append((line, _parse_consent(ctx, row, captured_by, now)))
        except CrmError as exc:
            result.refuse(line, exc)
    # no unique key holds the natural key: imports of one tenant's decisions take turns
    await lock_external_ref(session, "consent-import", "*")
    customer_ids = await _customer_ids(session, (p.customer for _, p in parsed))
    ids = list(set(customer_ids.values()))
    times = list({p.decision.captured_at for _, p in parsed})
    found = await session.execute(
        select(
            ConsentRecord.customer_id,
            ConsentRecord.purpose,
            ConsentRecord.channel,
            ConsentRecord.captured_at,
        ).where(ConsentRecord.customer_id.in_(ids), ConsentRecord.captured_at.in_(times))
    )
    present: set[tuple[Any, ...]] = {tuple(row) for row in found}
    latest: dict[tuple[uuid.UUID, str, Any], tuple[datetime | None, ConsentState]] = {}
    for records in await current_consents_of(session, ids):
        for r in records:
            latest[(r.customer_id, r.purpose, r.channel)] = (r.captured_at, r.state)
    records_out: list[dict[str, Any]] = []
    events: list[tuple[uuid.UUID, dict[str, Any]]] = []
    for line, p in parsed:
        d = p.decision
        try:
            customer_id = customer_ids.get(p.customer) or _raise(_no_customer(p.customer))
            key = (customer_id, d.purpose, d.channel, d.captured_at)
            if key in present:
                result.skipped.append(line)
                continue
            before = latest.get(key[:3])
            check_in_force(d, before[0] if before is not None else None)
        except CrmError as exc:
            result.refuse(line, exc)
            continue
        present.add(key)
        latest[key[:3]] = (d.captured_at, d.state)
        record = ConsentRecord(
            tenant_id=tenant_id,
            id=uuid7(),
            customer_id=customer_id,
            purpose=d.purpose,
            channel=d.channel,
            state=d.state,
            source=d.source,
            policy_version=d.policy_version,
            legal_basis=d.legal_basis,
            captured_by=d.captured_by,
            captured_at=d.captured_at,
            recorded_at=now,
            expires_at=d.expires_at,
        )
        records_out.append({c.key: getattr(record, c.key) for c in ConsentRecord.__table__.columns})
        events.append((record.id, changed_data(record, before[1] if before is not None else None)))
        result.imported.append((line, record.id))
    await insert_all(session, table_of(ConsentRecord), records_out)
    await _outbox(ctx, _emit_each(ctx, "consent_changed", "ConsentRecord", events))
    _audit(session, tenant_id, "consent_records.create", "ConsentRecord", result, [])
    return result


async def import_rows(
    ctx: TenantContext, kind: ImportKind, rows: Sequence[Row], *, captured_by: str
) -> BatchResult:
    """Import a batch of at most :data:`MAX_ROWS` rows of ``kind``."""
    if len(rows) > MAX_ROWS:
        raise BadUserInput(f"at most {MAX_ROWS:,} rows per batch; got {len(rows):,}", field="rows")
    if kind is ImportKind.CUSTOMERS:
        result = await import_customers(ctx, rows)
    elif kind is ImportKind.ACTIVITIES:
        result = await import_activities(ctx, rows)
    else:
        result = await import_consents(ctx, rows, captured_by=captured_by)
    result.refused.sort(key=lambda r: r.line)
    return result
