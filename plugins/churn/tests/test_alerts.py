"""An alert's life through GraphQL: opened by the score, acknowledged, actioned with a
playbook step, resolved with an outcome; refusals that change nothing; churn past the
horizon, win-back, metrics; scopes, filters and pagination; Customer.churn batched."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import crmkit
from churn_helpers import ok, run_scoring
from crmkit.testing import Env, FrozenClock, StatementCounter

ALERTS = """query($filter: ChurnAlertFilter, $first: Int, $after: String) {
  churnAlerts(filter: $filter, first: $first, after: $after) {
    nodes { id customerId status band score outcome actionStep assignedTo
            reasons { feature value contribution } }
    pageInfo { hasNextPage endCursor } } }"""
ACK = "mutation($id: UUID!) { acknowledgeChurnAlert(id: $id) { status acknowledgedBy } }"
ACT = """mutation($id: UUID!, $step: String!) {
  actOnChurnAlert(id: $id, step: $step) { status actionStep } }"""
RESOLVE = """mutation($id: UUID!, $outcome: ChurnOutcome!, $note: String) {
  resolveChurnAlert(id: $id, outcome: $outcome, note: $note) { status outcome resolvedBy } }"""
METRICS = """query($since: DateTime!, $until: DateTime!, $tag: String) {
  churnMetrics(since: $since, until: $until, tag: $tag) {
    customers churned churnRate alertsOpened retained lost falseAlarms
    byStep { step resolved retained retentionRate } } }"""
STAGE = "query($id: UUID!) { customer(id: $id) { lifecycleStage } }"


async def history(
    env: Env, tenant: uuid.UUID, customer: str, *, days_ago: range, kind: str = "transaction"
) -> None:
    """One activity a day ``days_ago`` before now (transactions of 100 EUR)."""
    async with env.platform.tenant_scope(tenant) as scope:
        for days in days_ago:
            transaction = kind == "transaction"
            await crmkit.record_activity(
                scope.ctx,
                customer_id=uuid.UUID(customer),
                kind=crmkit.ActivityKind(kind),
                channel=crmkit.Channel.APP,
                occurred_at=crmkit.utcnow() - timedelta(days=days),
                amount="100" if transaction else None,
                currency="EUR" if transaction else None,
            )
    await env.drain()


async def declining(env: Env, tenant: uuid.UUID, **fields: Any) -> str:
    """A customer who transacted every 10 days 100-170 days ago and then stopped."""
    customer = await env.create_customer(tenant, givenName="Dora", **fields)
    await history(env, tenant, customer["id"], days_ago=range(100, 171, 10))
    return str(customer["id"])


async def steady(env: Env, tenant: uuid.UUID, name: str = "Sam", **fields: Any) -> str:
    customer = await env.create_customer(tenant, givenName=name, **fields)
    await history(env, tenant, customer["id"], days_ago=range(1, 171, 7))
    return str(customer["id"])


async def the_alert(env: Env, tenant: uuid.UUID, customer: str) -> dict[str, Any]:
    filter = {"customerId": customer}
    nodes = ok(await env.gql(ALERTS, {"filter": filter}, tenant=tenant))["churnAlerts"]["nodes"]
    assert len(nodes) == 1, nodes
    alert: dict[str, Any] = nodes[0]
    return alert


async def stage(env: Env, tenant: uuid.UUID, customer: str) -> str:
    found: str = ok(await env.gql(STAGE, {"id": customer}, tenant=tenant))["customer"][
        "lifecycleStage"
    ]
    return found


async def test_an_alert_is_acknowledged_actioned_and_resolved(env: Env, clock: FrozenClock) -> None:
    tenant = await env.tenant("churn")
    dora = await declining(env, tenant, relationshipManager="user:maria")
    sam = await steady(env, tenant)
    await run_scoring(env, tenant)

    alert = await the_alert(env, tenant, dora)
    assert (alert["status"], alert["band"], alert["assignedTo"]) == ("OPEN", "HIGH", "user:maria")
    assert {r["feature"] for r in alert["reasons"]} == {
        "days_inactive",
        "transaction_drop",
        "amount_drop",
    }
    assert not ok(await env.gql(ALERTS, {"filter": {"customerId": sam}}, tenant=tenant))[
        "churnAlerts"
    ]["nodes"]
    assert (await stage(env, tenant, dora), await stage(env, tenant, sam)) == ("AT_RISK", "NEW")

    acked = ok(await env.gql(ACK, {"id": alert["id"]}, tenant=tenant))["acknowledgeChurnAlert"]
    assert acked == {"status": "ACKNOWLEDGED", "acknowledgedBy": "user:test"}
    acted = ok(await env.gql(ACT, {"id": alert["id"], "step": "call"}, tenant=tenant))
    assert acted["actOnChurnAlert"] == {"status": "ACTIONED", "actionStep": "call"}

    # a step whose plugin is not enabled, and an unknown step, are refused: nothing changes
    for step in ("message", "winback_offer", "case", "fax"):
        refused = await env.gql(ACT, {"id": alert["id"], "step": step}, tenant=tenant)
        error = refused["errors"][0]["extensions"]
        assert (error["code"], error["field"]) == ("BAD_USER_INPUT", "step"), step
    too_long = {"id": alert["id"], "outcome": "RETAINED", "note": "x" * 2001}
    refused = await env.gql(RESOLVE, too_long, tenant=tenant)
    assert refused["errors"][0]["extensions"]["field"] == "note"
    unchanged = await the_alert(env, tenant, dora)
    assert (unchanged["status"], unchanged["actionStep"], unchanged["outcome"]) == (
        "ACTIONED",
        "call",
        None,
    )

    variables = {"id": alert["id"], "outcome": "RETAINED", "note": "Moved her savings back."}
    resolved = ok(await env.gql(RESOLVE, variables, tenant=tenant))["resolveChurnAlert"]
    assert resolved == {"status": "RESOLVED", "outcome": "RETAINED", "resolvedBy": "user:test"}
    assert await stage(env, tenant, dora) == "ACTIVE"
    again = await env.gql(RESOLVE, variables, tenant=tenant)
    assert again["errors"][0]["extensions"]["code"] == "CONFLICT"
    [event] = await env.events(tenant, "churn_alert_resolved")
    assert event.data["outcome"] == "retained" and event.data["action_step"] == "call"
    assert "Moved" not in repr(event.data)  # the note never travels in an event

    window = {
        "since": (crmkit.utcnow() - timedelta(days=1)).isoformat(),
        "until": (crmkit.utcnow() + timedelta(days=1)).isoformat(),
    }
    figures = ok(await env.gql(METRICS, window, tenant=tenant))["churnMetrics"]
    assert figures["alertsOpened"] == 1 and figures["retained"] == 1 and figures["lost"] == 0
    assert figures["byStep"] == [
        {"step": "call", "resolved": 1, "retained": 1, "retentionRate": 1.0}
    ]


async def test_a_message_step_asks_channels_only_where_it_runs(
    env: Env, clock: FrozenClock
) -> None:
    tenant = await env.tenant("churn", "channels")
    dora = await declining(env, tenant)
    await run_scoring(env, tenant)
    alert = await the_alert(env, tenant, dora)
    ok(await env.gql(ACT, {"id": alert["id"], "step": "message"}, tenant=tenant))
    [request] = await env.events(tenant, "channels_send_requested")
    assert request.data["customer_id"] == dora and request.data["requested_by"] == "churn"
    assert request.data["idempotency_key"] == f"churn:retention:{alert['id']}:message"
    assert request.data["purpose"] == "marketing"


async def test_no_activity_past_the_horizon_is_churn_and_activity_after_it_a_win_back(
    env: Env, clock: FrozenClock
) -> None:
    tenant = await env.tenant("churn", churn={"horizon_days": 60})
    dora = await declining(env, tenant, tags=["premium"])  # quiet for 100 days
    other = await declining(env, tenant)
    window = {
        "since": (crmkit.utcnow() + timedelta(hours=12)).isoformat(),
        "until": (crmkit.utcnow() + timedelta(days=2)).isoformat(),
    }
    clock.advance(days=1)  # both customers existed when the period began
    await run_scoring(env, tenant)
    assert await stage(env, tenant, dora) == "CHURNED"
    assert not ok(await env.gql(ALERTS, tenant=tenant))["churnAlerts"]["nodes"]

    figures = ok(await env.gql(METRICS, window, tenant=tenant))["churnMetrics"]
    assert (figures["customers"], figures["churned"], figures["churnRate"]) == (2, 2, 1.0)
    premium = ok(await env.gql(METRICS, {**window, "tag": "premium"}, tenant=tenant))
    assert premium["churnMetrics"]["customers"] == 1
    assert premium["churnMetrics"]["churned"] == 1

    churned = "{ customers(filter: {stage: CHURNED}) { nodes { id } } }"  # a win-back's target
    targets = ok(await env.gql(churned, tenant=tenant))["customers"]["nodes"]
    assert sorted(n["id"] for n in targets) == sorted([dora, other])

    await history(env, tenant, dora, days_ago=range(0, 1))
    await run_scoring(env, tenant)
    assert await stage(env, tenant, dora) == "ACTIVE"
    assert await stage(env, tenant, other) == "CHURNED"


async def test_each_field_needs_its_scope(env: Env, clock: FrozenClock) -> None:
    tenant = await env.tenant("churn")
    dora = await declining(env, tenant)
    await run_scoring(env, tenant)
    alert = await the_alert(env, tenant, dora)
    reader = env.token(tenant, ["churn:read", "customers:read"])
    denied = await env.gql(ACK, {"id": alert["id"]}, token=reader)
    assert denied["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    run = await env.gql("mutation { runChurnScoring { scored } }", token=reader)
    assert run["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    blind = env.token(tenant, ["customers:read"])
    assert (await env.gql(ALERTS, token=blind))["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    rules = ok(
        await env.gql(
            """{ churnRules { alertThreshold rules { feature source active }
                 playbook { key available } } }""",
            token=reader,
        )
    )["churnRules"]
    assert rules["alertThreshold"] == 50
    active = {r["feature"]: r["active"] for r in rules["rules"]}
    assert active["days_inactive"] and not active["sla_breaches"] and not active["latest_nps"]
    assert {s["key"]: s["available"] for s in rules["playbook"]} == {
        "call": True,
        "winback_offer": False,
        "message": False,
        "case": False,
    }


async def test_alerts_filter_and_page_by_keyset(env: Env, clock: FrozenClock) -> None:
    tenant = await env.tenant("churn")
    customers = [await declining(env, tenant) for _ in range(5)]
    await steady(env, tenant)
    await run_scoring(env, tenant)
    seen, after = [], None
    while True:
        page = ok(await env.gql(ALERTS, {"first": 2, "after": after}, tenant=tenant))["churnAlerts"]
        seen += [node["customerId"] for node in page["nodes"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert sorted(seen) == sorted(customers) and len(seen) == 5
    first = (await the_alert(env, tenant, customers[0]))["id"]
    ok(await env.gql(ACK, {"id": first}, tenant=tenant))
    acked = {"filter": {"status": "ACKNOWLEDGED"}}
    nodes = ok(await env.gql(ALERTS, acked, tenant=tenant))["churnAlerts"]["nodes"]
    assert [n["id"] for n in nodes] == [first]
    high = ok(
        await env.gql(ALERTS, {"filter": {"band": "HIGH", "unresolved": True}}, tenant=tenant)
    )
    assert len(high["churnAlerts"]["nodes"]) == 5
    bad = await env.gql(ALERTS, {"after": "not-a-cursor"}, tenant=tenant)
    assert bad["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_customer_churn_of_a_page_costs_the_same_statements_for_5_and_50(
    env: Env, clock: FrozenClock, sql_statements: StatementCounter
) -> None:
    page = """{ customers(first: 50) { nodes { id
      churn { score band featuresUsed reasons { feature contribution } alert { id } } } } }"""
    counts = {}
    for size in (5, 50):
        tenant = await env.tenant("churn")
        async with env.platform.tenant_scope(tenant) as scope:
            for index in range(size):
                customer = await crmkit.create_customer(
                    scope.ctx, kind=crmkit.CustomerKind.PERSON, given_name=f"P{index}"
                )
                for days in (5, 50, 120):
                    await crmkit.record_activity(
                        scope.ctx,
                        customer_id=customer.id,
                        kind=crmkit.ActivityKind.TRANSACTION,
                        channel=crmkit.Channel.APP,
                        occurred_at=crmkit.utcnow() - timedelta(days=days),
                        amount="10",
                        currency="EUR",
                    )
        await env.drain()
        await run_scoring(env, tenant)
        token = env.token(tenant)
        await env.gql(page, token=token)  # warm-up
        sql_statements.clear()
        nodes = ok(await env.gql(page, token=token))["customers"]["nodes"]
        assert len(nodes) == size and all(node["churn"]["featuresUsed"] for node in nodes)
        counts[size] = sql_statements.count
    assert counts[5] == counts[50], counts
