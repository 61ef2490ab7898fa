"""Rewards and redemptions: the catalogue, idempotent redemption, cancellation, bad
input that writes nothing, and parallel redemptions on PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from crmkit.testing import Env
from loyalty_helpers import (
    ADJUST,
    CANCEL,
    EARN,
    REDEEM,
    entries,
    error_of,
    gql_ok,
    loyalty,
    new_reward,
)
from pydantic import ValidationError
from sqlalchemy import func, select

from crmkit_loyalty import ledger
from crmkit_loyalty.models import Account, Lot, Redemption, Reward
from crmkit_loyalty.settings import LoyaltySettings


async def member(env: Env, tenant: uuid.UUID, points: int, name: str = "Ann") -> str:
    """A customer holding ``points``."""
    customer: str = (await env.create_customer(tenant, givenName=name))["id"]
    await gql_ok(env, EARN, {"id": customer, "points": points}, tenant)
    return customer


async def counts(env: Env, tenant: uuid.UUID) -> tuple[int, int, int, list[Any]]:
    """Entries, redemptions, lots and the rewards' stock: what a refusal must not change."""
    async with env.platform.db.tenant_session(tenant) as session:
        redemptions = await session.scalar(select(func.count()).select_from(Redemption))
        lots = await session.scalar(select(func.count()).select_from(Lot))
        stock = list(await session.scalars(select(Reward.stock).order_by(Reward.id)))
    return await entries(env, tenant), int(redemptions or 0), int(lots or 0), stock


async def test_a_retried_redemption_redeems_once_and_answers_the_same(env: Env) -> None:
    tenant = await env.tenant("loyalty")
    customer = await member(env, tenant, 50)
    reward = await new_reward(env, tenant, costPoints=20, stock=3)
    variables = {"id": customer, "reward": reward["id"], "key": "order-17"}

    first = await env.gql(REDEEM, variables, tenant=tenant)
    again = await env.gql(REDEEM, variables, tenant=tenant)
    assert "errors" not in first and first == again
    assert first["data"]["redeemReward"]["balanceAfter"] == 30
    assert (await loyalty(env, tenant, customer))["balance"] == 30
    assert (await counts(env, tenant))[1:] == (1, 1, [2])

    other = await env.gql(REDEEM, {**variables, "reward": str(uuid.uuid4())}, tenant=tenant)
    assert error_of(other) == ("CONFLICT", "idempotencyKey")


async def test_cancelling_returns_the_points_and_the_stock(env: Env) -> None:
    tenant = await env.tenant("loyalty")
    customer = await member(env, tenant, 50)
    reward = await new_reward(env, tenant, costPoints=20, stock=1)
    redemption = await gql_ok(
        env, REDEEM, {"id": customer, "reward": reward["id"], "key": "k"}, tenant
    )
    for _ in range(2):  # cancelling twice is cancelling once
        cancelled = await gql_ok(env, CANCEL, {"id": redemption["id"]}, tenant)
        assert cancelled["status"] == "CANCELLED"
    account = await loyalty(env, tenant, customer)
    assert account["balance"] == 50
    assert [e["kind"] for e in account["ledger"]["nodes"]] == ["REVERSE", "REDEEM", "EARN"]
    assert (await counts(env, tenant))[3] == [1]


async def test_bad_input_is_refused_with_a_code_and_writes_nothing(env: Env) -> None:
    tenant = await env.tenant("loyalty")
    customer = await member(env, tenant, 15)
    reward = await new_reward(env, tenant, costPoints=20, stock=4)
    before = await counts(env, tenant)
    refused = {
        "negative points": (EARN, {"id": customer, "points": -5}),
        "unknown reward": (REDEEM, {"id": customer, "reward": str(uuid.uuid4()), "key": "a"}),
        "more than the balance": (REDEEM, {"id": customer, "reward": reward["id"], "key": "b"}),
        "adjustment without reason": (ADJUST, {"id": customer, "points": 5}),
        "blank reason": (ADJUST, {"id": customer, "points": 5, "reason": "  "}),
        "adjusting below zero": (ADJUST, {"id": customer, "points": -16, "reason": "fraud"}),
        "unknown customer": (EARN, {"id": str(uuid.uuid4()), "points": 5}),
    }
    answers = {
        name: error_of(await env.gql(query, variables, tenant=tenant))
        for name, (query, variables) in refused.items()
    }
    assert answers == {
        "negative points": ("BAD_USER_INPUT", "points"),
        "unknown reward": ("NOT_FOUND", "rewardId"),
        "more than the balance": ("BAD_USER_INPUT", "rewardId"),
        "adjustment without reason": ("BAD_USER_INPUT", "reason"),
        "blank reason": ("BAD_USER_INPUT", "reason"),
        "adjusting below zero": ("BAD_USER_INPUT", "points"),
        "unknown customer": ("NOT_FOUND", None),
    }
    assert await counts(env, tenant) == before
    assert (await loyalty(env, tenant, customer))["balance"] == 15


