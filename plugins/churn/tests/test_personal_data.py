"""A resolution note is personal data: encrypted at rest, masked without pii:contact,
in the customer's export; erasure leaves nothing of the customer in the churn tables."""

from __future__ import annotations

import uuid

from churn_helpers import ok, run_scoring
from crmkit.testing import Env, FrozenClock
from sqlalchemy import Uuid, bindparam, text
from test_alerts import ALERTS, RESOLVE, declining

NOTE = "Zweistein is moving to a rival bank for its mortgage"
ALERT_NOTE = "query($id: UUID!) { churnAlert(id: $id) { id note } }"


async def raw(env: Env, table: str, tenant: uuid.UUID) -> str:
    """The tenant's rows of ``table`` as a stolen backup shows them (the owner)."""
    query = text(f"SELECT * FROM {table} WHERE tenant_id = :tenant")
    async with env.owner_engine.begin() as conn:
        if env.backend == "postgresql":
            await conn.execute(
                text("SELECT set_config('crmkit.tenant_id', :t, true)"), {"t": str(tenant)}
            )
        rows = (await conn.execute(query.bindparams(bindparam("tenant", tenant, Uuid)))).all()
    return repr(rows).replace("-", "")


async def resolved_with_note(env: Env, tenant: uuid.UUID) -> tuple[str, str]:
    customer = await declining(env, tenant)
    await run_scoring(env, tenant)
    [alert] = ok(await env.gql(ALERTS, tenant=tenant))["churnAlerts"]["nodes"]
    variables = {"id": alert["id"], "outcome": "LOST", "note": NOTE}
    ok(await env.gql(RESOLVE, variables, tenant=tenant))
    return customer, alert["id"]


async def test_the_note_is_encrypted_masked_and_exported(env: Env, clock: FrozenClock) -> None:
    tenant = await env.tenant("churn")
    customer, alert = await resolved_with_note(env, tenant)
    assert "Zweistein" not in await raw(env, "churn_alerts", tenant)

    masked = env.token(tenant, ["churn:read"])
    shown = ok(await env.gql(ALERT_NOTE, {"id": alert}, token=masked))["churnAlert"]
    assert shown["note"] == "***"
    clear = env.token(tenant, ["churn:read", "pii:contact"])
    assert ok(await env.gql(ALERT_NOTE, {"id": alert}, token=clear))["churnAlert"]["note"] == NOTE

    exported = ok(
        await env.gql(
            "query($id: UUID!) { exportCustomerData(id: $id) }", {"id": customer}, tenant=tenant
        )
    )["exportCustomerData"]["plugins"]["churn"]
    assert [a["note"] for a in exported["alerts"]] == [NOTE]
    assert exported["alerts"][0]["outcome"] == "lost"


async def test_erasure_leaves_no_trace_in_the_churn_tables(env: Env, clock: FrozenClock) -> None:
    tenant = await env.tenant("churn")
    customer, _ = await resolved_with_note(env, tenant)
    consent = """mutation($id: UUID!) { recordConsent(input: {customerId: $id,
      purpose: "marketing", channel: EMAIL, state: WITHDRAWN, source: WEB,
      policyVersion: "2025-01", legalBasis: CONSENT}) { state } }"""
    ok(await env.gql(consent, {"id": customer}, tenant=tenant))
    await env.drain()
    key = customer.replace("-", "")
    assert key in await raw(env, "churn_alerts", tenant)
    assert key in await raw(env, "churn_signals", tenant)  # the opt-out, as a signal

    erased = await env.gql(
        "mutation($id: UUID!) { eraseCustomer(id: $id) { erasedAt } }",
        {"id": customer},
        tenant=tenant,
    )
    assert ok(erased)["eraseCustomer"]["erasedAt"]
    await env.drain()
    for table in ("churn_alerts", "churn_signals"):
        stored = await raw(env, table, tenant)
        assert key not in stored and "Zweistein" not in stored, table


async def test_the_demo_seeds_its_alerts_once(env: Env) -> None:
    tenant = await env.tenant("churn")
    ids = [uuid.UUID((await env.create_customer(tenant, givenName=n))["id"]) for n in "ABC"]
    for _ in range(2):  # the demo enables a plugin again on every run
        async with env.platform.tenant_scope(tenant) as scope:
            await scope.hooks.call_plugin("churn", "seed_demo", customer_ids=ids)
    await env.drain()
    nodes = ok(await env.gql(ALERTS, tenant=tenant))["churnAlerts"]["nodes"]
    assert sorted(n["customerId"] for n in nodes) == sorted(str(i) for i in ids[:2])
    assert all(n["reasons"] for n in nodes)
