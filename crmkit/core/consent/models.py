"""The consent ledger: an append-only history of each customer's consent decisions.

A :class:`ConsentRecord` is never changed or deleted: a new decision is a new record,
and a customer's current consent for a purpose and channel is *derived* as the latest
record for that pair (ids are UUIDv7, so the latest is the greatest id). The database
enforces this (see migration ``core_0002``): it refuses every UPDATE, and a DELETE
unless the customer is gone, i.e. the ``ON DELETE CASCADE`` of erasing the customer.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Index, String, Uuid, event
from sqlalchemy.orm import Mapped, mapped_column

from crmkit.clock import utcnow
from crmkit.db import Model, TenantOwned, customer_key, str_enum, uuid7


@dataclass(frozen=True)
class ConsentPurpose:
    """A purpose customers consent to, declared by the core or a plugin through
    ``register_consent_purposes``.

    ``name`` is lowercase letters, digits and ``_`` (at most 64); prefix a plugin's
    purposes with the plugin name (``loyalty_offers``) so they cannot collide.
    """

    name: str
    description: str


class ConsentChannel(enum.StrEnum):
    """How the customer may be contacted (or data shared) under a purpose."""

    EMAIL = "email"
    SMS = "sms"
    PHONE = "phone"
    PUSH = "push"
    IN_APP = "in_app"
    POST = "post"


class ConsentState(enum.StrEnum):
    GRANTED = "granted"
    DENIED = "denied"
    WITHDRAWN = "withdrawn"


class ConsentSource(enum.StrEnum):
    """Where the decision was captured."""

    BRANCH = "branch"
    APP = "app"
    WEB = "web"
    CALL_CENTRE = "call_centre"
    IMPORT = "import"


class LegalBasis(enum.StrEnum):
    """The lawful basis the processing rests on (GDPR art. 6 and its equivalents)."""

    CONSENT = "consent"
    CONTRACT = "contract"
    LEGAL_OBLIGATION = "legal_obligation"
    LEGITIMATE_INTEREST = "legitimate_interest"
    VITAL_INTEREST = "vital_interest"
    PUBLIC_TASK = "public_task"


class ConsentRecord(TenantOwned, Model):
    """One decision of one customer for one purpose and channel, with its evidence."""

    __tablename__ = "consent_records"
    __table_args__ = (
        customer_key(),
        # the latest record per (customer, purpose, channel) is one index probe
        Index(
            "ix_consent_records_tenant_id_customer_id_purpose_channel_id",
            "tenant_id",
            "customer_id",
            "purpose",
            "channel",
            "id",
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid7)
    customer_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    purpose: Mapped[str] = mapped_column(String(64))
    channel: Mapped[ConsentChannel] = mapped_column(str_enum(ConsentChannel))
    state: Mapped[ConsentState] = mapped_column(str_enum(ConsentState))
    source: Mapped[ConsentSource] = mapped_column(str_enum(ConsentSource))
    policy_version: Mapped[str] = mapped_column(String(50))
    legal_basis: Mapped[LegalBasis] = mapped_column(str_enum(LegalBasis))
    captured_by: Mapped[str] = mapped_column(String(200))
    captured_at: Mapped[datetime] = mapped_column()
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column()

    def expired(self, at: datetime | None = None) -> bool:
        if self.expires_at is None:
            return False
        expires_at = self.expires_at
        if expires_at.tzinfo is None:  # SQLite returns stored UTC times without an offset
            expires_at = expires_at.replace(tzinfo=UTC)
        return expires_at <= (at or utcnow())


class AppendOnly(RuntimeError):
    """Code tried to change or delete a consent record; record a new decision instead."""


@event.listens_for(ConsentRecord, "before_update")
@event.listens_for(ConsentRecord, "before_delete")
def _refuse_change(_mapper: Any, _connection: Any, target: ConsentRecord) -> None:
    raise AppendOnly(f"consent record {target.id} is append-only; record a new decision instead")
