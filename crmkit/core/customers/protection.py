"""Encrypting personal data as customers are flushed: the one place where a customer's
:class:`PersonalData` becomes ciphertext, blind indexes and name tokens."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, event
from sqlalchemy.orm import Session, UOWTransaction

from crmkit.core.customers import personal, personal_columns
from crmkit.core.customers.models import Customer, CustomerKey, CustomerNameToken
from crmkit.core.customers.personal import PersonalData
from crmkit.crypto import DataKey, TenantKeys
from crmkit.db import uuid7


def _index(keys: TenantKeys, kind: Any, value: str | None) -> bytes | None:
    if not value:
        return None
    try:
        return keys.blind_index(kind, value)
    except ValueError:  # nothing left after normalising: not searchable
        return None


@dataclass(frozen=True)
class Protected:
    """What the database keeps of a customer's personal data: the ciphertext, the
    blind indexes (e-mail, phone, national id) and the blind-indexed name words."""

    pii: bytes
    indexes: tuple[bytes | None, bytes | None, bytes | None]
    name_tokens: set[bytes]


def _name_tokens(keys: TenantKeys, value: PersonalData) -> set[bytes]:
    """The name tokens of ``value``: its given, family and organisation names' words."""
    return keys.name_tokens(
        " ".join(n for n in (value.given_name, value.family_name, value.organisation_name) if n)
    )


def protect(keys: TenantKeys, data_key: DataKey, customer_id: uuid.UUID, value: PersonalData) -> Protected:
    """``value`` encrypted and indexed for customer ``customer_id``: the one place
    personal data becomes ciphertext, for the flush and for bulk import alike."""
    return Protected(
        pii=personal.seal(data_key, customer_id, value),
        indexes=(
            _index(keys, "email", value.email),
            _index(keys, "phone", value.phone),
            _index(keys, "national_id", value.national_id),
        ),
        name_tokens=_name_tokens(keys, value),
    )


def _add_name_tokens(session: Session, customer: Customer, tokens: set[bytes]) -> None:
    for token in tokens:
        session.add(CustomerNameToken(tenant_id=customer.tenant_id, customer_id=customer.id, token=token))


_INDEXED = ("email", "phone", "national_id")
"""The personal fields with a blind index, each in the column ``<field>_index``."""


def _reprotect(session: Session, keys: TenantKeys, customer: Customer) -> None:
    """A stored customer whose personal data changed: re-encrypted, but only the blind
    indexes and name tokens of fields that changed since it was loaded are computed and
    rewritten; the others hold what they held (an HMAC each saved, and for unchanged
    names the tokens' DELETE and INSERT)."""
    value, changed = customer.personal, set(customer.personal_changed)
    customer.pii = personal.seal(personal.data_key(customer), customer.id, value)
    for kind in changed.intersection(_INDEXED):
        setattr(customer, f"{kind}_index", _index(keys, kind, getattr(value, kind)))
    if changed & personal.NAME_FIELDS:
        session.execute(delete(CustomerNameToken).where(CustomerNameToken.customer_id == customer.id))
        _add_name_tokens(session, customer, _name_tokens(keys, value))


def _protect(session: Session, flush_context: UOWTransaction, instances: Any) -> None:
    for customer in (*session.new, *session.dirty):
        if not isinstance(customer, Customer) or customer.pii != personal.PENDING:
            continue
        keys: TenantKeys = session.info[personal.TENANT_KEYS]
        if customer.id is None:
            customer.id = uuid7()
        if customer.key is None:
            data_key, wrapped = keys.new_data_key(customer.id)
            customer.key = CustomerKey(
                tenant_id=customer.tenant_id, customer_id=customer.id, wrapped_key=wrapped
            )
            customer.__dict__[personal.DATA_KEY] = data_key
        if customer not in session.new:
            _reprotect(session, keys, customer)
            continue
        found = protect(keys, personal.data_key(customer), customer.id, customer.personal)
        customer.pii = found.pii
        customer.email_index, customer.phone_index, customer.national_id_index = found.indexes
        _add_name_tokens(session, customer, found.name_tokens)


def install() -> None:
    """Attach the encryption step to every ORM session (idempotent; the platform calls it
    before the audit recorder, which then sees the data keys it creates), then the one
    for personal columns of other tables, which needs those keys."""
    if not event.contains(Session, "before_flush", _protect):
        event.listen(Session, "before_flush", _protect)
    personal_columns.install()
