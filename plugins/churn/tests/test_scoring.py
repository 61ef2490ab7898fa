"""The default rules on the seeded fixture of 10,000 customers with a known declining
set: precision and recall (printed: run with ``-s``), reasons on every alert, no
duplicates on a second run, retained when activity returns, the other plugins' signals
changing only the customers they concern, and a scoring run's statement count that
does not grow with the customers."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import crmkit
import pytest
import pytest_asyncio
from churn_helpers import ok, populate, run_scoring
from crmkit.testing import Env, FrozenClock, StatementCounter
from sqlalchemy import func, select

from crmkit_churn import fixture, service
from crmkit_churn.models import ChurnAlert, Outcome
from crmkit_churn.settings import ChurnSettings

CUSTOMERS = 10_000
DECLINING = 500
# The figures do not depend on the backend, and 10,000 customers created through the
# core cost a minute: these tests run on PostgreSQL, as production does.
pytestmark = pytest.mark.postgres_only


@dataclass
class Population:
    tenant: uuid.UUID
    ids: list[uuid.UUID]
    profiles: list[fixture.Profile]

    @property
    def declining(self) -> set[uuid.UUID]:
        return {i for i, p in zip(self.ids, self.profiles, strict=True) if p.declining}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def core_only(env: Env) -> AsyncIterator[Population]:
    """The fixture in a tenant that runs churn and nothing else (until the last test
    enables cases and surveys)."""
    tenant = await env.tenant("churn")
    ids, profiles = await populate(env, tenant, CUSTOMERS, DECLINING)
    yield Population(tenant, ids, profiles)


async def alerts(env: Env, tenant: uuid.UUID) -> list[ChurnAlert]:
    async with env.platform.db.tenant_session(tenant) as session:
        return list(await session.scalars(select(ChurnAlert).order_by(ChurnAlert.id)))


async def test_the_default_rules_flag_the_declining_customers_with_their_reasons(
    env: Env, clock: FrozenClock, core_only: Population
) -> None:
    await run_scoring(env, core_only.tenant)
    opened = await alerts(env, core_only.tenant)
    flagged = {alert.customer_id for alert in opened}
    declining = core_only.declining
    hits = len(flagged & declining)
    precision, recall = hits / len(flagged), hits / len(declining)
    print(
        f"\n[{env.backend}] {CUSTOMERS} customers, {len(declining)} declining: "
        f"{len(flagged)} flagged, precision {precision:.3f}, recall {recall:.3f}"
    )
    assert precision >= 0.8 and recall >= 0.75, (precision, recall)
    settings = ChurnSettings()
    manager = {i: f"user:rm{n % 10}" for n, i in enumerate(core_only.ids)}
    for alert in opened:
        assert alert.score >= settings.alert_threshold and alert.reasons
        assert abs(sum(r["contribution"] for r in alert.reasons) - alert.score) <= 1
        assert alert.assigned_to == manager[alert.customer_id]
        assert "sla_breaches" not in alert.features_used  # cases is not enabled here
    events = await env.events(core_only.tenant, "churn_alert_opened")
    assert len(events) == len(opened)

    # the relationship manager sees why, and the customer is at risk
    query = """query($id: UUID!) { customer(id: $id) { lifecycleStage
      churn { score band reasons { feature value contribution } alert { id assignedTo } } } }"""
    sample = opened[0]
    shown = ok(await env.gql(query, {"id": str(sample.customer_id)}, tenant=core_only.tenant))
    customer = shown["customer"]
    assert customer["lifecycleStage"] == "AT_RISK"
    assert customer["churn"]["alert"] == {"id": str(sample.id), "assignedTo": sample.assigned_to}
    assert customer["churn"]["score"] == sample.score
    assert [r["feature"] for r in customer["churn"]["reasons"]] == [
        r["feature"] for r in sample.reasons
    ]
    print(f"[{env.backend}] reasons of one alert: {customer['churn']['reasons']}")


async def test_a_second_run_opens_no_duplicate_and_returning_activity_closes_as_retained(
    env: Env, clock: FrozenClock, core_only: Population
) -> None:
    tenant = core_only.tenant
    await run_scoring(env, tenant)
    before = await alerts(env, tenant)
    events = len(await env.events(tenant, "churn_alert_opened"))
    await run_scoring(env, tenant)  # the same instant: nothing to do
    assert [(a.id, a.status) for a in await alerts(env, tenant)] == [
        (a.id, a.status) for a in before
    ]
    assert len(await env.events(tenant, "churn_alert_opened")) == events

    comeback = next(a for a in before if a.resolved_at is None)
    clock.advance(days=1)
    async with env.platform.tenant_scope(tenant) as scope:
        for index in range(25):  # back to more than ever: transactions and logins
            for kind in (crmkit.ActivityKind.TRANSACTION, crmkit.ActivityKind.LOGIN):
                await crmkit.record_activity(
                    scope.ctx,
                    customer_id=comeback.customer_id,
                    kind=kind,
                    channel=crmkit.Channel.APP,
                    occurred_at=crmkit.utcnow() - timedelta(hours=index),
                    amount="900" if kind is crmkit.ActivityKind.TRANSACTION else None,
                    currency="EUR" if kind is crmkit.ActivityKind.TRANSACTION else None,
                )
    await run_scoring(env, tenant)
    after = {a.id: a for a in await alerts(env, tenant)}
    closed = after[comeback.id]
    assert (closed.outcome, closed.resolved_by) == (Outcome.RETAINED, service.SYSTEM)
    resolved = [e.data for e in await env.events(tenant, "churn_alert_resolved")]
    assert {"customer_id": str(comeback.customer_id), "outcome": "retained"}.items() <= next(
        d for d in resolved if d["customer_id"] == str(comeback.customer_id)
    ).items()
    stage = ok(
        await env.gql(
            "query($id: UUID!) { customer(id: $id) { lifecycleStage } }",
            {"id": str(comeback.customer_id)},
            tenant=tenant,
        )
    )
    assert stage["customer"]["lifecycleStage"] == "ACTIVE"


def _event(tenant: uuid.UUID, type: str, customer: uuid.UUID, **data: object) -> crmkit.DomainEvent:
    return crmkit.DomainEvent(
        id=crmkit.uuid7(),
        type=type,
        tenant_id=tenant,
        subject_type="Case" if type.startswith("cases_") else "SurveyResponse",
        subject_id=str(crmkit.uuid7()),
        data={"customer_id": str(customer), **data},
        occurred_at=crmkit.utcnow(),
    )


async def scores(env: Env, tenant: uuid.UUID) -> dict[uuid.UUID, tuple[int, list[str]]]:
    async with env.platform.tenant_scope(tenant) as scope:
        found = await service.current_scores(scope.hooks.context_for("churn"))
    return {i: (s.score, [r.feature for r in s.reasons]) for i, s in found.items()}


async def steady_run_statements(
    env: Env, tenant: uuid.UUID, sql_statements: StatementCounter
) -> int:
    """Statements of a scoring run with nothing left to change (the second at an instant)."""
    await run_scoring(env, tenant)
    sql_statements.clear()
    await run_scoring(env, tenant)
    return sql_statements.count


async def test_a_scoring_run_costs_the_same_statements_for_1000_and_10000_customers(
    env: Env, clock: FrozenClock, core_only: Population, sql_statements: StatementCounter
) -> None:
    small = await env.tenant("churn")
    await populate(env, small, 1_000, 50)
    counts = {
        1_000: await steady_run_statements(env, small, sql_statements),
        CUSTOMERS: await steady_run_statements(env, core_only.tenant, sql_statements),
    }
    print(f"\n[{env.backend}] statements of a scoring run: {counts}")
    # the tenant's set-up, the scores (one statement) and the unresolved alerts
    assert counts == {1_000: 3, CUSTOMERS: 3}, counts
    async with env.platform.db.tenant_session(small) as session:
        assert await session.scalar(select(func.count()).select_from(ChurnAlert))


async def test_cases_and_surveys_signals_change_only_the_customers_they_concern(
    env: Env, clock: FrozenClock, core_only: Population
) -> None:
    """The same fixture scored with the core alone, then with cases and surveys enabled
    and reporting SLA breaches and detractor answers for some customers."""
    tenant = core_only.tenant
    before = await scores(env, tenant)
    for plugin in ("cases", "surveys"):
        await env.enable(tenant, plugin)
    assert await scores(env, tenant) == before  # enabled, but nothing to say yet
    below = [n for n, i in enumerate(core_only.ids) if before[i][0] < 80]
    breached, detractors = below[:60], below[40:100]  # 20 customers get both
    for n in breached:
        breach = _event(
            tenant, "cases_sla_breached", core_only.ids[n], kind="complaint", target="resolution"
        )
        await env.deliver(tenant, "churn", breach)
    for n in detractors:
        answer = _event(
            tenant, "surveys_response_recorded", core_only.ids[n], nps=2, csat=None, ces=None
        )
        await env.deliver(tenant, "churn", answer)
        await env.deliver(tenant, "churn", answer)  # redelivered: counted once
    after = await scores(env, tenant)

    concerned = set(breached) | set(detractors)
    for n, customer in enumerate(core_only.ids):
        (core_score, core_reasons), (score, reasons) = before[customer], after[customer]
        if n not in concerned:
            assert (score, reasons) == (core_score, core_reasons), n
            continue
        assert score > core_score, (n, core_score, score)
        expected = {"sla_breaches"} if n in breached else set()
        expected |= {"latest_nps"} if n in detractors else set()
        assert set(reasons) - set(core_reasons) == expected, n
    both = core_only.ids[breached[-1]]
    print(
        f"\n[{env.backend}] {len(concerned)} of {CUSTOMERS} customers with signals, "
        f"the others unchanged; one with both: {before[both]} -> {after[both]}"
    )
