"""Results on a fixture with a known answer: 100 responses (50 promoters, 30 passives,
20 detractors: NPS 30) and 25 unanswered invitations, every metric exact, overall and
by version, channel, segment, relationship manager and period; small groups suppressed;
the same number of statements for 10 and 100 responses."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import crmkit
from crmkit.testing import Env, FrozenClock, StatementCounter
from surveys_helpers import error_of, published_survey

from crmkit_surveys import service

RESULTS = """query($survey: UUID!, $groupBy: SurveyGroupBy, $since: DateTime, $until: DateTime,
  $segment: String, $version: Int) {
  surveyResults(surveyId: $survey, groupBy: $groupBy, since: $since, until: $until,
    segment: $segment, version: $version) {
    key suppressed responses invitations responseRate
    nps { score promoters passives detractors } csat { percent satisfied answers }
    ces { mean answers } servqual { dimension expectation perception gap } } }"""
PUBLISH = """mutation($id: UUID!) { publishSurvey(id: $id) { version } }"""
SETTINGS = {
    "invitation_valid_days": 60,
    "segments": [{"name": "premium", "tag": "premium"}, {"name": "new", "stage": "new"}],
}
JANUARY, FEBRUARY = datetime(2025, 1, 10, tzinfo=UTC), datetime(2025, 2, 10, tzinfo=UTC)


def nps_of(i: int) -> int:
    """Customers 0-49 promote, 50-79 are passive, 80-99 detract."""
    return 9 + i % 2 if i < 50 else 7 + i % 2 if i < 80 else i % 7


def answers_of(i: int) -> dict[str, Any]:
    return {
        "recommend": nps_of(i),
        "satisfied": i % 5 + 1,  # 40 of 100 give 4 or 5
        "effort": i % 7 + 1,  # sums to 395
        "reliable-expected": 6,
        "reliable-perceived": 4 + i % 2,  # mean 4.5: gap -1.5
        "empathy-perceived": 5,  # perception only: no gap
    }


async def fixture(
    env: Env, clock: FrozenClock, size: int = 100, extra: int = 25
) -> tuple[uuid.UUID, str]:
    """``size`` customers who answered and ``extra`` who did not. Customers below 40 are
    tagged premium; managers alternate; 0-79 got version 1, the rest version 2; 97-99
    came through a branch; 0-59 answered in January, the others in February."""
    tenant = await env.tenant("surveys", surveys=SETTINGS)
    survey_id = await published_survey(env, tenant)
    clock.set(datetime(2025, 1, 5, tzinfo=UTC))
    invitations: list[str] = []
    async with env.platform.tenant_scope(tenant) as scope:
        ctx = scope.hooks.context_for("surveys")
        survey = await service.get_survey(ctx, uuid.UUID(survey_id))
        for i in range(size + extra):
            if i == 80:
                await service.publish(ctx, survey.id, "test")
            customer = await crmkit.create_customer(
                ctx,
                kind=crmkit.CustomerKind.PERSON,
                given_name=f"C{i}",
                tags=["premium"] if i < 40 else [],
                lifecycle_stage=crmkit.LifecycleStage.ACTIVE,
                relationship_manager=f"user:rm-{i % 2}",
            )
            await crmkit.record_consent(
                ctx,
                customer_id=customer.id,
                purpose="surveys_feedback",
                channel="email",
                state="granted",
                source="web",
                policy_version="v1",
                legal_basis="consent",
                captured_by="test",
            )
            made = await service.invite(
                ctx,
                survey=survey,
                customer_id=customer.id,
                trigger="manual",
                trigger_ref="fixture",
                channel="branch" if 97 <= i < 100 else "app",
            )
            invitations.append(made.link.rsplit("/", 1)[1])
    for month, answering in ((JANUARY, range(min(60, size))), (FEBRUARY, range(60, size))):
        clock.set(month)
        async with env.platform.tenant_scope(tenant) as scope:
            ctx = scope.hooks.context_for("surveys")
            for i in answering:
                opened = await service.open_invitation(ctx, invitations[i])
                await service.respond(ctx, opened, answers_of(i))
    await env.drain()  # the events' deliveries, so they are not counted as the results'
    return tenant, survey_id


async def results(
    env: Env, tenant: uuid.UUID, survey: str, **variables: Any
) -> list[dict[str, Any]]:
    body = await env.gql(RESULTS, {"survey": survey, **variables}, tenant=tenant)
    assert "errors" not in body, body
    groups: list[dict[str, Any]] = body["data"]["surveyResults"]
    return groups


def cent(value: float) -> Decimal:
    return Decimal(str(value)).quantize(Decimal("0.01"))


def expected(members: list[int]) -> dict[str, Any]:
    """What a group of these answering customers shows, computed here in Python."""
    n = len(members)
    scores = [answers_of(i) for i in members]
    promoters = sum(s["recommend"] >= 9 for s in scores)
    passives = sum(7 <= s["recommend"] <= 8 for s in scores)
    detractors = n - promoters - passives
    satisfied = sum(s["satisfied"] >= 4 for s in scores)
    perceived = sum(s["reliable-perceived"] for s in scores)
    return {
        "responses": n,
        "nps": {
            "score": str(cent(promoters * 100 / n) - cent(detractors * 100 / n)),
            "promoters": promoters,
            "passives": passives,
            "detractors": detractors,
        },
        "csat": {"percent": str(cent(satisfied * 100 / n)), "satisfied": satisfied, "answers": n},
        "ces": {"mean": str(cent(sum(s["effort"] for s in scores) / n)), "answers": n},
        "servqual": [
            {
                "dimension": "reliability",
                "expectation": "6.00",
                "perception": str(cent(perceived / n)),
                "gap": str(cent(perceived / n - 6)),
            },
            {"dimension": "empathy", "expectation": None, "perception": "5.00", "gap": None},
        ],
    }


def headline(group: dict[str, Any]) -> dict[str, Any]:
    return {k: group[k] for k in ("responses", "nps", "csat", "ces", "servqual")}


async def test_every_metric_is_exact_overall_and_in_each_breakdown(
    env: Env, clock: FrozenClock
) -> None:
    tenant, survey = await fixture(env, clock)

    [overall] = await results(env, tenant, survey)
    assert overall == {
        "key": "all",
        "suppressed": False,
        "responses": 100,
        "invitations": 125,
        "responseRate": "80.00",
        "nps": {"score": "30.00", "promoters": 50, "passives": 30, "detractors": 20},
        "csat": {"percent": "40.00", "satisfied": 40, "answers": 100},
        "ces": {"mean": "3.95", "answers": 100},
        "servqual": [
            {
                "dimension": "reliability",
                "expectation": "6.00",
                "perception": "4.50",
                "gap": "-1.50",
            },
            {"dimension": "empathy", "expectation": None, "perception": "5.00", "gap": None},
        ],
    }
    assert headline(overall) == expected(list(range(100)))

    by_segment = {g["key"]: g for g in await results(env, tenant, survey, groupBy="SEGMENT")}
    assert set(by_segment) == {"premium"}  # the customers are active: segment "new" is empty
    assert headline(by_segment["premium"]) == expected(list(range(40)))
    assert by_segment["premium"]["nps"]["score"] == "100.00"
    assert (by_segment["premium"]["invitations"], by_segment["premium"]["responseRate"]) == (
        40,
        "100.00",
    )
    [premium] = await results(env, tenant, survey, segment="premium")
    assert premium == {**by_segment["premium"], "key": "all"}

    by_month = await results(env, tenant, survey, groupBy="MONTH")
    assert [g["key"] for g in by_month] == ["2025-01-01", "2025-02-01"]
    assert headline(by_month[0]) == expected(list(range(60)))
    assert by_month[0]["nps"]["score"] == "83.33"
    assert headline(by_month[1]) == expected(list(range(60, 100)))
    assert by_month[1]["nps"]["score"] == "-50.00"
    assert (by_month[0]["invitations"], by_month[0]["responseRate"]) == (125, "80.00")
    assert by_month[1]["invitations"] is None  # invitations count in the month they were made
    [february] = await results(
        env, tenant, survey, since="2025-02-01T00:00:00Z", until="2025-03-01T00:00:00Z"
    )
    assert headline(february) == headline(by_month[1])

    by_week = await results(env, tenant, survey, groupBy="WEEK")
    # Mondays: the invitations' week (Sunday 5 January), then the responses'
    assert [g["key"] for g in by_week] == ["2024-12-30", "2025-01-06", "2025-02-10"]
    assert by_week[0]["suppressed"] and by_week[0]["invitations"] is None

    by_version = {g["key"]: g for g in await results(env, tenant, survey, groupBy="VERSION")}
    assert headline(by_version["1"]) == expected(list(range(80)))
    assert headline(by_version["2"]) == expected(list(range(80, 100)))
    assert by_version["2"]["nps"]["score"] == "-100.00"
    [second] = await results(env, tenant, survey, version=2)
    assert headline(second) == headline(by_version["2"])

    by_manager = {
        g["key"]: g for g in await results(env, tenant, survey, groupBy="RELATIONSHIP_MANAGER")
    }
    assert headline(by_manager["user:rm-0"]) == expected(list(range(0, 100, 2)))
    assert headline(by_manager["user:rm-1"]) == expected(list(range(1, 100, 2)))

    by_channel = {g["key"]: g for g in await results(env, tenant, survey, groupBy="CHANNEL")}
    assert headline(by_channel["app"]) == expected(list(range(97)))
    # three responses through a branch: below min_group_size (5), shown as a key only
    assert by_channel["branch"] == {
        "key": "branch",
        "suppressed": True,
        "responses": None,
        "invitations": None,
        "responseRate": None,
        "nps": None,
        "csat": None,
        "ces": None,
        "servqual": [],
    }


async def test_the_results_cost_the_same_statements_for_10_and_100_responses(
    env: Env, clock: FrozenClock, sql_statements: StatementCounter
) -> None:
    counts: dict[int, dict[str, int]] = {}
    for size in (10, 100):
        tenant, survey = await fixture(env, clock, size=size, extra=5)
        token = env.token(tenant)
        counts[size] = {}
        for group_by in ("NONE", "SEGMENT", "MONTH", "RELATIONSHIP_MANAGER", "VERSION"):
            query = {"query": RESULTS, "variables": {"survey": survey, "groupBy": group_by}}
            headers = {"Authorization": f"Bearer {token}"}
            await env.client.post("/graphql", json=query, headers=headers)  # warm-up
            sql_statements.clear()
            answer = await env.client.post("/graphql", json=query, headers=headers)
            assert "errors" not in answer.json()
            counts[size][group_by] = sql_statements.count
    assert counts[10] == counts[100], counts


async def test_bad_queries_are_refused(env: Env) -> None:
    tenant = await env.tenant("surveys", surveys=SETTINGS)
    survey = await published_survey(env, tenant)
    for variables, field in (
        ({"segment": "gold"}, "segment"),
        ({"since": "2025-02-01T00:00:00Z", "until": "2025-01-01T00:00:00Z"}, "until"),
    ):
        body = await env.gql(RESULTS, {"survey": survey, **variables}, tenant=tenant)
        assert error_of(body) == ("BAD_USER_INPUT", field)
    plain = await env.tenant("surveys")
    other = await published_survey(env, plain)
    body = await env.gql(RESULTS, {"survey": other, "groupBy": "SEGMENT"}, tenant=plain)
    assert error_of(body) == ("BAD_USER_INPUT", "groupBy")
    body = await env.gql(RESULTS, {"survey": other}, tenant=tenant)  # another tenant's survey
    assert error_of(body)[0] == "NOT_FOUND"
