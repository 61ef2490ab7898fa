"""The tenant registry. A tenant is not tenant-owned: operators read it across tenants."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from crmkit.db import Model, str_enum, utcnow, uuid7


class TenantStatus(enum.StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"


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
