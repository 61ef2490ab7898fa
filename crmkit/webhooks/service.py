"""Signed webhook deliveries to partner apps (Standard Webhooks).

Each delivery carries ``webhook-id`` (the domain event's id: the same on every retry,
so a receiver deduplicates on it), ``webhook-timestamp`` and ``webhook-signature``
(``v1,`` + base64 HMAC-SHA256 over ``id.timestamp.body`` with the installation's
secret). Secrets belong to installations, so each delivery also names its installation
(one tenant's install of the app): in the ``crmkit-installation-id`` header, for the
receiver to pick the secret before verifying, and as ``installation_id`` in the signed
body, which confirms it. A non-2xx answer or a network error is a transient failure:
the job queue retries it with backoff, and records it when it gives up.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
import uuid
from collections.abc import Collection
from typing import Any

import httpx
from sqlalchemy import select

from crmkit.auth.models import AppInstallation, OAuthClient
from crmkit.core.customers.personal import TENANT_KEYS
from crmkit.core.events import DomainEvent, OutboxEvent
from crmkit.db import TenantSession
from crmkit.errors import BadUserInput, NotFound, PermanentJobError
from crmkit.outbound import BlockedDestination, OutboundPolicy
from crmkit.plugins.info import JobSpec, TenantContext
from crmkit.webhooks.models import SECRET_COLUMN, SECRET_TABLE, WebhookSubscription

SECRET_PREFIX = "whsec_"  # noqa: S105  (the Standard Webhooks prefix, not a secret)
TIMEOUT_SECONDS = 10.0
DELIVER_WEBHOOK = "core.deliver_webhook"
INSTALLATION_HEADER = "crmkit-installation-id"


class DeliveryFailed(Exception):
    """The receiver did not accept the delivery; retrying may help."""


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(os.urandom(32)).decode()


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(_key(secret), signed, hashlib.sha256).digest()).decode()


def payload(event: DomainEvent, installation_id: uuid.UUID) -> bytes:
    """What a partner receives: ids and codes, never personal values (it can fetch those
    through GraphQL with the scopes it holds)."""
    body: dict[str, Any] = {
        "id": str(event.id),
        "installation_id": str(installation_id),
        "type": event.type,
        "timestamp": event.occurred_at.isoformat(),
        "data": {"subject_type": event.subject_type, "subject_id": event.subject_id, **event.data},
    }
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()


async def deliver(
    outbound: OutboundPolicy, url: str, secret: str, event: DomainEvent, installation_id: uuid.UUID
) -> None:
    """One signed delivery, to the address ``outbound`` checks now; a destination that
    is no longer allowed (re-pointed at an internal address) fails for good."""
    body = payload(event, installation_id)
    timestamp = int(time.time())
    headers = {
        "content-type": "application/json",
        INSTALLATION_HEADER: str(installation_id),
        "webhook-id": str(event.id),
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(secret, str(event.id), timestamp, body),
    }
    try:
        response = await outbound.post(url, content=body, headers=headers, seconds=TIMEOUT_SECONDS)
    except BlockedDestination as exc:
        raise PermanentJobError(f"webhook not sent: {exc.message}") from exc
    except httpx.HTTPError as exc:
        raise DeliveryFailed(f"{type(exc).__name__} posting to {url}") from exc
    if not 200 <= response.status_code < 300:
        raise DeliveryFailed(f"{url} answered {response.status_code}")


async def subscribe(
    ctx: TenantContext, installation_id: uuid.UUID, event_types: list[str], event_scopes: dict[str, str]
) -> str:
    """Subscribe an installation to ``event_types`` (replacing earlier ones); returns a
    new signing secret. Only events whose scope the installation was granted qualify."""
    session = ctx.session
    installation = await session.get(AppInstallation, (ctx.tenant_id, installation_id))
    if installation is None:
        raise NotFound(f"no app installation {installation_id}")
    for event_type in event_types:
        scope = event_scopes.get(event_type)
        if scope is None:
            known = ", ".join(sorted(event_scopes))
            raise BadUserInput(f"no event type {event_type!r} (known: {known})", field="eventTypes")
        if scope not in installation.scopes:
            raise BadUserInput(
                f"{event_type} needs the scope {scope!r}, not granted to this app", field="eventTypes"
            )
    secret = new_secret()
    keys = session.info[TENANT_KEYS]
    key, wrapped = keys.new_data_key(installation_id)
    sealed = key.encrypt(secret, table=SECRET_TABLE, column=SECRET_COLUMN, row_id=installation_id)
    row = await session.get(WebhookSubscription, (ctx.tenant_id, installation_id))
    if row is None:
        session.add(
            WebhookSubscription(
                installation_id=installation_id,
                event_types=sorted(set(event_types)),
                wrapped_key=wrapped,
                secret=sealed,
            )
        )
    else:
        row.event_types, row.wrapped_key, row.secret = sorted(set(event_types)), wrapped, sealed
    return secret


async def subscribers(session: TenantSession, event_types: Collection[str]) -> dict[str, list[uuid.UUID]]:
    """Installations of the session's tenant subscribed to each of ``event_types``, in
    one statement (a batch of events asks once)."""
    subscribed: dict[str, list[uuid.UUID]] = {}
    for row in await session.scalars(select(WebhookSubscription)):
        for event_type in event_types:
            if event_type in row.event_types:
                subscribed.setdefault(event_type, []).append(row.installation_id)
    return subscribed


async def deliver_webhook(ctx: TenantContext, event_id: str, installation_id: str) -> None:
    """The job: one event to one installed app, retried by the queue until it answers 2xx."""
    session = ctx.session
    install_id = uuid.UUID(installation_id)
    event = await session.get(OutboxEvent, (ctx.tenant_id, uuid.UUID(event_id)))
    subscription = await session.get(WebhookSubscription, (ctx.tenant_id, install_id))
    installation = await session.get(AppInstallation, (ctx.tenant_id, install_id))
    if event is None or subscription is None or installation is None:
        return  # uninstalled or unsubscribed since: nothing to send
    scope = ctx.hooks.plugin_set.registry.event_scopes().get(event.type)
    if scope is None or scope not in installation.scopes:
        return  # the app no longer holds the scope to read this event
    client = await session.get(OAuthClient, installation.client_id)
    if client is None or not client.active or not client.webhook_url:
        raise PermanentJobError(f"app {installation.client_id} has no active webhook URL")
    keys = session.info[TENANT_KEYS]
    key = keys.unwrap_data_key(install_id, subscription.wrapped_key)
    secret = key.decrypt(subscription.secret, table=SECRET_TABLE, column=SECRET_COLUMN, row_id=install_id)
    await deliver(ctx.outbound, client.webhook_url, secret, DomainEvent.from_row(event), install_id)


JOBS = [JobSpec(DELIVER_WEBHOOK.removeprefix("core."), deliver_webhook)]
