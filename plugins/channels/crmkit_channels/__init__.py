"""crmkit-channels: consent-gated, exactly-once messaging over e-mail, SMS, the in-app
inbox and webhooks, for staff, campaigns and other plugins."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import crmkit
from sqlalchemy import delete, select

from crmkit_channels import graphql, hookspecs, routes, sending, service
from crmkit_channels.models import Message
from crmkit_channels.providers import BUILT_IN, Provider
from crmkit_channels.settings import NAME, ChannelsSettings

plugin_info = crmkit.PluginInfo(
    name=NAME,
    version="0.1.0",
    description="Consent-gated, exactly-once messaging: e-mail, SMS, in-app inbox, webhooks.",
    requires=">=0.1,<0.2",
    settings=ChannelsSettings,
    migrations=Path(__file__).parent / "migrations",
    hookspecs=hookspecs,
)

STAFF = frozenset({crmkit.Role.RELATIONSHIP_MANAGER})


@crmkit.hookimpl
def register_scopes() -> Iterable[crmkit.Scope]:
    return [
        crmkit.Scope(
            graphql.READ, "Read messages, campaigns, templates and the inbox.", roles=STAFF
        ),
        crmkit.Scope(graphql.WRITE, "Save templates and create campaigns.", roles=STAFF),
        crmkit.Scope(graphql.SEND, "Send messages and start campaigns.", roles=STAFF),
    ]


@crmkit.hookimpl
def register_graphql() -> crmkit.GraphQLContribution:
    return graphql.contribution()


@crmkit.hookimpl
def register_routes() -> Iterable[Any]:
    return routes.ROUTES


@crmkit.hookimpl
def register_jobs() -> Iterable[crmkit.JobSpec | crmkit.CronSpec]:
    return [
        crmkit.JobSpec("send_batch", sending.send_batch, max_tries=8),
        crmkit.JobSpec("expand_campaign", service.expand_campaign, max_tries=8),
        crmkit.CronSpec("sweep", service.sweep, second={0, 15, 30, 45}),
    ]


@crmkit.hookimpl(trylast=True)
def channels_providers() -> Iterable[Provider]:
    """The built-ins, asked last so another plugin's provider of the same channel wins."""
    return BUILT_IN


@crmkit.hookimpl
async def channels_messages_queued(event: crmkit.DomainEvent, ctx: crmkit.TenantContext) -> None:
    """After the messages committed: one send job per batch of them (a repeated event
    queues nothing new: the job ids repeat, and a sent message is never sent again)."""
    await service.enqueue_sends(
        ctx, event.data["message_ids"], float(event.data.get("defer_seconds") or 0), str(event.id)
    )


@crmkit.hookimpl
async def channels_send_requested(event: crmkit.DomainEvent, ctx: crmkit.TenantContext) -> None:
    """Another plugin's request: queued like sendMessage, under the requester's key."""
    data = event.data
    try:
        await service.request_message(
            ctx,
            customer_id=uuid.UUID(data["customer_id"]),
            purpose=data["purpose"],
            channel=data.get("channel"),
            template=data["template"],
            locale=data.get("locale"),
            variables=data.get("variables") or {},
            idempotency_key=data["idempotency_key"],
            requested_by=str(data.get("requested_by") or "plugin"),
            unmask=list(graphql.UNMASK),  # a message to the customers themselves
        )
    except crmkit.NotFound:
        return  # erased since the request: nothing to send


@crmkit.hookimpl
async def export_customer_data(ctx: crmkit.TenantContext, customer_id: uuid.UUID) -> Any:
    messages = await ctx.session.scalars(
        select(Message).where(Message.customer_id == customer_id).order_by(Message.id)
    )
    return [
        {
            "id": str(m.id),
            "direction": m.direction,
            "channel": m.channel,
            "purpose": m.purpose,
            "status": m.status.value,
            "address": m.address,
            "subject": m.subject,
            "body": m.body,
            "variables": json.loads(m.variables) if m.variables else None,
            "created_at": m.created_at.isoformat(),
            "sent_at": m.sent_at.isoformat() if m.sent_at else None,
        }
        for m in messages
    ] or None


@crmkit.hookimpl
async def erase_customer(ctx: crmkit.TenantContext, customer_id: uuid.UUID) -> None:
    """The messages go; campaigns keep their counts of the others."""
    await ctx.session.execute(delete(Message).where(Message.customer_id == customer_id))


DEMO_TEMPLATES = (
    (
        "demo.welcome",
        "in_app",
        "Welcome to {{ tenant.name }}",
        "Hello {{ customer.given_name }}, welcome to {{ tenant.name }}.",
    ),
    (
        "surveys.invitation",
        "email",
        "{{ event.survey_title }}",
        "Hello {{ customer.given_name }}, tell us how we did: {{ event.link }}",
    ),
)
"""The demo's templates: (key, channel, subject, body)."""


@crmkit.hookimpl
async def seed_demo(ctx: crmkit.TenantContext, customer_ids: list[uuid.UUID]) -> None:
    """A welcome template and one in-app message per sample customer (idempotent keys),
    and the template the surveys plugin asks for, so the demo's invitations go out."""
    for key, channel, subject, body in DEMO_TEMPLATES:
        if await service.template_for(ctx, key, channel, "en") is None:
            await service.save_template(
                ctx, key=key, channel=channel, locale="en", subject=subject, body=body
            )
    for customer_id in customer_ids:
        await service.request_message(
            ctx,
            customer_id=customer_id,
            purpose="service_notices",
            channel="in_app",
            template="demo.welcome",
            locale="en",
            variables={},
            idempotency_key=f"demo:welcome:{customer_id}",
            requested_by="demo",
            unmask=list(graphql.UNMASK),
        )
