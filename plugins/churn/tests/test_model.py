"""The optional logistic-regression model on a seeded labelled history: fitted once the
history has enough churned customers, its AUC, coefficients, held-out precision and
recall shown in GraphQL; scores are its probability (computed by the database) while
the tenant uses it, and the rules stay the reasons. Skipped without scikit-learn."""

from __future__ import annotations

import math
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import pytest
import pytest_asyncio
from churn_helpers import insert_activities, ok, populate
from crmkit.testing import CLOCK_START, Env, FrozenClock
from sqlalchemy import select

from crmkit_churn import fixture, service
from crmkit_churn.features import select_features
from crmkit_churn.models import ChurnModel
from crmkit_churn.settings import CORE, SOURCES, ChurnSettings, Feature

pytest.importorskip("sklearn", reason="the model needs crmkit-churn[model]")

CORE_FEATURES: list[Feature] = [
    rule.feature for rule in ChurnSettings().rules if SOURCES[rule.feature] == CORE
]
"""A tenant running churn alone reads the core's features, in the rules' order."""
CUSTOMERS = 2_000
DECLINING = 200
CUTOFF = CLOCK_START - timedelta(days=ChurnSettings().horizon_days)
MODEL = """{ churnModel { useModel minChurned inUse fit { auc precision recall intercept
  trainingCustomers trainingChurned heldOutCustomers heldOutChurned cutoff
  coefficients { feature coefficient } } } }"""
FIT = "mutation { fitChurnModel { auc trainingChurned heldOutChurned } }"
METRICS = """query($since: DateTime!, $until: DateTime!) {
  churnMetrics(since: $since, until: $until) { modelPrecision modelRecall } }"""
# a fit of 2,000 customers is seconds; their creation through the core is the cost: once
pytestmark = pytest.mark.postgres_only


@dataclass
class History:
    tenant: uuid.UUID
    ids: list[uuid.UUID]
    leaving: list[bool]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def history(env: Env) -> AsyncIterator[History]:
    """The fixture as it stood at the cut-off a horizon ago, then the half year since:
    the declining customers (and 3% of the others) left, the rest stayed active. The
    tenant uses the model as soon as one is fitted."""
    tenant = await env.tenant("churn", churn={"use_model": True})
    ids, profiles = await populate(env, tenant, CUSTOMERS, DECLINING, now=CUTOFF)
    leaving = fixture.churners(profiles)
    await insert_activities(
        env, tenant, fixture.continuation(tenant, ids, leaving, CUTOFF, CLOCK_START)
    )
    yield History(tenant, ids, leaving)


Scores = dict[uuid.UUID, tuple[int, list[dict[str, float | str]]]]


async def scores_now(env: Env, tenant: uuid.UUID) -> Scores:
    async with env.platform.tenant_scope(tenant) as scope:
        found = await service.current_scores(scope.hooks.context_for("churn"))
    return {i: (s.score, [r.as_data() for r in s.reasons]) for i, s in found.items()}


async def test_a_history_too_short_is_refused_with_nothing_stored(
    env: Env, clock: FrozenClock
) -> None:
    tenant = await env.tenant("churn", churn={"use_model": True, "model_min_churned": 10})
    ids, profiles = await populate(env, tenant, 40, 4, now=CUTOFF)
    leaving = fixture.churners(profiles, noise=0)
    await insert_activities(
        env, tenant, fixture.continuation(tenant, ids, leaving, CUTOFF, CLOCK_START)
    )
    body = await env.gql(FIT, tenant=tenant)
    [error] = body["errors"]
    assert error["extensions"]["code"] == "CONFLICT", error
    assert "at least 10 customers labelled churned" in error["message"], error
    state = ok(await env.gql(MODEL, tenant=tenant))["churnModel"]
    assert state == {"useModel": True, "minChurned": 10, "inUse": False, "fit": None}
    async with env.platform.db.tenant_session(tenant) as session:
        assert list(await session.scalars(select(ChurnModel))) == []


async def test_the_model_is_fitted_on_the_tenants_history_and_scores_with_the_rules_as_reasons(
    env: Env, clock: FrozenClock, history: History
) -> None:
    tenant = history.tenant
    before = await scores_now(env, tenant)  # use_model is on, but nothing is fitted yet
    for score, reasons in before.values():
        assert abs(sum(r["contribution"] for r in reasons) - score) <= 1
    fitted = ok(await env.gql(FIT, tenant=tenant))["fitChurnModel"]
    state = ok(await env.gql(MODEL, tenant=tenant))["churnModel"]
    fit = state["fit"]
    churned = sum(history.leaving)
    assert state["inUse"] and fitted["auc"] == fit["auc"]
    assert fit["trainingChurned"] + fit["heldOutChurned"] == churned
    assert fit["trainingCustomers"] + fit["heldOutCustomers"] == CUSTOMERS
    assert fit["heldOutCustomers"] == CUSTOMERS // 4
    coefficients = {c["feature"]: c["coefficient"] for c in fit["coefficients"]}
    assert list(coefficients) == [f.value for f in CORE_FEATURES]
    assert coefficients["days_inactive"] > 0  # the longer away, the likelier gone
    print(
        f"\n[{env.backend}] model on {CUSTOMERS} customers ({churned} churned): "
        f"AUC {fit['auc']}, held-out precision {fit['precision']}, recall {fit['recall']}; "
        f"coefficients {coefficients}"
    )
    assert fit["auc"] >= 0.75, fit  # 3% of the churned left with no sign beforehand
    assert fit["precision"] is not None and fit["recall"] is not None
    metrics = ok(
        await env.gql(
            METRICS,
            {"since": CUTOFF.isoformat(), "until": CLOCK_START.isoformat()},
            tenant=tenant,
        )
    )["churnMetrics"]
    assert metrics == {"modelPrecision": fit["precision"], "modelRecall": fit["recall"]}

    # the score is the model's probability, from the stored coefficients; the reasons
    # are the rules' as before
    after = await scores_now(env, tenant)
    settings = ChurnSettings(use_model=True)
    starts = {rule.feature: rule.start for rule in settings.rules}
    async with env.platform.tenant_scope(tenant) as scope:
        query = select_features(settings, CORE_FEATURES, CLOCK_START)
        values = {
            row["customer_id"]: row for row in (await scope.ctx.session.execute(query)).mappings()
        }
    changed = 0
    for customer, (score, reasons) in after.items():
        logit = fit["intercept"] + sum(
            coefficients[f.value]
            * (starts[f] if values[customer][f.value] is None else values[customer][f.value])
            for f in CORE_FEATURES
        )
        expected = 100 / (1 + math.exp(-max(-30.0, min(30.0, logit))))
        assert abs(score - expected) <= 0.5 + 1e-6, (customer, score, expected)
        assert reasons == before[customer][1]
        changed += score != before[customer][0]
    assert changed > CUSTOMERS // 2
