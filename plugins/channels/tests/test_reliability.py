"""Exactly once per recipient with the in-process queue: retries of transient failures
deliver once, a permanent failure is not retried, a campaign started twice and a
request repeated (or delivered twice) send once; delivery reports move messages on.
(The same on arq with a killed worker: tests/test_worker_crash.py.)"""

from __future__ import annotations

import dataclasses
import json
import uuid
from datetime import UTC, datetime

import crmkit
import pytest
from channels_helpers import START, campaign, grant, messages, ok, progress, send, template
from channels_loopback import CALLBACK_SECRET, Loopback, unique_number
from standardwebhooks.webhooks import Webhook

ERROR = "query($id: UUID!) { customer(id: $id) { messages { error } } }"


def e164(national: str) -> str:
    return "+44" + national.replace(" ", "")[1:]


async def sms_customer(loopback: Loopback, tenant: uuid.UUID, tag: str = "r") -> tuple[str, str]:
    phone = unique_number()
    customer = await loopback.env.create_customer(tenant, givenName="Ro", phone=phone, tags=[tag])
    await grant(loopback.env, tenant, customer["id"], "SMS")
    return customer["id"], phone


async def test_a_provider_failing_twice_then_succeeding_delivers_once(loopback: Loopback) -> None:
    env = loopback.env
    tenant = await loopback.tenant()
    await template(env, tenant, "otp", "sms", "Your code")
    customer, phone = await sms_customer(loopback, tenant)
    loopback.gateway.fail_next = 2
    posts = loopback.gateway.sms_posts
    await send(env, tenant, customerId=customer, purpose="marketing", template="otp", channel="sms")
    await env.drain()
    [message] = await messages(env, tenant, customer)
    assert (message["status"], message["attempts"]) == ("sent", 3)
    assert loopback.gateway.sms_posts - posts == 3
    assert loopback.gateway.sms_to(e164(phone)) == ["Your code"]


async def test_a_permanent_failure_is_not_retried(loopback: Loopback) -> None:
    env = loopback.env
    tenant = await loopback.tenant(sms_api_key="wrong-key")
    await template(env, tenant, "otp", "sms", "Your code")
    customer, _ = await sms_customer(loopback, tenant)
    refused = loopback.gateway.unauthorised
    await send(env, tenant, customerId=customer, purpose="marketing", template="otp", channel="sms")
    await env.drain()
    [message] = await messages(env, tenant, customer)
    assert (message["status"], message["attempts"]) == ("failed", 1)
    assert loopback.gateway.unauthorised - refused == 1


