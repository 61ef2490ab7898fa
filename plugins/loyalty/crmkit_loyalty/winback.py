"""The churn plugin's win-back offer: bonus points from the tenant's loyalty settings.

Churn asks with its ``churn_action_requested`` event (kind ``winback_offer``); loyalty
hears it only where the tenant runs both plugins, and needs nothing of churn's to load.
"""

from __future__ import annotations

import uuid

import crmkit

from crmkit_loyalty import ledger
from crmkit_loyalty.settings import LoyaltySettings

ACTOR = "crmkit:churn"
"""Who the ledger names for the points: the churn plugin, on the manager's request."""


async def grant(ctx: crmkit.TenantContext, event: crmkit.DomainEvent) -> None:
    """Grant ``winback_points`` for the alert (the event's subject), once: a repeated
    delivery or a second request for the same alert answers the first entry. A customer
    erased meanwhile gets nothing."""
    if event.data.get("kind") != "winback_offer":
        return
    points = ctx.settings_as(LoyaltySettings).winback_points
    try:
        await ledger.earn(
            ctx,
            customer_id=uuid.UUID(str(event.data["customer_id"])),
            points=points,
            actor=ACTOR,
            reason=f"Win-back offer ({event.data.get('step', 'winback_offer')})",
            idempotency_key=f"churn-winback:{event.subject_id}",
        )
    except crmkit.NotFound:
        return
