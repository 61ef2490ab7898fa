"""Signed webhooks to installed partner apps, retried until accepted, verified by an
independent Standard Webhooks implementation on a real loopback receiver."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
import uvicorn
from standardwebhooks.webhooks import Webhook

from crmkit.auth import apps
from crmkit.testing import Env
from crmkit.webhooks import service as webhooks


@dataclass
class Receiver:
    """A partner's endpoint: refuses the first ``fail_first`` deliveries, verifies every
    signature (with the secret of the installation the delivery names, if it knows one),
    and handles each webhook id once."""

    secret: str = ""
    secrets: dict[str, str] = field(default_factory=dict)
    fail_first: int = 0
    attempts: list[str] = field(default_factory=list)
    handled: dict[str, dict[str, Any]] = field(default_factory=dict)
    bad_signatures: int = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        secret = self.secrets.get(headers.get(webhooks.INSTALLATION_HEADER, ""), self.secret)
        try:
            Webhook(secret).verify(body, headers)
        except Exception:
            self.bad_signatures += 1
            return await _answer(send, 401)
        self.attempts.append(headers["webhook-id"])
        if len(self.attempts) <= self.fail_first:
            return await _answer(send, 503)
        self.handled.setdefault(headers["webhook-id"], json.loads(body))
        await _answer(send, 204)


async def _answer(send: Any, status: int) -> None:
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": b""})


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    app = Receiver()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110  (uvicorn offers no event to wait on)
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield app, f"http://127.0.0.1:{port}/hooks"
    server.should_exit = True
    await task


async def install(env: Env, tenant: uuid.UUID, url: str, scopes: list[str]) -> uuid.UUID:
    registered = await apps.register_client(
        env.platform.db,
        env.platform.registry,
        name="Partner",
        redirect_uris=["https://partner.example/cb"],
        scopes=["customers:read", "consent:read", "webhooks:subscribe"],
        webhook_url=url,
        outbound=env.platform.outbound,
    )
    async with env.platform.tenant_scope(tenant) as scope:
        installation = await apps.install_app(
            scope.session,
            env.platform.registry,
            scope.state.plugins,
            client_id=registered.client.client_id,
            scopes=scopes,
            installed_by="user:admin",
        )
        return installation.id


async def test_receiver_that_fails_twice_gets_each_event_once(
    env: Env, receiver: tuple[Receiver, str]
) -> None:
    app, url = receiver
    tenant, other = await env.tenant(), await env.tenant()
    installation = await install(env, tenant, url, ["customers:read"])
    async with env.platform.tenant_scope(tenant) as scope:
        app.secret = await webhooks.subscribe(
            scope.ctx, installation, ["customer_created"], env.platform.registry.event_scopes()
        )
    app.fail_first = 2
    customer = await env.create_customer(tenant, givenName="Hooked", email="hooked@example.com")
    await env.create_customer(other, givenName="Elsewhere")  # the app is not installed there
    await env.queue.drain()
    assert app.bad_signatures == 0
    assert len(app.attempts) == 3 and len(set(app.attempts)) == 1  # two refusals, one retry accepted
    [event] = app.handled.values()
    assert event["type"] == "customer_created" and event["data"]["subject_id"] == customer["id"]
    assert "hooked@example.com" not in json.dumps(event)  # ids only, never personal data


async def test_each_delivery_names_its_installation(env: Env, receiver: tuple[Receiver, str]) -> None:
    app, url = receiver
    installations = {}
    for name in ("First", "Second"):  # two tenants' installations post to the same URL
        tenant = await env.tenant()
        installation = str(await install(env, tenant, url, ["customers:read"]))
        async with env.platform.tenant_scope(tenant) as scope:
            app.secrets[installation] = await webhooks.subscribe(
                scope.ctx, uuid.UUID(installation), ["customer_created"], env.platform.registry.event_scopes()
            )
        installations[(await env.create_customer(tenant, givenName=name))["id"]] = installation
    await env.queue.drain()
    assert app.bad_signatures == 0  # each verified with the secret its header named
    delivered = {e["data"]["subject_id"]: e["installation_id"] for e in app.handled.values()}
    assert delivered == installations  # and the signed body says the same


async def test_events_need_a_granted_scope(env: Env, receiver: tuple[Receiver, str]) -> None:
    _, url = receiver
    tenant = await env.tenant()
    installation = await install(env, tenant, url, ["customers:read"])
    async with env.platform.tenant_scope(tenant) as scope:
        with pytest.raises(Exception, match="consent:read"):
            await webhooks.subscribe(
                scope.ctx, installation, ["consent_changed"], env.platform.registry.event_scopes()
            )
        with pytest.raises(Exception, match="no event type"):
            await webhooks.subscribe(
                scope.ctx, installation, ["customer_teleported"], env.platform.registry.event_scopes()
            )


def test_signature_matches_the_standard() -> None:
    secret = webhooks.new_secret()
    body = b'{"id":"x"}'
    sig = webhooks.signature(secret, "msg_1", 1700000000, body)
    when = datetime.fromtimestamp(1700000000, tz=UTC)
    assert Webhook(secret).sign("msg_1", when, body.decode()) == sig


async def test_an_app_subscribes_itself_through_graphql(env: Env, receiver: tuple[Receiver, str]) -> None:
    app, url = receiver
    tenant = await env.tenant()
    installation = await install(env, tenant, url, ["customers:read", "webhooks:subscribe"])
    token = env.tokens.issue(
        tenant_id=tenant,
        subject=f"app:{installation}",
        scopes=["customers:read", "webhooks:subscribe"],
        client_id="partner",
        installation_id=str(installation),
    )
    mutation = 'mutation { subscribeWebhooks(eventTypes: ["customer_updated"]) { installationId eventTypes secret } }'
    body = await env.gql(mutation, token=token)
    result = body["data"]["subscribeWebhooks"]
    assert result["installationId"] == str(installation) and result["secret"].startswith("whsec_")
    app.secret = result["secret"]
    customer = await env.create_customer(tenant, givenName="Upd")
    await env.gql(
        'mutation($id: UUID!) { updateCustomer(id: $id, input: {familyName: "Dated"}) { id } }',
        {"id": customer["id"]},
        tenant=tenant,
    )
    await env.queue.drain()
    assert [e["type"] for e in app.handled.values()] == ["customer_updated"]


async def test_a_receiver_that_never_answers_is_recorded_for_the_operator(env: Env) -> None:
    from crmkit.platform.report import plugin_report

    tenant = await env.tenant()
    installation = await install(env, tenant, "http://127.0.0.1:9/closed", ["customers:read"])
    async with env.platform.tenant_scope(tenant) as scope:
        await webhooks.subscribe(
            scope.ctx, installation, ["customer_created"], env.platform.registry.event_scopes()
        )
    await env.create_customer(tenant, givenName="Nobody listens")
    await env.queue.drain()
    report = await plugin_report(env.platform)
    mine = [f for f in report["core_failures"] if f["job"] == webhooks.DELIVER_WEBHOOK]
    assert mine and mine[0]["gave_up"] and "DeliveryFailed" in mine[0]["error"]
