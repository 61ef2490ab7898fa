"""What the plugin's tests share: the GraphQL documents and a few steps."""

from __future__ import annotations

import uuid
from typing import Any

from crmkit.testing import Env
from sqlalchemy import Uuid, bindparam, text

CASE_FIELDS = """id status kind priority version team assignee subject resolutionCode
  firstResponseDueAt resolutionDueAt firstResponseAt firstResponseMet resolutionMet
  escalatedAt reopenCount"""
OPEN = f"mutation($input: OpenCaseInput!) {{ openCase(input: $input) {{ {CASE_FIELDS} }} }}"
CHANGE = (
    "mutation($input: ChangeCaseStatusInput!) "
    f"{{ changeCaseStatus(input: $input) {{ {CASE_FIELDS} }} }}"
)
ENTRY = """mutation($id: UUID!, $body: String!, $visible: Boolean!) {
  addCaseEntry(caseId: $id, body: $body, visibleToCustomer: $visible) { id } }"""
CASE = f"query($id: UUID!) {{ case(id: $id) {{ {CASE_FIELDS} }} }}"


def ok(body: dict[str, Any]) -> dict[str, Any]:
    assert "errors" not in body, body
    data: dict[str, Any] = body["data"]
    return data


def error_code(body: dict[str, Any]) -> str:
    assert body.get("errors"), body
    code: str = body["errors"][0]["extensions"]["code"]
    return code


async def open_case(
    env: Env, tenant: uuid.UUID, customer: str, kind: str = "COMPLAINT", **fields: Any
) -> dict[str, Any]:
    input = {"customerId": customer, "kind": kind, "channel": "PHONE", "subject": "Fee"}
    case: dict[str, Any] = ok(await env.gql(OPEN, {"input": {**input, **fields}}, tenant=tenant))[
        "openCase"
    ]
    return case


async def change(
    env: Env, tenant: uuid.UUID, case: dict[str, Any], status: str, **fields: Any
) -> dict[str, Any]:
    """The answer of a status change at the case's version (``errors`` on refusal)."""
    input = {"id": case["id"], "expectedVersion": case["version"], "status": status, **fields}
    return await env.gql(CHANGE, {"input": input}, tenant=tenant)


async def get_case(env: Env, tenant: uuid.UUID, case_id: str) -> dict[str, Any]:
    found: dict[str, Any] = ok(await env.gql(CASE, {"id": case_id}, tenant=tenant))["case"]
    return found


async def run_sla_check(env: Env, tenant: uuid.UUID) -> None:
    """The cron job for one tenant, queued as the scheduler queues it."""
    await env.queue.enqueue("cases.check_slas", tenant_id=tenant, payload={})
    await env.drain()


async def raw_rows(env: Env, table: str, tenant: uuid.UUID) -> str:
    """A table's rows of the tenant as a stolen backup shows them (the owner, no RLS)."""
    query = text(f"SELECT * FROM {table} WHERE tenant_id = :tenant")
    async with env.owner_engine.connect() as conn:
        rows = (await conn.execute(query.bindparams(bindparam("tenant", tenant, Uuid)))).all()
    return repr(rows)
