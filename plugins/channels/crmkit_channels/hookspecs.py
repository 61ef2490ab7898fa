"""Hooks channels declares for other plugins (``PluginInfo.hookspecs``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import crmkit


@crmkit.hookspec
def channels_providers() -> Iterable[Any]:  # type: ignore[empty-body]
    """Return providers (:class:`crmkit_channels.providers.Provider`-shaped objects:
    ``channel``, ``consent_channel`` and ``async send(ctx, outbound)``) that deliver a
    channel: a WeChat, WhatsApp or in-house SMS gateway plugin adds one without touching
    channels. A provider of a channel name channels already serves replaces the built-in.
    Called once per send job, only for the tenant's enabled plugins. ``send`` is called
    concurrently for the messages of a job's batch (up to ``send_concurrency`` at once),
    inside the job's transaction: it must not use ``ctx.session``."""


@crmkit.event_hookspec(scope="channels:send")
def channels_send_requested(event: crmkit.DomainEvent, ctx: crmkit.TenantContext) -> None:
    """Another plugin asks channels to send a message (emit it only when
    ``ctx.plugin_enabled("channels")``). ``event.data``: ``customer_id``, ``purpose``,
    ``channel`` (optional), ``template``, ``locale`` (optional), ``variables``,
    ``idempotency_key`` (required), ``requested_by``. Channels handles it itself."""


@crmkit.event_hookspec(scope="channels:read")
def channels_messages_queued(event: crmkit.DomainEvent, ctx: crmkit.TenantContext) -> None:
    """Messages were queued (``event.data["message_ids"]``, ``defer_seconds``): channels
    queues their send jobs once they are committed."""


@crmkit.event_hookspec(scope="channels:read")
def channels_message_status_changed(event: crmkit.DomainEvent, ctx: crmkit.TenantContext) -> None:
    """A requested message (``sendMessage``, ``channels_send_requested``) reached a final
    status (sent, delivered, failed, suppressed, bounced): ``event.data`` has
    ``message_id``, ``customer_id``, ``status`` and ``idempotency_key`` (the requester's
    key), never the text. Campaign messages emit none: a campaign's progress is read
    through GraphQL (``campaign { progress }``), so a 100,000-recipient campaign does
    not write 100,000 events."""
