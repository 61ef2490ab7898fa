"""Loopback servers the tests start: an SMTP server (aiosmtpd), and one HTTP server
playing the SMS gateway and the webhook receiver (signatures verified with the
``standardwebhooks`` library). Each counts what it accepted, as a real receiver would:
the SMS gateway honours ``Idempotency-Key`` and the webhook receiver ``webhook-id``."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from typing import Any

import pytest
import pytest_asyncio
import uvicorn
from aiosmtpd.controller import Controller
from crmkit.testing import Env
from standardwebhooks.webhooks import Webhook

API_KEY = "sms-key-0f9e8d"
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"channels-test-webhook-secret-32b").decode()
CALLBACK_SECRET = "whsec_" + base64.b64encode(b"channels-test-callback-secret-32").decode()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Mailbox:
    """The SMTP server's handler: every message it accepted, by recipient."""

    received: list[tuple[str, str, str]] = field(default_factory=list)
    """(recipient, Message-ID, body)."""

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = message_from_bytes(envelope.content)
        body = parsed.get_payload(decode=True).decode().rstrip("\r\n")
        for recipient in envelope.rcpt_tos:
            self.received.append((recipient, parsed["Message-ID"], body))
        return "250 OK"

    def to(self, address: str) -> list[str]:
        return [body for recipient, _, body in self.received if recipient == address]


@dataclass
class Gateway:
    """ASGI app: ``POST /sms`` (the SMS gateway) and ``POST /webhook`` (the receiver)."""

    sms: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Accepted SMS by idempotency key (a repeat is answered, not counted again)."""
    sms_posts: int = 0
    webhooks: dict[str, dict[str, Any]] = field(default_factory=dict)
    webhook_posts: int = 0
    bad_signatures: int = 0
    unauthorised: int = 0
    fail_next: int = 0
    """Answer this many next SMS posts with 503 (a transient failure)."""
    delay: float = 0.0
    """Seconds between accepting a message and answering: a sender killed meanwhile
    never learns that it was accepted."""
    in_flight: int = 0
    most_in_flight: int = 0
    """The most requests the server held at once (one per connection: HTTP/1.1)."""
    cookies_sent: list[str | None] = field(default_factory=list)
    """The ``Cookie`` header of each ``POST /cookie``, which answers with a cookie."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            status, answer = self.handle(scope["path"], headers, body)
            if self.delay:
                await asyncio.sleep(self.delay)
        finally:
            self.in_flight -= 1
        data = b"" if status == 204 else json.dumps(answer).encode()
        extra = []
        if scope["path"] == "/cookie":
            self.cookies_sent.append(headers.get("cookie"))
            extra = [(b"set-cookie", b"session=tenant-a; Path=/")]
        await send({"type": "http.response.start", "status": status, "headers": extra})
        await send({"type": "http.response.body", "body": data})

    def handle(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        if path == "/sms":
            self.sms_posts += 1
            if headers.get("authorization") != API_KEY:
                self.unauthorised += 1
                return 401, {"error": "unauthorised"}
            if self.fail_next > 0:
                self.fail_next -= 1
                return 503, {"error": "try later"}
            key = headers["idempotency-key"]
            self.sms.setdefault(key, json.loads(body))
            return 200, {"id": f"gw-{key}"}
        if path == "/webhook":
            self.webhook_posts += 1
            try:
                Webhook(WEBHOOK_SECRET).verify(body, headers)
            except Exception:
                self.bad_signatures += 1
                return 401, {}
            self.webhooks.setdefault(headers["webhook-id"], json.loads(body))
            return 204, None
        if path == "/cookie":
            return 200, {}
        return 404, {}

    def sms_to(self, number: str) -> list[str]:
        return [m["text"] for m in self.sms.values() if m["to"] == number]


@pytest.fixture(scope="session")
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    handler = Mailbox()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    yield handler, port
    controller.stop()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def gateway() -> AsyncIterator[tuple[Gateway, int]]:
    app = Gateway()
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn offers no event to wait on
        await asyncio.sleep(0.01)
    yield app, port
    server.should_exit = True
    await task


@dataclass
class Loopback:
    env: Env
    mailbox: Mailbox
    gateway: Gateway
    settings: dict[str, Any]

    async def tenant(self, **overrides: Any) -> uuid.UUID:
        return await self.env.tenant("channels", channels={**self.settings, **overrides})


@pytest.fixture
def loopback(env: Env, mailbox: tuple[Mailbox, int], gateway: tuple[Gateway, int]) -> Loopback:
    (box, smtp_port), (app, http_port) = mailbox, gateway
    settings = {
        "smtp_host": "127.0.0.1",
        "smtp_port": smtp_port,
        "sms_url": f"http://127.0.0.1:{http_port}/sms",
        "sms_api_key": API_KEY,
        "webhook_url": f"http://127.0.0.1:{http_port}/webhook",
        "webhook_secret": WEBHOOK_SECRET,
        "callback_secret": CALLBACK_SECRET,
        "retry_base_seconds": 0,
        "sender_name": "Acme Bank",
    }
    return Loopback(env, box, app, settings)


def unique_number() -> str:
    """A valid UK mobile number of this test's own (07700 900xxx is not valid: use 07400)."""
    return "07400 " + str(int.from_bytes(os.urandom(3), "big") % 1_000_000).zfill(6)
