"""The plugin's tables: templates, campaigns and messages (outbound and inbound)."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

import crmkit
from sqlalchemy import JSON, Enum, Index, Integer, String, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column


class MessageStatus(enum.StrEnum):
    """Where a message stands. There is no stored ``sending``: the provider call and the
    status it leads to are one transaction (the README says why)."""

    QUEUED = "queued"
    SENT = "sent"
    DELIVERED = "delivered"
    FAILED = "failed"
    SUPPRESSED = "suppressed"
    BOUNCED = "bounced"
    RECEIVED = "received"
    """An inbound reply."""


FINAL = frozenset(
    {MessageStatus.SENT, MessageStatus.DELIVERED, MessageStatus.FAILED}
    | {MessageStatus.SUPPRESSED, MessageStatus.BOUNCED, MessageStatus.RECEIVED}
)


class Template(crmkit.TenantOwned, crmkit.Model):
    """One version of a template; saving again adds a version, the newest is used."""

    __tablename__ = "channels_templates"
    __table_args__ = (UniqueConstraint("tenant_id", "key", "channel", "locale", "version"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=crmkit.uuid7)
    key: Mapped[str] = mapped_column(String(100))
    channel: Mapped[str] = mapped_column(String(20))
    locale: Mapped[str] = mapped_column(String(20))
    version: Mapped[int] = mapped_column(Integer)
    subject: Mapped[str | None] = mapped_column(String(500))
    body: Mapped[str] = mapped_column(String(20000))
    created_at: Mapped[datetime] = mapped_column(default=crmkit.utcnow)


class Campaign(crmkit.TenantOwned, crmkit.Model):
    """One template sent to the customers a filter selects, one message each."""

    __tablename__ = "channels_campaigns"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=crmkit.uuid7)
    name: Mapped[str] = mapped_column(String(200))
    template: Mapped[str] = mapped_column(String(100))
    channel: Mapped[str] = mapped_column(String(20))
    purpose: Mapped[str] = mapped_column(String(64))
    locale: Mapped[str] = mapped_column(String(20))
    filter: Mapped[dict[str, Any]] = mapped_column(JSON)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    expanded_at: Mapped[datetime | None] = mapped_column(default=None)
    created_by: Mapped[str] = mapped_column(String(200))
    unmask: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(default=crmkit.utcnow)


class Message(crmkit.TenantOwned, crmkit.Model):
    """A message to (or a reply from) one customer on one channel."""

    __tablename__ = "channels_messages"
    __table_args__ = (
        crmkit.customer_key(),
        UniqueConstraint("tenant_id", "idempotency_key"),
        Index("ix_channels_messages_customer", "tenant_id", "customer_id"),
        Index("ix_channels_messages_campaign", "tenant_id", "campaign_id", "status"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=crmkit.uuid7)
    customer_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    campaign_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, default=None)
    direction: Mapped[str] = mapped_column(String(10), default="outbound")
    channel: Mapped[str] = mapped_column(String(20))
    purpose: Mapped[str] = mapped_column(String(64))
    template: Mapped[str | None] = mapped_column(String(100))
    locale: Mapped[str] = mapped_column(String(20))
    idempotency_key: Mapped[str] = mapped_column(String(300))
    requested_by: Mapped[str] = mapped_column(String(200))
    unmask: Mapped[list[str]] = mapped_column(JSON, default=list)
    """The unmask scopes of the sender: which customer fields the template shows in clear."""
    variables: Mapped[str | None] = mapped_column(crmkit.PersonalText())
    """The requester's variables, as JSON text: they may be personal."""
    status: Mapped[MessageStatus] = mapped_column(
        Enum(MessageStatus, native_enum=False, length=20), default=MessageStatus.QUEUED
    )
    reason: Mapped[str | None] = mapped_column(String(500), default=None)
    address: Mapped[str | None] = mapped_column(crmkit.PersonalText())
    subject: Mapped[str | None] = mapped_column(crmkit.PersonalText())
    body: Mapped[str | None] = mapped_column(crmkit.PersonalText())
    provider_id: Mapped[str | None] = mapped_column(String(200), default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(String(1000), default=None)
    scheduled_at: Mapped[datetime | None] = mapped_column(default=None)
    sent_at: Mapped[datetime | None] = mapped_column(default=None)
    read_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=crmkit.utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=crmkit.utcnow, onupdate=crmkit.utcnow)
