"""The plugin's table. Every tenant-owned model inherits ``crmkit.TenantOwned``.

``TenantOwned`` adds ``tenant_id`` as the first primary-key column; the tenant-bound
session fills it in and filters every query by it, so plugin code never mentions it.
A ``crmkit.PersonalText`` column holds personal data under the key of the customer that
``customer_id`` names.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import crmkit
from sqlalchemy import Index, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column


class Note(crmkit.TenantOwned, crmkit.Model):
    """A staff note on a customer. Notes are append-only: a correction is a new note."""

    __tablename__ = "notes"
    __table_args__ = (
        # Composite: a note can only point at a customer of its own tenant.
        crmkit.customer_key(),
        Index("ix_notes_tenant_id_customer_id", "tenant_id", "customer_id"),
    )

    # uuid7 ids sort by creation time: ``ORDER BY id`` is chronological.
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=crmkit.uuid7)
    customer_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    # Personal data about the customer: encrypted under their data key, so erasing them
    # makes it unreadable everywhere (backups too). ``None`` once they are erased.
    body: Mapped[str | None] = mapped_column(crmkit.PersonalText())
    author: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=crmkit.utcnow)
