"""Customer and activity operations, shared by GraphQL, the CLI and jobs.

Each write runs the tenant's validation hooks inside the transaction and emits its
domain event into the outbox, so the change, its checks and its event stand or fall
together.
"""

from __future__ import annotations

import functools
import json
import re
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, NamedTuple

from iso4217 import Currency
from sqlalchemy import ColumnElement, Numeric, and_, bindparam, exists, func, or_, select

from crmkit.clock import utcnow
from crmkit.core.customers.models import (
    Activity,
    ActivityKind,
    Channel,
    Customer,
    CustomerKind,
    CustomerNameToken,
    CustomerTag,
    LifecycleStage,
)
from crmkit.core.customers.personal import FIELDS, TENANT_KEYS, PersonalData
from crmkit.core.events import emit
from crmkit.crypto import IndexKind, TenantKeys
from crmkit.db import TenantSession
from crmkit.errors import BadUserInput, Conflict, NotFound
from crmkit.inputs import decimal_digits, optional_text, optional_time_zone
from crmkit.plugins.info import TenantContext

if TYPE_CHECKING:  # consent's service builds on this one, not the other way round
    from crmkit.core.consent.service import ConsentCriterion

EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}$")
PHONE = re.compile(r"^\+?[0-9][0-9 ().-]{4,24}$")
NATIONAL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ./-]{2,30}[A-Za-z0-9]$")
TAG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
MAX_TAGS = 20
MAX_ATTRIBUTES_BYTES = 8192

FLOAT_DIGITS = 15
"""Decimal digits a binary float (SQLite's storage for NUMERIC) holds exactly."""

UNSET: Any = object()
"""Marks an update field the caller did not send (``None`` clears it)."""


@dataclass
class CustomerFilter:
    tag: str | None = None
    stage: LifecycleStage | None = None
    text: str | None = None
    email: str | None = None
    phone: str | None = None
    national_id: str | None = None
    include_archived: bool = False
    consent: ConsentCriterion | None = None


def _tags(values: Iterable[str]) -> list[str]:
    tags = sorted({v.strip().lower() for v in values})
    for tag in tags:
        if not TAG.match(tag):
            raise BadUserInput(
                f"tag {tag!r} must be 1-64 lowercase letters, digits, '-' or '_'", field="tags"
            )
    if len(tags) > MAX_TAGS:
        raise BadUserInput(f"a customer has at most {MAX_TAGS} tags", field="tags")
    return tags


PERSONAL_LIMITS = {
    "given_name": 200,
    "family_name": 200,
    "organisation_name": 300,
    "email": 320,
    "phone": 32,
    "postal_address": 500,
    "national_id": 32,
    "date_of_birth": 10,
}
"""The personal fields callers may set, with their longest length."""
assert set(PERSONAL_LIMITS) == set(FIELDS)


def _personal(current: PersonalData, values: dict[str, Any]) -> PersonalData:
    """``current`` with ``values`` applied (UNSET leaves a field, None clears it), checked."""
    unknown = set(values) - set(PERSONAL_LIMITS)
    if unknown:
        raise BadUserInput(f"unknown customer fields: {', '.join(sorted(unknown))}")
    cleaned = {
        name: optional_text(value, name, PERSONAL_LIMITS[name])
        for name, value in values.items()
        if value is not UNSET
    }
    data = current.changed(**cleaned)
    if data.email is not None and not EMAIL.match(data.email):
        raise BadUserInput("email is not an e-mail address", field="email")
    if data.phone is not None and not PHONE.match(data.phone):
        raise BadUserInput("phone must be digits, optionally with a leading +", field="phone")
    if data.national_id is not None and not NATIONAL_ID.match(data.national_id):
        raise BadUserInput(
            "nationalId must be 4-32 letters and digits, with spaces, dots, slashes or hyphens",
            field="nationalId",
        )
    if data.date_of_birth is not None:
        try:
            born = date.fromisoformat(data.date_of_birth)
        except ValueError:
            raise BadUserInput("dateOfBirth must be a date, YYYY-MM-DD", field="dateOfBirth") from None
        if not date(1900, 1, 1) <= born <= utcnow().date():
            raise BadUserInput("dateOfBirth is not a plausible date of birth", field="dateOfBirth")
    return data


