"""The built-in providers: e-mail over SMTP, SMS over an HTTP gateway, the in-app inbox
and signed webhooks. Each sends one rendered message and says whether a failure is
worth retrying; each passes the message's id to the far side as its idempotency key
where the protocol has one (the README says what that guarantees)."""

from __future__ import annotations

import asyncio
import atexit
import ipaddress
import json
import socket
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import aiosmtplib
import crmkit
from standardwebhooks.webhooks import Webhook

from crmkit_channels import templates
from crmkit_channels.settings import ChannelsSettings

HTTP_TIMEOUT = 10.0
"""Seconds an HTTP send may take in all, waiting for a free connection included."""
HTTP_CONNECTIONS = 10
"""Connections a process keeps open to one gateway (host and port); further sends to it
wait for one."""
HTTP_ERRORS = (aiohttp.ClientError, TimeoutError)
"""What a call that got no answer raises: the gateway may take the message later."""


@dataclass(frozen=True)
class HttpAnswer:
    """A gateway's answer, read whole."""

    status: int
    body: bytes


_sessions: dict[asyncio.AbstractEventLoop, AsyncGenerator[aiohttp.ClientSession]] = {}


async def http_session() -> aiohttp.ClientSession:
    """This event loop's HTTP session, shared by every send to every gateway: at most
    ``HTTP_CONNECTIONS`` per gateway, so a slow one does not hold the others'; no cookie
    jar (a cookie one tenant's send received must not go out with another's); no proxy
    or ``.netrc`` from the environment (aiohttp reads both again for every request,
    which would triple its CPU per send).

    aiohttp, not httpx: loopback, 40 posts in flight over 10 connections, aiohttp spends
    0.1 ms of CPU per post, httpx 0.45 ms even with a client of one connection per send
    (its pure-Python HTTP/1.1 and connection pool)."""
    loop = asyncio.get_running_loop()
    kept = _sessions.get(loop)
    if kept is None:
        kept = _sessions[loop] = _kept_session(loop)
    return await anext(kept)


async def _kept_session(loop: asyncio.AbstractEventLoop) -> AsyncGenerator[aiohttp.ClientSession]:
    """Yields the loop's session until the loop shuts its async generators down
    (``asyncio.run``, ``asyncio.Runner``), then closes it: an unclosed session complains
    when the process ends."""
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, limit_per_host=HTTP_CONNECTIONS),
        timeout=aiohttp.ClientTimeout(total=HTTP_TIMEOUT),
        cookie_jar=aiohttp.DummyCookieJar(),
    )
    try:
        while True:
            yield session
    finally:
        del _sessions[loop]
        await session.close()


@atexit.register
def _close_sessions() -> None:
    """Close the sessions of loops left open at exit: arq's worker stops its loop
    without shutting its async generators down."""
    for loop, kept in list(_sessions.items()):
        if not loop.is_closed() and not loop.is_running():
            loop.run_until_complete(kept.aclose())


class Destinations(Protocol):
    """The platform's outbound policy (``ctx.outbound``): where a request may go."""

    async def resolve(self, url: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address: ...

    async def resolve_host(
        self, host: str, *, field: str
    ) -> ipaddress.IPv4Address | ipaddress.IPv6Address: ...


async def http_post(
    destinations: Destinations, url: str, content: str, headers: dict[str, str]
) -> HttpAnswer:
    """POST ``content`` to ``url`` on the address ``destinations`` checked now (the
    platform's policy: outside development mode https on a public address, so a
    tenant's gateway URL cannot reach inside the platform's network, even through a
    name re-pointed since it was saved); the name still names the host and its
    certificate. A redirect is not followed (a 3xx is the answer); a refused
    destination is :class:`crmkit.BadUserInput`."""
    address = await destinations.resolve(url)
    parts = urlsplit(url)
    host = f"[{address}]" if address.version == 6 else str(address)
    pinned = urlunsplit(parts._replace(netloc=f"{host}:{parts.port}" if parts.port else host))
    session = await http_session()
    async with session.post(
        pinned,
        data=content.encode(),
        headers={**headers, "Host": parts.netloc},
        allow_redirects=False,
        server_hostname=parts.hostname if parts.scheme == "https" else None,
    ) as response:
        return HttpAnswer(response.status, await response.read())


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


def _http_error(answer: HttpAnswer) -> Exception:
    text = f"HTTP {answer.status}: {answer.body[:200].decode(errors='replace')}"
    if answer.status in (408, 425, 429) or answer.status >= 500:
        return TransientError(text)
    return PermanentError(text)


async def smtp_socket(destinations: Destinations, host: str, port: int) -> socket.socket:
    """A socket connected to ``host`` on the address ``destinations`` checked now: like
    an SMS gateway's URL, a tenant's SMTP server may not be inside the platform's
    network (an SMTP client's lines reach a Redis or an admin port as well), not even
    through a name re-pointed since it was saved. A refusal is
    :class:`crmkit.BadUserInput`."""
    address = await destinations.resolve_host(host, field="smtp_host")
    connected = socket.socket(
        socket.AF_INET6 if address.version == 6 else socket.AF_INET, socket.SOCK_STREAM
    )
    connected.setblocking(False)
    try:
        connecting = asyncio.get_running_loop().sock_connect(connected, (str(address), port))
        await asyncio.wait_for(connecting, HTTP_TIMEOUT)
    except BaseException:
        connected.close()
        raise
    return connected


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
            connected = await smtp_socket(ctx.outbound, settings.smtp_host, settings.smtp_port)
            await aiosmtplib.send(
                email,
                sock=connected,
                hostname=settings.smtp_host,  # what STARTTLS checks the certificate against
                username=settings.smtp_username,
                password=_secret(settings.smtp_password),
                timeout=HTTP_TIMEOUT,
            )
        except crmkit.BadUserInput as exc:
            raise PermanentError(f"SMTP server: {exc.message}") from None
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
            answer = await http_post(ctx.outbound, settings.sms_url, payload, headers)
        except crmkit.BadUserInput as exc:
            raise PermanentError(f"SMS gateway: {exc.message}") from None
        except HTTP_ERRORS as exc:
            raise TransientError(f"SMS gateway: {exc!r}") from None
        if answer.status >= 300:
            raise _http_error(answer)
        try:
            parsed = json.loads(answer.body)
        except ValueError:
            return None
        provider_id = parsed.get("id") if isinstance(parsed, dict) else None
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
            answer = await http_post(ctx.outbound, settings.webhook_url, body, headers)
        except crmkit.BadUserInput as exc:
            raise PermanentError(f"webhook: {exc.message}") from None
        except HTTP_ERRORS as exc:
            raise TransientError(f"webhook: {exc!r}") from None
        if answer.status >= 300:
            raise _http_error(answer)
        return outbound.message_id


BUILT_IN: list[Provider] = [EmailProvider(), SmsProvider(), InAppProvider(), WebhookProvider()]
