"""Messages from request to delivery: the one path sendMessage, campaigns and other
plugins' requests share.

A request writes a ``queued`` message (unique per idempotency key) and emits
``channels_messages_queued`` in the same transaction; after commit the event's handler
queues one send job per ``send_batch_size`` messages (:mod:`crmkit_channels.sending`),
which locks them, asks consent at that moment, applies quiet hours and the frequency
cap, renders, calls the providers and records the outcomes, all in one transaction: a
message is sent only from ``queued``, and only by the job that holds its row.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Collection, Sequence
from datetime import timedelta
from typing import Any, Protocol

import crmkit
import phonenumbers
from email_validator import EmailNotValidError, validate_email
from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite

from crmkit_channels import templates
from crmkit_channels.models import FINAL, Campaign, Message, MessageStatus, Template
from crmkit_channels.providers import PermanentError, Provider
from crmkit_channels.settings import ChannelsSettings

BATCH = 2000
"""Customers a campaign turns into messages per job (and per transaction). The next
expansion waits in the queue behind the send jobs already there: at 500 (10 send jobs
of 50) the campaign was sent 500 at a time, half the workers' job slots idle
(bench/channels_throughput.py: 212 messages/s, 496 at 2000)."""
DEFAULT_LOCALE = "en"
FILTER_CRITERIA = ("tag", "stage", "text", "email", "phone", "national_id")


class NotYetCommitted(Exception):
    """A job ran before the transaction of the row it works on committed: retry."""


async def all_providers(ctx: crmkit.TenantContext) -> dict[str, Provider]:
    """Every channel the tenant's enabled plugins provide (``channels_providers``); another
    plugin's provider of a built-in channel name replaces the built-in."""
    found: dict[str, Provider] = {}
    for offered in await ctx.hooks.call("channels_providers"):
        for provider in offered:
            found.setdefault(provider.channel, provider)  # built-ins are registered last
    return found


async def provider_for(ctx: crmkit.TenantContext, channel: str) -> Provider:
    known = await all_providers(ctx)
    if channel not in known:
        raise crmkit.BadUserInput(
            f"unknown channel {channel!r} (known: {', '.join(sorted(known))})", field="channel"
        )
    return known[channel]


def _settings(ctx: crmkit.TenantContext) -> ChannelsSettings:
    return ctx.settings_as(ChannelsSettings)


# --- templates ------------------------------------------------------------------------


async def save_template(
    ctx: crmkit.TenantContext,
    *,
    key: str,
    channel: str,
    locale: str,
    subject: str | None,
    body: str,
) -> Template:
    """Add the next version of a template, refused with the line if it cannot render."""
    await provider_for(ctx, channel)
    key, locale = key.strip(), locale.strip()
    if not key or len(key) > 100:
        raise crmkit.BadUserInput("key must be 1-100 characters", field="key")
    if not locale or len(locale) > 20:
        raise crmkit.BadUserInput("locale must be 1-20 characters", field="locale")
    if not body.strip():
        raise crmkit.BadUserInput("body must not be empty", field="body")
    templates.check(body, "body")
    if subject is not None:
        templates.check(subject, "subject")
    latest = await ctx.session.scalar(
        select(func.max(Template.version)).where(
            Template.key == key, Template.channel == channel, Template.locale == locale
        )
    )
    template = Template(
        key=key,
        channel=channel,
        locale=locale,
        version=(latest or 0) + 1,
        subject=subject,
        body=body,
    )
    ctx.session.add(template)
    await ctx.session.flush()
    return template


TemplateName = tuple[str, str, str]
"""A template as messages name it: key, channel, locale."""


