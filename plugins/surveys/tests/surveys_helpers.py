"""What the surveys tests share: a definition, the GraphQL they send, and helpers that
set a tenant up (a published survey, customers who consented) and read the tables."""

from __future__ import annotations

import uuid
from typing import Any

from crmkit.testing import Env
from sqlalchemy import func, select

DEFINITION: dict[str, Any] = {
    "title": {"en": "Your visit", "de": "Ihr Besuch"},
    "locales": ["en", "de"],
    "questions": [
        {
            "key": "recommend",
            "type": "nps",
            "text": {"en": "Would you recommend us?", "de": "Würden Sie uns empfehlen?"},
        },
        {
            "key": "satisfied",
            "type": "csat",
            "required": False,
            "text": {"en": "How satisfied are you?", "de": "Wie zufrieden sind Sie?"},
        },
        {
            "key": "effort",
            "type": "ces",
            "required": False,
            "text": {"en": "How easy was it?", "de": "Wie einfach war es?"},
        },
        {
            "key": "reliable-expected",
            "type": "servqual",
            "dimension": "reliability",
            "facet": "expectation",
            "required": False,
            "text": {"en": "Banks keep promises.", "de": "Banken halten Versprechen."},
        },
        {
            "key": "reliable-perceived",
            "type": "servqual",
            "dimension": "reliability",
            "facet": "perception",
            "required": False,
            "text": {"en": "We kept ours.", "de": "Wir haben unsere gehalten."},
        },
        {
            "key": "empathy-perceived",
            "type": "servqual",
            "dimension": "empathy",
            "facet": "perception",
            "required": False,
            "text": {"en": "We listened.", "de": "Wir haben zugehört."},
        },
        {
            "key": "topics",
            "type": "multiple_choice",
            "required": False,
            "text": {"en": "What did you come for?", "de": "Weshalb kamen Sie?"},
            "options": [
                {"key": "loan", "text": {"en": "A loan", "de": "Ein Kredit"}},
                {"key": "card", "text": {"en": "A card", "de": "Eine Karte"}},
            ],
        },
        {
            "key": "comment",
            "type": "text",
            "required": False,
            "text": {"en": "Anything else?", "de": "Sonst noch etwas?"},
        },
    ],
}

CREATE = """mutation($key: String!, $definition: JSON!) {
  createSurvey(key: $key, definition: $definition) { id key latestVersion } }"""
PUBLISH = """mutation($id: UUID!) { publishSurvey(id: $id) { id version definition } }"""
INVITE = """mutation($survey: UUID!, $customer: UUID!, $locale: String) {
  inviteToSurvey(surveyId: $survey, customerId: $customer, locale: $locale) {
    id version locale trigger link expiresAt } }"""
CONSENT = """mutation($input: RecordConsentInput!) { recordConsent(input: $input) { id } }"""
RECORD = """mutation($input: RecordActivityInput!) { recordActivity(input: $input) { id } }"""


async def ok(env: Env, query: str, variables: dict[str, Any], tenant: uuid.UUID) -> Any:
    body = await env.gql(query, variables, tenant=tenant)
    assert "errors" not in body, body
    return body["data"]


def error_of(body: dict[str, Any]) -> tuple[str, str | None]:
    extensions = body["errors"][0]["extensions"]
    return extensions["code"], extensions.get("field")


async def published_survey(
    env: Env, tenant: uuid.UUID, key: str = "visit", definition: dict[str, Any] | None = None
) -> str:
    """A survey of ``definition`` (default :data:`DEFINITION`), published: its id."""
    created = await ok(env, CREATE, {"key": key, "definition": definition or DEFINITION}, tenant)
    survey_id: str = created["createSurvey"]["id"]
    await ok(env, PUBLISH, {"id": survey_id}, tenant)
    return survey_id


async def consent(env: Env, tenant: uuid.UUID, customer: str, state: str = "GRANTED") -> None:
    payload = {
        "customerId": customer,
        "purpose": "surveys_feedback",
        "channel": "EMAIL",
        "state": state,
        "source": "WEB",
        "policyVersion": "v1",
        "legalBasis": "CONSENT",
    }
    await ok(env, CONSENT, {"input": payload}, tenant)


async def consenting_customer(env: Env, tenant: uuid.UUID, **fields: Any) -> str:
    customer: str = (await env.create_customer(tenant, givenName="Ann", **fields))["id"]
    await consent(env, tenant, customer)
    return customer


async def invite(
    env: Env, tenant: uuid.UUID, survey: str, customer: str, locale: str | None = None
) -> dict[str, Any]:
    variables = {"survey": survey, "customer": customer, "locale": locale}
    invitation: dict[str, Any] = (await ok(env, INVITE, variables, tenant))["inviteToSurvey"]
    return invitation


def path_of(link: str) -> str:
    """The link's path, to send through the test client."""
    return "/" + link.split("://", 1)[1].split("/", 1)[1]


async def count(env: Env, tenant: uuid.UUID, model: Any) -> int:
    async with env.platform.db.tenant_session(tenant) as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)
