"""The plugin's tables: other plugins' signals, as their events delivered them, and the
alerts the scoring opens."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

import crmkit
from sqlalchemy import JSON, Enum, Float, Index, Numeric, String, Uuid, text
from sqlalchemy.orm import Mapped, mapped_column


class SignalKind(StrEnum):
    SLA_BREACH = "sla_breach"
    CASE_CLOSED = "case_closed"
    NPS = "nps"
    CSAT = "csat"
    TIER_DROP = "tier_drop"
    POINTS_EXPIRING = "points_expiring"
    MARKETING_CONSENT = "marketing_consent"
    CHURNED = "churned"
    """Recorded by this plugin when it marks a customer churned: the churn rate counts them."""


class ChurnSignal(crmkit.TenantOwned, crmkit.Model):
    """One event of another plugin (or of the core's consent) that the score reads, or
    a churn this plugin recorded (the metrics count them).

        The row's id is the event's id, so a redelivered event adds nothing. ``subject_id``
        ties a case's breaches to its closure; ``value`` is the number the feature reads
        (a score, points, 1/0 for an opt-out).
    """

    __tablename__ = "churn_signals"
    __table_args__ = (
        crmkit.customer_key(),
        Index("ix_churn_signals_tenant_id_customer_id_kind", "tenant_id", "customer_id", "kind"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    customer_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    kind: Mapped[str] = mapped_column(String(32))
    subject_id: Mapped[str | None] = mapped_column(String(64))
    value: Mapped[Decimal | None] = mapped_column(Numeric(18, 4))
    occurred_at: Mapped[datetime] = mapped_column()
    expires_at: Mapped[datetime | None] = mapped_column()
    """When the signal stops counting: the expiry of points about to expire."""


class AlertStatus(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    ACTIONED = "actioned"
    RESOLVED = "resolved"


class Outcome(StrEnum):
    RETAINED = "retained"
    LOST = "lost"
    FALSE_ALARM = "false_alarm"


class Band(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


def _by_value(enum: type[StrEnum]) -> Enum:
    """Stored as the member's value in a plain string column (no database enum type)."""
    return Enum(
        enum,
        native_enum=False,
        create_constraint=False,
        length=16,
        values_callable=lambda members: [member.value for member in members],
    )


class ChurnAlert(crmkit.TenantOwned, crmkit.Model):
    """A customer the score flagged, until resolved with an outcome.

    At most one unresolved alert per customer: a partial unique index holds it even
    against two scoring runs at once.
    """

    __tablename__ = "churn_alerts"
    __table_args__ = (
        crmkit.customer_key(),
        Index(
            "ux_churn_alerts_one_open",
            "tenant_id",
            "customer_id",
            unique=True,
            sqlite_where=text("resolved_at IS NULL"),
            postgresql_where=text("resolved_at IS NULL"),
        ),
        Index("ix_churn_alerts_tenant_id_status", "tenant_id", "status"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=crmkit.uuid7)
    customer_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    status: Mapped[AlertStatus] = mapped_column(_by_value(AlertStatus), default=AlertStatus.OPEN)
    score: Mapped[int] = mapped_column()
    band: Mapped[Band] = mapped_column(_by_value(Band))
    reasons: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    """``[{"feature", "value", "contribution"}]``, largest contribution first."""
    features_used: Mapped[list[str]] = mapped_column(JSON)
    assigned_to: Mapped[str | None] = mapped_column(String(200))
    opened_at: Mapped[datetime] = mapped_column(default=crmkit.utcnow)
    acknowledged_at: Mapped[datetime | None] = mapped_column()
    acknowledged_by: Mapped[str | None] = mapped_column(String(200))
    action_step: Mapped[str | None] = mapped_column(String(40))
    action_kind: Mapped[str | None] = mapped_column(String(16))
    actioned_at: Mapped[datetime | None] = mapped_column()
    actioned_by: Mapped[str | None] = mapped_column(String(200))
    outcome: Mapped[Outcome | None] = mapped_column(_by_value(Outcome))
    resolved_at: Mapped[datetime | None] = mapped_column()
    resolved_by: Mapped[str | None] = mapped_column(String(200))
    # What the manager learnt (why they stay or leave): personal data about the customer.
    note: Mapped[str | None] = mapped_column(crmkit.PersonalText())


class ChurnModel(crmkit.TenantOwned, crmkit.Model):
    """One fit of the tenant's logistic-regression model (``crmkit_churn.model``): its
    coefficients as numbers, so the database scores with them and anyone can read them,
    and how well it did on held-out customers. The latest fit is the one in force."""

    __tablename__ = "churn_models"
    __table_args__ = (Index("ix_churn_models_tenant_id_fitted_at", "tenant_id", "fitted_at"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=crmkit.uuid7)
    fitted_at: Mapped[datetime] = mapped_column()
    fitted_by: Mapped[str] = mapped_column(String(200))
    cutoff: Mapped[datetime] = mapped_column()
    """The features were read as they stood here; a customer with no engagement after it
    (for ``horizon_days``) is labelled churned."""
    intercept: Mapped[float] = mapped_column(Float)
    coefficients: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    """``[{"feature", "coefficient", "missing"}]``: log-odds per unit of the feature's
    value, and the value that stands in where a customer has none."""
    auc: Mapped[float] = mapped_column(Float)
    precision: Mapped[float | None] = mapped_column(Float)
    recall: Mapped[float | None] = mapped_column(Float)
    """On the held-out customers, at the tenant's alert threshold (as a probability)."""
    training_customers: Mapped[int] = mapped_column()
    training_churned: Mapped[int] = mapped_column()
    held_out_customers: Mapped[int] = mapped_column()
    held_out_churned: Mapped[int] = mapped_column()
