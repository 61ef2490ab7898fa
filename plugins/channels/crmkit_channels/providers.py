"""The built-in providers: e-mail over SMTP, SMS over an HTTP gateway, the in-app inbox
and signed webhooks. Each sends one rendered message and says whether a failure is
worth retrying; each passes the message's id to the far side as its idempotency key
where the protocol has one (the README says what that guarantees)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import http.cookiejar
import json
import ssl
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Protocol

import aiosmtplib
import crmkit
import httpx
from standardwebhooks.webhooks import Webhook

from crmkit_channels import templates
from crmkit_channels.settings import ChannelsSettings

HTTP_TIMEOUT = 10.0
HTTP_CONNECTIONS = 10
"""Connections a process keeps open to one gateway; further sends to it wait for one
(within ``HTTP_TIMEOUT``)."""


class _Gateway:
    """Up to ``HTTP_CONNECTIONS`` HTTP clients of one connection each, for one gateway,
    each lent to one send at a time.

    One client holding all the connections cost nearly twice the CPU per request: httpx's
    pool looks over every connection (a socket readability check of each idle one)
    whenever a request starts or ends, and with more sends than connections (a worker's 10
    jobs x ``send_concurrency`` 4) requests often claimed the same idle connection and
    looked again. Loopback, 40 sends in flight over 10 connections: 1.8 ms of CPU per
    request through one client, 1.0 ms lent this way. The most recently returned client
    goes out first, so the connections a quiet period does not need expire (keep-alive)."""

    def __init__(self) -> None:
        self.idle: asyncio.LifoQueue[httpx.AsyncClient] = asyncio.LifoQueue()
        self.made = 0

    @contextlib.asynccontextmanager
    async def lend(self) -> AsyncIterator[httpx.AsyncClient]:
        if self.idle.empty() and self.made < HTTP_CONNECTIONS:
            self.made += 1
            client = _client()
        else:
            try:
                async with asyncio.timeout(HTTP_TIMEOUT):
                    client = await self.idle.get()
            except TimeoutError:
                raise httpx.PoolTimeout(f"no connection free in {HTTP_TIMEOUT} s") from None
        try:
            yield client
        finally:
            self.idle.put_nowait(client)


_gateways: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, _Gateway]] = (
    weakref.WeakKeyDictionary()
)


def gateway_client(url: str) -> contextlib.AbstractAsyncContextManager[httpx.AsyncClient]:
    """An HTTP client of this event loop's for the gateway at ``url``, lent for one send.
    The clients are shared by every send to that gateway: one of its own per message cost
    more than the send (new connections), and clients per gateway keep a slow gateway
    from holding the connections of the others."""
    gateways = _gateways.setdefault(asyncio.get_running_loop(), {})
    gateway = gateways.get(url)
    if gateway is None:
        gateway = gateways[url] = _Gateway()
    return gateway.lend()


async def http_post(url: str, content: str, headers: dict[str, str]) -> httpx.Response:
    async with gateway_client(url) as client:
        return await client.post(url, content=content, headers=headers)


@functools.cache
def _tls() -> ssl.SSLContext:
    """One TLS context for all the clients: loading the CA bundle costs more than a send."""
    return httpx.create_ssl_context()


def _client() -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    return httpx.AsyncClient(
        timeout=HTTP_TIMEOUT, limits=limits, cookies=_no_cookies(), verify=_tls()
    )


def _no_cookies() -> http.cookiejar.CookieJar:
    """A jar that keeps no cookie: the clients are shared by every tenant's sends to a
    gateway, so a cookie one tenant's send received must not go out with another's."""
    return http.cookiejar.CookieJar(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))


class TransientError(Exception):
    """The provider may accept the message later: retry with backoff."""


class PermanentError(Exception):
    """Retrying cannot help (rejected address, bad credentials): the message fails."""


@dataclass(frozen=True)
class Outbound:
    """One rendered message, ready for a provider."""

    message_id: str
    address: str
    subject: str | None
    body: str


class Provider(Protocol):
    channel: str
    consent_channel: crmkit.ConsentChannel

    async def send(self, ctx: crmkit.TenantContext, outbound: Outbound) -> str | None:
        """Send; the provider's id for the message (``None`` if it gives none)."""
        ...


def _settings(ctx: crmkit.TenantContext) -> ChannelsSettings:
    return ctx.settings_as(ChannelsSettings)


def _secret(value: object) -> str | None:
    get = getattr(value, "get_secret_value", None)
    return get() if get is not None else None


