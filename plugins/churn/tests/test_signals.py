"""Signals other plugins' events leave: loyalty's tier drops and expiring points, and the
core's marketing opt-outs, each scored while its source runs, once per event."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import crmkit
from churn_helpers import ok
from crmkit.testing import Env, FrozenClock
from test_alerts import steady

CHURN = """query($id: UUID!) { customer(id: $id) {
  churn { score featuresUsed reasons { feature value contribution } } } }"""
CONSENT = """mutation($id: UUID!, $state: ConsentState!) { recordConsent(input: {customerId: $id,
  purpose: "marketing", channel: EMAIL, state: $state, source: WEB, policyVersion: "2025-01",
  legalBasis: CONSENT}) { state } }"""


def loyalty_event(tenant: uuid.UUID, type: str, customer: str, **data: Any) -> crmkit.DomainEvent:
    return crmkit.DomainEvent(
        id=crmkit.uuid7(),
        type=type,
        tenant_id=tenant,
        subject_type="Customer",
        subject_id=customer,
        data={"customer_id": customer, **data},
        occurred_at=crmkit.utcnow(),
    )


async def churn_of(env: Env, tenant: uuid.UUID, customer: str) -> dict[str, Any]:
    found: dict[str, Any] = ok(await env.gql(CHURN, {"id": customer}, tenant=tenant))["customer"][
        "churn"
    ]
    return found


def reasons(churn: dict[str, Any]) -> dict[str, tuple[float, float]]:
    return {r["feature"]: (r["value"], r["contribution"]) for r in churn["reasons"]}


async def test_loyalty_signals_count_while_loyalty_runs(env: Env, clock: FrozenClock) -> None:
    with_loyalty, without = await env.tenant("churn", "loyalty"), await env.tenant("churn")
    for tenant in (with_loyalty, without):
        customer = await steady(env, tenant)
        events = [
            loyalty_event(
                tenant, "loyalty_tier_changed", customer, old_tier="gold", new_tier="silver"
            ),
            loyalty_event(
                tenant, "loyalty_tier_changed", customer, old_tier="silver", new_tier="gold"
            ),
            loyalty_event(
                tenant,
                "loyalty_points_expiring",
                customer,
                points=600,
                expires_on=(crmkit.utcnow() + timedelta(days=10)).date().isoformat(),
            ),
        ]
        for event in events:
            for _ in range(2):  # redelivered: kept once
                await env.deliver(tenant, "churn", event)
        churn = await churn_of(env, tenant, customer)
        if tenant == without:
            assert churn["score"] == 0 and "tier_drops" not in churn["featuresUsed"]
            continue
        assert reasons(churn) == {"tier_drops": (1.0, 10.0), "expiring_points": (600.0, 3.0)}
        assert churn["score"] == 13
        clock.advance(days=11)  # the points have expired: no longer a reason
        assert reasons(await churn_of(env, tenant, customer)) == {"tier_drops": (1.0, 10.0)}
        clock.advance(days=-11)


async def test_a_marketing_opt_out_counts_until_consent_is_granted_again(
    env: Env, clock: FrozenClock
) -> None:
    tenant = await env.tenant("churn")
    customer = await steady(env, tenant)
    ok(await env.gql(CONSENT, {"id": customer, "state": "WITHDRAWN"}, tenant=tenant))
    await env.drain()
    assert reasons(await churn_of(env, tenant, customer)) == {"marketing_opt_out": (1.0, 10.0)}
    clock.advance(minutes=1)
    ok(await env.gql(CONSENT, {"id": customer, "state": "GRANTED"}, tenant=tenant))
    await env.drain()
    assert reasons(await churn_of(env, tenant, customer)) == {}
