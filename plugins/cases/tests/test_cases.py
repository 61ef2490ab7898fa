"""A case's life through GraphQL: opening, transitions (validated, refused without a
trace), optimistic concurrency, the events and the complaint on the timeline."""

from __future__ import annotations

import asyncio

from cases_helpers import CASE, ENTRY, change, error_code, get_case, ok, open_case, raw_rows
from crmkit.testing import Env, FrozenClock

RESOLVE = {"resolution": "Refunded the fee.", "resolutionCode": "refunded", "rootCauseCode": "fees"}
TIMELINE = "query($id: UUID!) { activities(customerId: $id) { nodes { id kind attributes } } }"


async def test_a_case_goes_from_new_to_closed_and_says_so(env: Env) -> None:
    tenant = await env.tenant("cases")
    customer = (await env.create_customer(tenant, givenName="Ann"))["id"]
    case = await open_case(env, tenant, customer, description="Charged twice for the card.")
    assert (case["status"], case["version"], case["subject"]) == ("NEW", 1, "Fee")

    ok(
        await env.gql(
            ENTRY, {"id": case["id"], "body": "Looking into it.", "visible": True}, tenant=tenant
        )
    )
    case = await get_case(env, tenant, case["id"])
    assert case["status"] == "IN_PROGRESS" and case["firstResponseMet"] is True

    case = ok(await change(env, tenant, case, "RESOLVED", **RESOLVE))["changeCaseStatus"]
    case = ok(await change(env, tenant, case, "CLOSED"))["changeCaseStatus"]
    assert (case["status"], case["resolutionCode"], case["resolutionMet"]) == (
        "CLOSED",
        "refunded",
        True,
    )
    await env.drain()

    [opened] = await env.events(tenant, "cases_opened")
    assert opened.data["kind"] == "complaint" and opened.subject_id == case["id"]
    changes = [
        (e.data["old_status"], e.data["new_status"])
        for e in await env.events(tenant, "cases_status_changed")
    ]
    assert changes == [("new", "in_progress"), ("in_progress", "resolved"), ("resolved", "closed")]
    [closed] = await env.events(tenant, "cases_closed")
    assert closed.data == {
        "customer_id": customer,
        "kind": "complaint",
        "priority": "normal",
        "status": "closed",
        "resolution_code": "refunded",
        "root_cause_code": "fees",
        "first_response_met": True,
        "resolution_met": True,
    }
    # the complaint is on the customer's timeline, through crmkit.record_activity
    timeline = ok(await env.gql(TIMELINE, {"id": customer}, tenant=tenant))
    assert [(a["kind"], a["attributes"]["case_id"]) for a in timeline["activities"]["nodes"]] == [
        ("COMPLAINT", case["id"])
    ]


async def test_an_invalid_transition_is_refused_and_changes_nothing(env: Env) -> None:
    tenant = await env.tenant("cases")
    customer = (await env.create_customer(tenant, givenName="Bo"))["id"]
    case = await open_case(env, tenant, customer, kind="REQUEST")
    before = await raw_rows(env, "cases", tenant)

    refusals = [
        (await change(env, tenant, case, "NEW"), "status"),
        (await change(env, tenant, case, "CLOSED"), "resolution"),  # no resolution
        (await change(env, tenant, case, "RESOLVED", resolution="Done."), "resolutionCode"),
        (
            await change(env, tenant, case, "RESOLVED", resolution="x", resolutionCode="bribed"),
            "resolutionCode",
        ),
        (
            await change(env, tenant, case, "RESOLVED", **{**RESOLVE, "rootCauseCode": "moon"}),
            "rootCauseCode",
        ),
    ]
    for answer, field in refusals:
        assert error_code(answer) == "BAD_USER_INPUT", answer
        assert answer["errors"][0]["extensions"]["field"] == field
    assert await raw_rows(env, "cases", tenant) == before
    assert await get_case(env, tenant, case["id"]) == case
    await env.drain()
    assert await env.events(tenant, "cases_status_changed") == []


async def test_a_stale_version_is_a_conflict(env: Env) -> None:
    tenant = await env.tenant("cases")
    customer = (await env.create_customer(tenant, givenName="Cy"))["id"]
    case = await open_case(env, tenant, customer)
    ok(await change(env, tenant, case, "IN_PROGRESS"))
    stale = await change(env, tenant, case, "WAITING_ON_CUSTOMER")
    assert error_code(stale) == "CONFLICT"
    assert (await get_case(env, tenant, case["id"]))["status"] == "IN_PROGRESS"