def _check_names(kind: CustomerKind, data: PersonalData) -> None:
    if kind is CustomerKind.ORGANISATION and not data.organisation_name:
        raise BadUserInput("an organisation needs organisationName", field="organisationName")
    if kind is CustomerKind.PERSON and not (data.given_name or data.family_name):
        raise BadUserInput("a person needs givenName or familyName", field="givenName")


async def lock_external_ref(session: TenantSession, kind: str, external_ref: str) -> None:
    """Make concurrent creations of one ``kind`` with one ``external_ref`` wait for
    each other until the first commits, so the others find its row instead of a unique
    violation (PostgreSQL: a transaction-level advisory lock; SQLite runs one writer
    at a time)."""
    if session.get_bind().dialect.name == "postgresql":
        key = f"{kind}:{session.tenant_id}:{external_ref}"
        await session.execute(select(func.pg_advisory_xact_lock(func.hashtextextended(key, 0))))


ERASED_REF = (
    "externalRef names a customer who was erased: their record may not create them again "
    "(a customer who returns gets a new externalRef)"
)


def erased_ref_index(keys: TenantKeys, external_ref: str) -> bytes:
    """How an erasure keeps a customer's ``external_ref``: as a blind index only
    (``Customer.erased_ref_index``), so that a retried create or a re-run import of the
    bank's old record is refused (:data:`ERASED_REF`) instead of bringing the customer's
    data back."""
    return keys.blind_index("external_ref", external_ref)


def _same_customer(existing: Customer, new: NewCustomer) -> Customer:
    """``existing`` if it is what the create asks for; else a CONFLICT naming the first
    field that differs (the API's camelCase name)."""
    if existing.erased_at is not None:
        raise Conflict(ERASED_REF, field="externalRef")
    differing = [
        name
        for name, same in (
            ("kind", existing.kind is new.kind),
            ("lifecycleStage", existing.lifecycle_stage is new.lifecycle_stage),
            ("relationshipManager", existing.relationship_manager == new.relationship_manager),
            ("timeZone", existing.time_zone == new.time_zone),
            ("tags", existing.tag_names == new.tags),
        )
        if not same
    ]
    differing += [_camel(name) for name in sorted(new.data.differs_from(existing.personal))]
    if differing:
        raise Conflict(
            f"externalRef names a customer whose {differing[0]} differs: a retry must send the "
            "same input (change the customer with updateCustomer)",
            field=differing[0],
        )
    return existing


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


@dataclass(frozen=True)
class NewCustomer:
    """A customer's creation input as checked and cleaned (trimmed, tags lowercased)."""

    kind: CustomerKind
    lifecycle_stage: LifecycleStage
    external_ref: str | None
    relationship_manager: str | None
    time_zone: str | None
    tags: list[str]
    data: PersonalData

    def customer(self) -> Customer:
        """The customer to add (its personal data is encrypted when it is flushed)."""
        customer = Customer(
            kind=self.kind,
            lifecycle_stage=self.lifecycle_stage,
            external_ref=self.external_ref,
            relationship_manager=self.relationship_manager,
            time_zone=self.time_zone,
        )
        customer.personal = self.data
        customer.tags = [CustomerTag(tag=t) for t in self.tags]
        return customer


def clean_customer(
    *,
    kind: CustomerKind,
    tags: Sequence[str] = (),
    lifecycle_stage: LifecycleStage = LifecycleStage.NEW,
    external_ref: str | None = None,
    relationship_manager: str | None = None,
    time_zone: str | None = None,
    **personal_fields: str | None,
) -> NewCustomer:
    """The checks of :func:`create_customer` that need no database (bulk import runs
    them row by row); BAD_USER_INPUT names the first field refused."""
    external_ref = optional_text(external_ref, "externalRef", 100)
    data = _personal(PersonalData(), personal_fields)
    _check_names(kind, data)
    manager = optional_text(relationship_manager, "relationshipManager", 200)
    zone = optional_time_zone(time_zone, "timeZone")
    return NewCustomer(kind, lifecycle_stage, external_ref, manager, zone, _tags(tags), data)