def _http_error(response: httpx.Response) -> Exception:
    text = f"HTTP {response.status_code}: {response.text[:200]}"
    if response.status_code in (408, 425, 429) or response.status_code >= 500:
        return TransientError(text)
    return PermanentError(text)


class EmailProvider:
    """SMTP (aiosmtplib). The ``Message-ID`` is derived from the message id, so a
    resend after a crash carries the same id and receivers can drop the copy."""

    channel = "email"
    consent_channel = crmkit.ConsentChannel.EMAIL

    async def send(self, ctx: crmkit.TenantContext, outbound: Outbound) -> str | None:
        settings = _settings(ctx)
        if not settings.smtp_host:
            raise PermanentError("no smtp_host configured")
        email = EmailMessage()
        email["From"] = settings.smtp_sender
        email["To"] = outbound.address
        email["Subject"] = outbound.subject or ""
        message_id = f"<{outbound.message_id}@channels.crmkit>"
        email["Message-ID"] = message_id
        email.set_content(outbound.body)
        try:
            await aiosmtplib.send(
                email,
                hostname=settings.smtp_host,
                port=settings.smtp_port,
                username=settings.smtp_username,
                password=_secret(settings.smtp_password),
                timeout=HTTP_TIMEOUT,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            raise PermanentError(f"recipient refused: {exc}") from None
        except aiosmtplib.SMTPResponseException as exc:
            if 400 <= exc.code < 500:
                raise TransientError(f"SMTP {exc.code}: {exc.message}") from None
            raise PermanentError(f"SMTP {exc.code}: {exc.message}") from None
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise TransientError(f"SMTP: {exc!r}") from None
        return message_id


class SmsProvider:
    """A generic HTTP gateway: POST of the tenant's JSON payload template, the API key
    in the tenant's auth header, and ``Idempotency-Key: <message id>``."""

    channel = "sms"
    consent_channel = crmkit.ConsentChannel.SMS

    async def send(self, ctx: crmkit.TenantContext, outbound: Outbound) -> str | None:
        settings = _settings(ctx)
        if not settings.sms_url:
            raise PermanentError("no sms_url configured")
        payload = templates.compiled(settings.sms_payload_template).render(
            to=outbound.address, text=outbound.body, reference=outbound.message_id
        )
        headers = {"Content-Type": "application/json", "Idempotency-Key": outbound.message_id}
        key = _secret(settings.sms_api_key)
        if key:
            headers[settings.sms_auth_header] = key
        try:
            response = await http_post(settings.sms_url, payload, headers)
        except httpx.HTTPError as exc:
            raise TransientError(f"SMS gateway: {exc!r}") from None
        if response.status_code >= 300:
            raise _http_error(response)
        try:
            answer = response.json()
        except ValueError:
            return None
        provider_id = answer.get("id") if isinstance(answer, dict) else None
        return str(provider_id) if provider_id is not None else None


class InAppProvider:
    """The in-app inbox: the message row is the delivery; the app lists it by GraphQL."""

    channel = "in_app"
    consent_channel = crmkit.ConsentChannel.IN_APP

    async def send(self, ctx: crmkit.TenantContext, outbound: Outbound) -> str | None:
        return outbound.message_id


class WebhookProvider:
    """Standard Webhooks: signed with the tenant's secret; ``webhook-id`` is the message
    id, which the standard tells receivers to deduplicate on."""

    channel = "webhook"
    consent_channel = crmkit.ConsentChannel.PUSH

    async def send(self, ctx: crmkit.TenantContext, outbound: Outbound) -> str | None:
        settings = _settings(ctx)
        secret = _secret(settings.webhook_secret)
        if not settings.webhook_url or not secret:
            raise PermanentError("no webhook_url and webhook_secret configured")
        body = json.dumps(
            {
                "type": "channels.message",
                "data": {
                    "message_id": outbound.message_id,
                    "address": outbound.address,
                    "subject": outbound.subject,
                    "body": outbound.body,
                },
            }
        )
        now = datetime.now(UTC)
        signature = Webhook(secret).sign(outbound.message_id, now, body)
        headers = {
            "content-type": "application/json",
            "webhook-id": outbound.message_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": signature,
        }
        try:
            response = await http_post(settings.webhook_url, body, headers)
        except httpx.HTTPError as exc:
            raise TransientError(f"webhook: {exc!r}") from None
        if response.status_code >= 300:
            raise _http_error(response)
        return outbound.message_id


BUILT_IN: list[Provider] = [EmailProvider(), SmsProvider(), InAppProvider(), WebhookProvider()]
