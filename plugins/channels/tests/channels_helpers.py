"""GraphQL documents and steps the tests share."""

from __future__ import annotations

import uuid
from typing import Any

from crmkit.testing import Env

SAVE = """mutation($input: SaveTemplateInput!) {
  saveTemplate(input: $input) { id key channel locale version }
}"""
SEND = """mutation($input: SendMessageInput!) {
  sendMessage(input: $input) { id status channel }
}"""
CONSENT = """mutation($input: RecordConsentInput!) { recordConsent(input: $input) { id } }"""
MESSAGES = """query($id: UUID!) { customer(id: $id) {
  messages { id channel direction status reason attempts providerId body subject } } }"""
CREATE_CAMPAIGN = """mutation($input: CampaignInput!) { createCampaign(input: $input) { id } }"""
START = "mutation($id: UUID!) { startCampaign(id: $id) { id startedAt } }"
PROGRESS = """query($id: UUID!) { campaign(id: $id) {
  expandedAt progress { queued sent delivered suppressed failed bounced } } }"""


def ok(body: dict[str, Any]) -> dict[str, Any]:
    assert "errors" not in body, body
    data: dict[str, Any] = body["data"]
    return data


async def template(
    env: Env, tenant: uuid.UUID, key: str, channel: str, body: str, **more: Any
) -> None:
    ok(
        await env.gql(
            SAVE, {"input": {"key": key, "channel": channel, "body": body, **more}}, tenant=tenant
        )
    )


async def grant(
    env: Env,
    tenant: uuid.UUID,
    customer: str,
    channel: str,
    purpose: str = "marketing",
    state: str = "GRANTED",
) -> None:
    decision = {
        "customerId": customer,
        "purpose": purpose,
        "channel": channel,
        "state": state,
        "source": "WEB",
        "policyVersion": "2025-01",
        "legalBasis": "CONSENT",
    }
    ok(await env.gql(CONSENT, {"input": decision}, tenant=tenant))


async def send(env: Env, tenant: uuid.UUID, **fields: Any) -> dict[str, Any]:
    message: dict[str, Any] = ok(await env.gql(SEND, {"input": fields}, tenant=tenant))[
        "sendMessage"
    ]
    return message


async def messages(env: Env, tenant: uuid.UUID, customer: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = ok(await env.gql(MESSAGES, {"id": customer}, tenant=tenant))[
        "customer"
    ]["messages"]
    return found


async def campaign(env: Env, tenant: uuid.UUID, **fields: Any) -> str:
    data = ok(await env.gql(CREATE_CAMPAIGN, {"input": fields}, tenant=tenant))
    campaign_id: str = data["createCampaign"]["id"]
    return campaign_id


async def progress(env: Env, tenant: uuid.UUID, campaign_id: str) -> dict[str, Any]:
    found: dict[str, Any] = ok(await env.gql(PROGRESS, {"id": campaign_id}, tenant=tenant))[
        "campaign"
    ]
    return found