async def validate_new_customer(ctx: TenantContext, customer: Customer) -> None:
    """The enabled plugins' ``validate_customer`` checks of a customer being created."""
    changed = frozenset({"kind", "lifecycle_stage", "tags", *customer.personal_changed})
    await ctx.hooks.call("validate_customer", customer=customer, changed=changed)


async def create_customer(
    ctx: TenantContext,
    *,
    kind: CustomerKind,
    tags: Sequence[str] = (),
    lifecycle_stage: LifecycleStage = LifecycleStage.NEW,
    external_ref: str | None = None,
    relationship_manager: str | None = None,
    time_zone: str | None = None,
    **personal_fields: str | None,
) -> Customer:
    """Create a customer. Idempotent by ``external_ref``: a retry with the same input
    (as cleaned: trimmed, tags lowercased) returns the first customer, also when the
    retries run concurrently; with different input it is a CONFLICT naming the field."""
    session = ctx.session
    new = clean_customer(
        kind=kind,
        tags=tags,
        lifecycle_stage=lifecycle_stage,
        external_ref=external_ref,
        relationship_manager=relationship_manager,
        time_zone=time_zone,
        **personal_fields,
    )
    if new.external_ref is not None:
        await lock_external_ref(session, "customer", new.external_ref)
        erased = erased_ref_index(session.info[TENANT_KEYS], new.external_ref)
        existing = await session.scalar(
            select(Customer).where(
                or_(Customer.external_ref == new.external_ref, Customer.erased_ref_index == erased)
            )
        )
        if existing is not None:
            return _same_customer(existing, new)
    customer = new.customer()
    session.add(customer)
    await validate_new_customer(ctx, customer)
    await session.flush()
    emit(ctx, "customer_created", "Customer", customer.id)
    return customer


async def get_customer(ctx: TenantContext, customer_id: uuid.UUID) -> Customer:
    """A customer of the tenant; another tenant's id and an erased customer read as not found."""
    return await find_customer(ctx.session, customer_id)


async def get_customers(ctx: TenantContext, customer_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, Customer]:
    """Many customers of the tenant in one query (with their data keys), by id: a job
    working through a batch loads them at once. Ids of erased customers, of another
    tenant's or of none are left out, as :func:`get_customer` reads them as not found."""
    wanted = list(set(customer_ids))
    if not wanted:
        return {}
    found = await ctx.session.scalars(select(Customer).where(Customer.id.in_(wanted)))
    return {c.id: c for c in found if _exists(c)}


async def find_customer(session: TenantSession, customer_id: uuid.UUID) -> Customer:
    """:func:`get_customer` for code that holds only the tenant's session: with
    :func:`get_customers`, the place that decides which customers exist. An erased
    customer is a tombstone, so every read and write through here treats it as not found
    and nothing new reaches it."""
    customer = await session.get(Customer, (session.tenant_id, customer_id))
    if customer is None or not _exists(customer):
        raise NotFound(f"no customer {customer_id}")
    return customer


def _exists(customer: Customer) -> bool:
    return customer.erased_at is None


