"""The churn plugin's retention case, as cases handles it: one high-priority request per
alert however often it is delivered; other churn steps open none."""

from __future__ import annotations

import uuid

import crmkit
from cases_helpers import ok
from crmkit.testing import Env

from crmkit_cases import retention

CASES = """query($id: UUID!) { customer(id: $id) { cases {
  nodes { id kind priority status channel subject } } } }"""


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


async def test_a_retention_case_opens_once_per_alert(env: Env) -> None:
    tenant = await env.tenant("cases")
    customer = (await env.create_customer(tenant, givenName="Rita"))["id"]
    first, second = crmkit.uuid7(), crmkit.uuid7()
    for event in (
        churn_request(tenant, customer, "case", first),
        churn_request(tenant, customer, "case", first),  # delivered again
        churn_request(tenant, customer, "winback_offer", first),  # for loyalty, not cases
        churn_request(tenant, customer, "case", second),  # another alert
    ):
        await env.deliver(tenant, "cases", event)
    nodes = ok(await env.gql(CASES, {"id": customer}, tenant=tenant))["customer"]["cases"]["nodes"]
    assert sorted(n["id"] for n in nodes) == sorted(
        str(retention.case_id_for(str(alert))) for alert in (first, second)
    )
    assert {(n["kind"], n["priority"], n["status"], n["channel"], n["subject"]) for n in nodes} == {
        ("REQUEST", "HIGH", "NEW", "OTHER", retention.SUBJECT)
    }
    opened = await env.events(tenant, "cases_opened")
    assert len(opened) == 2