async def test_rewards_out_of_stock_window_or_tier_are_refused(env: Env) -> None:
    tenant = await env.tenant("loyalty")
    customer = await member(env, tenant, 100)
    sold_out = await new_reward(env, tenant, stock=0)
    gold = await new_reward(env, tenant, tierRequired="gold")
    later = await new_reward(env, tenant, validFrom="2999-01-01T00:00:00Z")
    for reward, code in (
        (sold_out, "CONFLICT"),
        (gold, "BAD_USER_INPUT"),
        (later, "BAD_USER_INPUT"),
    ):
        answer = await env.gql(
            REDEEM, {"id": customer, "reward": reward["id"], "key": "x"}, tenant=tenant
        )
        assert error_of(answer) == (code, "rewardId")
    assert (await loyalty(env, tenant, customer))["balance"] == 100


async def test_staff_without_the_admin_scope_cannot_adjust_or_edit_the_catalogue(env: Env) -> None:
    tenant = await env.tenant("loyalty")
    customer: str = (await env.create_customer(tenant, givenName="Di"))["id"]
    manager = env.token(tenant, ["customers:read", "loyalty:read", "loyalty:write"])
    earned = await env.gql(EARN, {"id": customer, "points": 5}, token=manager)
    assert "errors" not in earned, earned
    adjusted = await env.gql(ADJUST, {"id": customer, "points": 5, "reason": "r"}, token=manager)
    assert adjusted["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    created = await env.gql(
        'mutation { createLoyaltyReward(input: {name: "x", costPoints: 1}) { id } }', token=manager
    )
    assert created["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    reader = env.token(tenant, ["customers:read", "loyalty:read"])
    assert (await env.gql(EARN, {"id": customer, "points": 5}, token=reader))["errors"][0][
        "extensions"
    ]["code"] == "FORBIDDEN"


async def test_the_running_balance_is_the_sum_of_the_ledger(env: Env) -> None:
    tenant = await env.tenant("loyalty")
    customer = await member(env, tenant, 100)
    reward = await new_reward(env, tenant, costPoints=30)
    redemption = await gql_ok(
        env, REDEEM, {"id": customer, "reward": reward["id"], "key": "1"}, tenant
    )
    await gql_ok(env, REDEEM, {"id": customer, "reward": reward["id"], "key": "2"}, tenant)
    await gql_ok(env, CANCEL, {"id": redemption["id"]}, tenant)
    await gql_ok(env, ADJUST, {"id": customer, "points": -25, "reason": "Duplicate bonus"}, tenant)
    async with env.platform.tenant_scope(tenant) as scope:
        ctx = scope.hooks.context_for("loyalty")
        account = await ctx.session.get(Account, (tenant, uuid.UUID(customer)))
        lots = await ctx.session.scalar(
            select(func.sum(Lot.remaining)).where(Lot.customer_id == uuid.UUID(customer))
        )
        assert account is not None
        assert account.balance == await ledger.ledger_balance(ctx, uuid.UUID(customer)) == 45
        assert lots == 45


@pytest.mark.postgres_only
async def test_parallel_redemptions_never_overspend_a_balance(env: Env) -> None:
    tenant = await env.tenant("loyalty")
    customer = await member(env, tenant, 10)
    reward = await new_reward(env, tenant, costPoints=1)
    token = env.token(tenant)
    answers = await asyncio.gather(
        *(
            env.gql(REDEEM, {"id": customer, "reward": reward["id"], "key": f"k{i}"}, token=token)
            for i in range(20)
        )
    )
    accepted = [a for a in answers if "errors" not in a]
    refused = {error_of(a) for a in answers if "errors" in a}
    assert len(accepted) == 10 and refused == {("BAD_USER_INPUT", "rewardId")}
    assert (await loyalty(env, tenant, customer))["balance"] == 0


@pytest.mark.postgres_only
async def test_parallel_redemptions_never_oversell_a_stock(env: Env) -> None:
    tenant = await env.tenant("loyalty")
    customers = [await member(env, tenant, 10, f"C{i}") for i in range(20)]
    reward = await new_reward(env, tenant, costPoints=10, stock=5)
    token = env.token(tenant)
    answers = await asyncio.gather(
        *(
            env.gql(REDEEM, {"id": c, "reward": reward["id"], "key": "order"}, token=token)
            for c in customers
        )
    )
    accepted = [a for a in answers if "errors" not in a]
    refused = {error_of(a) for a in answers if "errors" in a}
    assert len(accepted) == 5 and refused == {("CONFLICT", "rewardId")}
    assert (await counts(env, tenant))[3] == [0]
    balances = sorted([(await loyalty(env, tenant, c))["balance"] for c in customers])
    assert balances == [0] * 5 + [10] * 15


@pytest.mark.postgres_only
async def test_parallel_retries_of_one_redemption_redeem_once(env: Env) -> None:
    tenant = await env.tenant("loyalty")
    customer = await member(env, tenant, 10)
    reward = await new_reward(env, tenant, costPoints=3)
    token = env.token(tenant)
    variables = {"id": customer, "reward": reward["id"], "key": "same"}
    answers = await asyncio.gather(*(env.gql(REDEEM, variables, token=token) for _ in range(8)))
    assert all(answer == answers[0] for answer in answers) and "errors" not in answers[0]
    assert (await loyalty(env, tenant, customer))["balance"] == 7


async def test_the_catalogue_is_edited_and_listed_by_availability(env: Env) -> None:
    tenant = await env.tenant("loyalty")
    lounge = await new_reward(env, tenant, name="Lounge", stock=2)
    dinner = await new_reward(env, tenant, name="Dinner", tierRequired="gold")
    update = """mutation($id: UUID!, $input: LoyaltyRewardInput!) {
      updateLoyaltyReward(id: $id, input: $input) { name stock tierRequired active } }"""
    assert await gql_ok(
        env, update, {"id": lounge["id"], "input": {"unlimitedStock": True}}, tenant
    ) == {"name": "Lounge", "stock": None, "tierRequired": None, "active": True}
    await gql_ok(env, update, {"id": dinner["id"], "input": {"active": False}}, tenant)
    listed = "query($only: Boolean!) { loyaltyRewards(availableOnly: $only) { name } }"
    assert [r["name"] for r in await gql_ok(env, listed, {"only": False}, tenant)] == [
        "Lounge",
        "Dinner",
    ]
    assert [r["name"] for r in await gql_ok(env, listed, {"only": True}, tenant)] == ["Lounge"]
    refused = await env.gql(
        update, {"id": lounge["id"], "input": {"tierRequired": "platinum"}}, tenant=tenant
    )
    assert error_of(refused) == ("BAD_USER_INPUT", "tierRequired")
    unknown = await env.gql(update, {"id": str(uuid.uuid4()), "input": {}}, tenant=tenant)
    assert error_of(unknown) == ("NOT_FOUND", "rewardId")
    create = "mutation($input: LoyaltyRewardInput!) { createLoyaltyReward(input: $input) { id } }"
    for fields, field in (
        ({"name": "x"}, "costPoints"),
        ({"name": "x", "costPoints": 0}, "costPoints"),
        ({"name": " ", "costPoints": 5}, "name"),
        ({"name": "x", "costPoints": 5, "stock": -1}, "stock"),
        (
            {
                "name": "x",
                "costPoints": 5,
                "validFrom": "2025-02-01T00:00:00Z",
                "validUntil": "2025-01-01T00:00:00Z",
            },
            "validUntil",
        ),
    ):
        refused = await env.gql(create, {"input": fields}, tenant=tenant)
        assert error_of(refused) == ("BAD_USER_INPUT", field)
    assert len(await gql_ok(env, listed, {"only": False}, tenant)) == 2


async def test_staff_earning_with_a_key_earns_once(env: Env) -> None:
    tenant = await env.tenant("loyalty")
    customer: str = (await env.create_customer(tenant, givenName="Eve"))["id"]
    variables = {"id": customer, "points": 25, "key": "welcome"}
    first = await gql_ok(env, EARN, variables, tenant)
    assert await gql_ok(env, EARN, variables, tenant) == first
    longest = await gql_ok(env, EARN, {**variables, "key": "k" * 200}, tenant)
    assert longest["balanceAfter"] == 50
    too_long = await env.gql(EARN, {**variables, "key": "k" * 201}, tenant=tenant)
    assert error_of(too_long) == ("BAD_USER_INPUT", "idempotencyKey")
    assert (await loyalty(env, tenant, customer))["balance"] == 50


def test_settings_that_contradict_themselves_are_refused() -> None:
    contradictions = [
        {"tiers": [{"name": "gold", "min_points": 10}]},
        {"tiers": [{"name": "a", "min_points": 0}, {"name": "b", "min_points": 0}]},
        {"rules": [{"kind": "login"}, {"kind": "login"}]},
        {
            "campaigns": [
                {"name": "x", "starts_on": "2025-02-01", "ends_on": "2025-01-01", "multiplier": "2"}
            ]
        },
        {"point_value": "-1"},
        {"expiry_dayz": 3},
    ]
    for values in contradictions:
        with pytest.raises(ValidationError):
            LoyaltySettings.model_validate(values)


@pytest.mark.postgres_only
async def test_parallel_first_earnings_open_one_account_and_lose_nothing(env: Env) -> None:
    tenant = await env.tenant("loyalty")
    customer: str = (await env.create_customer(tenant, givenName="New"))["id"]
    token = env.token(tenant)
    answers = await asyncio.gather(
        *(env.gql(EARN, {"id": customer, "points": i}, token=token) for i in range(1, 11))
    )
    assert all("errors" not in answer for answer in answers), answers
    after = [a["data"]["earnPoints"]["balanceAfter"] for a in answers]
    assert len(set(after)) == 10 and max(after) == 55  # one after the other, none lost
    assert (await loyalty(env, tenant, customer))["balance"] == 55