async def update_customer(
    ctx: TenantContext,
    customer_id: uuid.UUID,
    *,
    expected_version: int | None = None,
    tags: Sequence[str] | None = None,
    kind: CustomerKind | None = None,
    lifecycle_stage: LifecycleStage | None = None,
    relationship_manager: str | None = UNSET,
    time_zone: str | None = UNSET,
    **personal_fields: str | None,
) -> Customer:
    """Apply the fields given; with ``expected_version`` a concurrent edit is a CONFLICT."""
    customer = await get_customer(ctx, customer_id)
    if expected_version is not None and expected_version != customer.version:
        raise Conflict(
            f"the customer is at version {customer.version}, not {expected_version}; "
            "reload it and apply your change again",
            version=customer.version,
        )
    changed: set[str] = set()
    data = _personal(customer.personal, personal_fields)
    if kind is not None and kind is not customer.kind:
        customer.kind = kind
        changed.add("kind")
    _check_names(customer.kind, data)
    personal_changes = data.differs_from(customer.personal)
    if personal_changes:
        customer.personal = data
        changed.update(personal_changes)
    if relationship_manager is not UNSET:
        manager = optional_text(relationship_manager, "relationshipManager", 200)
        if manager != customer.relationship_manager:
            customer.relationship_manager = manager
            changed.add("relationship_manager")
    if time_zone is not UNSET:
        zone = optional_time_zone(time_zone, "timeZone")
        if zone != customer.time_zone:
            customer.time_zone = zone
            changed.add("time_zone")
    if lifecycle_stage is not None and lifecycle_stage is not customer.lifecycle_stage:
        customer.lifecycle_stage = lifecycle_stage
        changed.add("lifecycle_stage")
    if tags is not None:
        new_tags = _tags(tags)
        if new_tags != customer.tag_names:
            customer.tags = [CustomerTag(tag=t) for t in new_tags]
            changed.add("tags")
    if not changed:
        return customer
    customer.updated_at = utcnow()
    await ctx.hooks.call("validate_customer", customer=customer, changed=frozenset(changed))
    await ctx.session.flush()
    emit(ctx, "customer_updated", "Customer", customer.id, changed=sorted(changed))
    return customer


async def archive_customer(ctx: TenantContext, customer_id: uuid.UUID) -> Customer:
    """Hide a customer from lists; archiving twice is a no-op."""
    customer = await get_customer(ctx, customer_id)
    if customer.archived_at is None:
        customer.archived_at = utcnow()
        await ctx.session.flush()
        emit(ctx, "customer_archived", "Customer", customer.id)
    return customer


async def list_customers(
    ctx: TenantContext, filter: CustomerFilter, *, after: uuid.UUID | None, limit: int
) -> Sequence[Customer]:
    """Customers by id, matching ``filter`` (:func:`matching`)."""
    found = matching(ctx, filter, after)
    query = select(Customer).where(*found.conditions()).order_by(Customer.id).limit(limit)
    return (await ctx.session.scalars(query, found.params)).all()


class Matching(NamedTuple):
    """Which customers a read asks for, split so its statement is built once per shape:
    ``shape`` names the conditions that apply, ``params`` the values they compare with.
    Building a statement and its cache key costs more than running it."""

    shape: tuple[tuple[Any, ...], ...]
    params: dict[str, Any]

    def conditions(self) -> tuple[ColumnElement[bool], ...]:
        """The conditions on ``customers``, with bound parameters named as in ``params``;
        the tenant's own among them, so they hold without the ORM's tenant criteria."""
        return _conditions(self.shape)


def matching(ctx: TenantContext, filter: CustomerFilter, after: uuid.UUID | None) -> Matching:
    """A page of the tenant's customers after ``after`` matching ``filter``; exact e-mail,
    phone and national id and whole name words are matched through blind indexes, since
    the values themselves are encrypted."""
    keys: TenantKeys = ctx.session.info[TENANT_KEYS]
    shape: list[tuple[Any, ...]] = [("tenant",), ("not_erased",)]
    params: dict[str, Any] = {"tenant": ctx.tenant_id}
    if after is not None:
        shape.append(("after",))
        params["after"] = after
    if not filter.include_archived:
        shape.append(("not_archived",))
    if filter.consent is not None:
        shape.append(("consent", filter.consent))
        params["consent_at"] = utcnow()
    if filter.stage is not None:
        shape.append(("stage",))
        params["stage"] = filter.stage
    if filter.tag is not None:
        shape.append(("tag",))
        params["tag"] = filter.tag.strip().lower()
    indexed: tuple[tuple[IndexKind, str | None, str], ...] = (
        ("email", filter.email, "email"),
        ("phone", filter.phone, "phone"),
        ("national_id", filter.national_id, "nationalId"),
    )
    for kind, value, field in indexed:
        if value:
            shape.append((kind,))
            params[kind] = _index(keys, kind, value, field)
    if filter.text:
        if len(filter.text) > 100:
            raise BadUserInput("text filter is longer than 100 characters", field="text")
        tokens = sorted(keys.name_tokens(filter.text))
        if not tokens:
            raise BadUserInput("text has no words to search for", field="text")
        shape.append(("text", len(tokens)))
        params.update((f"token_{i}", token) for i, token in enumerate(tokens))
    return Matching(tuple(shape), params)


