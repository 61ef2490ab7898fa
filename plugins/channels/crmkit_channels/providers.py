"""The built-in providers: e-mail over SMTP, SMS over an HTTP gateway, the in-app inbox
and signed webhooks. Each sends one rendered message and says whether a failure is
worth retrying; each passes the message's id to the far side as its idempotency key
where the protocol has one (the README says what that guarantees)."""

from __future__ import annotations

import asyncio
import http.cookiejar
import json
import weakref
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
(within ``HTTP_TIMEOUT``). httpx's pool looks over all its connections for every
request: with a worker's 40 sends in flight (10 jobs x ``send_concurrency`` 4) a
request cost 1.3 ms of CPU over 40 connections, 0.7 ms over 10, on loopback."""
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, httpx.AsyncClient]] = (
    weakref.WeakKeyDictionary()
)


def http_client(url: str) -> httpx.AsyncClient:
    """This event loop's HTTP client for the gateway at ``url``, shared by every send to
    it: a client of its own per message cost more than the send (loading the CA bundle,
    new connections), and one per gateway keeps a slow gateway from holding the
    connections of the others."""
    clients = _clients.setdefault(asyncio.get_running_loop(), {})
    client = clients.get(url)
    if client is None:
        limits = httpx.Limits(
            max_connections=HTTP_CONNECTIONS, max_keepalive_connections=HTTP_CONNECTIONS
        )
        client = clients[url] = httpx.AsyncClient(
            timeout=HTTP_TIMEOUT, limits=limits, cookies=_no_cookies()
        )
    return client


def _no_cookies() -> http.cookiejar.CookieJar:
    """A jar that keeps no cookie: the client is shared by every tenant's sends to a
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
            response = await http_client(settings.sms_url).post(
                settings.sms_url, content=payload, headers=headers
            )
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
            response = await http_client(settings.webhook_url).post(
                settings.webhook_url, content=body, headers=headers
            )
        except httpx.HTTPError as exc:
            raise TransientError(f"webhook: {exc!r}") from None
        if response.status_code >= 300:
            raise _http_error(response)
        return outbound.message_id


BUILT_IN: list[Provider] = [EmailProvider(), SmsProvider(), InAppProvider(), WebhookProvider()]
