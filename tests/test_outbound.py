"""Webhooks and providers reach only allowed destinations: outside development mode,
https on a public address or on a network the operator allowed; checked when the URL is
registered and again, on the address it resolves to, at every request."""

from __future__ import annotations

import ipaddress

import pytest

from crmkit.auth.apps import register_client
from crmkit.errors import BadUserInput
from crmkit.outbound import PRODUCTION, BlockedDestination, OutboundPolicy
from crmkit.testing import Env

INSIDE = [
    "http://127.0.0.1:6379/",
    "https://127.0.0.1:6379/",
    "https://localhost/hooks",
    "https://169.254.169.254/latest/meta-data/",
    "https://10.0.0.1/",
    "https://[::1]/",
    "https://0.0.0.0/",
    "https://[::ffff:10.0.0.1]/",
    "https://192.168.1.20/",
]
PUBLIC = "https://93.184.216.34/hooks"


@pytest.mark.parametrize("url", INSIDE)
async def test_production_refuses_destinations_inside_the_network(url: str) -> None:
    with pytest.raises(BlockedDestination):
        await PRODUCTION.resolve(url)


async def test_production_takes_public_https_and_allowed_private_networks() -> None:
    assert await PRODUCTION.resolve(PUBLIC) == ipaddress.ip_address("93.184.216.34")
    with pytest.raises(BlockedDestination, match="https"):
        await PRODUCTION.resolve("http://93.184.216.34/hooks")
    partner = OutboundPolicy.of(development=False, allowed_networks=["10.20.0.0/16"])
    assert await partner.resolve("https://10.20.3.4/hooks") == ipaddress.ip_address("10.20.3.4")
    with pytest.raises(BlockedDestination):
        await partner.resolve("https://10.21.0.1/hooks")
    with pytest.raises(BlockedDestination, match="user info"):
        await PRODUCTION.resolve("https://user:pw@93.184.216.34/")


async def test_a_name_is_judged_by_what_it_resolves_to_now() -> None:
    """A partner's name re-pointed at an internal address (DNS rebinding) is refused
    at the request, whatever it resolved to when it was registered."""
    with pytest.raises(BlockedDestination, match="private or reserved"):
        await PRODUCTION.resolve("https://localhost:8443/hooks")  # resolves to loopback
    development = OutboundPolicy(development=True)
    assert (await development.resolve("http://localhost:8443/hooks")).is_loopback


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "localhost", "10.0.0.1", "::1", "169.254.169.254", "::ffff:10.0.0.1"]
)
async def test_a_host_for_another_protocol_is_held_to_the_same_policy(host: str) -> None:
    """A tenant's SMTP server is a host, not an https URL: the same addresses are
    refused, named by the setting they came from."""
    with pytest.raises(BlockedDestination, match="private or reserved") as refused:
        await PRODUCTION.resolve_host(host, field="smtp_host")
    assert refused.value.extensions == {"field": "smtp_host"}
    assert await PRODUCTION.resolve_host("93.184.216.34", field="smtp_host") == ipaddress.ip_address(
        "93.184.216.34"
    )
    partner = OutboundPolicy.of(development=False, allowed_networks=["10.0.0.0/8"])
    assert await partner.resolve_host("10.0.0.1", field="smtp_host") == ipaddress.ip_address("10.0.0.1")
    with pytest.raises(BlockedDestination, match="does not resolve"):
        await PRODUCTION.resolve_host("no-such-host.invalid", field="smtp_host")


@pytest.mark.parametrize("url", ["https://10.0.0.1/hooks", "http://93.184.216.34/", "https://localhost/"])
async def test_registering_an_app_refuses_an_internal_webhook_url(env: Env, url: str) -> None:
    with pytest.raises(BadUserInput) as refused:
        await register_client(
            env.platform.db,
            env.platform.registry,
            name="Sneaky",
            redirect_uris=["https://partner.example/cb"],
            scopes=["customers:read"],
            webhook_url=url,
            outbound=PRODUCTION,
        )
    assert refused.value.extensions["field"] == "webhook_url"