def with_ids(ctx: TenantContext, ids: Sequence[uuid.UUID]) -> Matching:
    """The tenant's customers of ``ids`` that are not erased."""
    return Matching((("tenant",), ("not_erased",), ("ids",)), {"tenant": ctx.tenant_id, "ids": list(ids)})


def _index(keys: TenantKeys, kind: IndexKind, value: str, field: str) -> bytes:
    try:
        return keys.blind_index(kind, value)
    except ValueError:
        raise BadUserInput(f"{field} has nothing to search for", field=field) from None


def _name_word(i: int) -> ColumnElement[bool]:
    return exists().where(
        CustomerNameToken.tenant_id == Customer.tenant_id,
        CustomerNameToken.customer_id == Customer.id,
        CustomerNameToken.token == bindparam(f"token_{i}"),
    )


_CONDITION: dict[str, Callable[..., ColumnElement[bool]]] = {
    "tenant": lambda: Customer.tenant_id == bindparam("tenant"),
    "not_erased": lambda: Customer.erased_at.is_(None),
    "not_archived": lambda: Customer.archived_at.is_(None),
    "after": lambda: Customer.id > bindparam("after"),
    "ids": lambda: Customer.id.in_(bindparam("ids", expanding=True)),
    "consent": lambda criterion: criterion.where(at=bindparam("consent_at")),
    "stage": lambda: Customer.lifecycle_stage == bindparam("stage"),
    "tag": lambda: exists().where(
        CustomerTag.tenant_id == Customer.tenant_id,
        CustomerTag.customer_id == Customer.id,
        CustomerTag.tag == bindparam("tag"),
    ),
    "email": lambda: Customer.email_index == bindparam("email"),
    "phone": lambda: Customer.phone_index == bindparam("phone"),
    "national_id": lambda: Customer.national_id_index == bindparam("national_id"),
    "text": lambda words: and_(*(_name_word(i) for i in range(words))),
}
"""Each condition a :class:`Matching` shape may name, built from its parameters' names."""


@functools.lru_cache(maxsize=512)  # shapes vary by filter and consent purpose: bounded
def _conditions(shape: tuple[tuple[Any, ...], ...]) -> tuple[ColumnElement[bool], ...]:
    return tuple(_CONDITION[name](*arguments) for name, *arguments in shape)


def _amount(session: TenantSession, amount: str | Decimal, currency: str | None) -> Decimal:
    """``amount`` as the column stores it (at its scale: 12.5 -> 12.5000), refused if
    storing would change it: more decimals than ``currency`` has minor units (ISO 4217)
    or the column's scale, or more integer digits than the column holds (SQLite keeps
    NUMERIC as a binary float: :data:`FLOAT_DIGITS` digits in all)."""
    try:
        value = Decimal(str(amount))
    except InvalidOperation:
        raise BadUserInput(f"amount {amount!r} is not a decimal number", field="amount") from None
    if not value.is_finite():
        raise BadUserInput("amount must be a finite number", field="amount")
    if currency is None:
        raise BadUserInput("an amount needs its currency", field="currency")
    try:
        minor_units = Currency(currency).exponent
    except ValueError:
        raise BadUserInput("currency must be an ISO 4217 code such as EUR", field="currency") from None
    column = Activity.__table__.c.amount.type
    assert isinstance(column, Numeric) and column.precision is not None and column.scale is not None
    precision = column.precision
    if not session.get_bind().dialect.supports_native_decimal:
        precision = min(precision, FLOAT_DIGITS)
    integer_digits, decimals = decimal_digits(value)
    allowed = column.scale if minor_units is None else min(minor_units, column.scale)
    if decimals > allowed:
        raise BadUserInput(
            f"amount has {decimals} decimals; {currency} amounts have at most {allowed}", field="amount"
        )
    if integer_digits > precision - column.scale:
        raise BadUserInput(
            f"amount has more than {precision - column.scale} digits before the decimal point",
            field="amount",
        )
    return value.quantize(Decimal(1).scaleb(-column.scale))


