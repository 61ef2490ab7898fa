"""The demo's sample surveys (``make run``): a relationship survey in English and German
with every question type, published, its invitations and about two thirds answered."""

from __future__ import annotations

import random
import uuid
from typing import Any

import crmkit
from sqlalchemy import select

from crmkit_surveys import service
from crmkit_surveys.models import Survey
from crmkit_surveys.settings import PURPOSE, SurveysSettings

KEY = "relationship-check"
DEFINITION: dict[str, Any] = {
    "title": {"en": "How are we doing?", "de": "Wie machen wir uns?"},
    "locales": ["en", "de"],
    "questions": [
        {
            "key": "recommend",
            "type": "nps",
            "text": {
                "en": "How likely are you to recommend us to a friend?",
                "de": "Wie wahrscheinlich empfehlen Sie uns einem Freund?",
            },
        },
        {
            "key": "satisfied",
            "type": "csat",
            "text": {"en": "How satisfied are you overall?", "de": "Wie zufrieden sind Sie?"},
        },
        {
            "key": "effort",
            "type": "ces",
            "text": {
                "en": "How easy was it to get what you needed?",
                "de": "Wie einfach war es, zu bekommen, was Sie brauchten?",
            },
        },
        {
            "key": "reliable-expected",
            "type": "servqual",
            "dimension": "reliability",
            "facet": "expectation",
            "text": {
                "en": "A bank should do what it promises, when it promises.",
                "de": "Eine Bank sollte tun, was sie verspricht, wann sie es verspricht.",
            },
        },
        {
            "key": "reliable-perceived",
            "type": "servqual",
            "dimension": "reliability",
            "facet": "perception",
            "text": {
                "en": "We do what we promise, when we promise.",
                "de": "Wir tun, was wir versprechen, wann wir es versprechen.",
            },
        },
        {
            "key": "contact",
            "type": "single_choice",
            "required": False,
            "text": {"en": "How do you prefer to reach us?", "de": "Wie erreichen Sie uns?"},
            "options": [
                {"key": "app", "text": {"en": "The app", "de": "Die App"}},
                {"key": "branch", "text": {"en": "A branch", "de": "Eine Filiale"}},
                {"key": "phone", "text": {"en": "By phone", "de": "Telefonisch"}},
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
COMMENTS = ["Quick answers in the app.", "The branch queue was long.", "Fees are unclear."]


async def seed(ctx: crmkit.TenantContext, customer_ids: list[uuid.UUID]) -> None:
    """Idempotent: the survey is made once, each customer is invited once (trigger
    ``demo``), and only unanswered invitations are answered."""
    rng = random.Random(10)  # noqa: S311  (the same demo every time; not security)
    survey = await ctx.session.scalar(select(Survey).where(Survey.key == KEY))
    if survey is None:
        survey = await service.create_survey(ctx, KEY, DEFINITION)
        await service.publish(ctx, survey.id, service.SYSTEM_ACTOR)
    channel = ctx.settings_as(SurveysSettings).delivery_channel
    for customer_id in customer_ids:
        score, answer = rng.randint(0, 10), rng.random() < 0.67
        if not await crmkit.consent_allows(ctx.session, customer_id, PURPOSE, channel):
            await crmkit.record_consent(
                ctx,
                customer_id=customer_id,
                purpose=PURPOSE,
                channel=channel,
                state=crmkit.ConsentState.GRANTED,
                source=crmkit.ConsentSource.IMPORT,
                policy_version="demo",
                legal_basis=crmkit.LegalBasis.CONSENT,
                captured_by=service.SYSTEM_ACTOR,
            )
        made = await service.try_invite(
            ctx, survey=survey, customer_id=customer_id, trigger="demo", trigger_ref="demo"
        )
        if made is None or made.responded_at is not None or made.token is None or not answer:
            continue
        opened = await service.open_invitation(ctx, made.token)
        await service.respond(
            ctx,
            opened,
            {
                "recommend": score,
                "satisfied": max(1, min(5, score // 2)),
                "effort": rng.randint(3, 7),
                "reliable-expected": rng.randint(5, 7),
                "reliable-perceived": rng.randint(3, 7),
                "contact": rng.choice(["app", "branch", "phone"]),
                "comment": rng.choice(COMMENTS),
            },
        )
