"""A send job sends a batch: within it each recipient's outcome is its own (one without
consent is suppressed, one failing transiently is retried alone, the rest are sent
once, and a repeated job sends nothing), and the statements a batch costs do not grow
with its size. A gateway gets at most ``HTTP_CONNECTIONS`` requests of a process at
once."""

from __future__ import annotations

import asyncio
import uuid

from channels_helpers import START, campaign, grant, messages, ok, progress, template
from channels_loopback import Gateway, Loopback, unique_number
from crmkit.testing import Env, StatementCounter

from crmkit_channels import service
from crmkit_channels.providers import HTTP_CONNECTIONS, http_post


def e164(national: str) -> str:
    return "+44" + national.replace(" ", "")[1:]


async def recipients(
    env: Env, tenant: uuid.UUID, tag: str, count: int, consent: bool = True
) -> list[tuple[str, str]]:
    """``count`` customers tagged ``tag`` with a phone, with SMS consent or without."""
    made = []
    for i in range(count):
        phone = unique_number()
        customer = await env.create_customer(tenant, givenName=f"B{i}", phone=phone, tags=[tag])
        if consent:
            await grant(env, tenant, customer["id"], "SMS")
        made.append((customer["id"], phone))
    return made


async def start_campaign(env: Env, tenant: uuid.UUID, tag: str) -> str:
    campaign_id = await campaign(
        env,
        tenant,
        name=f"{tag} batch",
        template="news",
        channel="sms",
        purpose="marketing",
        filter={"tag": tag},
    )
    ok(await env.gql(START, {"id": campaign_id}, tenant=tenant))
    return campaign_id


async def test_one_batch_suppresses_one_retries_one_alone_and_sends_the_rest_once(
    loopback: Loopback,
) -> None:
    env, gateway = loopback.env, loopback.gateway
    tenant = await loopback.tenant(send_batch_size=20, send_concurrency=3)
    await template(env, tenant, "news", "sms", "News for {{ customer.given_name }}")
    tag = f"b{uuid.uuid4().hex[:10]}"
    allowed = await recipients(env, tenant, tag, 6)
    [(refused, refused_phone)] = await recipients(env, tenant, tag, 1, consent=False)
    await env.drain()
    posts = gateway.sms_posts
    gateway.fail_next = 1  # one call of the batch gets a 503

    campaign_id = await start_campaign(env, tenant, tag)
    await env.drain()

    counts = (await progress(env, tenant, campaign_id))["progress"]
    assert (counts["sent"], counts["suppressed"], counts["queued"]) == (6, 1, 0)
    assert gateway.sms_posts - posts == 6 + 1  # only the failed one went twice
    for index, (_, phone) in enumerate(allowed):
        assert gateway.sms_to(e164(phone)) == [f"News for B{index}"]
    assert gateway.sms_to(e164(refused_phone)) == []
    attempts = sorted([(await messages(env, tenant, c))[0]["attempts"] for c, _ in allowed])
    assert attempts == [1, 1, 1, 1, 1, 2]
    [suppressed] = await messages(env, tenant, refused)
    assert suppressed["reason"] == "no consent for marketing by sms"

    # the same batch queued again (a retried or duplicated job) sends nothing more
    async with env.platform.tenant_scope(tenant) as scope:
        ctx = scope.hooks.context_for("channels")
        ids = [(await messages(env, tenant, c))[0]["id"] for c, _ in [*allowed, (refused, "")]]
        await service.enqueue_sends(ctx, ids, 0, "again")
    await env.drain()
    assert gateway.sms_posts - posts == 7


async def test_a_batch_costs_the_same_statements_for_3_and_12_recipients(
    loopback: Loopback, sql_statements: StatementCounter
) -> None:
    env = loopback.env
    counts: dict[int, int] = {}
    for size in (3, 12):
        tenant = await loopback.tenant(send_batch_size=12)
        await template(env, tenant, "news", "sms", "News for {{ customer.given_name }}")
        tag = f"s{uuid.uuid4().hex[:10]}"
        await recipients(env, tenant, tag, size)
        await env.drain()
        sql_statements.clear()
        campaign_id = await start_campaign(env, tenant, tag)
        await env.drain()
        counts[size] = sql_statements.count
        assert (await progress(env, tenant, campaign_id))["progress"]["sent"] == size
        # the texts are encrypted with the data keys loaded with the customers
        reloaded = [s for s in sql_statements.statements if s.startswith("SELECT customer_keys.")]
        assert reloaded == []
    assert counts[3] == counts[12], counts


async def test_a_gateway_gets_at_most_its_connections_at_once(
    env: Env, gateway: tuple[Gateway, int]
) -> None:
    app, port = gateway
    app.delay, app.most_in_flight = 0.2, 0  # each request held: the senders pile up
    try:
        answers = await asyncio.gather(
            *(
                http_post(env.platform.outbound, f"http://127.0.0.1:{port}/held", "{}", {})
                for _ in range(25)
            )
        )
    finally:
        app.delay = 0.0
    assert [a.status for a in answers] == [404] * 25  # every one answered, in turn
    assert 1 < app.most_in_flight <= HTTP_CONNECTIONS
