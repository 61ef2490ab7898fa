"""Routing: the tenant's rules pick the team, round-robin spreads a team's cases over
its agents, and an agent at their open-case limit gets no more (the case waits in the
team's queue)."""

from __future__ import annotations

from collections import Counter

from cases_helpers import change, ok, open_case
from crmkit.testing import Env

SETTINGS = {
    "teams": [
        {"name": "general", "agents": ["user:g1", "user:g2", "user:g3"], "open_case_limit": 20},
        {"name": "complaints", "agents": ["user:c1", "user:c2"], "open_case_limit": 100},
        {"name": "premium", "lead": "user:p0", "agents": ["user:p1"], "open_case_limit": 5},
    ],
    "routing": [
        {"team": "premium", "tags": ["premium", "private-banking"]},
        {"team": "complaints", "kinds": ["complaint"]},
    ],
    "default_team": "general",
}
PAGE = "{ cases(first: 100) { nodes { team assignee } } }"
QUEUE = "{ myCases(first: 100) { nodes { id assignee } } }"
RESOLVE = {"resolution": "Done.", "resolutionCode": "answered"}


async def test_100_new_cases_spread_over_teams_by_the_rules_and_the_limits(env: Env) -> None:
    tenant = await env.tenant("cases", cases=SETTINGS)
    plain = (await env.create_customer(tenant, givenName="Ann"))["id"]
    premium = (await env.create_customer(tenant, givenName="Bo", tags=["premium"]))["id"]
    for i in range(100):
        if i % 10 == 0:  # 10 premium customers' cases, whatever their kind
            await open_case(env, tenant, premium, kind="COMPLAINT" if i % 20 else "REQUEST")
        elif i % 5 == 0:  # 10 complaints
            await open_case(env, tenant, plain, kind="COMPLAINT")
        else:  # 80 enquiries and requests
            await open_case(env, tenant, plain, kind="ENQUIRY" if i % 2 else "REQUEST")

    nodes = ok(await env.gql(PAGE, tenant=tenant))["cases"]["nodes"]
    assert Counter(node["team"] for node in nodes) == {
        "general": 80,
        "complaints": 10,
        "premium": 10,
    }
    assert Counter((node["team"], node["assignee"]) for node in nodes) == {
        ("general", "user:g1"): 20,
        ("general", "user:g2"): 20,
        ("general", "user:g3"): 20,
        ("general", None): 20,  # everyone at the limit: the team's queue
        ("complaints", "user:c1"): 5,
        ("complaints", "user:c2"): 5,
        ("premium", "user:p1"): 5,
        ("premium", None): 5,
    }

    # the queue: an agent sees their own cases and the team's unassigned ones
    token = env.tokens.issue(tenant_id=tenant, subject="user:g2", scopes=["cases:read"])
    queue = ok(await env.gql(QUEUE, token=token))["myCases"]["nodes"]
    assert Counter(node["assignee"] for node in queue) == {"user:g2": 20, None: 20}


async def test_a_closed_case_frees_room_for_the_next(env: Env) -> None:
    tenant = await env.tenant("cases", cases=SETTINGS)
    customer = (await env.create_customer(tenant, givenName="Cy", tags=["premium"]))["id"]
    cases = [await open_case(env, tenant, customer) for _ in range(6)]
    assert [case["assignee"] for case in cases] == ["user:p1"] * 5 + [None]
    ok(await change(env, tenant, cases[0], "CLOSED", **RESOLVE))
    assert (await open_case(env, tenant, customer))["assignee"] == "user:p1"
