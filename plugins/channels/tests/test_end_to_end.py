"""Every built-in channel end to end on loopback: the rendered e-mail reaches the SMTP
server, the SMS the gateway, the signed webhook the receiver, and the inbox lists the
in-app message."""

from __future__ import annotations

import uuid

from channels_helpers import grant, messages, ok, send, template
from channels_loopback import Loopback, unique_number

INBOX = """query($id: UUID!) { inbox(customerId: $id) { nodes { id body subject readAt } } }"""
READ = "mutation($id: UUID!) { markInboxRead(messageId: $id) { readAt } }"


async def test_each_channel_delivers_the_rendered_message(loopback: Loopback) -> None:
    env = loopback.env
    tenant = await loopback.tenant()
    email = f"ann.{uuid.uuid4().hex[:8]}@example.com"
    phone = unique_number()
    ann = (await env.create_customer(tenant, givenName="Ann", email=email, phone=phone))["id"]
    for channel in ("EMAIL", "SMS", "IN_APP", "PUSH"):
        await grant(env, tenant, ann, channel)
    body = "Hello {{ customer.given_name }}, {{ event.offer }} from {{ tenant.name }}."
    for channel in ("email", "sms", "in_app", "webhook"):
        await template(
            env, tenant, "offer", channel, body, subject="An offer for {{ customer.given_name }}"
        )

    sent = {}
    for channel in ("email", "sms", "in_app", "webhook"):
        sent[channel] = await send(
            env,
            tenant,
            customerId=ann,
            purpose="marketing",
            template="offer",
            channel=channel,
            variables={"offer": "2% cashback"},
        )
    await env.drain()

    text = "Hello Ann, 2% cashback from Acme Bank."
    assert loopback.mailbox.to(email) == [text]
    assert loopback.gateway.sms_to("+44" + phone.replace(" ", "")[1:]) == [text]
    webhook = loopback.gateway.webhooks[sent["webhook"]["id"]]
    assert webhook["data"]["body"] == text and webhook["data"]["address"] == ann
    assert loopback.gateway.bad_signatures == 0

    inbox = ok(await env.gql(INBOX, {"id": ann}, tenant=tenant))["inbox"]["nodes"]
    assert [(m["id"], m["body"], m["subject"]) for m in inbox] == [
        (sent["in_app"]["id"], text, "An offer for Ann")
    ]
    assert ok(await env.gql(READ, {"id": inbox[0]["id"]}, tenant=tenant))["markInboxRead"]["readAt"]

    history = await messages(env, tenant, ann)
    assert sorted((m["channel"], m["status"], m["attempts"]) for m in history) == [
        ("email", "sent", 1),
        ("in_app", "sent", 1),
        ("sms", "sent", 1),
        ("webhook", "sent", 1),
    ]


PREVIEW = """mutation($id: UUID!) {
  previewMessage(customerId: $id, template: "offer", channel: "sms",
                 variables: {offer: "2% cashback"}) { subject body } }"""
STATS = """query($since: DateTime!, $until: DateTime!) {
  channelStats(since: $since, until: $until) { channel counts { sent suppressed } } }"""


async def test_a_preview_renders_masked_as_the_caller_and_sends_nothing(loopback: Loopback) -> None:
    env = loopback.env
    tenant = await loopback.tenant()
    customer = (await env.create_customer(tenant, givenName="Ann"))["id"]
    await template(
        env, tenant, "offer", "sms", "Hello {{ customer.given_name }}, {{ event.offer }}."
    )
    clear = ok(await env.gql(PREVIEW, {"id": customer}, tenant=tenant))["previewMessage"]
    assert clear == {"subject": None, "body": "Hello Ann, 2% cashback."}
    scopes = ["customers:read", "channels:send"]  # no pii:identity: the name is masked
    masked = ok(await env.gql(PREVIEW, {"id": customer}, token=env.token(tenant, scopes)))
    assert masked["previewMessage"]["body"] == "Hello ***, 2% cashback."
    assert await messages(env, tenant, customer) == []


async def test_statistics_count_each_channel_in_the_period(loopback: Loopback) -> None:
    env = loopback.env
    tenant = await loopback.tenant()
    allowed = (await env.create_customer(tenant, givenName="A"))["id"]
    refused = (await env.create_customer(tenant, givenName="R"))["id"]
    await grant(env, tenant, allowed, "IN_APP")
    await template(env, tenant, "hi", "in_app", "Hi")
    for customer in (allowed, refused):
        await send(
            env, tenant, customerId=customer, purpose="marketing", template="hi", channel="in_app"
        )
    await env.drain()
    period = {"since": "2000-01-01T00:00:00Z", "until": "2100-01-01T00:00:00Z"}
    stats = ok(await env.gql(STATS, period, tenant=tenant))["channelStats"]
    assert stats == [{"channel": "in_app", "counts": {"sent": 1, "suppressed": 1}}]