def clean_activity(
    session: TenantSession,
    *,
    customer_id: uuid.UUID,
    kind: ActivityKind,
    channel: Channel,
    occurred_at: datetime | None,
    amount: str | Decimal | None,
    currency: str | None,
    attributes: Any,
    external_ref: str | None,
    now: datetime,
) -> Activity:
    """The activity to add, after the checks of :func:`record_activity` that need no
    database (bulk import runs them row by row)."""
    value = None if amount is None else _amount(session, amount, currency)
    if currency is not None and value is None:
        raise BadUserInput("a currency needs an amount", field="amount")
    when = occurred_at or now
    if when.tzinfo is None:
        raise BadUserInput("occurredAt needs a time zone offset", field="occurredAt")
    if when > now + timedelta(minutes=5):
        raise BadUserInput("occurredAt is in the future", field="occurredAt")
    attributes = attributes or {}
    if not isinstance(attributes, dict):
        raise BadUserInput("attributes must be a JSON object", field="attributes")
    if len(json.dumps(attributes, default=str)) > MAX_ATTRIBUTES_BYTES:
        raise BadUserInput(f"attributes exceed {MAX_ATTRIBUTES_BYTES} bytes", field="attributes")
    return Activity(
        customer_id=customer_id,
        kind=kind,
        channel=channel,
        occurred_at=when,
        amount=value,
        currency=currency,
        attributes=attributes,
        external_ref=optional_text(external_ref, "externalRef", 100),
    )


async def record_activity(
    ctx: TenantContext,
    *,
    customer_id: uuid.UUID,
    kind: ActivityKind,
    channel: Channel,
    occurred_at: datetime | None = None,
    amount: str | Decimal | None = None,
    currency: str | None = None,
    attributes: Any = None,
    external_ref: str | None = None,
) -> Activity:
    """Add to a customer's timeline; retried with the same ``external_ref`` it returns the
    first one."""
    session = ctx.session
    await get_customer(ctx, customer_id)
    external_ref = optional_text(external_ref, "externalRef", 100)
    if external_ref is not None:
        await lock_external_ref(session, "activity", external_ref)
        existing = await session.scalar(select(Activity).where(Activity.external_ref == external_ref))
        if existing is not None:
            if existing.customer_id != customer_id:
                raise Conflict(
                    "externalRef already names an activity of another customer", field="externalRef"
                )
            return existing
    activity = clean_activity(
        ctx.session,
        customer_id=customer_id,
        kind=kind,
        channel=channel,
        occurred_at=occurred_at,
        amount=amount,
        currency=currency,
        attributes=attributes,
        external_ref=external_ref,
        now=utcnow(),
    )
    session.add(activity)
    await ctx.hooks.call("validate_activity", activity=activity)
    await session.flush()
    emit(
        ctx,
        "activity_recorded",
        "Activity",
        activity.id,
        customer_id=str(customer_id),
        kind=kind.value,
    )
    return activity


async def list_activities(
    ctx: TenantContext,
    customer_id: uuid.UUID,
    *,
    kind: ActivityKind | None,
    after: uuid.UUID | None,
    limit: int,
) -> Sequence[Activity]:
    await get_customer(ctx, customer_id)
    query = (
        select(Activity).where(Activity.customer_id == customer_id).order_by(Activity.id.desc()).limit(limit)
    )
    if after is not None:
        query = query.where(Activity.id < after)
    if kind is not None:
        query = query.where(Activity.kind == kind)
    return (await ctx.session.scalars(query)).all()
