"""What the plugin holds on a customer: free text encrypted at rest, shown masked or in
clear by scope, exported, and gone with erasure (a raw scan of every table);
``Customer.surveys`` batched over a page; versions freeze the wording answered."""

from __future__ import annotations

import uuid
from typing import Any

from crmkit.testing import Env, StatementCounter
from sqlalchemy import text
from surveys_helpers import (
    DEFINITION,
    PUBLISH,
    consenting_customer,
    error_of,
    invite,
    ok,
    path_of,
    published_survey,
)

TABLES = ("surveys", "survey_versions", "survey_invitations", "survey_responses", "survey_answers")
SECRET = "Zweistein was rude to me at the Ostend branch"
SURVEYS = """query($id: UUID!) { customer(id: $id) { surveys { latestNps latestCsat
  responses(first: 5) { nodes { version nps csat answers { questionKey score choices text } } }
} } }"""


async def answer(env: Env, tenant: uuid.UUID, survey: str, customer: str, **answers: Any) -> None:
    path = path_of((await invite(env, tenant, survey, customer))["link"])
    sent = await env.client.post(path, json={"answers": answers})
    assert sent.status_code == 201, sent.text


async def raw_scan(env: Env) -> str:
    """Every row of the plugin's tables as a stolen backup shows them (the owner)."""
    dump = []
    async with env.owner_engine.connect() as conn:
        for table in TABLES:
            dump.append(repr((await conn.execute(text(f"SELECT * FROM {table}"))).all()))
    return "".join(dump).replace("-", "")


async def test_free_text_is_encrypted_masked_exported_and_erased(env: Env) -> None:
    tenant = await env.tenant("surveys", surveys={"fatigue_days": 0})
    survey = await published_survey(env, tenant)
    customer = await consenting_customer(env, tenant)
    await answer(env, tenant, survey, customer, recommend=9, comment=SECRET, topics=["loan"])

    assert SECRET.replace("-", "") not in await raw_scan(env)
    clear = await ok(env, SURVEYS, {"id": customer}, tenant)
    answers = clear["customer"]["surveys"]["responses"]["nodes"][0]["answers"]
    assert {"questionKey": "comment", "score": None, "choices": None, "text": SECRET} in answers
    masked = await env.gql(
        SURVEYS, {"id": customer}, token=env.token(tenant, ["customers:read", "surveys:read"])
    )
    texts = [
        a["text"] for a in masked["data"]["customer"]["surveys"]["responses"]["nodes"][0]["answers"]
    ]
    assert "***" in texts and SECRET not in texts

    exported = await ok(
        env, "query($id: UUID!) { exportCustomerData(id: $id) }", {"id": customer}, tenant
    )
    section = exported["exportCustomerData"]["plugins"]["surveys"]
    assert len(section["invitations"]) == 1 and "token" not in section["invitations"][0]
    assert {"question": "comment", "score": None, "choices": None, "text": SECRET} in section[
        "responses"
    ][0]["answers"]

    key = customer.replace("-", "")
    assert key in await raw_scan(env)
    await ok(
        env, "mutation($id: UUID!) { eraseCustomer(id: $id) { id } }", {"id": customer}, tenant
    )
    await env.drain()
    assert key not in await raw_scan(env)


async def test_customer_surveys_cost_the_same_statements_for_5_and_50_customers(
    env: Env, sql_statements: StatementCounter
) -> None:
    page = """{ customers(first: 50) { nodes { id surveys { latestNps latestCsat
      responses(first: 2) { nodes { nps answers { questionKey text } } } } } } }"""
    counts = {}
    settings = {"fatigue_days": 0, "responses_per_minute_per_address": 1000}
    for size in (5, 50):
        tenant = await env.tenant("surveys", surveys=settings)
        survey = await published_survey(env, tenant)
        for i in range(size):
            customer = await consenting_customer(env, tenant)
            await answer(env, tenant, survey, customer, recommend=i % 11, satisfied=4)
        token = env.token(tenant)
        await env.gql(page, token=token)  # warm-up
        await env.drain()
        sql_statements.clear()
        body = await env.gql(page, token=token)
        nodes = body["data"]["customers"]["nodes"]
        assert len(nodes) == size
        assert [n["surveys"]["latestNps"] for n in nodes] == [i % 11 for i in range(size)]
        assert all(len(n["surveys"]["responses"]["nodes"]) == 1 for n in nodes)
        counts[size] = sql_statements.count
    assert counts[5] == counts[50], counts


