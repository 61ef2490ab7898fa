"""Message texts and addresses are personal data: encrypted at rest, masked without
``pii:contact``, in the customer's export, and gone after erasure (raw scan). A page of
customers' messages costs the same statements for 5 and 50 customers."""

from __future__ import annotations

from typing import Any

from channels_helpers import grant, messages, ok, send, template
from channels_loopback import Gateway, Loopback
from crmkit.testing import Env, StatementCounter
from sqlalchemy import text

from crmkit_channels.providers import http_post

SECRET = "Zweistein, your mortgage offer"


async def raw_messages(loopback: Loopback) -> str:
    async with loopback.env.owner_engine.connect() as conn:
        return repr((await conn.execute(text("SELECT * FROM channels_messages"))).all()).replace(
            "-", ""
        )


async def test_texts_are_encrypted_masked_exported_and_erased(loopback: Loopback) -> None:
    env = loopback.env
    tenant = await loopback.tenant()
    customer = (await env.create_customer(tenant, familyName="Zweistein"))["id"]
    await grant(env, tenant, customer, "IN_APP")
    await template(env, tenant, "offer", "in_app", "{{ event.greeting }}, your mortgage offer")
    await send(
        env,
        tenant,
        customerId=customer,
        purpose="marketing",
        template="offer",
        variables={"greeting": "Zweistein"},
    )
    await env.drain()
    raw = await raw_messages(loopback)
    assert customer.replace("-", "") in raw and SECRET not in raw and "Zweistein" not in raw

    masked = await env.gql(
        "query($id: UUID!) { customer(id: $id) { messages { body } } }",
        {"id": customer},
        token=env.token(tenant, ["customers:read", "channels:read"]),
    )
    assert masked["data"]["customer"]["messages"] == [{"body": "***"}]
    assert [m["body"] for m in await messages(env, tenant, customer)] == [SECRET]

    exported = ok(
        await env.gql(
            "query($id: UUID!) { exportCustomerData(id: $id) }", {"id": customer}, tenant=tenant
        )
    )
    [entry] = exported["exportCustomerData"]["plugins"]["channels"]
    assert (entry["body"], entry["variables"]) == (SECRET, {"greeting": "Zweistein"})

    ok(
        await env.gql(
            "mutation($id: UUID!) { eraseCustomer(id: $id) { erasedAt } }",
            {"id": customer},
            tenant=tenant,
        )
    )
    await env.drain()
    assert customer.replace("-", "") not in await raw_messages(loopback)


async def test_messages_of_a_page_cost_the_same_statements_for_5_and_50_customers(
    loopback: Loopback, sql_statements: StatementCounter
) -> None:
    env = loopback.env
    page = "{ customers(first: 50) { nodes { id messages { status body } } } }"
    counts: dict[int, Any] = {}
    for size in (5, 50):
        tenant = await loopback.tenant()
        await template(env, tenant, "hi", "in_app", "Hi")
        for i in range(size):
            customer = await env.create_customer(tenant, givenName=f"N{i}")
            await send(
                env,
                tenant,
                customerId=customer["id"],
                purpose="marketing",
                template="hi",
                channel="in_app",
            )
        await env.drain()
        token = env.token(tenant)
        await env.gql(page, token=token)
        sql_statements.clear()
        nodes = ok(await env.gql(page, token=token))["customers"]["nodes"]
        assert len(nodes) == size and all(len(n["messages"]) == 1 for n in nodes)
        counts[size] = sql_statements.count
    assert counts[5] == counts[50], counts


async def test_the_shared_http_session_keeps_no_cookie(
    env: Env, gateway: tuple[Gateway, int]
) -> None:
    """The HTTP session serves every tenant's sends: a cookie set in answer to one
    tenant's send must not travel with the next tenant's (a name, not an address: a
    cookie jar takes no cookie from an address anyway)."""
    app, port = gateway
    for _ in range(2):
        await http_post(env.platform.outbound, f"http://localhost:{port}/cookie", "{}", {})
    assert app.cookies_sent[-2:] == [None, None]
