"""The tenant registry. A tenant is not tenant-owned: operators read it across tenants."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import LargeBinary, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from crmkit.clock import utcnow
from crmkit.db import Model, TenantOwned, str_enum, uuid7


class TenantStatus(enum.StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    OFFBOARDED = "offboarded"


class Tenant(Model):
    __tablename__ = "tenants"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid7)
    slug: Mapped[str] = mapped_column(String(63), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[TenantStatus] = mapped_column(
        str_enum(TenantStatus),
        default=TenantStatus.ACTIVE,
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    activity_retention_days: Mapped[int | None] = mapped_column()
    """Activities older than this are purged daily; None keeps them."""


class TenantKey(TenantOwned, Model):
    """The tenant's key, wrapped by the platform master key (which never enters the
    database). Destroying it makes all of the tenant's personal data unreadable."""

    __tablename__ = "tenant_keys"
    __audited__ = False  # key material bookkeeping; creating or destroying it is audited by the act

    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
