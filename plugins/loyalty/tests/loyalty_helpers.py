"""What the loyalty tests share: the GraphQL they send and small readers of the tables."""

from __future__ import annotations

import uuid
from typing import Any

from crmkit.testing import Env
from sqlalchemy import func, select

from crmkit_loyalty.models import LedgerEntry

RECORD = """mutation($input: RecordActivityInput!) { recordActivity(input: $input) { id } }"""
LOYALTY = """query($id: UUID!) { customer(id: $id) { loyalty {
  balance tier tierSince pointsExpiringSoon
  ledger(first: 50) { nodes { kind points balanceAfter reason actor } } } } }"""
EARN = """mutation($id: UUID!, $points: Int!, $key: String) {
  earnPoints(customerId: $id, points: $points, idempotencyKey: $key) { id points balanceAfter }
}"""
ADJUST = """mutation($id: UUID!, $points: Int!, $reason: String) {
  adjustPoints(customerId: $id, points: $points, reason: $reason) { id points reason }
}"""
REDEEM = """mutation($id: UUID!, $reward: UUID!, $key: String!) {
  redeemReward(customerId: $id, rewardId: $reward, idempotencyKey: $key) {
    id points balanceAfter status rewardId createdAt }
}"""
CANCEL = (
    """mutation($id: UUID!) { cancelRedemption(redemptionId: $id) { id status cancelledAt } }"""
)
CREATE_REWARD = """mutation($input: LoyaltyRewardInput!) {
  createLoyaltyReward(input: $input) { id name costPoints stock tierRequired }
}"""


async def record(env: Env, tenant: uuid.UUID, customer: str, **fields: Any) -> str:
    """Record an activity (a transaction on the app by default); its id."""
    payload = {"customerId": customer, "kind": "TRANSACTION", "channel": "APP", **fields}
    body = await env.gql(RECORD, {"input": payload}, tenant=tenant)
    assert "errors" not in body, body
    activity_id: str = body["data"]["recordActivity"]["id"]
    return activity_id


async def loyalty(env: Env, tenant: uuid.UUID, customer: str) -> dict[str, Any]:
    body = await env.gql(LOYALTY, {"id": customer}, tenant=tenant)
    assert "errors" not in body, body
    account: dict[str, Any] = body["data"]["customer"]["loyalty"]
    return account


async def gql_ok(env: Env, query: str, variables: dict[str, Any], tenant: uuid.UUID) -> Any:
    body = await env.gql(query, variables, tenant=tenant)
    assert "errors" not in body, body
    return next(iter(body["data"].values()))


def error_of(body: dict[str, Any]) -> tuple[str, str | None]:
    """The code and field of a refused operation's first error."""
    assert body.get("data") is None or not any(body["data"].values()), body
    extensions = body["errors"][0]["extensions"]
    return extensions["code"], extensions.get("field")


async def entries(env: Env, tenant: uuid.UUID) -> int:
    """How many ledger entries the tenant holds."""
    async with env.platform.db.tenant_session(tenant) as session:
        return int(await session.scalar(select(func.count()).select_from(LedgerEntry)) or 0)


async def new_reward(env: Env, tenant: uuid.UUID, **fields: Any) -> dict[str, Any]:
    reward: dict[str, Any] = await gql_ok(
        env, CREATE_REWARD, {"input": {"name": "Lounge pass", "costPoints": 10, **fields}}, tenant
    )
    return reward
