"""The five first-party plugins together, as the demo tenant runs them: a customers page
selecting every field every plugin adds to ``Customer`` costs the same SQL statements
for 5 customers and for 50 (each plugin batches its fields through data loaders)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import select

import crmkit
from crmkit.demo import customer_selection
from crmkit.platform.registry import PluginRegistry
from crmkit.plugins.models import HandlerFailure
from crmkit.tenants.users import Role, role_scopes
from crmkit.testing import Env, FrozenClock, StatementCounter

FIRST_PARTY = ("loyalty", "surveys", "channels", "cases", "churn")


async def page_statements(
    env: Env, tenant: uuid.UUID, selection: str, sql: StatementCounter, size: int
) -> int:
    query = "query($n: Int) { customers(first: $n) { nodes { id " + selection + " } } }"
    sql.clear()
    body = await env.gql(query, {"n": size}, tenant=tenant)
    assert "errors" not in body, body["errors"]
    assert len(body["data"]["customers"]["nodes"]) == size
    return sql.count


async def test_every_plugin_field_of_a_customers_page_is_batched(
    env: Env, sql_statements: StatementCounter
) -> None:
    installed = set(env.platform.registry.names)
    assert set(FIRST_PARTY) <= installed, f"first-party plugins not installed: {set(FIRST_PARTY) - installed}"
    tenant = await env.tenant(*FIRST_PARTY)
    selection = customer_selection(env.platform, frozenset(FIRST_PARTY))
    for plugin in FIRST_PARTY:  # each plugin's Customer field is in the page
        assert any(field in selection for field in (plugin, "messages")), (plugin, selection)
    ids = [(await env.create_customer(tenant, givenName=f"P{i}"))["id"] for i in range(50)]
    await env.drain()
    async with env.platform.tenant_scope(tenant) as scope:  # each plugin's sample data
        for plugin in FIRST_PARTY:
            await scope.hooks.call_plugin(plugin, "seed_demo", customer_ids=[uuid.UUID(i) for i in ids])
    await env.drain()
    five = await page_statements(env, tenant, selection, sql_statements, 5)
    fifty = await page_statements(env, tenant, selection, sql_statements, 50)
    assert five == fifty, (five, fifty)


SURVEY = {
    "title": {"en": "After your case"},
    "locales": ["en"],
    "questions": [{"key": "csat", "type": "csat", "required": True, "text": {"en": "How did we do?"}}],
}
CASE_FIELDS = "id status version"


async def ok(env: Env, tenant: uuid.UUID, query: str, variables: dict[str, object]) -> dict[str, Any]:
    body = await env.gql(query, variables, tenant=tenant)
    assert "errors" not in body, body["errors"]
    data: dict[str, Any] = body["data"]
    return data


async def test_a_case_closed_through_cases_invites_to_a_csat_survey_through_surveys(env: Env) -> None:
    """The plugins meet only through events: cases emits ``cases_closed``; surveys,
    where the tenant runs it, invites the customer; without surveys nothing fails."""
    triggers = {"fatigue_days": 0, "triggers": [{"on": "case_closed", "survey": "after-case"}]}
    both, cases_only = await env.tenant("cases", "surveys", surveys=triggers), await env.tenant("cases")
    created = await ok(
        env,
        both,
        'mutation($d: JSON!) { createSurvey(key: "after-case", definition: $d) { id } }',
        {"d": SURVEY},
    )
    await ok(
        env,
        both,
        "mutation($id: UUID!) { publishSurvey(id: $id) { id } }",
        {"id": created["createSurvey"]["id"]},
    )
    for tenant in (both, cases_only):
        customer = (await env.create_customer(tenant, givenName="Ann"))["id"]
        consent = {
            "customerId": customer,
            "purpose": "surveys_feedback" if tenant == both else "service_notices",
            "channel": "EMAIL",
            "state": "GRANTED",
            "source": "WEB",
            "policyVersion": "v1",
            "legalBasis": "CONSENT",
        }
        await ok(
            env,
            tenant,
            "mutation($i: RecordConsentInput!) { recordConsent(input: $i) { id } }",
            {"i": consent},
        )
        opened = {"customerId": customer, "kind": "COMPLAINT", "channel": "PHONE", "subject": "Fee"}
        case = (
            await ok(
                env,
                tenant,
                f"mutation($i: OpenCaseInput!) {{ openCase(input: $i) {{ {CASE_FIELDS} }} }}",
                {"i": opened},
            )
        )["openCase"]
        change = f"mutation($i: ChangeCaseStatusInput!) {{ changeCaseStatus(input: $i) {{ {CASE_FIELDS} }} }}"
        for status, extra in (
            ("IN_PROGRESS", {}),
            ("RESOLVED", {"resolution": "Refunded.", "resolutionCode": "refunded"}),
            ("CLOSED", {}),
        ):
            step = {"id": case["id"], "expectedVersion": case["version"], "status": status, **extra}
            case = (await ok(env, tenant, change, {"i": step}))["changeCaseStatus"]
        assert case["status"] == "CLOSED"
        await env.drain()
        if tenant == both:
            invited = await ok(
                env,
                tenant,
                "query($c: UUID!) { surveyInvitations(customerId: $c) { nodes { trigger } } }",
                {"c": customer},
            )
            assert [n["trigger"] for n in invited["surveyInvitations"]["nodes"]] == ["case_closed"]
    for tenant in (both, cases_only):  # no plugin's handler failed on the way
        async with env.platform.db.tenant_session(tenant) as session:
            assert list(await session.scalars(select(HandlerFailure))) == []


ACT = """mutation($id: UUID!, $step: String!) {
  actOnChurnAlert(id: $id, step: $step) { status actionStep } }"""
RETENTION = """query($id: UUID!) { customer(id: $id) { lifecycleStage loyalty { balance }
  cases { nodes { kind priority status subject } } } }"""


async def declining_customer(env: Env, tenant: uuid.UUID) -> str:
    """A customer who transacted every ten days 100 to 170 days ago, then stopped."""
    customer = (await env.create_customer(tenant, givenName="Dora"))["id"]
    async with env.platform.tenant_scope(tenant) as scope:
        for days in range(100, 171, 10):
            await crmkit.record_activity(
                scope.ctx,
                customer_id=uuid.UUID(customer),
                kind=crmkit.ActivityKind.TRANSACTION,
                channel=crmkit.Channel.APP,
                occurred_at=crmkit.utcnow() - timedelta(days=days),
                amount="100",
                currency="EUR",
            )
    await env.drain()
    return str(customer)


async def churn_alert_of(env: Env, tenant: uuid.UUID, customer: str) -> str:
    await env.queue.enqueue("churn.score_customers", tenant_id=tenant, payload={})
    await env.drain()
    query = "query($c: UUID!) { churnAlerts(filter: {customerId: $c}) { nodes { id } } }"
    [alert] = (await ok(env, tenant, query, {"c": customer}))["churnAlerts"]["nodes"]
    return str(alert["id"])


async def test_a_churn_alerts_win_back_offer_and_case_are_carried_out_by_loyalty_and_cases(
    env: Env, clock: FrozenClock
) -> None:
    """churn's playbook asks with ``churn_action_requested``; loyalty grants the win-back
    points of its settings and cases opens a retention case, each once per alert however
    often it is asked or delivered; a tenant without them is refused the steps."""
    tenant = await env.tenant("churn", "loyalty", "cases", loyalty={"winback_points": 750})
    customer = await declining_customer(env, tenant)
    alert = await churn_alert_of(env, tenant, customer)
    earned = (await ok(env, tenant, RETENTION, {"id": customer}))["customer"]["loyalty"]["balance"]
    for step in ("winback_offer", "case", "winback_offer", "case"):  # asked twice each
        acted = await ok(env, tenant, ACT, {"id": alert, "step": step})
        assert acted["actOnChurnAlert"] == {"status": "ACTIONED", "actionStep": step}
        await env.drain()
    requested = await env.events(tenant, "churn_action_requested")
    assert sorted((str(e.subject_id), e.data["kind"]) for e in requested) == [  # one instant
        (alert, "case"),
        (alert, "case"),
        (alert, "winback_offer"),
        (alert, "winback_offer"),
    ]
    for event in requested:  # and every delivery repeated
        for plugin in ("loyalty", "cases"):
            await env.deliver(tenant, plugin, event)
    shown = (await ok(env, tenant, RETENTION, {"id": customer}))["customer"]
    assert shown["loyalty"]["balance"] == earned + 750  # besides the transactions' points
    assert shown["cases"]["nodes"] == [
        {
            "kind": "REQUEST",
            "priority": "HIGH",
            "status": "NEW",
            "subject": "Retention: customer at risk of leaving",
        }
    ]
    async with env.platform.db.tenant_session(tenant) as session:
        assert list(await session.scalars(select(HandlerFailure))) == []

    churn_only = await env.tenant("churn")
    alone = await churn_alert_of(env, churn_only, await declining_customer(env, churn_only))
    for step, plugin in (("winback_offer", "loyalty"), ("case", "cases")):
        body = await env.gql(ACT, {"id": alone, "step": step}, tenant=churn_only)
        [error] = body["errors"]
        assert error["extensions"]["code"] == "BAD_USER_INPUT", error
        assert f"needs the {plugin} plugin" in error["message"], error
    assert await env.events(churn_only, "churn_action_requested") == []


def test_staff_roles_hold_the_plugins_scopes_their_work_needs(plugin_registry: PluginRegistry) -> None:
    """The grants the plugins declare: relationship managers read and earn loyalty
    points, only admins adjust them; service agents work cases, managers see the
    monitoring only as tenant admins."""
    core = plugin_registry.scopes(())
    available = plugin_registry.scopes(FIRST_PARTY)
    held = {role: role_scopes(role, available, core) for role in Role}
    assert {"loyalty:read", "loyalty:write"} <= held[Role.RELATIONSHIP_MANAGER]
    assert "loyalty:admin" not in held[Role.RELATIONSHIP_MANAGER]
    assert "loyalty:admin" in held[Role.TENANT_ADMIN]
    assert {"cases:read", "cases:write"} <= held[Role.SERVICE_AGENT]
    assert (
        "cases:read" in held[Role.RELATIONSHIP_MANAGER]
        and "cases:write" not in held[Role.RELATIONSHIP_MANAGER]
    )
    assert "cases:manage" not in held[Role.SERVICE_AGENT] and "cases:manage" in held[Role.TENANT_ADMIN]
    assert held[Role.TENANT_ADMIN] >= set(available)
