"""Customers' personal data: what it is, its information classes, masking, and its
encryption at rest.

All of a customer's personal fields travel as one :class:`PersonalData`, stored as a
single AES-GCM ciphertext (``customers.pii``) under the customer's data key, bound to
tenant, table, column and row. Exact search goes through keyed blind indexes, the
text filter through blind-indexed name words (:mod:`crmkit.crypto`).
"""

from __future__ import annotations

import enum
import json
import uuid
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import object_session

from crmkit.crypto import DataKey, TenantKeys

if TYPE_CHECKING:
    from crmkit.core.customers.models import Customer, CustomerKind

TENANT_KEYS = "crmkit_tenant_keys"
"""Where a tenant session keeps the tenant's unwrapped keys (set when the scope binds)."""
PAGE_KEYS = "crmkit_page_keys"
"""Where a session keeps the wrapped data keys it read with a page of customers
(:mod:`crmkit.core.customers.pages`), by customer id: the personal columns of those
customers' rows loaded later in the transaction open with them rather than asking the
database again. An erasure in the session drops its customer's."""
DATA_KEY = "_crmkit_data_key"
PENDING = b"pending"
"""``pii`` of a customer whose personal data changed and is encrypted at flush."""
TABLE, COLUMN = "customers", "pii"


class InformationClass(enum.StrEnum):
    """The guide's classes; ``identity`` and ``contact`` together are its basic data."""

    IDENTITY = "identity"
    CONTACT = "contact"
    TRANSACTION = "transaction"
    BEHAVIOUR = "behaviour"
    RISK = "risk"


def unmask_scope(information_class: InformationClass) -> str:
    """The scope that shows a class's fields in clear (roles grant it)."""
    return f"pii:{information_class.value}"


@dataclass(frozen=True)
class PersonalData:
    given_name: str | None = None
    family_name: str | None = None
    organisation_name: str | None = None
    email: str | None = None
    phone: str | None = None
    postal_address: str | None = None
    national_id: str | None = None
    date_of_birth: str | None = None

    def display_name(self, kind: CustomerKind) -> str:
        if kind.value == "organisation":
            return self.organisation_name or ""
        return " ".join(n for n in (self.given_name, self.family_name) if n)

    def changed(self, **values: Any) -> PersonalData:
        return replace(self, **values)

    def to_json(self) -> str:
        # not asdict(): it deep-copies every value, the bulk of a bulk import's encryption
        values = ((name, getattr(self, name)) for name in FIELDS)
        return json.dumps({name: value for name, value in values if value is not None})

    @classmethod
    def from_json(cls, data: str) -> PersonalData:
        return cls(**json.loads(data))

    def differs_from(self, other: PersonalData) -> list[str]:
        return [name for name in FIELDS if getattr(self, name) != getattr(other, name)]


FIELDS = tuple(f.name for f in fields(PersonalData))

CLASS_OF: dict[str, InformationClass] = {
    "given_name": InformationClass.IDENTITY,
    "family_name": InformationClass.IDENTITY,
    "organisation_name": InformationClass.IDENTITY,
    "display_name": InformationClass.IDENTITY,
    "national_id": InformationClass.IDENTITY,
    "date_of_birth": InformationClass.IDENTITY,
    "email": InformationClass.CONTACT,
    "phone": InformationClass.CONTACT,
    "postal_address": InformationClass.CONTACT,
}
"""The information class of each personal field of a customer (``display_name`` is
derived from the names)."""


NAME_FIELDS = frozenset({"given_name", "family_name", "organisation_name", "display_name"})


def mask(field: str, value: str | None) -> str | None:
    """What a caller without the field's unmask scope sees: enough to recognise a
    record, not enough to contact or identify the person. Names keep their initials,
    e-mail addresses their domain, phone numbers their last two digits; any other field
    (a plugin's too) shows nothing of its value."""
    if not value:
        return value
    if field == "email" and "@" in value:
        local, _, domain = value.partition("@")
        return f"{local[:1]}***@{domain}"
    if field == "phone":
        return f"***{value[-2:]}"
    if field in NAME_FIELDS:
        return " ".join(f"{word[:1]}***" for word in value.split())
    return "***"


def tenant_keys(customer: Customer) -> TenantKeys:
    session = object_session(customer)
    keys = session.info.get(TENANT_KEYS) if session is not None else None
    if keys is None:
        raise RuntimeError("personal data used outside a tenant scope with its keys bound")
    if keys.tenant_id != customer.tenant_id:
        raise RuntimeError("a customer of another tenant reached this session")
    return keys


def data_key(customer: Customer) -> DataKey:
    """The customer's data key, unwrapped once per loaded customer."""
    key: DataKey | None = customer.__dict__.get(DATA_KEY)
    if key is None:
        if customer.key is None:
            raise RuntimeError("the customer has no data key (erased?)")
        key = tenant_keys(customer).unwrap_data_key(customer.id, customer.key.wrapped_key)
        customer.__dict__[DATA_KEY] = key
    return key


def decrypt(customer: Customer) -> PersonalData:
    if customer.pii is None or customer.key is None:  # erased
        return PersonalData()
    return open_sealed(data_key(customer), customer.id, customer.pii)


def open_sealed(key: DataKey, customer_id: uuid.UUID, pii: bytes) -> PersonalData:
    """The personal data that ``customers.pii`` of ``customer_id`` holds: what
    :func:`seal` sealed."""
    return PersonalData.from_json(key.decrypt(pii, table=TABLE, column=COLUMN, row_id=customer_id))


def encrypt(customer: Customer, value: PersonalData) -> bytes:
    return seal(data_key(customer), customer.id, value)


def seal(key: DataKey, customer_id: uuid.UUID, value: PersonalData) -> bytes:
    """``customers.pii`` of customer ``customer_id`` holding ``value``."""
    return key.encrypt(value.to_json(), table=TABLE, column=COLUMN, row_id=customer_id)
