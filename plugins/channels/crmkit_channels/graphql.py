"""channels' GraphQL: templates, preview, send, campaigns with live progress, a
customer's messages, the in-app inbox and delivery statistics."""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime
from typing import Any

import crmkit
import strawberry
from sqlalchemy import func, select
from strawberry.scalars import JSON

from crmkit_channels import service, templates
from crmkit_channels.models import Campaign, Message, MessageStatus, Template
from crmkit_channels.settings import NAME, ChannelsSettings

READ = f"{NAME}:read"
WRITE = f"{NAME}:write"
SEND = f"{NAME}:send"
UNMASK = ("pii:identity", "pii:contact")


@strawberry.type(name="ChannelTemplate", description="One version of a message template.")
class TemplateType:
    id: uuid.UUID
    key: str
    channel: str
    locale: str
    version: int
    subject: str | None
    body: str
    created_at: datetime


@strawberry.type(name="ChannelMessage", description="A message to or from a customer.")
class MessageType:
    id: uuid.UUID
    customer_id: uuid.UUID
    campaign_id: uuid.UUID | None
    direction: str
    channel: str
    purpose: str
    template: str | None
    status: str
    reason: str | None = strawberry.field(description="Why it was suppressed or failed.")
    provider_id: str | None
    attempts: int
    error: str | None
    scheduled_at: datetime | None
    sent_at: datetime | None
    read_at: datetime | None
    created_at: datetime
    subject = crmkit.personal_field(crmkit.InformationClass.CONTACT, "The rendered subject.")
    body = crmkit.personal_field(crmkit.InformationClass.CONTACT, "The rendered text.")


@strawberry.type(name="ChannelCounts", description="Messages by status.")
class Counts:
    queued: int = 0
    sent: int = 0
    delivered: int = 0
    suppressed: int = 0
    failed: int = 0
    bounced: int = 0


@strawberry.type(name="ChannelStats", description="One channel's messages in a period.")
class ChannelStats:
    channel: str
    counts: Counts


@strawberry.type(name="Campaign", description="A template sent to the customers a filter selects.")
class CampaignType:
    id: uuid.UUID
    name: str
    template: str
    channel: str
    purpose: str
    started_at: datetime | None
    expanded_at: datetime | None = strawberry.field(description="Every recipient has a message.")

    @strawberry.field(description="Live progress: the campaign's messages by status.")
    async def progress(self, info: crmkit.Info) -> Counts:
        counts: dict[str, int] = await info.context.load(load_counts, self.id)
        return _counts(counts)


@strawberry.type(name="MessagePreview")
class Preview:
    subject: str | None
    body: str


@strawberry.input
class SaveTemplateInput:
    key: str
    channel: str
    locale: str = "en"
    subject: str | None = None
    body: str


@strawberry.input
class SendMessageInput:
    customer_id: uuid.UUID
    purpose: str
    template: str
    channel: str | None = None
    locale: str | None = None
    variables: JSON | None = None
    idempotency_key: str | None = strawberry.field(
        default=None, description="Yours; a retry with the same key sends nothing more."
    )


@strawberry.input
class CampaignInput:
    name: str
    template: str
    channel: str
    purpose: str
    filter: crmkit.CustomerFilterInput
    locale: str = "en"


def _counts(values: dict[str, int]) -> Counts:
    known = {k: v for k, v in values.items() if k in Counts.__annotations__}
    return Counts(**known)


def _unmask(info: crmkit.Info) -> list[str]:
    return [s for s in UNMASK if s in info.context.principal.scopes]


def _ctx(info: crmkit.Info) -> crmkit.TenantContext:
    return info.context.tenant_context(NAME)


async def load_counts(
    context: crmkit.RequestContext, campaign_ids: Sequence[uuid.UUID]
) -> list[dict[str, int]]:
    counts = await service.campaign_counts(context.tenant_context(NAME), campaign_ids)
    return [counts[cid] for cid in campaign_ids]


async def load_messages(
    context: crmkit.RequestContext, customer_ids: Sequence[uuid.UUID]
) -> list[list[Message]]:
    """``Customer.messages``: a page of customers' messages in one query, newest first."""
    rows = await context.session.scalars(
        select(Message).where(Message.customer_id.in_(customer_ids)).order_by(Message.id.desc())
    )
    return crmkit.rows_by_key(rows, lambda message: message.customer_id, customer_ids)


async def resolve_templates(info: crmkit.Info, key: str | None = None) -> list[TemplateType]:
    query = select(Template).order_by(
        Template.key, Template.channel, Template.locale, Template.version
    )
    if key is not None:
        query = query.where(Template.key == key)
    return list(await info.context.session.scalars(query))


async def resolve_save_template(info: crmkit.Info, input: SaveTemplateInput) -> TemplateType:
    template = await service.save_template(
        _ctx(info),
        key=input.key,
        channel=input.channel,
        locale=input.locale,
        subject=input.subject,
        body=input.body,
    )
    return template  # type: ignore[return-value]


async def resolve_preview(
    info: crmkit.Info,
    customer_id: uuid.UUID,
    template: str,
    channel: str,
    locale: str = "en",
    variables: JSON | None = None,
) -> Preview:
    """Render for one customer without sending; masked as the caller's scopes mask."""
    ctx = _ctx(info)
    customer = await crmkit.get_customer(ctx, customer_id)
    await service.provider_for(ctx, channel)
    found = await service.existing_template(ctx, template, channel, locale)
    settings = ctx.settings_as(ChannelsSettings)
    event: dict[str, Any] = variables if isinstance(variables, dict) else {}
    unmask = _unmask(info)
    subject = None
    if found.subject is not None:
        subject = templates.render(found.subject, customer, unmask, event, settings)
    return Preview(
        subject=subject, body=templates.render(found.body, customer, unmask, event, settings)
    )


