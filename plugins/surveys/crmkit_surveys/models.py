"""The plugin's tables. Every model is tenant-owned (``tenant_id`` leads the key and
the session filters by it); rows that name a customer take ``crmkit.customer_key()``.

A survey keeps an editable draft; publishing copies the draft into an immutable
version, and invitations, responses and answers point at that version.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import crmkit
from sqlalchemy import (
    JSON,
    ForeignKeyConstraint,
    Index,
    LargeBinary,
    String,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.orm import Mapped, mapped_column


class Survey(crmkit.TenantOwned, crmkit.Model):
    """A survey's identity and its draft (a :class:`questions.Definition` as JSON)."""

    __tablename__ = "surveys"
    __table_args__ = (UniqueConstraint("tenant_id", "key"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=crmkit.uuid7)
    key: Mapped[str] = mapped_column(String(64))
    draft: Mapped[dict[str, Any]] = mapped_column(JSON)
    latest_version: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=crmkit.utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=crmkit.utcnow)


class SurveyVersion(crmkit.TenantOwned, crmkit.Model):
    """A published, frozen definition: never updated."""

    __tablename__ = "survey_versions"
    __table_args__ = (
        UniqueConstraint("tenant_id", "survey_id", "version"),
        ForeignKeyConstraint(
            ["tenant_id", "survey_id"], ["surveys.tenant_id", "surveys.id"], ondelete="CASCADE"
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=crmkit.uuid7)
    survey_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    version: Mapped[int] = mapped_column()
    definition: Mapped[dict[str, Any]] = mapped_column(JSON)
    published_at: Mapped[datetime] = mapped_column(default=crmkit.utcnow)
    published_by: Mapped[str] = mapped_column(String(200))


class Invitation(crmkit.TenantOwned, crmkit.Model):
    """An invitation of one customer to one version, with its single-use token.

    ``token_hash`` (SHA-256) is what the response route looks up; ``token`` keeps the
    token itself encrypted under the customer's key, so staff can show the link again
    and erasure makes it unreadable. ``trigger_ref`` (the activity, the case, the
    schedule period) makes each trigger invite once.
    """

    __tablename__ = "survey_invitations"
    __table_args__ = (
        crmkit.customer_key(),
        ForeignKeyConstraint(
            ["tenant_id", "version_id"],
            ["survey_versions.tenant_id", "survey_versions.id"],
            ondelete="CASCADE",
        ),
        UniqueConstraint("tenant_id", "token_hash"),
        UniqueConstraint("tenant_id", "survey_id", "customer_id", "trigger_ref"),
        Index("ix_survey_invitations_customer", "tenant_id", "customer_id", "created_at"),
        Index("ix_survey_invitations_survey", "tenant_id", "survey_id", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=crmkit.uuid7)
    customer_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    survey_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    version_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    version: Mapped[int] = mapped_column()
    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    token: Mapped[str | None] = mapped_column(crmkit.PersonalText())
    locale: Mapped[str] = mapped_column(String(16))
    trigger: Mapped[str] = mapped_column(String(32))
    trigger_ref: Mapped[str] = mapped_column(String(200))
    channel: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=crmkit.utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    responded_at: Mapped[datetime | None] = mapped_column()


class Response(crmkit.TenantOwned, crmkit.Model):
    """A customer's one response to an invitation; ``nps``, ``csat`` and ``ces`` are
    its headline scores (the first question of each type), for events and summaries."""

    __tablename__ = "survey_responses"
    __table_args__ = (
        crmkit.customer_key(),
        UniqueConstraint("tenant_id", "invitation_id"),
        ForeignKeyConstraint(
            ["tenant_id", "invitation_id"],
            ["survey_invitations.tenant_id", "survey_invitations.id"],
            ondelete="CASCADE",
        ),
        Index("ix_survey_responses_survey", "tenant_id", "survey_id", "submitted_at"),
        Index("ix_survey_responses_customer", "tenant_id", "customer_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=crmkit.uuid7)
    invitation_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    customer_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    survey_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    version_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    version: Mapped[int] = mapped_column()
    channel: Mapped[str | None] = mapped_column(String(32))
    locale: Mapped[str] = mapped_column(String(16))
    submitted_at: Mapped[datetime] = mapped_column(default=crmkit.utcnow)
    nps: Mapped[int | None] = mapped_column()
    csat: Mapped[int | None] = mapped_column()
    ces: Mapped[int | None] = mapped_column()


class Answer(crmkit.TenantOwned, crmkit.Model):
    """One answer: a score, the chosen option keys, or free text (encrypted)."""

    __tablename__ = "survey_answers"
    __table_args__ = (
        crmkit.customer_key(),
        ForeignKeyConstraint(
            ["tenant_id", "response_id"],
            ["survey_responses.tenant_id", "survey_responses.id"],
            ondelete="CASCADE",
        ),
        Index("ix_survey_answers_response", "tenant_id", "response_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=crmkit.uuid7)
    response_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    customer_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    question_key: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))
    dimension: Mapped[str | None] = mapped_column(String(32))
    facet: Mapped[str | None] = mapped_column(String(32))
    score: Mapped[int | None] = mapped_column()
    choices: Mapped[list[str] | None] = mapped_column(JSON)
    text: Mapped[str | None] = mapped_column(crmkit.PersonalText())