async def test_latest_scores_and_responses_page_newest_first(env: Env) -> None:
    tenant = await env.tenant("surveys", surveys={"fatigue_days": 0})
    survey = await published_survey(env, tenant)
    customer = await consenting_customer(env, tenant)
    await answer(env, tenant, survey, customer, recommend=2, satisfied=5)
    await answer(env, tenant, survey, customer, recommend=10)
    shown = (await ok(env, SURVEYS, {"id": customer}, tenant))["customer"]["surveys"]
    assert (shown["latestNps"], shown["latestCsat"]) == (10, 5)  # CSAT from the older response
    assert [r["nps"] for r in shown["responses"]["nodes"]] == [10, 2]


async def test_publishing_freezes_a_version_and_editing_makes_the_next(env: Env) -> None:
    tenant = await env.tenant("surveys", surveys={"fatigue_days": 0})
    survey = await published_survey(env, tenant)
    customer = await consenting_customer(env, tenant)
    first = await invite(env, tenant, survey, customer)

    edited = {**DEFINITION, "title": {"en": "Your branch visit", "de": "Ihr Filialbesuch"}}
    update = """mutation($id: UUID!, $d: JSON!) { updateSurveyDraft(id: $id, definition: $d) {
      latestVersion draft } }"""
    updated = (await ok(env, update, {"id": survey, "d": edited}, tenant))["updateSurveyDraft"]
    assert updated["latestVersion"] == 1 and updated["draft"]["title"]["en"] == "Your branch visit"
    form = await env.client.get(path_of(first["link"]), headers={"Accept": "application/json"})
    assert form.json()["title"] == "Your visit"  # the invitation asks the version it was made for

    assert (await ok(env, PUBLISH, {"id": survey}, tenant))["publishSurvey"]["version"] == 2
    second = await invite(env, tenant, survey, customer)
    assert second["version"] == 2
    form = await env.client.get(path_of(second["link"]), headers={"Accept": "application/json"})
    assert form.json()["title"] == "Your branch visit"
    versions = await ok(
        env,
        "query($id: UUID!) { survey(id: $id) { versions { version definition } } }",
        {"id": survey},
        tenant,
    )
    titles = [v["definition"]["title"]["en"] for v in versions["survey"]["versions"]]
    assert titles == ["Your visit", "Your branch visit"]


async def test_bad_definitions_are_refused_and_need_the_manage_scope(env: Env) -> None:
    tenant = await env.tenant("surveys")
    create = """mutation($key: String!, $d: JSON!) { createSurvey(key: $key, definition: $d) {
      id } }"""
    question = DEFINITION["questions"][0]
    for key, definition, message in (
        ("Bad Key", DEFINITION, "key is"),
        ("a", {**DEFINITION, "locales": ["en", "fr"]}, "no wording in fr"),
        ("a", {**DEFINITION, "questions": [question, question]}, "unique"),
        ("a", {**DEFINITION, "questions": [{**question, "type": "single_choice"}]}, "options"),
        ("a", {**DEFINITION, "questions": [{**question, "type": "servqual"}]}, "dimension"),
    ):
        body = await env.gql(create, {"key": key, "d": definition}, tenant=tenant)
        assert error_of(body)[0] == "BAD_USER_INPUT", body
        assert message in body["errors"][0]["message"], body
    await published_survey(env, tenant, key="a")
    body = await env.gql(create, {"key": "a", "d": DEFINITION}, tenant=tenant)
    assert error_of(body)[0] == "CONFLICT"
    body = await env.gql(
        create, {"key": "b", "d": DEFINITION}, token=env.token(tenant, ["surveys:write"])
    )
    assert error_of(body)[0] == "FORBIDDEN"