async def test_a_gateway_inside_the_platforms_network_is_refused_outside_development(
    loopback: Loopback, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Providers send through the platform's outbound policy: in production a gateway
    URL on a private address (here the loopback gateway) fails the message for good,
    and nothing reaches it."""
    env = loopback.env
    tenant = await loopback.tenant()
    await template(env, tenant, "otp", "sms", "Your code")
    customer, _ = await sms_customer(loopback, tenant)
    production = dataclasses.replace(env.platform.outbound, development=False)
    monkeypatch.setattr(env.platform, "outbound", production)
    posts = loopback.gateway.sms_posts
    await send(env, tenant, customerId=customer, purpose="marketing", template="otp", channel="sms")
    await env.drain()
    [message] = await messages(env, tenant, customer)
    assert (message["status"], message["attempts"]) == ("failed", 1)
    error = ok(await env.gql(ERROR, {"id": customer}, tenant=tenant))["customer"]["messages"][0][
        "error"
    ]
    assert "must be an absolute https URL" in error, error
    assert loopback.gateway.sms_posts == posts


async def test_an_smtp_server_inside_the_platforms_network_is_refused_outside_development(
    loopback: Loopback, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The SMTP server is held to the same policy as a gateway's URL: in production the
    loopback server (``smtp_host`` 127.0.0.1) fails the message for good, and receives
    nothing; in development the same message is delivered."""
    env = loopback.env
    tenant = await loopback.tenant()
    await template(env, tenant, "otp", "email", "Your code", subject="Code")
    email = f"ro.{uuid.uuid4().hex[:8]}@example.com"
    customer = (await env.create_customer(tenant, givenName="Ro", email=email))["id"]
    await grant(env, tenant, customer, "EMAIL")
    development = env.platform.outbound
    monkeypatch.setattr(
        env.platform, "outbound", dataclasses.replace(development, development=False)
    )
    await send(
        env, tenant, customerId=customer, purpose="marketing", template="otp", channel="email"
    )
    await env.drain()
    [message] = await messages(env, tenant, customer)
    assert (message["status"], message["attempts"]) == ("failed", 1)
    error = ok(await env.gql(ERROR, {"id": customer}, tenant=tenant))["customer"]["messages"][0][
        "error"
    ]
    assert error == "SMTP server: 127.0.0.1 is a private or reserved address", error
    assert loopback.mailbox.to(email) == []

    monkeypatch.setattr(env.platform, "outbound", development)
    await send(
        env, tenant, customerId=customer, purpose="marketing", template="otp", channel="email"
    )
    await env.drain()
    assert loopback.mailbox.to(email) == ["Your code"]


async def test_a_campaign_started_twice_sends_once(loopback: Loopback) -> None:
    env = loopback.env
    tenant = await loopback.tenant()
    await template(env, tenant, "news", "sms", "News")
    tag = f"t{uuid.uuid4().hex[:10]}"
    phones = [(await sms_customer(loopback, tenant, tag))[1] for _ in range(4)]
    campaign_id = await campaign(
        env,
        tenant,
        name="twice",
        template="news",
        channel="sms",
        purpose="marketing",
        filter={"tag": tag},
    )
    ok(await env.gql(START, {"id": campaign_id}, tenant=tenant))
    ok(await env.gql(START, {"id": campaign_id}, tenant=tenant))
    await env.drain()
    ok(await env.gql(START, {"id": campaign_id}, tenant=tenant))  # and once more, done
    await env.drain()
    assert (await progress(env, tenant, campaign_id))["progress"]["sent"] == 4
    assert [loopback.gateway.sms_to(e164(p)) for p in phones] == [["News"]] * 4


async def test_a_repeated_request_or_a_redelivered_event_sends_once(loopback: Loopback) -> None:
    env = loopback.env
    tenant = await loopback.tenant()
    await template(env, tenant, "surveys.invitation", "sms", "Tell us: {{ event.link }}")
    customer, phone = await sms_customer(loopback, tenant)
    request = {
        "customerId": customer,
        "purpose": "marketing",
        "template": "surveys.invitation",
        "channel": "sms",
        "variables": {"link": "https://s/1"},
        "idempotencyKey": "mine-1",
    }
    first = await send(env, tenant, **request)
    assert (await send(env, tenant, **request))["id"] == first["id"]

    event = crmkit.DomainEvent(
        id=crmkit.uuid7(),
        type="channels_send_requested",
        tenant_id=tenant,
        subject_type="Survey",
        subject_id="s2",
        occurred_at=datetime.now(UTC),
        data={
            "customer_id": customer,
            "purpose": "marketing",
            "template": "surveys.invitation",
            "variables": {"link": "https://s/2"},
            "idempotency_key": "surveys:invitation:2",
            "requested_by": "surveys",
        },
    )
    await env.deliver(tenant, "channels", event)
    await env.deliver(tenant, "channels", event)  # delivery is at least once
    await env.drain()
    assert sorted(loopback.gateway.sms_to(e164(phone))) == [
        "Tell us: https://s/1",
        "Tell us: https://s/2",
    ]
    statuses = await env.events(tenant, "channels_message_status_changed")
    assert sorted(e.data["idempotency_key"] for e in statuses) == ["mine-1", "surveys:invitation:2"]


async def test_a_delivery_report_moves_the_message_to_delivered(loopback: Loopback) -> None:
    env = loopback.env
    tenant = await loopback.tenant()
    await template(env, tenant, "otp", "sms", "Code")
    customer, _ = await sms_customer(loopback, tenant)
    sent = await send(
        env, tenant, customerId=customer, purpose="marketing", template="otp", channel="sms"
    )
    await env.drain()
    report = json.dumps({"type": "status", "message_id": sent["id"], "status": "delivered"})
    now = datetime.now(UTC)
    headers = {
        "webhook-id": "r1",
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(CALLBACK_SECRET).sign("r1", now, report),
    }
    answer = await env.client.post(
        f"/plugins/channels/inbound/{tenant}", content=report, headers=headers
    )
    assert answer.json() == {"message_id": sent["id"], "status": "delivered"}
    [message] = await messages(env, tenant, customer)
    assert message["status"] == "delivered"
