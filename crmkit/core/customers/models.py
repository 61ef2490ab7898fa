"""Customer and activity tables. Every unique key includes ``tenant_id``."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar

from sqlalchemy import (
    Index,
    LargeBinary,
    Numeric,
    String,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from crmkit.clock import utcnow
from crmkit.core.customers import personal
from crmkit.core.customers.personal import PersonalData
from crmkit.db import Model, TenantOwned, customer_key, str_enum, uuid7


class CustomerKind(enum.StrEnum):
    PERSON = "person"
    ORGANISATION = "organisation"


class LifecycleStage(enum.StrEnum):
    NEW = "new"
    ACTIVE = "active"
    AT_RISK = "at_risk"
    DORMANT = "dormant"
    CHURNED = "churned"


class ActivityKind(enum.StrEnum):
    TRANSACTION = "transaction"
    LOGIN = "login"
    CONTACT = "contact"
    COMPLAINT = "complaint"
    OTHER = "other"


class Channel(enum.StrEnum):
    BRANCH = "branch"
    WEB = "web"
    APP = "app"
    PHONE = "phone"
    EMAIL = "email"
    SMS = "sms"
    SOCIAL = "social"
    OTHER = "other"


class Customer(TenantOwned, Model):
    __tablename__ = "customers"
    __table_args__ = (
        UniqueConstraint("tenant_id", "external_ref"),
        Index("ix_customers_tenant_id_stage", "tenant_id", "lifecycle_stage"),
        Index("ix_customers_tenant_id_email_index", "tenant_id", "email_index"),
        Index("ix_customers_tenant_id_phone_index", "tenant_id", "phone_index"),
        Index("ix_customers_tenant_id_national_id_index", "tenant_id", "national_id_index"),
        Index(  # erased customers only: no other query of a tenant's customers reads it
            "ix_customers_tenant_id_erased_ref_index",
            "tenant_id",
            "erased_ref_index",
            postgresql_where=text("erased_ref_index IS NOT NULL"),
            sqlite_where=text("erased_ref_index IS NOT NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid7)
    external_ref: Mapped[str | None] = mapped_column(String(100))
    kind: Mapped[CustomerKind] = mapped_column(str_enum(CustomerKind))
    pii: Mapped[bytes | None] = mapped_column(LargeBinary)
    """The personal data (:class:`PersonalData`), AES-GCM under the customer's data key."""
    email_index: Mapped[bytes | None] = mapped_column(LargeBinary(16))
    phone_index: Mapped[bytes | None] = mapped_column(LargeBinary(16))
    national_id_index: Mapped[bytes | None] = mapped_column(LargeBinary(16))
    lifecycle_stage: Mapped[LifecycleStage] = mapped_column(
        str_enum(LifecycleStage), default=LifecycleStage.NEW
    )
    relationship_manager: Mapped[str | None] = mapped_column(String(200))
    time_zone: Mapped[str | None] = mapped_column(String(64))
    """The customer's IANA time zone (``Europe/Paris``), for what must happen in their
    local hours (a message held in quiet hours); None: the tenant's."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    archived_at: Mapped[datetime | None] = mapped_column()
    erased_at: Mapped[datetime | None] = mapped_column()
    erased_ref_index: Mapped[bytes | None] = mapped_column(LargeBinary(16))
    """An erased customer's ``external_ref``, kept as a blind index only: creating or
    importing that reference again is refused (``service.erased_ref_index``)."""
    version: Mapped[int] = mapped_column(default=1)

    tags: Mapped[list[CustomerTag]] = relationship(
        cascade="all, delete-orphan",
        lazy="selectin",
        order_by="CustomerTag.tag",
        overlaps="tenant_id",
    )

    key: Mapped[CustomerKey | None] = relationship(
        cascade="all, delete-orphan", lazy="joined", overlaps="tenant_id"
    )

    __mapper_args__ = {"version_id_col": version}

    @property
    def tag_names(self) -> list[str]:
        return [t.tag for t in self.tags]

    @property
    def personal(self) -> PersonalData:
        """The decrypted personal data (decrypted once, on first use)."""
        value: PersonalData | None = self.__dict__.get("_personal")
        if value is None:
            value = self.__dict__["_personal"] = personal.decrypt(self)
        return value

    @personal.setter
    def personal(self, value: PersonalData) -> None:
        """Encrypted when the session flushes (:mod:`crmkit.core.customers.protection`)."""
        before = PersonalData() if self.pii is None else self.personal
        self.__dict__["_personal"] = value
        self.__dict__["_personal_changed"] = sorted({*self.personal_changed, *value.differs_from(before)})
        self.pii = personal.PENDING

    @property
    def personal_changed(self) -> list[str]:
        """Personal fields set since the customer was loaded."""
        return list(self.__dict__.get("_personal_changed", ()))

    INDEX_COLUMNS: ClassVar[frozenset[str]] = frozenset(
        {"pii", "email_index", "phone_index", "national_id_index"}
    )

    def audited_fields(self, columns: list[str]) -> list[str]:
        """For the audit trail: the personal fields that changed, not the ciphertext and
        index columns that carry them."""
        if not self.INDEX_COLUMNS & set(columns):
            return columns
        return sorted({*(set(columns) - self.INDEX_COLUMNS), *self.personal_changed})

    @property
    def display_name(self) -> str:
        return self.personal.display_name(self.kind)


class CustomerKey(TenantOwned, Model):
    """A customer's data key, wrapped by the tenant key. Deleting it erases the
    customer's personal data wherever its ciphertext lives (crypto-shredding)."""

    __tablename__ = "customer_keys"
    __table_args__ = (customer_key(),)

    customer_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary)


class CustomerNameToken(TenantOwned, Model):
    """Blind-indexed, normalised words of a customer's names: what the text filter
    searches, since the names themselves are encrypted."""

    __tablename__ = "customer_name_tokens"
    __audited__ = False  # derived from the (audited) change of the customer's names
    __table_args__ = (
        customer_key(),
        Index("ix_customer_name_tokens_tenant_id_token", "tenant_id", "token"),
    )

    customer_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    token: Mapped[bytes] = mapped_column(LargeBinary(16), primary_key=True)


class CustomerTag(TenantOwned, Model):
    __tablename__ = "customer_tags"
    __table_args__ = (
        customer_key(),
        Index("ix_customer_tags_tenant_id_tag", "tenant_id", "tag"),
    )

    customer_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    tag: Mapped[str] = mapped_column(String(64), primary_key=True)


class Activity(TenantOwned, Model):
    __tablename__ = "activities"
    __table_args__ = (
        customer_key(),
        UniqueConstraint("tenant_id", "external_ref"),
        Index(
            "ix_activities_tenant_id_customer_id_occurred_at",
            "tenant_id",
            "customer_id",
            "occurred_at",
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid7)
    customer_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    external_ref: Mapped[str | None] = mapped_column(String(100))
    kind: Mapped[ActivityKind] = mapped_column(str_enum(ActivityKind))
    channel: Mapped[Channel] = mapped_column(str_enum(Channel))
    amount: Mapped[Decimal | None] = mapped_column(Numeric(18, 4))
    currency: Mapped[str | None] = mapped_column(String(3))
    occurred_at: Mapped[datetime] = mapped_column()
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