async def test_two_agents_saving_the_same_version_one_wins_one_conflicts(env: Env) -> None:
    tenant = await env.tenant("cases")
    customer = (await env.create_customer(tenant, givenName="Di"))["id"]
    case = await open_case(env, tenant, customer)
    answers = await asyncio.gather(
        change(env, tenant, case, "IN_PROGRESS"),
        change(env, tenant, case, "WAITING_ON_CUSTOMER"),
    )
    won = [a for a in answers if "errors" not in a]
    lost = [a for a in answers if "errors" in a]
    assert len(won) == 1 and [error_code(a) for a in lost] == ["CONFLICT"], answers
    final = await get_case(env, tenant, case["id"])
    assert (final["status"], final["version"]) == (won[0]["data"]["changeCaseStatus"]["status"], 2)


async def test_reopen_within_the_window_only(env: Env, clock: FrozenClock) -> None:
    tenant = await env.tenant("cases", cases={"reopen_window_days": 7})
    customer = (await env.create_customer(tenant, givenName="Ed"))["id"]
    first = await open_case(env, tenant, customer, kind="ENQUIRY")
    first = ok(await change(env, tenant, first, "CLOSED", **RESOLVE))["changeCaseStatus"]
    second = await open_case(env, tenant, customer, kind="ENQUIRY")
    second = ok(await change(env, tenant, second, "RESOLVED", **RESOLVE))["changeCaseStatus"]

    clock.advance(days=6)
    reopened = ok(await change(env, tenant, first, "IN_PROGRESS"))["changeCaseStatus"]
    assert (reopened["reopenCount"], reopened["resolutionCode"]) == (1, None)
    clock.advance(days=2)
    late = await change(env, tenant, second, "IN_PROGRESS")
    assert error_code(late) == "BAD_USER_INPUT"
    assert (await get_case(env, tenant, second["id"]))["status"] == "RESOLVED"


async def test_each_operation_needs_its_scope_and_cases_stay_in_their_tenant(env: Env) -> None:
    tenant, other = await env.tenant("cases"), await env.tenant("cases")
    customer = (await env.create_customer(tenant, givenName="Fi"))["id"]
    case = await open_case(env, tenant, customer)
    read_only = await env.gql(CASE, {"id": case["id"]}, tenant=tenant, scopes=["cases:read"])
    assert ok(read_only)["case"]["subject"] == "***"  # no pii:contact: masked
    denied = await env.gql(
        ENTRY,
        {"id": case["id"], "body": "x", "visible": False},
        tenant=tenant,
        scopes=["cases:read"],
    )
    assert error_code(denied) == "FORBIDDEN"
    monitoring = (
        '{ caseMonitoring(since: "2020-01-01T00:00:00Z", until: "2030-01-01T00:00:00Z") '
        "{ casesOpened } }"
    )
    assert (
        error_code(await env.gql(monitoring, tenant=tenant, scopes=["cases:read", "cases:write"]))
        == "FORBIDDEN"
    )
    assert error_code(await env.gql(CASE, {"id": case["id"]}, tenant=other)) == "NOT_FOUND"


async def test_with_surveys_enabled_closing_invites_without_it_nothing_fails(env: Env) -> None:
    """Closing emits cases_closed; the surveys plugin, when the tenant runs it, turns it
    into a CSAT invitation (its own tests cover the invitation's content)."""
    tenant = await env.tenant("cases")
    customer = (await env.create_customer(tenant, givenName="Gil"))["id"]
    case = await open_case(env, tenant, customer)
    ok(await change(env, tenant, case, "CLOSED", **RESOLVE))
    await env.drain()
    assert len(await env.events(tenant, "cases_closed")) == 1


async def test_a_case_links_its_customers_activities_and_messages(env: Env) -> None:
    tenant = await env.tenant("cases")
    customer = (await env.create_customer(tenant, givenName="Hal"))["id"]
    other = (await env.create_customer(tenant, givenName="Ida"))["id"]
    case = await open_case(env, tenant, customer)
    foreign = await open_case(env, tenant, other)
    timeline = ok(await env.gql(TIMELINE, {"id": customer}, tenant=tenant))
    [activity] = [a["id"] for a in timeline["activities"]["nodes"]]
    link = """mutation($id: UUID!, $type: String!, $target: String!) {
      linkCase(caseId: $id, targetType: $type, targetId: $target) {
        links { targetType targetId } } }"""
    ok(
        await env.gql(
            link, {"id": case["id"], "type": "activity", "target": activity}, tenant=tenant
        )
    )
    linked = ok(
        await env.gql(link, {"id": case["id"], "type": "message", "target": "m-1"}, tenant=tenant)
    )
    assert linked["linkCase"]["links"] == [
        {"targetType": "activity", "targetId": activity},
        {"targetType": "message", "targetId": "m-1"},
    ]
    # another customer's activity, and an unknown kind of target, are refused
    refused = await env.gql(
        link, {"id": foreign["id"], "type": "activity", "target": activity}, tenant=tenant
    )
    assert error_code(refused) == "NOT_FOUND"
    odd = await env.gql(link, {"id": case["id"], "type": "letter", "target": "x"}, tenant=tenant)
    assert error_code(odd) == "BAD_USER_INPUT"