async def templates_for(
    ctx: crmkit.TenantContext, names: Collection[TemplateName]
) -> dict[TemplateName, Template]:
    """For each name, the newest version in its locale, else in the default locale, in
    one query whatever their number (a send job's batch); names without any are left out."""
    if not names:
        return {}
    keys = {key for key, _, _ in names}
    channels = {channel for _, channel, _ in names}
    locales = {locale for _, _, locale in names} | {DEFAULT_LOCALE}
    newest = (
        select(
            Template.key,
            Template.channel,
            Template.locale,
            func.max(Template.version).label("version"),
        )
        .where(Template.key.in_(keys), Template.channel.in_(channels), Template.locale.in_(locales))
        .group_by(Template.key, Template.channel, Template.locale)
        .subquery()
    )
    rows = await ctx.session.scalars(
        select(Template).join(
            newest,
            (Template.key == newest.c.key)
            & (Template.channel == newest.c.channel)
            & (Template.locale == newest.c.locale)
            & (Template.version == newest.c.version),
        )
    )
    by_name = {(t.key, t.channel, t.locale): t for t in rows}
    found: dict[TemplateName, Template] = {}
    for key, channel, locale in names:
        for wanted in (locale, DEFAULT_LOCALE):
            template = by_name.get((key, channel, wanted))
            if template is not None:
                found[key, channel, locale] = template
                break
    return found


async def template_for(
    ctx: crmkit.TenantContext, key: str, channel: str, locale: str
) -> Template | None:
    """The newest version in ``locale``, else in the default locale."""
    return (await templates_for(ctx, [(key, channel, locale)])).get((key, channel, locale))


async def existing_template(
    ctx: crmkit.TenantContext, key: str, channel: str, locale: str
) -> Template:
    template = await template_for(ctx, key, channel, locale)
    if template is None:
        raise crmkit.BadUserInput(
            f"no template {key!r} for channel {channel!r} in {locale!r}", field="template"
        )
    return template


# --- addresses --------------------------------------------------------------------------


def address_of(
    customer: crmkit.Customer | crmkit.CustomerRow, channel: str, settings: ChannelsSettings
) -> str:
    """Where ``channel`` reaches the customer: a checked e-mail address, an E.164 number
    (in the tenant's default region), or the customer's id for the inbox and webhooks.
    ``PermanentError`` when the customer has none that works."""
    personal = customer.personal
    if channel == "email":
        if not personal.email:
            raise PermanentError("the customer has no e-mail address")
        return checked_email(personal.email)
    if channel == "sms":
        if not personal.phone:
            raise PermanentError("the customer has no phone number")
        return e164(personal.phone, settings.default_region)
    return str(customer.id)