async def resolve_send(info: crmkit.Info, input: SendMessageInput) -> MessageType:
    message = await service.request_message(
        _ctx(info),
        customer_id=input.customer_id,
        purpose=input.purpose,
        channel=input.channel,
        template=input.template,
        locale=input.locale,
        variables=input.variables if isinstance(input.variables, dict) else {},
        idempotency_key=input.idempotency_key or f"send:{uuid.uuid4()}",
        requested_by=info.context.principal.subject,
        unmask=_unmask(info),
    )
    return message  # type: ignore[return-value]


async def resolve_create_campaign(info: crmkit.Info, input: CampaignInput) -> CampaignType:
    wanted = input.filter.to_filter(info.context)  # the customers query's own checks
    campaign = await service.create_campaign(
        _ctx(info),
        name=input.name,
        template=input.template,
        channel=input.channel,
        purpose=input.purpose,
        locale=input.locale,
        filter=json.loads(json.dumps(asdict(wanted), default=str)),
        created_by=info.context.principal.subject,
        unmask=_unmask(info),
    )
    return campaign  # type: ignore[return-value]


async def resolve_start_campaign(info: crmkit.Info, id: uuid.UUID) -> CampaignType:
    return await service.start_campaign(_ctx(info), id)  # type: ignore[return-value]


async def resolve_campaign(info: crmkit.Info, id: uuid.UUID) -> CampaignType | None:
    campaign = await info.context.session.get(Campaign, (info.context.tenant_id, id))
    return campaign  # type: ignore[return-value]


async def resolve_inbox(
    info: crmkit.Info, customer_id: uuid.UUID, first: int | None = None, after: str | None = None
) -> crmkit.Connection[MessageType]:
    """The customer's in-app inbox, newest first."""
    await crmkit.get_customer(_ctx(info), customer_id)
    size, cursor = info.context.page(first, after)
    query = (
        select(Message)
        .where(
            Message.customer_id == customer_id,
            Message.channel == "in_app",
            Message.direction == "outbound",
            Message.status.in_([MessageStatus.SENT, MessageStatus.DELIVERED]),
        )
        .order_by(Message.id.desc())
        .limit(size + 1)
    )
    if cursor is not None:
        query = query.where(Message.id < cursor)
    return crmkit.connection(list(await info.context.session.scalars(query)), size)


async def _inbox_message(info: crmkit.Info, message_id: uuid.UUID) -> Message:
    message = await info.context.session.get(Message, (info.context.tenant_id, message_id))
    if message is None or message.channel != "in_app" or message.direction != "outbound":
        raise crmkit.NotFound(f"no inbox message {message_id}")
    await crmkit.get_customer(_ctx(info), message.customer_id)
    return message


async def resolve_mark_read(info: crmkit.Info, message_id: uuid.UUID) -> MessageType:
    message = await _inbox_message(info, message_id)
    message.read_at = message.read_at or crmkit.utcnow()
    return message  # type: ignore[return-value]


async def resolve_reply_in_app(info: crmkit.Info, message_id: uuid.UUID, text: str) -> MessageType:
    """The customer answers an inbox message (the app calls with the customer's token)."""
    message = await _inbox_message(info, message_id)
    if not text.strip() or len(text) > 5000:
        raise crmkit.BadUserInput("text must be 1-5000 characters", field="text")
    reply = await service.record_reply(
        _ctx(info),
        customer_id=message.customer_id,
        channel="in_app",
        text=text,
        in_reply_to=message,
        external_ref=f"in_app:{uuid.uuid4()}",
    )
    return reply  # type: ignore[return-value]


async def resolve_stats(info: crmkit.Info, since: datetime, until: datetime) -> list[ChannelStats]:
    """Outbound messages created in [since, until), by channel and status."""
    if until <= since:
        raise crmkit.BadUserInput("until must be after since", field="until")
    rows = await info.context.session.execute(
        select(Message.channel, Message.status, func.count())
        .where(
            Message.direction == "outbound",
            Message.created_at >= since,
            Message.created_at < until,
        )
        .group_by(Message.channel, Message.status)
    )
    by_channel: defaultdict[str, dict[str, int]] = defaultdict(dict)
    for channel, status, count in rows:
        by_channel[channel][MessageStatus(status).value] = count
    return [ChannelStats(channel=c, counts=_counts(v)) for c, v in sorted(by_channel.items())]


def contribution() -> crmkit.GraphQLContribution:
    return crmkit.GraphQLContribution(
        customer={
            "messages": crmkit.customer_field(
                load_messages, scope=READ, graphql_type=list[MessageType]
            )
        },
        query={
            "channel_templates": crmkit.field(resolve_templates, scope=READ),
            "campaign": crmkit.field(resolve_campaign, scope=READ),
            "inbox": crmkit.field(resolve_inbox, scope=READ),
            "channel_stats": crmkit.field(resolve_stats, scope=READ),
        },
        mutation={
            "save_template": crmkit.field(resolve_save_template, scope=WRITE),
            "preview_message": crmkit.field(resolve_preview, scope=SEND),
            "send_message": crmkit.field(resolve_send, scope=SEND),
            "create_campaign": crmkit.field(resolve_create_campaign, scope=WRITE),
            "start_campaign": crmkit.field(resolve_start_campaign, scope=SEND),
            "mark_inbox_read": crmkit.field(resolve_mark_read, scope=READ),
            "reply_in_app": crmkit.field(resolve_reply_in_app, scope=READ),
        },
    )
