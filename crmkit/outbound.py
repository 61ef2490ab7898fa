"""Where crmkit may send requests it is told to send: partner apps' webhooks and
plugins' providers (an SMS gateway, a customer's webhook).

A URL someone registered must not reach inside the platform's network (Redis, the
cloud's metadata service, an admin port). Outside development mode a destination is
https on a public address, or on a network the operator allowed
(``CRMKIT_OUTBOUND_ALLOWED_NETWORKS``, for partners on a private link). It is checked
when the URL is registered and again at every request on the address the name resolves
to then, and the request goes to that checked address, so a name re-pointed at an
internal address after registration (DNS rebinding) is refused. Redirects are never
followed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import httpx

from crmkit.errors import BadUserInput

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class BlockedDestination(BadUserInput):
    """The destination is not one crmkit may send to."""


PRODUCTION: OutboundPolicy
"""The strictest policy: public https destinations only (set below the class)."""


@dataclass(frozen=True)
class OutboundPolicy:
    """The destinations allowed to this platform. ``development`` allows http and
    private addresses (loopback test receivers); production never does."""

    development: bool
    allowed_networks: tuple[Network, ...] = ()

    @classmethod
    def of(cls, development: bool, allowed_networks: Iterable[str]) -> OutboundPolicy:
        return cls(development, tuple(ipaddress.ip_network(n, strict=False) for n in allowed_networks))

    def allows(self, address: Address) -> bool:
        mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:10.0.0.1 is 10.0.0.1
        address = mapped or address
        return self.development or address.is_global or any(address in n for n in self.allowed_networks)

    def check_url(self, url: str, *, field: str) -> str:
        """A URL fit to register: absolute, https (http in development), no user info,
        and if its host is an address, an allowed one. Names are checked when used."""
        try:
            parts = urlsplit(url)
            _ = parts.port  # raises on a malformed port
        except ValueError:
            raise BlockedDestination(f"{url!r} is not a valid URL", field=field) from None
        schemes = {"https", "http"} if self.development else {"https"}
        if parts.scheme not in schemes or not parts.hostname:
            raise BlockedDestination(f"{url!r} must be an absolute https URL", field=field)
        if parts.username is not None or parts.password is not None:
            raise BlockedDestination(f"{url!r} must not carry user info", field=field)
        literal = _address(parts.hostname)
        if literal is not None and not self.allows(literal):
            raise BlockedDestination(f"{url!r} points at a private or reserved address", field=field)
        return url

    async def resolve(self, url: str) -> Address:
        """The address to send ``url``'s request to: every address its host resolves
        to now must be allowed (one internal answer refuses the lot)."""
        return await self.resolve_host(urlsplit(self.check_url(url, field="url")).hostname or "", field="url")

    async def resolve_host(self, host: str, *, field: str) -> Address:
        """The address to connect to for ``host`` (a name or an address), for a protocol
        other than https (a tenant's SMTP server): every address the name resolves to
        now must be allowed; a refusal is :class:`BlockedDestination` on ``field``.
        Connect to the address returned, not to the name, so the name cannot be
        re-pointed in between."""
        literal = _address(host)
        if literal is not None:
            if not self.allows(literal):
                raise BlockedDestination(f"{host} is a private or reserved address", field=field)
            return literal
        try:
            answers = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise BlockedDestination(f"{host} does not resolve ({exc.strerror})", field=field) from exc
        addresses = [ipaddress.ip_address(answer[4][0]) for answer in answers]
        blocked = [str(a) for a in addresses if not self.allows(a)]
        if blocked or not addresses:
            raise BlockedDestination(f"{host} resolves to a private or reserved address", field=field)
        return addresses[0]

    async def post(
        self, url: str, *, content: bytes, headers: Mapping[str, str], seconds: float
    ) -> httpx.Response:
        """POST to ``url`` on the address :meth:`resolve` checked (the name still names
        the host and the TLS certificate); redirects are not followed."""
        parts = urlsplit(url)
        address = await self.resolve(url)
        host = f"[{address}]" if address.version == 6 else str(address)
        netloc = f"{host}:{parts.port}" if parts.port else host
        pinned = urlunsplit(parts._replace(netloc=netloc))
        name = parts.hostname or ""
        extensions = {"sni_hostname": name} if parts.scheme == "https" else {}
        async with httpx.AsyncClient(timeout=seconds, follow_redirects=False) as client:
            return await client.post(
                pinned, content=content, headers={**headers, "host": parts.netloc}, extensions=extensions
            )


PRODUCTION = OutboundPolicy(development=False)


def _address(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
