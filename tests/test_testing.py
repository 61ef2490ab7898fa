"""crmkit.testing's own promises, beyond what every other test exercises."""

from __future__ import annotations

from datetime import timedelta

import pytest

import crmkit
from crmkit.testing import CLOCK_START, Env, FrozenClock


def test_the_clock_stands_still_until_moved(clock: FrozenClock) -> None:
    """crmkit.testing exports the fixture's type, so plugins' tests can annotate it."""
    assert isinstance(clock, FrozenClock)
    assert crmkit.utcnow() == CLOCK_START
    clock.advance(days=30)
    assert crmkit.utcnow() == CLOCK_START + timedelta(days=30)


def test_the_clock_is_the_real_one_again_after_the_test() -> None:
    assert crmkit.utcnow() > CLOCK_START + timedelta(days=365)


async def test_a_token_of_chosen_scopes(env: Env) -> None:
    tenant = await env.tenant()
    query = "{ customers { nodes { id } } }"
    assert "errors" not in await env.gql(query, tenant=tenant, scopes=["customers:read"])
    denied = await env.gql(query, tenant=tenant, scopes=["activities:read"])
    assert denied["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    with pytest.raises(TypeError):
        await env.gql(query, token=env.token(tenant), scopes=["customers:read"])


async def test_a_plugin_enabled_for_a_tenant_that_has_data(env: Env) -> None:
    """env.enable: the plugin's fields appear for the tenant's existing customers."""
    tenant = await env.tenant()
    customer = await env.create_customer(tenant, givenName="Ann")
    query = "query($id: UUID!) { customer(id: $id) { notes { body } } }"
    before = await env.gql(query, {"id": customer["id"]}, tenant=tenant)
    assert "errors" in before  # no such field while notes is off
    await env.enable(tenant, "notes")
    after = await env.gql(query, {"id": customer["id"]}, tenant=tenant)
    assert after["data"]["customer"]["notes"] == []
