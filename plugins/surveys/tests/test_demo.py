"""The demo's sample survey: made and published once, every customer invited once,
about two thirds answered, whatever the number of runs."""

from __future__ import annotations

import uuid

from crmkit.testing import Env
from surveys_helpers import count

from crmkit_surveys.models import Invitation, Response, Survey, SurveyVersion

RESULTS = """query($id: UUID!) { surveyResults(surveyId: $id) { responses nps { score } } }"""


async def test_the_demo_seeds_a_survey_with_answers_once(env: Env) -> None:
    tenant = await env.tenant("surveys")
    ids = [
        uuid.UUID((await env.create_customer(tenant, givenName=f"D{i}"))["id"]) for i in range(9)
    ]
    for _ in range(2):  # the demo enables a plugin again on every run
        async with env.platform.tenant_scope(tenant) as scope:
            await scope.hooks.call_plugin("surveys", "seed_demo", customer_ids=ids)
    assert (await count(env, tenant, Survey), await count(env, tenant, SurveyVersion)) == (1, 1)
    assert await count(env, tenant, Invitation) == 9
    answered = await count(env, tenant, Response)
    assert 3 <= answered < 9

    surveys = await env.gql("{ surveys { nodes { id key } } }", tenant=tenant)
    [survey] = surveys["data"]["surveys"]["nodes"]
    assert survey["key"] == "relationship-check"
    shown = await env.gql(RESULTS, {"id": survey["id"]}, tenant=tenant)
    assert shown["data"]["surveyResults"][0]["responses"] == answered