def checked_email(value: str) -> str:
    try:
        return validate_email(value, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise PermanentError(f"invalid e-mail address: {exc}") from None


def e164(value: str, region: str) -> str:
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException as exc:
        raise PermanentError(f"malformed phone number: {exc}") from None
    if not phonenumbers.is_valid_number(number):
        raise PermanentError("malformed phone number: not a valid number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


# --- requests ---------------------------------------------------------------------------


async def request_message(
    ctx: crmkit.TenantContext,
    *,
    customer_id: uuid.UUID,
    purpose: str,
    channel: str | None,
    template: str,
    locale: str | None,
    variables: dict[str, Any],
    idempotency_key: str,
    requested_by: str,
    unmask: list[str],
) -> Message:
    """Queue one message; the same idempotency key returns the first message."""
    customer = await crmkit.get_customer(ctx, customer_id)
    key = idempotency_key.strip()
    if not key or len(key) > 300:
        raise crmkit.BadUserInput("idempotencyKey must be 1-300 characters", field="idempotencyKey")
    if not isinstance(variables, dict):
        raise crmkit.BadUserInput("variables must be a JSON object", field="variables")
    existing = await ctx.session.scalar(select(Message).where(Message.idempotency_key == key))
    if existing is not None:
        if existing.customer_id != customer_id:
            raise crmkit.Conflict(
                "idempotencyKey already names a message to another customer", field="idempotencyKey"
            )
        return existing
    locale = locale or DEFAULT_LOCALE
    channel = channel or await preferred_channel(ctx, customer, purpose)
    await provider_for(ctx, channel)
    await existing_template(ctx, template, channel, locale)
    if channel in ("email", "sms"):
        try:
            address_of(customer, channel, _settings(ctx))
        except PermanentError as exc:
            raise crmkit.BadUserInput(str(exc), field="customerId") from None
    message = Message(
        customer_id=customer_id,
        channel=channel,
        purpose=purpose,
        template=template,
        locale=locale,
        idempotency_key=key,
        requested_by=requested_by,
        unmask=sorted(unmask),
        variables=json.dumps(variables),
    )
    ctx.session.add(message)
    await ctx.session.flush()
    queued(ctx, [message.id])
    return message


async def preferred_channel(
    ctx: crmkit.TenantContext, customer: crmkit.Customer, purpose: str
) -> str:
    """The first of e-mail, SMS and the inbox the customer allows for ``purpose`` (the
    inbox when none is allowed: the send job then records the suppression)."""
    known = await all_providers(ctx)
    for channel in ("email", "sms", "in_app"):
        provider = known.get(channel)
        if provider is not None and await crmkit.consent_allows(
            ctx.session, customer.id, purpose, provider.consent_channel
        ):
            return channel
    return "in_app"


class MessageLike(Protocol):
    """What announcing a message needs of it: an ORM :class:`Message`, or a send job's
    plain row (:mod:`crmkit_channels.sending`)."""

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def customer_id(self) -> uuid.UUID: ...
    @property
    def campaign_id(self) -> uuid.UUID | None: ...
    @property
    def idempotency_key(self) -> str: ...


def queued(
    ctx: crmkit.TenantContext, message_ids: Sequence[uuid.UUID], defer_seconds: float = 0
) -> None:
    """Announce queued messages: after commit the handler queues their send jobs."""
    if message_ids:
        crmkit.emit(
            ctx,
            "channels_messages_queued",
            "Message",
            message_ids[0],
            message_ids=[str(i) for i in message_ids],
            defer_seconds=defer_seconds,
        )


async def enqueue_sends(
    ctx: crmkit.TenantContext, message_ids: Sequence[str], defer_seconds: float, tag: str
) -> None:
    """One send job per ``send_batch_size`` messages. A job's id is its first message's
    and ``tag``'s, so the same messages queued again for the same reason (a repeated
    event) make no new job."""
    size = _settings(ctx).send_batch_size
    for start in range(0, len(message_ids), size):
        batch = list(message_ids[start : start + size])
        await ctx.jobs.enqueue(
            "channels.send_batch",
            tenant_id=ctx.tenant_id,
            payload={"message_ids": batch},
            job_id=f"channels:send:{batch[0]}:{tag}",
            defer_seconds=defer_seconds,
        )


def set_status(
    ctx: crmkit.TenantContext, message: MessageLike, status: MessageStatus, **fields: Any
) -> None:
    """Move a message on; a requested one reaching a final status tells its requester."""
    for name, value in {"status": status, **fields}.items():
        setattr(message, name, value)
    if status in FINAL and message.campaign_id is None:  # a campaign reports its progress
        crmkit.emit(
            ctx,
            "channels_message_status_changed",
            "Message",
            message.id,
            message_id=str(message.id),
            customer_id=str(message.customer_id),
            status=status.value,
            idempotency_key=message.idempotency_key,
        )


# --- lost jobs and waiting messages -------------------------------------------------


async def sweep(ctx: crmkit.TenantContext) -> None:
    """Cron: queue the queued messages whose time came (after quiet hours) and those
    whose job was lost (a worker killed mid-send). Idempotent: the send job sends only
    from ``queued``, under the row's lock."""
    now = crmkit.utcnow()
    stale = timedelta(seconds=_settings(ctx).stale_after_seconds)
    rows = await ctx.session.scalars(
        select(Message.id).where(
            Message.status == MessageStatus.QUEUED,
            Message.direction == "outbound",
            (Message.scheduled_at <= now)
            | (Message.scheduled_at.is_(None) & (Message.updated_at < now - stale)),
        )
    )
    await enqueue_sends(ctx, [str(i) for i in rows], 0, f"sweep-{int(now.timestamp())}")


# --- campaigns --------------------------------------------------------------------------


def stored_filter(values: dict[str, Any]) -> dict[str, Any]:
    """A campaign's customer filter as plain data; refused when it selects by nothing."""
    if values.get("consent") is not None:
        raise crmkit.BadUserInput(
            "a campaign asks consent for every message itself: leave consent out of its filter",
            field="filter",
        )
    kept = {name: values.get(name) for name in FILTER_CRITERIA if values.get(name) is not None}
    if not kept:
        raise crmkit.BadUserInput(
            f"a campaign needs a filter: one of {', '.join(FILTER_CRITERIA)}", field="filter"
        )
    kept["include_archived"] = bool(values.get("include_archived"))
    return kept


async def create_campaign(
    ctx: crmkit.TenantContext,
    *,
    name: str,
    template: str,
    channel: str,
    purpose: str,
    locale: str,
    filter: dict[str, Any],
    created_by: str,
    unmask: list[str],
) -> Campaign:
    if not name.strip() or len(name) > 200:
        raise crmkit.BadUserInput("name must be 1-200 characters", field="name")
    stored = stored_filter(filter)
    await provider_for(ctx, channel)
    await existing_template(ctx, template, channel, locale)
    campaign = Campaign(
        name=name.strip(),
        template=template,
        channel=channel,
        purpose=purpose,
        locale=locale,
        filter=stored,
        created_by=created_by,
        unmask=sorted(unmask),
    )
    ctx.session.add(campaign)
    await ctx.session.flush()
    return campaign


async def start_campaign(ctx: crmkit.TenantContext, campaign_id: uuid.UUID) -> Campaign:
    """Start (or start again: nothing is sent twice) expanding the campaign in batches."""
    campaign = await ctx.session.get(Campaign, (ctx.tenant_id, campaign_id))
    if campaign is None:
        raise crmkit.NotFound(f"no campaign {campaign_id}")
    campaign.started_at = campaign.started_at or crmkit.utcnow()
    await ctx.session.flush()
    await ctx.jobs.enqueue(
        "channels.expand_campaign",
        tenant_id=ctx.tenant_id,
        payload={"campaign_id": str(campaign.id), "after": None},
        job_id=f"channels:expand:{campaign.id}:{uuid.uuid4().hex}",
    )
    return campaign


async def expand_campaign(ctx: crmkit.TenantContext, campaign_id: str, after: str | None) -> None:
    """One batch of a campaign's customers becomes messages (one per customer and
    channel: the idempotency key), then the next batch is queued."""
    campaign = await ctx.session.get(Campaign, (ctx.tenant_id, uuid.UUID(campaign_id)))
    if campaign is None:
        raise NotYetCommitted(f"campaign {campaign_id} is not committed yet")
    customer_ids = await crmkit.customer_ids(
        ctx,
        crmkit.CustomerFilter(**campaign.filter),
        after=uuid.UUID(after) if after else None,
        limit=BATCH,
    )
    rows = [
        {
            "tenant_id": ctx.tenant_id,
            "id": crmkit.uuid7(),
            "customer_id": customer_id,
            "campaign_id": campaign.id,
            "channel": campaign.channel,
            "purpose": campaign.purpose,
            "template": campaign.template,
            "locale": campaign.locale,
            "idempotency_key": f"campaign:{campaign.id}:{customer_id}:{campaign.channel}",
            "requested_by": campaign.created_by,
            "unmask": campaign.unmask,
        }
        for customer_id in customer_ids
    ]
    # one statement for the batch (audited as one event naming its messages), the
    # messages a repeated expansion made already skipped by their idempotency key
    dialect = ctx.session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    new = (
        list(
            await ctx.session.scalars(
                insert(Message)
                .on_conflict_do_nothing(index_elements=["tenant_id", "idempotency_key"])
                .returning(Message.id),
                rows,
            )
        )
        if rows
        else []
    )
    queued(ctx, sorted(new))
    if len(customer_ids) == BATCH:
        await ctx.jobs.enqueue(
            "channels.expand_campaign",
            tenant_id=ctx.tenant_id,
            payload={"campaign_id": campaign_id, "after": str(customer_ids[-1])},
            job_id=f"channels:expand:{campaign_id}:{customer_ids[-1]}",
        )
    else:
        campaign.expanded_at = campaign.expanded_at or crmkit.utcnow()


async def campaign_counts(
    ctx: crmkit.TenantContext, campaign_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, dict[str, int]]:
    rows = await ctx.session.execute(
        select(Message.campaign_id, Message.status, func.count())
        .where(Message.campaign_id.in_(list(campaign_ids)))
        .group_by(Message.campaign_id, Message.status)
    )
    counts: dict[uuid.UUID, dict[str, int]] = {cid: {} for cid in campaign_ids}
    for campaign_id, status, count in rows:
        if campaign_id is not None:
            counts[campaign_id][MessageStatus(status).value] = count
    return counts


# --- inbound ----------------------------------------------------------------------------

ACTIVITY_CHANNEL = {
    "email": crmkit.Channel.EMAIL,
    "sms": crmkit.Channel.SMS,
    "in_app": crmkit.Channel.APP,
}
CONSENT_SOURCE = {"in_app": crmkit.ConsentSource.APP}


async def record_reply(
    ctx: crmkit.TenantContext,
    *,
    customer_id: uuid.UUID,
    channel: str,
    text: str,
    in_reply_to: Message | None,
    external_ref: str,
) -> Message:
    """A customer's reply: stored (encrypted), recorded as a ``contact`` activity so
    cases and churn see it, and an opt-out keyword withdraws the channel's consent for
    the purpose replied to (``marketing`` when unknown), the reply as evidence."""
    await crmkit.get_customer(ctx, customer_id)
    key = f"inbound:{external_ref}"
    existing = await ctx.session.scalar(select(Message).where(Message.idempotency_key == key))
    if existing is not None:
        return existing  # the provider called twice
    purpose = in_reply_to.purpose if in_reply_to is not None else "marketing"
    reply = Message(
        customer_id=customer_id,
        direction="inbound",
        channel=channel,
        purpose=purpose,
        template=None,
        locale=in_reply_to.locale if in_reply_to is not None else DEFAULT_LOCALE,
        idempotency_key=key,
        requested_by="customer",
        unmask=[],
        status=MessageStatus.RECEIVED,
        body=text,
    )
    ctx.session.add(reply)
    await ctx.session.flush()
    keywords = {k.strip().casefold() for k in _settings(ctx).opt_out_keywords}
    opt_out = text.strip().casefold() in keywords
    await crmkit.record_activity(
        ctx,
        customer_id=customer_id,
        kind=crmkit.ActivityKind.CONTACT,
        channel=ACTIVITY_CHANNEL.get(channel, crmkit.Channel.OTHER),
        attributes={"channels_message_id": str(reply.id), "opt_out": opt_out},
        external_ref=f"channels:{reply.id}",
    )
    if opt_out:
        provider = (await all_providers(ctx)).get(channel)
        if provider is not None:
            await crmkit.record_consent(
                ctx,
                customer_id=customer_id,
                purpose=purpose,
                channel=provider.consent_channel,
                state=crmkit.ConsentState.WITHDRAWN,
                source=CONSENT_SOURCE.get(channel, crmkit.ConsentSource.WEB),
                policy_version="opt-out-reply",
                legal_basis=crmkit.LegalBasis.CONSENT,
                captured_by=f"channels:message:{reply.id}",
            )
        reply.reason = "opt-out"
    return reply


async def customer_by_address(
    ctx: crmkit.TenantContext, channel: str, address: str
) -> crmkit.Customer | None:
    """The customer an inbound address belongs to, through the core's blind indexes
    (which match digits exactly: a number is looked up in E.164 and in the national
    notation of the tenant's region, the two ways customers' numbers are stored)."""
    settings = _settings(ctx)
    try:
        if channel == "sms":
            number = phonenumbers.parse(e164(address, settings.default_region))
            national = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
            wanted = [
                crmkit.CustomerFilter(phone=notation)
                for notation in (
                    phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164),
                    national,
                )
            ]
        else:
            wanted = [crmkit.CustomerFilter(email=checked_email(address))]
    except PermanentError as exc:
        raise crmkit.BadUserInput(str(exc), field="from") from None
    for found in wanted:
        customers = await crmkit.list_customers(ctx, found, after=None, limit=1)
        if customers:
            return customers[0]
    return None


async def provider_status(
    ctx: crmkit.TenantContext, message_id: uuid.UUID, status: str, error: str | None
) -> Message:
    """A provider's delivery report moves a sent message to delivered or bounced."""
    message = await ctx.session.get(Message, (ctx.tenant_id, message_id))
    if message is None:
        raise crmkit.NotFound(f"no message {message_id}")
    wanted = {"delivered": MessageStatus.DELIVERED, "bounced": MessageStatus.BOUNCED}.get(status)
    if wanted is None:
        raise crmkit.BadUserInput("status must be delivered or bounced", field="status")
    if message.status is MessageStatus.SENT:
        set_status(ctx, message, wanted, error=error[:1000] if error else None)
    return message
