"""The webhook subscription of an installed app: event types and its signing secret."""

from __future__ import annotations

import uuid

from sqlalchemy import ForeignKeyConstraint, LargeBinary, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from crmkit.db import Model, TenantOwned

SECRET_TABLE, SECRET_COLUMN = "webhook_subscriptions", "secret"


class WebhookSubscription(TenantOwned, Model):
    """The event types an installed app receives, and its signing secret (encrypted
    under a key of its own, wrapped by the tenant key)."""

    __tablename__ = "webhook_subscriptions"
    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "installation_id"],
            ["app_installations.tenant_id", "app_installations.id"],
            ondelete="CASCADE",
        ),
    )

    installation_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    event_types: Mapped[list[str]] = mapped_column(default=list)
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary)
    secret: Mapped[bytes] = mapped_column(LargeBinary)
