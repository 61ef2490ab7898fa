"""Per-tenant plugin state and the record of failed handlers."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Index, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from crmkit.clock import utcnow
from crmkit.db import Model, TenantOwned, uuid7


class TenantPlugin(TenantOwned, Model):
    """A plugin a tenant has enabled (or had: disabling keeps the row and the data)."""

    __tablename__ = "tenant_plugins"

    plugin: Mapped[str] = mapped_column(String(100), primary_key=True)
    enabled: Mapped[bool] = mapped_column(default=True)
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class HandlerFailure(TenantOwned, Model):
    """A job or event handler that failed: transient tries and the final, given-up one."""

    __tablename__ = "handler_failures"
    __audited__ = False
    __table_args__ = (Index("ix_handler_failures_plugin_occurred_at", "plugin", "occurred_at"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid7)
    plugin: Mapped[str] = mapped_column(String(100))
    job: Mapped[str] = mapped_column(String(200))
    event_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    attempt: Mapped[int] = mapped_column()
    gave_up: Mapped[bool] = mapped_column(default=False)
    error: Mapped[str] = mapped_column(Text)
    occurred_at: Mapped[datetime] = mapped_column(default=utcnow)


class EventDelivery(TenantOwned, Model):
    """Marks an event handled by a plugin, committed with the handler's own writes,
    so a redelivered event is skipped instead of handled twice."""

    __tablename__ = "event_deliveries"
    __audited__ = False

    event_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    plugin: Mapped[str] = mapped_column(String(100), primary_key=True)
    delivered_at: Mapped[datetime] = mapped_column(default=utcnow)
