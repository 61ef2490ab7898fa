"""Consent decides at the moment of sending: a customer without it gets nothing and is
counted as suppressed; a withdrawal committed while a message waits stops it; a STOP
reply withdraws consent and the next campaign suppresses that customer."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

from channels_helpers import START, campaign, grant, messages, ok, progress, template
from channels_loopback import CALLBACK_SECRET, Loopback, unique_number
from crmkit.testing import Env
from standardwebhooks.webhooks import Webhook

from crmkit_channels import service

ACTIVITIES = """query($id: UUID!) {
  activities(customerId: $id) { nodes { kind channel attributes } } }"""
CONSENTS = "query($id: UUID!) { customer(id: $id) { consents { purpose channel state } } }"


def e164(national: str) -> str:
    return "+44" + national.replace(" ", "")[1:]


async def customers(env: Env, tenant: uuid.UUID, tag: str, count: int) -> list[tuple[str, str]]:
    made = []
    for i in range(count):
        phone = unique_number()
        customer = await env.create_customer(tenant, givenName=f"C{i}", phone=phone, tags=[tag])
        made.append((customer["id"], phone))
    return made


async def sweep(env: Env, tenant: uuid.UUID) -> None:
    """Run the plugin's cron for the tenant (the worker runs it every minute)."""
    async with env.platform.tenant_scope(tenant) as scope:
        await service.sweep(scope.hooks.context_for("channels"))
    await env.drain()


async def run_campaign(env: Env, tenant: uuid.UUID, tag: str) -> dict[str, object]:
    campaign_id = await campaign(
        env,
        tenant,
        name=f"{tag} news",
        template="news",
        channel="sms",
        purpose="marketing",
        filter={"tag": tag},
    )
    ok(await env.gql(START, {"id": campaign_id}, tenant=tenant))
    await env.drain()
    return await progress(env, tenant, campaign_id)


async def test_a_customer_without_sms_consent_gets_nothing_and_is_counted_suppressed(
    loopback: Loopback,
) -> None:
    env = loopback.env
    tenant = await loopback.tenant()
    await template(env, tenant, "news", "sms", "News for {{ customer.given_name }}")
    tag = f"c{uuid.uuid4().hex[:10]}"
    (yes1, phone1), (yes2, phone2), (no, phone3) = await customers(env, tenant, tag, 3)
    await grant(env, tenant, yes1, "SMS")
    await grant(env, tenant, yes2, "SMS")
    await grant(env, tenant, no, "EMAIL")  # consent on another channel is not SMS consent

    counts = await run_campaign(env, tenant, tag)
    assert counts["progress"] == {
        "queued": 0,
        "sent": 2,
        "delivered": 0,
        "suppressed": 1,
        "failed": 0,
        "bounced": 0,
    }
    assert loopback.gateway.sms_to(e164(phone1)) == ["News for C0"]
    assert loopback.gateway.sms_to(e164(phone2)) == ["News for C1"]
    assert loopback.gateway.sms_to(e164(phone3)) == []
    [suppressed] = await messages(env, tenant, no)
    assert suppressed["status"] == "suppressed"
    assert suppressed["reason"] == "no consent for marketing by sms"


async def test_a_withdrawal_committed_while_messages_wait_stops_them(
    loopback: Loopback, clock: object
) -> None:
    env = loopback.env
    # the clock stands at Monday 09:00 UTC: inside quiet hours 08-10, so messages wait
    tenant = await loopback.tenant(quiet_hours_start=8, quiet_hours_end=10)
    await template(env, tenant, "news", "sms", "News")
    tag = f"w{uuid.uuid4().hex[:10]}"
    (stays, phone1), (leaves, phone2) = await customers(env, tenant, tag, 2)
    for customer in (stays, leaves):
        await grant(env, tenant, customer, "SMS")

    counts = await run_campaign(env, tenant, tag)
    assert counts["progress"]["queued"] == 2  # type: ignore[index]
    waiting = await messages(env, tenant, stays)
    assert waiting[0]["status"] == "queued"
    await sweep(env, tenant)  # still quiet: nothing goes
    assert loopback.gateway.sms_to(e164(phone1)) == []

    await grant(env, tenant, leaves, "SMS", state="WITHDRAWN")
    clock.advance(hours=1, minutes=1)  # type: ignore[attr-defined]
    await sweep(env, tenant)
    assert loopback.gateway.sms_to(e164(phone1)) == ["News"]
    assert loopback.gateway.sms_to(e164(phone2)) == []
    [stopped] = await messages(env, tenant, leaves)
    assert (stopped["status"], stopped["reason"]) == (
        "suppressed",
        "no consent for marketing by sms",
    )


