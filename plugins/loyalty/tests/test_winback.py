"""The churn plugin's win-back offer, as loyalty handles it: the settings' bonus, once per
alert however often it is delivered; other churn steps and erased customers get none."""

from __future__ import annotations

import uuid

import crmkit
from crmkit.testing import Env
from loyalty_helpers import loyalty
from sqlalchemy import select

from crmkit_loyalty import winback
from crmkit_loyalty.models import LedgerEntry


def churn_request(
    tenant: uuid.UUID, customer: str, kind: str, alert: uuid.UUID
) -> crmkit.DomainEvent:
    """``churn_action_requested`` as the churn plugin emits it (churn need not be here)."""
    return crmkit.DomainEvent(
        id=crmkit.uuid7(),
        type="churn_action_requested",
        tenant_id=tenant,
        subject_type="ChurnAlert",
        subject_id=str(alert),
        data={
            "customer_id": customer,
            "kind": kind,
            "step": kind,
            "idempotency_key": f"churn:{kind}:{alert}:{kind}",
        },
        occurred_at=crmkit.utcnow(),
    )


async def test_a_win_back_offer_grants_the_settings_bonus_once_per_alert(env: Env) -> None:
    tenant = await env.tenant("loyalty", loyalty={"winback_points": 300})
    customer = (await env.create_customer(tenant, givenName="Wim"))["id"]
    first, second = crmkit.uuid7(), crmkit.uuid7()
    for event in (
        churn_request(tenant, customer, "winback_offer", first),
        churn_request(tenant, customer, "winback_offer", first),  # delivered again
        churn_request(tenant, customer, "case", first),  # for cases, not loyalty
        churn_request(tenant, customer, "winback_offer", second),  # another alert
    ):
        await env.deliver(tenant, "loyalty", event)
    account = await loyalty(env, tenant, customer)
    assert account["balance"] == 600
    assert [
        (e["kind"], e["points"], e["actor"], e["reason"]) for e in account["ledger"]["nodes"]
    ] == [("EARN", 300, winback.ACTOR, "Win-back offer (winback_offer)")] * 2


async def test_an_erased_customer_gets_no_offer(env: Env) -> None:
    tenant = await env.tenant("loyalty")
    customer = (await env.create_customer(tenant, givenName="Eve"))["id"]
    erased = await env.gql(
        "mutation($id: UUID!) { eraseCustomer(id: $id) { erasedAt } }",
        {"id": customer},
        tenant=tenant,
    )
    assert "errors" not in erased, erased
    offer = churn_request(tenant, customer, "winback_offer", crmkit.uuid7())
    await env.deliver(tenant, "loyalty", offer)  # no failure, and nothing written
    async with env.platform.db.tenant_session(tenant) as session:
        assert list(await session.scalars(select(LedgerEntry))) == []
