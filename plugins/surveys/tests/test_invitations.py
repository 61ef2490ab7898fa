"""Invitations: consent first, the fatigue rule across surveys, tokens stored hashed,
triggers (activities, closed cases, schedules) once per cause, delivery through the
channels plugin only where it runs, and the events a response emits."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import crmkit
import pytest
from crmkit.testing import Env, FrozenClock
from sqlalchemy import Uuid, bindparam, text
from surveys_helpers import (
    DEFINITION,
    RECORD,
    consent,
    consenting_customer,
    count,
    error_of,
    invite,
    ok,
    path_of,
    published_survey,
)

from crmkit_surveys import service
from crmkit_surveys.models import Invitation
from crmkit_surveys.service import token_hash

INVITE = """mutation($survey: UUID!, $customer: UUID!) {
  inviteToSurvey(surveyId: $survey, customerId: $customer) { id link } }"""
INVITATIONS = """query($customer: UUID) { surveyInvitations(customerId: $customer) {
  nodes { id trigger channel version surveyId link } } }"""


async def invitations_of(env: Env, tenant: uuid.UUID, customer: str) -> list[dict[str, Any]]:
    nodes: list[dict[str, Any]] = (await ok(env, INVITATIONS, {"customer": customer}, tenant))[
        "surveyInvitations"
    ]["nodes"]
    return nodes


async def test_no_invitation_without_consent(env: Env) -> None:
    tenant = await env.tenant("surveys")
    survey = await published_survey(env, tenant)
    customer = (await env.create_customer(tenant, givenName="Bo"))["id"]
    refused = await env.gql(INVITE, {"survey": survey, "customer": customer}, tenant=tenant)
    assert error_of(refused)[0] == "CONSENT_REQUIRED"
    assert "surveys_feedback" in refused["errors"][0]["message"]

    await consent(env, tenant, customer)
    await consent(env, tenant, customer, state="WITHDRAWN")
    refused = await env.gql(INVITE, {"survey": survey, "customer": customer}, tenant=tenant)
    assert error_of(refused)[0] == "CONSENT_REQUIRED"
    assert await count(env, tenant, Invitation) == 0

    await consent(env, tenant, customer)
    assert (await invite(env, tenant, survey, customer))["trigger"] == "manual"


async def test_the_fatigue_rule_holds_across_surveys(env: Env, clock: FrozenClock) -> None:
    tenant = await env.tenant("surveys", surveys={"fatigue_days": 30})
    visit = await published_survey(env, tenant)
    branch = await published_survey(env, tenant, key="branch")
    customer = await consenting_customer(env, tenant)
    await invite(env, tenant, visit, customer)

    clock.advance(days=29)
    for survey in (branch, visit):
        refused = await env.gql(INVITE, {"survey": survey, "customer": customer}, tenant=tenant)
        code, _ = error_of(refused)
        assert code == "CONFLICT" and "fatigue_days" in refused["errors"][0]["message"]
    assert await count(env, tenant, Invitation) == 1

    clock.advance(days=1, seconds=1)
    assert (await invite(env, tenant, branch, customer))["version"] == 1
    assert await count(env, tenant, Invitation) == 2


async def test_the_token_is_stored_hashed_and_the_link_is_personal(env: Env) -> None:
    tenant = await env.tenant("surveys")
    survey = await published_survey(env, tenant)
    customer = await consenting_customer(env, tenant)
    link = (await invite(env, tenant, survey, customer))["link"]
    token = link.rsplit("/", 1)[1]
    assert link.startswith(f"http://127.0.0.1:8000/plugins/surveys/respond/{tenant}/")

    query = text("SELECT * FROM survey_invitations WHERE tenant_id = :tenant")
    async with env.owner_engine.connect() as conn:
        rows = list(await conn.execute(query.bindparams(bindparam("tenant", tenant, Uuid))))
    assert len(rows) == 1 and token not in repr(rows) and token.encode() not in repr(rows).encode()
    assert token_hash(token) in [
        bytes(value) for value in rows[0] if isinstance(value, bytes | memoryview)
    ]

    masked = await env.gql(
        INVITATIONS, {"customer": customer}, token=env.token(tenant, ["surveys:read"])
    )
    assert masked["data"]["surveyInvitations"]["nodes"][0]["link"] == "***"
    assert (await invitations_of(env, tenant, customer))[0]["link"] == link


async def test_an_unpublished_survey_and_a_missing_locale_are_refused(env: Env) -> None:
    tenant = await env.tenant("surveys")
    created = await ok(
        env,
        'mutation($d: JSON!) { createSurvey(key: "draft", definition: $d) { id } }',
        {"d": DEFINITION},
        tenant,
    )
    customer = await consenting_customer(env, tenant)
    refused = await env.gql(
        INVITE, {"survey": created["createSurvey"]["id"], "customer": customer}, tenant=tenant
    )
    assert error_of(refused) == ("BAD_USER_INPUT", "surveyId")
    survey = await published_survey(env, tenant)
    refused = await env.gql(
        """mutation($s: UUID!, $c: UUID!) { inviteToSurvey(surveyId: $s, customerId: $c,
        locale: "fr") { id } }""",
        {"s": survey, "c": customer},
        tenant=tenant,
    )
    assert error_of(refused) == ("BAD_USER_INPUT", "locale")
    assert await count(env, tenant, Invitation) == 0


async def test_an_activity_trigger_invites_once_per_activity_of_its_kind_and_channel(
    env: Env,
) -> None:
    settings = {
        "fatigue_days": 0,
        "triggers": [{"on": "activity", "survey": "visit", "kind": "contact", "channel": "branch"}],
    }
    tenant = await env.tenant("surveys", surveys=settings)
    await published_survey(env, tenant)
    customer = await consenting_customer(env, tenant)
    silent = (await env.create_customer(tenant, givenName="No consent"))["id"]
    for who, kind, channel in (
        (customer, "CONTACT", "BRANCH"),
        (customer, "CONTACT", "PHONE"),
        (customer, "TRANSACTION", "BRANCH"),
        (silent, "CONTACT", "BRANCH"),
    ):
        payload = {"customerId": who, "kind": kind, "channel": channel}
        await ok(env, RECORD, {"input": payload}, tenant)
    await env.drain()
    [made] = await invitations_of(env, tenant, customer)
    assert (made["trigger"], made["channel"]) == ("activity", "branch")
    assert await invitations_of(env, tenant, silent) == []

    [contact] = [
        e
        for e in await env.events(tenant, "activity_recorded")
        if e.data["customer_id"] == customer
    ][:1]
    await env.deliver(tenant, "surveys", contact)  # delivery is at least once
    await env.drain()
    assert len(await invitations_of(env, tenant, customer)) == 1


async def test_a_closed_case_and_a_schedule_trigger_invite(env: Env, clock: FrozenClock) -> None:
    settings = {
        "fatigue_days": 0,
        "segments": [{"name": "premium", "tag": "premium"}],
        "triggers": [
            {"on": "case_closed", "survey": "visit", "locale": "de"},
            {"on": "schedule", "survey": "visit", "segment": "premium", "every_days": 90},
        ],
    }
    tenant = await env.tenant("surveys", surveys=settings)
    await published_survey(env, tenant)
    premium = await consenting_customer(env, tenant, tags=["premium"])
    other = await consenting_customer(env, tenant)

    closed = crmkit.DomainEvent(
        id=crmkit.uuid7(),
        tenant_id=tenant,
        type="cases_closed",
        subject_type="Case",
        subject_id=str(uuid.uuid4()),
        data={"customer_id": other, "kind": "complaint", "status": "closed"},
        occurred_at=crmkit.utcnow(),
    )
    for _ in range(2):  # the cases plugin's event, delivered twice
        await env.deliver(tenant, "surveys", closed)
    [made] = await invitations_of(env, tenant, other)
    assert made["trigger"] == "case_closed"

    async def cron() -> None:
        async with env.platform.tenant_scope(tenant) as scope:
            from crmkit_surveys import triggers

            await triggers.scheduled(scope.hooks.context_for("surveys"))

    await cron()
    await cron()  # a second run of the same period invites no one again
    assert [i["trigger"] for i in await invitations_of(env, tenant, premium)] == ["schedule"]
    assert [i["trigger"] for i in await invitations_of(env, tenant, other)] == ["case_closed"]
    clock.advance(days=90)
    await cron()
    assert len(await invitations_of(env, tenant, premium)) == 2


async def test_a_detractor_emits_both_events_and_opens_a_follow_up(env: Env) -> None:
    tenant = await env.tenant("surveys")
    survey = await published_survey(env, tenant)
    customer = (await env.create_customer(tenant, givenName="Di", relationshipManager="user:rm-1"))[
        "id"
    ]
    await consent(env, tenant, customer)
    path = path_of((await invite(env, tenant, survey, customer))["link"])
    sent = await env.client.post(path, json={"answers": {"recommend": 3, "satisfied": 1}})
    assert sent.status_code == 201
    await env.drain()

    [recorded] = await env.events(tenant, "surveys_response_recorded")
    assert recorded.subject_type == "SurveyResponse"
    assert recorded.data == {
        "customer_id": customer,
        "survey_id": survey,
        "version": 1,
        "nps": 3,
        "csat": 1,
        "ces": None,
    }
    [detractor] = await env.events(tenant, "surveys_detractor")
    assert detractor.data == {
        "customer_id": customer,
        "survey_id": survey,
        "metric": "nps",
        "score": 3,
    }
    timeline = await ok(
        env,
        "query($id: UUID!) { activities(customerId: $id) { nodes { kind attributes } } }",
        {"id": customer},
        tenant,
    )
    [follow_up] = timeline["activities"]["nodes"]
    assert follow_up["kind"] == "CONTACT"
    assert follow_up["attributes"]["assignee"] == "user:rm-1"
    assert follow_up["attributes"]["task"] == "survey_follow_up"


async def test_channels_delivers_the_invitation_where_the_tenant_runs_it(env: Env) -> None:
    for plugins, sent in ((("surveys",), 0), (("surveys", "channels"), 1)):
        tenant = await env.tenant(*plugins)
        survey = await published_survey(env, tenant)
        customer = await consenting_customer(env, tenant)
        invitation = await invite(env, tenant, survey, customer, locale="de")
        requests = await env.events(tenant, "channels_send_requested")
        assert len(requests) == sent
        for request in requests:
            assert request.data["purpose"] == "surveys_feedback"
            assert request.data["template"] == "surveys.invitation"
            assert request.data["locale"] == "de"
            assert request.data["idempotency_key"] == f"surveys:invitation:{invitation['id']}"
            assert request.data["variables"]["link"] == invitation["link"]
            assert request.data["requested_by"] == "surveys"


@pytest.mark.postgres_only
async def test_two_surveys_inviting_at_once_make_one_invitation(env: Env) -> None:
    tenant = await env.tenant("surveys")
    surveys = [await published_survey(env, tenant, key=key) for key in ("visit", "branch")]
    customer = await consenting_customer(env, tenant)

    async def invite_in_own_transaction(survey_id: str) -> str:
        async with env.platform.tenant_scope(tenant) as scope:
            ctx = scope.hooks.context_for("surveys")
            survey = await service.get_survey(ctx, uuid.UUID(survey_id))
            try:
                await service.invite(
                    ctx,
                    survey=survey,
                    customer_id=uuid.UUID(customer),
                    trigger="manual",
                    trigger_ref=survey_id,
                )
            except crmkit.Conflict:
                return "refused"
            await asyncio.sleep(0.2)  # hold the lock while the other waits for it
            return "invited"

    outcomes = await asyncio.gather(*(invite_in_own_transaction(s) for s in surveys))
    assert sorted(outcomes) == ["invited", "refused"]
    assert len(await invitations_of(env, tenant, customer)) == 1