async def test_quiet_hours_are_the_customers_own_where_they_have_a_time_zone(
    loopback: Loopback, clock: object
) -> None:
    """Monday 6 January 09:00 UTC is inside the tenant's quiet hours (08-10, in UTC): a
    customer without a zone of their own waits; one in New York (04:00 there) is sent
    to at once, one in Tokyo (18:00) too; one in London (09:00 GMT) waits."""
    env = loopback.env
    tenant = await loopback.tenant(quiet_hours_start=8, quiet_hours_end=10)
    await template(env, tenant, "news", "sms", "News")
    tag = f"z{uuid.uuid4().hex[:10]}"
    zones = [None, "America/New_York", "Asia/Tokyo", "Europe/London"]
    made = await customers(env, tenant, tag, len(zones))
    update = """mutation($id: UUID!, $zone: String) {
      updateCustomer(id: $id, input: {timeZone: $zone}) { id } }"""
    for (customer, _), zone in zip(made, zones, strict=True):
        await grant(env, tenant, customer, "SMS")
        ok(await env.gql(update, {"id": customer, "zone": zone}, tenant=tenant))

    await run_campaign(env, tenant, tag)
    received = [loopback.gateway.sms_to(e164(phone)) for _, phone in made]
    assert received == [[], ["News"], ["News"], []]
    waiting = await messages(env, tenant, made[0][0])
    assert waiting[0]["status"] == "queued"


async def test_stop_withdraws_consent_and_the_next_campaign_suppresses_the_customer(
    loopback: Loopback,
) -> None:
    env = loopback.env
    tenant = await loopback.tenant()
    await template(env, tenant, "news", "sms", "News")
    tag = f"s{uuid.uuid4().hex[:10]}"
    [(customer, phone)] = await customers(env, tenant, tag, 1)
    await grant(env, tenant, customer, "SMS")
    first = await run_campaign(env, tenant, tag)
    assert first["progress"]["sent"] == 1  # type: ignore[index]
    [sent] = await messages(env, tenant, customer)

    reply = json.dumps(
        {
            "type": "reply",
            "channel": "sms",
            "from": e164(phone),
            "text": " stop ",
            "in_reply_to": sent["id"],
        }
    )
    webhook_id = f"msg_{uuid.uuid4().hex}"
    now = datetime.now(UTC)
    headers = {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(CALLBACK_SECRET).sign(webhook_id, now, reply),
        "content-type": "application/json",
    }
    forged = await env.client.post(
        f"/plugins/channels/inbound/{tenant}",
        content=reply,
        headers={**headers, "webhook-signature": "v1,AAAA"},
    )
    assert forged.status_code == 401
    answer = await env.client.post(
        f"/plugins/channels/inbound/{tenant}", content=reply, headers=headers
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["opt_out"] is True

    consents = ok(await env.gql(CONSENTS, {"id": customer}, tenant=tenant))["customer"]["consents"]
    assert {"purpose": "marketing", "channel": "SMS", "state": "WITHDRAWN"} in consents
    activities = ok(await env.gql(ACTIVITIES, {"id": customer}, tenant=tenant))
    [contact] = activities["activities"]["nodes"]
    assert (contact["kind"], contact["channel"], contact["attributes"]["opt_out"]) == (
        "CONTACT",
        "SMS",
        True,
    )

    second = await run_campaign(env, tenant, tag)
    assert (second["progress"]["sent"], second["progress"]["suppressed"]) == (0, 1)  # type: ignore[index]
    assert loopback.gateway.sms_to(e164(phone)) == ["News"]  # the first campaign's only
