"""Bad input gets a clear error naming the field, and changes nothing."""

from __future__ import annotations

import uuid
from typing import Any

from channels_helpers import CREATE_CAMPAIGN, SAVE, SEND, messages, ok, template
from channels_loopback import Loopback
from crmkit.testing import Env
from sqlalchemy import func, select

from crmkit_channels.models import Campaign, Message, Template

TEMPLATES = "{ channelTemplates { key version } }"


def refused(body: dict[str, Any], field: str) -> str:
    error = body["errors"][0]
    assert (error["extensions"]["code"], error["extensions"].get("field")) == (
        "BAD_USER_INPUT",
        field,
    ), body
    message: str = error["message"]
    return message


async def rows(env: Env, tenant: uuid.UUID, model: type) -> int:
    async with env.platform.db.tenant_session(tenant) as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_a_template_with_an_unknown_variable_or_bad_syntax_is_refused_with_its_line(
    loopback: Loopback,
) -> None:
    env = loopback.env
    tenant = await loopback.tenant()
    cases = {
        "Hello\n{{ customer.shoe_size }}": "line 2: unknown variable 'customer.shoe_size'",
        "Hi\n\n{{ balance }}": "line 3: unknown variable 'balance'",
        "Hi {{ customer.given_name ": "does not compile, line 1",
        "{% for x in event.items %}{{ x }}": "does not compile, line 1",
    }
    for body, expected in cases.items():
        answer = await env.gql(
            SAVE, {"input": {"key": "k", "channel": "sms", "body": body}}, tenant=tenant
        )
        assert expected in refused(answer, "body")
    subject = {"key": "k", "channel": "email", "body": "ok", "subject": "{{ tenant.address }}"}
    assert "unknown variable 'tenant.address'" in refused(
        await env.gql(SAVE, {"input": subject}, tenant=tenant), "subject"
    )
    unknown = {"key": "k", "channel": "fax", "body": "ok"}
    assert "unknown channel 'fax'" in refused(
        await env.gql(SAVE, {"input": unknown}, tenant=tenant), "channel"
    )
    assert ok(await env.gql(TEMPLATES, tenant=tenant))["channelTemplates"] == []
    assert await rows(env, tenant, Template) == 0

    loops = "{% for item in event.items %}{{ loop.index }}. {{ item }}{% endfor %}"
    await template(env, tenant, "list", "sms", loops)  # its own names are no unknown variables
    assert await rows(env, tenant, Template) == 1


async def test_a_malformed_phone_or_invalid_address_refuses_the_send(loopback: Loopback) -> None:
    env = loopback.env
    tenant = await loopback.tenant()
    await template(env, tenant, "hi", "sms", "Hi")
    await template(env, tenant, "hi", "email", "Hi", subject="Hi")
    bad_phone = (await env.create_customer(tenant, givenName="P", phone="12345"))["id"]
    bad_email = (await env.create_customer(tenant, givenName="E", email="ann@invalid..com"))["id"]
    for customer, channel in ((bad_phone, "sms"), (bad_email, "email")):
        request = {
            "customerId": customer,
            "purpose": "marketing",
            "template": "hi",
            "channel": channel,
        }
        message = refused(await env.gql(SEND, {"input": request}, tenant=tenant), "customerId")
        assert (
            "malformed phone number" if channel == "sms" else "invalid e-mail address"
        ) in message
        assert await messages(env, tenant, customer) == []
    assert await rows(env, tenant, Message) == 0


async def test_a_campaign_with_an_empty_filter_or_unknown_channel_is_refused(
    loopback: Loopback,
) -> None:
    env = loopback.env
    tenant = await loopback.tenant()
    await template(env, tenant, "news", "sms", "News")
    good = {
        "name": "n",
        "template": "news",
        "channel": "sms",
        "purpose": "marketing",
        "filter": {"tag": "vip"},
    }
    cases = [
        ({"filter": {}}, "filter", "a campaign needs a filter"),
        ({"filter": {"includeArchived": True}}, "filter", "a campaign needs a filter"),
        ({"channel": "carrier_pigeon"}, "channel", "unknown channel 'carrier_pigeon'"),
        ({"template": "nope"}, "template", "no template 'nope'"),
    ]
    for change, field, expected in cases:
        answer = await env.gql(CREATE_CAMPAIGN, {"input": {**good, **change}}, tenant=tenant)
        assert expected in refused(answer, field)
    assert await rows(env, tenant, Campaign) == 0
