"""The plugin's tables. Free text about a customer (subject, description, resolution,
notes and replies) is personal data: ``crmkit.PersonalText``, under the customer's key.

SLA deadlines are stored, not computed in queries: business hours with holidays cannot
be said in SQL, and a stored deadline lets the breach cron find due cases by index.
Business durations (to first response, to resolution) are stored when they end, so the
monitoring figures are plain SQL aggregates over them.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import crmkit
from sqlalchemy import ForeignKeyConstraint, Index, Integer, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column


class Case(crmkit.TenantOwned, crmkit.Model):
    """A customer's enquiry, request or complaint, from opening to closing."""

    __tablename__ = "cases"
    __table_args__ = (
        crmkit.customer_key(),
        Index("ix_cases_tenant_id_customer_id", "tenant_id", "customer_id"),
        Index("ix_cases_tenant_id_status", "tenant_id", "status"),
        Index("ix_cases_tenant_id_assignee", "tenant_id", "assignee"),
        Index("ix_cases_tenant_id_opened_at", "tenant_id", "opened_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=crmkit.uuid7)
    customer_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    kind: Mapped[str] = mapped_column(String(20))
    channel: Mapped[str] = mapped_column(String(20))
    priority: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(24))
    subject: Mapped[str | None] = mapped_column(crmkit.PersonalText())
    description: Mapped[str | None] = mapped_column(crmkit.PersonalText())
    team: Mapped[str | None] = mapped_column(String(100))
    assignee: Mapped[str | None] = mapped_column(String(200))
    opened_by: Mapped[str] = mapped_column(String(200))
    opened_at: Mapped[datetime] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column()

    first_response_target_minutes: Mapped[int] = mapped_column(Integer)
    resolution_target_minutes: Mapped[int] = mapped_column(Integer)
    first_response_warn_at: Mapped[datetime] = mapped_column()
    first_response_due_at: Mapped[datetime] = mapped_column()
    resolution_warn_at: Mapped[datetime] = mapped_column()
    resolution_due_at: Mapped[datetime] = mapped_column()
    paused_at: Mapped[datetime | None] = mapped_column()
    """Since when the case waits on the customer: the SLA clocks stand still."""
    paused_minutes: Mapped[int] = mapped_column(Integer, default=0)
    """Business minutes spent waiting on the customer, over the case's life."""

    first_response_at: Mapped[datetime | None] = mapped_column()
    first_response_minutes: Mapped[int | None] = mapped_column(Integer)
    first_response_met: Mapped[bool | None] = mapped_column()
    first_response_warned_at: Mapped[datetime | None] = mapped_column()
    first_response_breached_at: Mapped[datetime | None] = mapped_column()
    resolution_warned_at: Mapped[datetime | None] = mapped_column()
    resolution_breached_at: Mapped[datetime | None] = mapped_column()
    escalated_at: Mapped[datetime | None] = mapped_column()

    resolved_at: Mapped[datetime | None] = mapped_column()
    resolution_minutes: Mapped[int | None] = mapped_column(Integer)
    resolution_met: Mapped[bool | None] = mapped_column()
    resolution: Mapped[str | None] = mapped_column(crmkit.PersonalText())
    resolution_code: Mapped[str | None] = mapped_column(String(40))
    root_cause_code: Mapped[str | None] = mapped_column(String(40))
    closed_at: Mapped[datetime | None] = mapped_column()
    reopen_count: Mapped[int] = mapped_column(Integer, default=0)

    version: Mapped[int] = mapped_column(Integer, default=1)
    __mapper_args__ = {"version_id_col": version}
    """Two agents saving the same version: the second UPDATE matches no row (CONFLICT)."""


class CaseEntry(crmkit.TenantOwned, crmkit.Model):
    """An internal note or a reply the customer sees, in the case's history."""

    __tablename__ = "case_entries"
    __table_args__ = (
        crmkit.customer_key(),
        ForeignKeyConstraint(
            ["tenant_id", "case_id"], ["cases.tenant_id", "cases.id"], ondelete="CASCADE"
        ),
        Index("ix_case_entries_tenant_id_case_id", "tenant_id", "case_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=crmkit.uuid7)
    case_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    customer_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    visible_to_customer: Mapped[bool] = mapped_column()
    body: Mapped[str | None] = mapped_column(crmkit.PersonalText())
    author: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=crmkit.utcnow)


class CaseLink(crmkit.TenantOwned, crmkit.Model):
    """A case's link to an activity on the customer's timeline or to a message (the
    channels plugin's id, kept as an opaque reference: plugins never read each other's
    tables)."""

    __tablename__ = "case_links"
    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "case_id"], ["cases.tenant_id", "cases.id"], ondelete="CASCADE"
        ),
        Index("ix_case_links_tenant_id_case_id", "tenant_id", "case_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=crmkit.uuid7)
    case_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    target_type: Mapped[str] = mapped_column(String(20))
    target_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=crmkit.utcnow)


class RoutingCursor(crmkit.TenantOwned, crmkit.Model):
    """Round-robin position in a team: the agent who got its last case."""

    __tablename__ = "case_routing_cursors"

    team: Mapped[str] = mapped_column(String(100), primary_key=True)
    last_agent: Mapped[str | None] = mapped_column(String(200))


class CustomerTier(crmkit.TenantOwned, crmkit.Model):
    """A customer's loyalty tier as the loyalty plugin announced it, for routing."""

    __tablename__ = "case_customer_tiers"
    __table_args__ = (crmkit.customer_key(),)

    customer_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    tier: Mapped[str] = mapped_column(Text)
