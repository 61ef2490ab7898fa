"""Customer and activity tables. Every unique key includes ``tenant_id``."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    ForeignKeyConstraint,
    Index,
    Numeric,
    String,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from crmkit.db import Model, TenantOwned, str_enum, utcnow, uuid7


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
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid7)
    external_ref: Mapped[str | None] = mapped_column(String(100))
    kind: Mapped[CustomerKind] = mapped_column(str_enum(CustomerKind))
    given_name: Mapped[str | None] = mapped_column(String(200))
    family_name: Mapped[str | None] = mapped_column(String(200))
    organisation_name: Mapped[str | None] = mapped_column(String(300))
    display_name: Mapped[str] = mapped_column(String(400))
    email: Mapped[str | None] = mapped_column(String(320))
    phone: Mapped[str | None] = mapped_column(String(32))
    postal_address: Mapped[str | None] = mapped_column(String(500))
    lifecycle_stage: Mapped[LifecycleStage] = mapped_column(
        str_enum(LifecycleStage), default=LifecycleStage.NEW
    )
    relationship_manager: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    archived_at: Mapped[datetime | None] = mapped_column()
    version: Mapped[int] = mapped_column(default=1)

    tags: Mapped[list[CustomerTag]] = relationship(
        cascade="all, delete-orphan",
        lazy="selectin",
        order_by="CustomerTag.tag",
        overlaps="tenant_id",
    )

    __mapper_args__ = {"version_id_col": version}

    @property
    def tag_names(self) -> list[str]:
        return [t.tag for t in self.tags]


class CustomerTag(TenantOwned, Model):
    __tablename__ = "customer_tags"
    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "customer_id"],
            ["customers.tenant_id", "customers.id"],
            ondelete="CASCADE",
        ),
        Index("ix_customer_tags_tenant_id_tag", "tenant_id", "tag"),
    )

    customer_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    tag: Mapped[str] = mapped_column(String(64), primary_key=True)


class Activity(TenantOwned, Model):
    __tablename__ = "activities"
    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "customer_id"],
            ["customers.tenant_id", "customers.id"],
            ondelete="CASCADE",
        ),
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
