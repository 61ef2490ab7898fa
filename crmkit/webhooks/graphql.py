"""``subscribeWebhooks``: an installed app subscribes to domain events."""

from __future__ import annotations

import uuid
from typing import Any

import strawberry

from crmkit.errors import BadUserInput, NotFound
from crmkit.graphql.context import Info
from crmkit.graphql.contrib import field
from crmkit.webhooks.service import subscribe

SUBSCRIBE = "webhooks:subscribe"


@strawberry.type(description="An app's webhook subscription; the secret is shown only here.")
class WebhookSubscriptionResult:
    installation_id: uuid.UUID
    event_types: list[str]
    secret: str = strawberry.field(description="Signs every delivery (Standard Webhooks); store it.")


async def resolve_subscribe_webhooks(
    info: Info, event_types: list[str], installation_id: uuid.UUID | None = None
) -> WebhookSubscriptionResult:
    """An app subscribes its own installation; a tenant admin names the installation.
    Subscribing again replaces the event types and issues a new secret."""
    context = info.context
    own = context.principal.installation_id
    if own is not None:
        if installation_id is not None and str(installation_id) != own:
            raise NotFound(f"no app installation {installation_id}")
        installation_id = uuid.UUID(own)
    if installation_id is None:
        raise BadUserInput("name the installationId to subscribe", field="installationId")
    scopes = context.hooks.plugin_set.registry.event_scopes()
    secret = await subscribe(context.tenant, installation_id, event_types, scopes)
    return WebhookSubscriptionResult(
        installation_id=installation_id, event_types=sorted(set(event_types)), secret=secret
    )


def mutation_fields() -> dict[str, Any]:
    return {"subscribe_webhooks": field(resolve_subscribe_webhooks, scope=SUBSCRIBE)}
