"""SLA clocks end to end, on the injected clock: a complaint opened on Friday 17:00
before Whit Monday (desk open 9-18, Monday to Friday, Berlin) breaches at the right
minute, waiting on the customer moves its deadlines by exactly the paused business time,
and the breach cron run twice escalates once."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from cases_helpers import ENTRY, change, get_case, ok, open_case, run_sla_check
from crmkit.testing import Env, FrozenClock

from crmkit_cases.calendar import BusinessCalendar
from crmkit_cases.settings import CasesSettings

BERLIN = ZoneInfo("Europe/Berlin")
SETTINGS = {
    "time_zone": "Europe/Berlin",
    "country": "DE",
    "teams": [{"name": "complaints", "lead": "user:lead", "agents": ["user:agent"]}],
    "default_team": "complaints",
}
CALENDAR = BusinessCalendar.of(CasesSettings.model_validate(SETTINGS))


def berlin(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=BERLIN)  # type: ignore[misc]


def instant(value: str) -> datetime:
    return datetime.fromisoformat(value)


async def breaches(env: Env, tenant: uuid.UUID) -> list[tuple[str, str]]:
    return [
        (e.subject_id, e.data["target"]) for e in await env.events(tenant, "cases_sla_breached")
    ]


async def test_a_complaint_opened_friday_17_before_whit_monday_breaches_at_the_right_minute(
    env: Env, clock: FrozenClock
) -> None:
    tenant = await env.tenant("cases", cases=SETTINGS)
    customer = (await env.create_customer(tenant, givenName="Ann"))["id"]
    clock.set(berlin(2025, 6, 6, 17))
    case = await open_case(env, tenant, customer)
    # 1 h on Friday, none on the weekend and Whit Monday, 9 + 9 h Tuesday and
    # Wednesday, the last 5 h on Thursday; 48 h end on the next Tuesday at 11:00
    due = berlin(2025, 6, 12, 14)
    assert instant(case["firstResponseDueAt"]) == due
    assert instant(case["resolutionDueAt"]) == berlin(2025, 6, 17, 11)
    assert case["assignee"] == "user:agent"

    clock.set(due)
    await run_sla_check(env, tenant)
    assert await breaches(env, tenant) == []
    [warning] = await env.events(tenant, "cases_sla_warning")  # 80 % of 24 h: Thursday 09:12
    assert warning.data["target"] == "first_response"

    clock.set(due + timedelta(minutes=1))
    await run_sla_check(env, tenant)
    assert await breaches(env, tenant) == [(case["id"], "first_response")]
    [breach] = await env.events(tenant, "cases_sla_breached")
    assert breach.data["escalated_to"] == "user:lead" and breach.data["kind"] == "complaint"
    escalated = await get_case(env, tenant, case["id"])
    assert escalated["assignee"] == "user:lead" and escalated["firstResponseMet"] is False

    # a late answer stays a miss; the resolution clock goes on
    ok(await env.gql(ENTRY, {"id": case["id"], "body": "Sorry.", "visible": True}, tenant=tenant))
    assert (await get_case(env, tenant, case["id"]))["firstResponseMet"] is False


async def test_the_breach_cron_run_twice_escalates_once(env: Env, clock: FrozenClock) -> None:
    tenant = await env.tenant("cases", cases=SETTINGS)
    customer = (await env.create_customer(tenant, givenName="Bo"))["id"]
    clock.set(berlin(2025, 6, 6, 17))
    cases = [await open_case(env, tenant, customer) for _ in range(3)]
    clock.set(berlin(2025, 6, 20, 12))  # both deadlines of all three passed
    await run_sla_check(env, tenant)
    after_first = [await get_case(env, tenant, case["id"]) for case in cases]
    await run_sla_check(env, tenant)
    assert [await get_case(env, tenant, case["id"]) for case in cases] == after_first
    assert sorted(await breaches(env, tenant)) == sorted(
        (case["id"], target) for case in cases for target in ("first_response", "resolution")
    )
    assert len(await env.events(tenant, "cases_sla_warning")) == 0  # a breach says more


async def test_waiting_on_the_customer_moves_deadlines_by_the_paused_business_time(
    env: Env, clock: FrozenClock
) -> None:
    tenant = await env.tenant("cases", cases=SETTINGS)
    customer = (await env.create_customer(tenant, givenName="Cy"))["id"]
    clock.set(berlin(2025, 6, 10, 10))
    case = await open_case(env, tenant, customer)
    first_due, resolution_due = (
        instant(case["firstResponseDueAt"]),
        instant(case["resolutionDueAt"]),
    )
    assert first_due == berlin(2025, 6, 12, 16)

    clock.set(berlin(2025, 6, 10, 12))
    case = ok(await change(env, tenant, case, "WAITING_ON_CUSTOMER"))["changeCaseStatus"]
    clock.set(berlin(2025, 6, 12, 16, 30))  # past the first deadline, but the clock stood still
    await run_sla_check(env, tenant)
    assert await breaches(env, tenant) == []

    case = ok(await change(env, tenant, case, "IN_PROGRESS"))["changeCaseStatus"]
    paused = timedelta(hours=6 + 9 + 7.5)  # Tuesday 12-18, Wednesday, Thursday 9-16:30
    assert CALENDAR.between(berlin(2025, 6, 10, 12), berlin(2025, 6, 12, 16, 30)) == paused
    moved = instant(case["firstResponseDueAt"])
    # 2 h Thursday, 9 h Friday, 9 h Monday, 2.5 h Tuesday
    assert moved == berlin(2025, 6, 17, 11, 30)
    assert CALENDAR.between(first_due, moved) == paused
    assert CALENDAR.between(resolution_due, instant(case["resolutionDueAt"])) == paused

    clock.set(moved)
    await run_sla_check(env, tenant)
    assert await breaches(env, tenant) == []
    clock.advance(minutes=1)
    await run_sla_check(env, tenant)
    assert await breaches(env, tenant) == [(case["id"], "first_response")]


async def test_a_reply_in_time_meets_the_first_response_target(
    env: Env, clock: FrozenClock
) -> None:
    tenant = await env.tenant("cases", cases=SETTINGS)
    customer = (await env.create_customer(tenant, givenName="Di"))["id"]
    clock.set(berlin(2025, 6, 6, 17))
    case = await open_case(env, tenant, customer)
    clock.set(berlin(2025, 6, 12, 14))  # the last minute
    ok(await env.gql(ENTRY, {"id": case["id"], "body": "On it.", "visible": True}, tenant=tenant))
    await run_sla_check(env, tenant)
    answered = await get_case(env, tenant, case["id"])
    assert answered["firstResponseMet"] is True and answered["status"] == "IN_PROGRESS"
    assert await breaches(env, tenant) == []


async def test_an_escalation_asks_channels_to_tell_the_customer_only_where_it_runs(
    env: Env, clock: FrozenClock
) -> None:
    if "channels" not in env.platform.registry.infos:
        pytest.skip("the channels plugin is not installed")
    for plugins in (("cases", "channels"), ("cases",)):
        tenant = await env.tenant(*plugins, cases=SETTINGS)
        customer = (await env.create_customer(tenant, givenName="Eve"))["id"]
        clock.set(berlin(2025, 6, 6, 17))
        case = await open_case(env, tenant, customer)
        clock.set(berlin(2025, 6, 12, 14, 1))
        await run_sla_check(env, tenant)
        await run_sla_check(env, tenant)
        assert await breaches(env, tenant) == [(case["id"], "first_response")]
        requests = [
            (e.data["purpose"], e.data["template"], e.data["idempotency_key"])
            for e in await env.events(tenant, "channels_send_requested")
        ]
        expected = (
            "service_notices",
            "cases.escalated",
            f"cases:escalated:{case['id']}:first_response",
        )
        assert requests == ([expected] if "channels" in plugins else [])
