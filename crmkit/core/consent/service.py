"""Consent operations, shared by GraphQL, plugins and jobs.

Records are only ever added (:func:`record_consent`); the current state is derived
from the latest record per purpose and channel, always from the database in the
caller's transaction, never from a cache. Plugins ask :func:`allows` before they
contact a customer or share a customer's data.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import BindParameter, ColumnElement, exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from crmkit.clock import utcnow
from crmkit.core.consent.models import (
    ConsentChannel,
    ConsentPurpose,
    ConsentRecord,
    ConsentSource,
    ConsentState,
    LegalBasis,
)
from crmkit.core.customers.models import Customer
from crmkit.core.customers.service import find_customer
from crmkit.core.events import emit
from crmkit.db import TenantSession
from crmkit.errors import BadUserInput
from crmkit.inputs import enum_value, required_text
from crmkit.plugins.info import TenantContext

log = logging.getLogger(__name__)

PURPOSE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
CLOCK_SKEW = timedelta(minutes=5)

CORE_PURPOSES = (
    ConsentPurpose("marketing", "Offers and news about products and services."),
    ConsentPurpose(
        "service_notices",
        "Notices about the customer's products and services beyond the legally required ones.",
    ),
    ConsentPurpose("profiling", "Analysing the customer's data to build profiles, segments or scores."),
    ConsentPurpose("third_party_sharing", "Sharing the customer's data with third parties."),
)
"""The core's purposes, declared through ``register_consent_purposes`` like a plugin's."""


@dataclass(frozen=True)
class DeclaredPurpose:
    """A purpose with the plugin that declared it (``core`` for the core's)."""

    purpose: ConsentPurpose
    plugin: str


def purposes(ctx: TenantContext) -> dict[str, DeclaredPurpose]:
    """The purposes this tenant may record: the core's and its enabled plugins', as
    declared when each was registered (``register_consent_purposes``)."""
    return ctx.registry.consent_purposes(ctx.hooks.enabled)


def check_purpose(ctx: TenantContext, purpose: str) -> str:
    """``purpose`` if the tenant knows it; BAD_USER_INPUT listing the known ones if not."""
    known = purposes(ctx)
    if purpose not in known:
        names = sorted(known)
        raise BadUserInput(
            f"unknown consent purpose {purpose!r}; this tenant's purposes are: {', '.join(names)}",
            field="purpose",
            purposes=names,
        )
    return purpose


def _aware(value: datetime, field: str) -> datetime:
    if value.tzinfo is None:
        raise BadUserInput(f"{field} needs a time zone offset", field=field)
    return value.astimezone(UTC)


def _latest(customer_id: uuid.UUID, purpose: str, channel: ConsentChannel) -> Any:
    return (
        select(ConsentRecord)
        .where(
            ConsentRecord.customer_id == customer_id,
            ConsentRecord.purpose == purpose,
            ConsentRecord.channel == channel,
        )
        .order_by(ConsentRecord.id.desc())
        .limit(1)
    )


@dataclass(frozen=True)
class Decision:
    """A consent decision as checked, before it is recorded."""

    purpose: str
    channel: ConsentChannel
    state: ConsentState
    source: ConsentSource
    policy_version: str
    legal_basis: LegalBasis
    captured_by: str
    captured_at: datetime | None
    expires_at: datetime | None


def check_decision(
    ctx: TenantContext,
    *,
    purpose: str,
    channel: ConsentChannel | str,
    state: ConsentState | str,
    source: ConsentSource | str,
    policy_version: str,
    legal_basis: LegalBasis | str,
    captured_by: str,
    captured_at: datetime | None = None,
    expires_at: datetime | None = None,
    now: datetime,
) -> Decision:
    """The checks of :func:`record_consent` that need no database (bulk import runs
    them row by row); times are returned in UTC."""
    check_purpose(ctx, purpose)
    decision = Decision(
        purpose=purpose,
        channel=enum_value(ConsentChannel, channel, "channel"),
        state=enum_value(ConsentState, state, "state"),
        source=enum_value(ConsentSource, source, "source"),
        legal_basis=enum_value(LegalBasis, legal_basis, "legalBasis"),
        policy_version=required_text(policy_version, "policyVersion", 50),
        captured_by=required_text(captured_by, "capturedBy", 200),
        captured_at=None if captured_at is None else _aware(captured_at, "capturedAt"),
        expires_at=None if expires_at is None else _aware(expires_at, "expiresAt"),
    )
    if decision.captured_at is not None and decision.captured_at > now + CLOCK_SKEW:
        raise BadUserInput(
            "capturedAt is in the future; leave it out to use the server's time",
            field="capturedAt",
        )
    if decision.expires_at is not None and decision.expires_at <= now:
        raise BadUserInput("expiresAt must be in the future", field="expiresAt")
    return decision


def check_in_force(decision: Decision, in_force_since: datetime | None) -> None:
    """Refuse a decision captured before the one in force for its pair: the latest
    record is the current state."""
    captured_at = decision.captured_at
    if captured_at is not None and in_force_since is not None and captured_at < in_force_since:
        raise BadUserInput(
            f"capturedAt is earlier than the decision in force for {decision.purpose}/"
            f"{decision.channel.value} (captured {in_force_since.isoformat()}); the latest "
            "record is the current state, so enter older decisions first",
            field="capturedAt",
        )


async def record_consent(
    ctx: TenantContext,
    *,
    customer_id: uuid.UUID,
    purpose: str,
    channel: ConsentChannel | str,
    state: ConsentState | str,
    source: ConsentSource | str,
    policy_version: str,
    legal_basis: LegalBasis | str,
    captured_by: str,
    captured_at: datetime | None = None,
    expires_at: datetime | None = None,
) -> ConsentRecord:
    """Append a customer's decision for ``purpose`` on ``channel`` to the ledger.

    ``captured_by`` names who captured it (the principal's subject); ``captured_at``
    defaults to now: pass it only when entering a decision made earlier (a paper
    form, an import), and never earlier than the decision already in force for the
    pair, since the latest record is the current state. ``expires_at`` must lie in the
    future. Emits ``consent_changed`` in the same transaction.
    """
    session = ctx.session
    now = utcnow()
    decision = check_decision(
        ctx,
        purpose=purpose,
        channel=channel,
        state=state,
        source=source,
        policy_version=policy_version,
        legal_basis=legal_basis,
        captured_by=captured_by,
        captured_at=captured_at,
        expires_at=expires_at,
        now=now,
    )
    await find_customer(session, customer_id)
    previous = (await session.scalars(_latest(customer_id, purpose, decision.channel))).first()
    check_in_force(decision, previous.captured_at if previous is not None else None)
    record = ConsentRecord(
        customer_id=customer_id,
        purpose=purpose,
        channel=decision.channel,
        state=decision.state,
        source=decision.source,
        policy_version=decision.policy_version,
        legal_basis=decision.legal_basis,
        captured_by=decision.captured_by,
        captured_at=decision.captured_at or now,
        recorded_at=now,
        expires_at=decision.expires_at,
    )
    session.add(record)
    await session.flush()
    emit(
        ctx,
        "consent_changed",
        "ConsentRecord",
        record.id,
        **changed_data(record, previous.state if previous is not None else None),
    )
    return record


def changed_data(record: ConsentRecord, previous_state: ConsentState | None) -> dict[str, Any]:
    """The data of a ``consent_changed`` event for ``record``."""
    return {
        "customer_id": str(record.customer_id),
        "purpose": record.purpose,
        "channel": record.channel.value,
        "state": record.state.value,
        "previous_state": previous_state.value if previous_state is not None else None,
    }


def _current_query(customer_ids: Sequence[uuid.UUID]) -> Any:
    newer = aliased(ConsentRecord)
    return (
        select(ConsentRecord)
        .where(
            ConsentRecord.customer_id.in_(customer_ids),
            ~exists().where(
                newer.tenant_id == ConsentRecord.tenant_id,
                newer.customer_id == ConsentRecord.customer_id,
                newer.purpose == ConsentRecord.purpose,
                newer.channel == ConsentRecord.channel,
                newer.id > ConsentRecord.id,
            ),
        )
        .order_by(ConsentRecord.customer_id, ConsentRecord.purpose, ConsentRecord.channel)
    )


async def current_consents_of(
    session: AsyncSession, customer_ids: Sequence[uuid.UUID]
) -> list[list[ConsentRecord]]:
    """The latest record per purpose and channel of many customers in ONE query, one list
    per id in order (for data loaders)."""
    by_customer: dict[uuid.UUID, list[ConsentRecord]] = {cid: [] for cid in customer_ids}
    if customer_ids:
        for record in await session.scalars(_current_query(list(set(customer_ids)))):
            by_customer[record.customer_id].append(record)
    return [by_customer[cid] for cid in customer_ids]


async def current_consents(session: TenantSession, customer_id: uuid.UUID) -> list[ConsentRecord]:
    """A customer's current state: the latest record per purpose and channel, sorted by
    purpose then channel. A pair never recorded is absent (no consent)."""
    await find_customer(session, customer_id)
    return (await current_consents_of(session, [customer_id]))[0]


async def consent_history(
    session: TenantSession,
    customer_id: uuid.UUID,
    *,
    purpose: str | None = None,
    channel: ConsentChannel | None = None,
    after: uuid.UUID | None = None,
    limit: int,
) -> Sequence[ConsentRecord]:
    """Every record of a customer, newest first; ``after`` is the last id of the previous page."""
    await find_customer(session, customer_id)
    query = (
        select(ConsentRecord)
        .where(ConsentRecord.customer_id == customer_id)
        .order_by(ConsentRecord.id.desc())
        .limit(limit)
    )
    if after is not None:
        query = query.where(ConsentRecord.id < after)
    if purpose is not None:
        query = query.where(ConsentRecord.purpose == purpose)
    if channel is not None:
        query = query.where(ConsentRecord.channel == channel)
    return (await session.scalars(query)).all()


async def allows(
    session: AsyncSession,
    customer_id: uuid.UUID,
    purpose: str,
    channel: ConsentChannel | str,
    *,
    at: datetime | None = None,
) -> bool:
    """May we use ``channel`` for ``purpose`` with this customer? Exported as
    ``crmkit.consent_allows``; call it before every contact or data share.

    True only if the latest record for (customer, purpose, channel) is ``granted`` and
    not expired at ``at`` (default: now; pass a later time to check that a grant will
    still hold when a scheduled message goes out). No record, a denial, a withdrawal,
    an expired grant, an unknown purpose or another tenant's customer: False.

    ``session`` is the tenant's session (``ctx.session``, ``info.context.session``).
    The answer is read from the database in the caller's transaction, never cached: a
    withdrawal committed before the check is always seen (on PostgreSQL at the default
    READ COMMITTED, even one committed after the caller's transaction began).
    """
    return customer_id in await allows_many(session, [customer_id], purpose, channel, at=at)


async def allows_many(
    session: AsyncSession,
    customer_ids: Iterable[uuid.UUID],
    purpose: str,
    channel: ConsentChannel | str,
    *,
    at: datetime | None = None,
) -> set[uuid.UUID]:
    """The customers among ``customer_ids`` that :func:`allows` ``channel`` for
    ``purpose``, in ONE query whatever their number (exported as
    ``crmkit.consent_allows_many``): a job contacting many customers asks once, with
    the same rule and the same freshness as :func:`allows`.

    The query starts from the ids (each customer's latest record for the pair, found
    through the ledger's index) rather than from the ledger, so its cost follows the
    number of ids asked about, not the tenant's records, even before the planner has
    statistics on a new tenant's rows."""
    channel = ConsentChannel(channel)
    if at is not None and at.tzinfo is None:
        raise ValueError("at needs a time zone")
    wanted = list(set(customer_ids))
    if not wanted:
        return set()
    now = (at or utcnow()).astimezone(UTC)  # stored times are UTC
    newest_first = func.row_number().over(
        partition_by=ConsentRecord.customer_id, order_by=ConsentRecord.id.desc()
    )
    records = (
        select(
            ConsentRecord.customer_id,
            ConsentRecord.state,
            ConsentRecord.expires_at,
            newest_first.label("rank"),
        )
        .where(
            ConsentRecord.customer_id.in_(wanted),
            ConsentRecord.purpose == purpose,
            ConsentRecord.channel == channel,
        )
        .subquery()
    )
    found = await session.scalars(
        select(records.c.customer_id).where(
            records.c.rank == 1,
            records.c.state == ConsentState.GRANTED,
            or_(records.c.expires_at.is_(None), records.c.expires_at > now),
        )
    )
    return set(found)


@dataclass(frozen=True)
class ConsentCriterion:
    """A customer-list filter: the current consent for ``purpose``/``channel`` is ``state``."""

    purpose: str
    channel: ConsentChannel
    state: ConsentState

    def where(self, *, at: datetime | BindParameter[datetime] | None = None) -> ColumnElement[bool]:
        return consent_state_criterion(self.purpose, self.channel, self.state, at=at)


def consent_state_criterion(
    purpose: str,
    channel: ConsentChannel | str,
    state: ConsentState | str,
    *,
    at: datetime | BindParameter[datetime] | None = None,
) -> ColumnElement[bool]:
    """A WHERE criterion on ``Customer``: the customer's current consent for
    ``purpose``/``channel`` is ``state``.

    ``granted`` means what :func:`allows` means (latest record granted and unexpired at
    ``at``, default now; a bound parameter where the statement is built once and sent
    with the time as a value); ``denied`` and ``withdrawn`` match the latest record's state.
    An expired grant matches none of them. Use it in ``select(Customer).where(...)``.
    """
    channel = enum_value(ConsentChannel, channel, "channel")
    state = enum_value(ConsentState, state, "state")
    record, newer = aliased(ConsentRecord), aliased(ConsentRecord)
    conditions: list[ColumnElement[bool]] = [
        record.tenant_id == Customer.tenant_id,
        record.customer_id == Customer.id,
        record.purpose == purpose,
        record.channel == channel,
        record.state == state,
        ~exists().where(
            newer.tenant_id == record.tenant_id,
            newer.customer_id == record.customer_id,
            newer.purpose == record.purpose,
            newer.channel == record.channel,
            newer.id > record.id,
        ),
    ]
    if state is ConsentState.GRANTED:
        now = at if isinstance(at, BindParameter) else (at or utcnow()).astimezone(UTC)  # stored: UTC
        conditions.append(or_(record.expires_at.is_(None), record.expires_at > now))
    return exists().where(*conditions)
