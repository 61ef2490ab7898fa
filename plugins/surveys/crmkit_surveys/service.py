"""Surveys, invitations and responses: the one path GraphQL, the triggers, the public
route and the demo share, so every write is checked, and emits its events, alike."""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import crmkit
from sqlalchemy import delete, exists, select

from crmkit_surveys.models import Answer, Invitation, Response, Survey, SurveyVersion
from crmkit_surveys.questions import (
    Definition,
    QuestionType,
    check_answers,
    check_definition,
)
from crmkit_surveys.settings import KEY_PATTERN, NAME, PURPOSE, SurveysSettings

DETRACTORS = {QuestionType.NPS: 6, QuestionType.CSAT: 2}
"""The highest score that makes a detractor, by metric."""
SYSTEM_ACTOR = "crmkit:surveys"


def token_hash(token: str) -> bytes:
    """What an invitation stores to find its token again: SHA-256 (the token is 256
    random bits, so no salt or slow hash is needed against guessing)."""
    return hashlib.sha256(token.encode()).digest()


def link(settings: SurveysSettings, tenant_id: uuid.UUID, token: str) -> str:
    """The public URL of an invitation's form."""
    base = settings.public_base_url.rstrip("/")
    return f"{base}/plugins/{NAME}/respond/{tenant_id}/{token}"


# --- definitions ------------------------------------------------------------------------


async def create_survey(ctx: crmkit.TenantContext, key: str, draft: dict[str, Any]) -> Survey:
    """A new survey with its first draft; publish it to invite anyone."""
    if not re.fullmatch(KEY_PATTERN, key):
        raise crmkit.BadUserInput("key is 1-64 lowercase letters, digits, '-' and '_'", field="key")
    definition = check_definition(draft)
    taken = await ctx.session.scalar(select(exists().where(Survey.key == key)))
    if taken:
        raise crmkit.Conflict(f"a survey with key {key!r} exists already")
    survey = Survey(key=key, draft=definition.model_dump(mode="json"))
    ctx.session.add(survey)
    await ctx.session.flush()
    return survey


async def get_survey(ctx: crmkit.TenantContext, survey_id: uuid.UUID) -> Survey:
    survey = await ctx.session.get(Survey, (ctx.tenant_id, survey_id))
    if survey is None:
        raise crmkit.NotFound("no such survey")
    return survey


async def update_draft(
    ctx: crmkit.TenantContext, survey_id: uuid.UUID, draft: dict[str, Any]
) -> Survey:
    """Replace the draft: published versions, and the answers given to them, stay."""
    survey = await get_survey(ctx, survey_id)
    survey.draft = check_definition(draft).model_dump(mode="json")
    survey.updated_at = crmkit.utcnow()
    await ctx.session.flush()
    return survey


async def publish(ctx: crmkit.TenantContext, survey_id: uuid.UUID, actor: str) -> SurveyVersion:
    """Freeze the draft as the survey's next version: new invitations ask it."""
    survey = await get_survey(ctx, survey_id)
    survey.latest_version += 1
    survey.updated_at = crmkit.utcnow()
    version = SurveyVersion(
        survey_id=survey.id,
        version=survey.latest_version,
        definition=check_definition(survey.draft).model_dump(mode="json"),
        published_by=actor,
    )
    ctx.session.add(version)
    await ctx.session.flush()
    return version


async def latest_version(ctx: crmkit.TenantContext, survey: Survey) -> SurveyVersion | None:
    return await ctx.session.scalar(
        select(SurveyVersion).where(
            SurveyVersion.survey_id == survey.id, SurveyVersion.version == survey.latest_version
        )
    )


# --- invitations ------------------------------------------------------------------------


class Fatigued(crmkit.Conflict):
    """The customer was invited too recently (``fatigue_days``), to any survey."""


class NoConsent(crmkit.ConsentRequired):
    """The customer did not consent to survey invitations on the delivery channel."""


@dataclass(frozen=True)
class NewInvitation:
    invitation: Invitation
    link: str
    created: bool


async def invite(
    ctx: crmkit.TenantContext,
    *,
    survey: Survey,
    customer_id: uuid.UUID,
    trigger: str,
    trigger_ref: str,
    locale: str | None = None,
    channel: str | None = None,
) -> NewInvitation:
    """Invite a customer to the survey's latest version, once per ``trigger_ref``.

    Refused (nothing written) without consent to ``surveys_feedback`` on the tenant's
    delivery channel (:class:`NoConsent`), and within ``fatigue_days`` of the customer's
    last invitation to any survey (:class:`Fatigued`). When the tenant runs the
    channels plugin, it is asked to deliver the link; else staff read it in GraphQL.
    """
    settings = ctx.settings_as(SurveysSettings)
    customer = await crmkit.get_customer(ctx, customer_id)
    # One invitation decision at a time per customer: the fatigue rule holds even for
    # triggers of two surveys firing together (PostgreSQL row lock; SQLite serialises
    # writers anyway).
    await ctx.session.execute(
        select(crmkit.Customer.id).where(crmkit.Customer.id == customer.id).with_for_update()
    )
    done = await ctx.session.scalar(
        select(Invitation).where(
            Invitation.survey_id == survey.id,
            Invitation.customer_id == customer.id,
            Invitation.trigger_ref == trigger_ref,
        )
    )
    if done is not None:
        return NewInvitation(done, link(settings, ctx.tenant_id, done.token or ""), False)
    version = await latest_version(ctx, survey)
    if version is None:
        raise crmkit.BadUserInput("publish the survey before inviting to it", field="surveyId")
    definition = Definition.model_validate(version.definition)
    locale = locale or definition.locales[0]
    if locale not in definition.locales:
        raise crmkit.BadUserInput(
            f"the survey is worded in {', '.join(definition.locales)}, not {locale}",
            field="locale",
        )
    if not await crmkit.consent_allows(
        ctx.session, customer.id, PURPOSE, settings.delivery_channel
    ):
        raise NoConsent(
            f"the customer has not consented to {PURPOSE} by {settings.delivery_channel}"
        )
    now = crmkit.utcnow()
    if settings.fatigue_days:
        recent = await ctx.session.scalar(
            select(
                exists().where(
                    Invitation.customer_id == customer.id,
                    Invitation.created_at > now - timedelta(days=settings.fatigue_days),
                )
            )
        )
        if recent:
            raise Fatigued(
                f"the customer was invited to a survey in the last {settings.fatigue_days} "
                "days (the tenant's fatigue_days)"
            )
    token = secrets.token_urlsafe(32)
    invitation = Invitation(
        customer_id=customer.id,
        survey_id=survey.id,
        version_id=version.id,
        version=version.version,
        token_hash=token_hash(token),
        token=token,
        locale=locale,
        trigger=trigger,
        trigger_ref=trigger_ref,
        channel=channel,
        created_at=now,
        expires_at=now + timedelta(days=settings.invitation_valid_days),
    )
    ctx.session.add(invitation)
    await ctx.session.flush()
    url = link(settings, ctx.tenant_id, token)
    if ctx.plugin_enabled("channels"):
        crmkit.emit(
            ctx,
            "channels_send_requested",
            "SurveyInvitation",
            invitation.id,
            customer_id=str(customer.id),
            purpose=PURPOSE,
            channel=settings.delivery_channel,
            template="surveys.invitation",
            locale=locale,
            variables={
                "link": url,
                "survey_title": definition.title[locale],
                "expires_at": invitation.expires_at.isoformat(),
            },
            idempotency_key=f"surveys:invitation:{invitation.id}",
            requested_by=NAME,
        )
    return NewInvitation(invitation, url, True)


async def try_invite(ctx: crmkit.TenantContext, **arguments: Any) -> Invitation | None:
    """:func:`invite` for triggers: a customer who cannot be invited now (no consent,
    fatigue, erased, no published version) is skipped, not an error to retry."""
    try:
        return (await invite(ctx, **arguments)).invitation
    except (NoConsent, Fatigued, crmkit.NotFound, crmkit.BadUserInput):
        return None


# --- responses --------------------------------------------------------------------------


@dataclass(frozen=True)
class OpenInvitation:
    invitation: Invitation
    definition: Definition


async def open_invitation(ctx: crmkit.TenantContext, token: str) -> OpenInvitation:
    """The invitation a token opens, if it may still be answered: an unknown (forged)
    token is NOT_FOUND, a used or expired one CONFLICT, each with a message for the
    customer (and the invitation's ``locale`` to show it in). The row is locked: two
    submissions of one form cannot both count."""
    invitation = await ctx.session.scalar(
        select(Invitation).where(Invitation.token_hash == token_hash(token)).with_for_update()
    )
    if invitation is None:
        raise crmkit.NotFound("this survey link is not valid", reason="invalid")
    if invitation.responded_at is not None:
        raise crmkit.Conflict(
            "this survey was already answered with this link: thank you",
            reason="used",
            locale=invitation.locale,
        )
    if invitation.expires_at <= crmkit.utcnow():
        raise crmkit.Conflict(
            "this survey link has expired", reason="expired", locale=invitation.locale
        )
    await crmkit.get_customer(ctx, invitation.customer_id)  # erased: NOT_FOUND
    version = await ctx.session.get(SurveyVersion, (ctx.tenant_id, invitation.version_id))
    assert version is not None  # the foreign key holds it
    return OpenInvitation(invitation, Definition.model_validate(version.definition))


async def respond(
    ctx: crmkit.TenantContext, opened: OpenInvitation, raw: dict[str, Any]
) -> Response:
    """Record the answers to an invitation :func:`open_invitation` opened; emit
    ``surveys_response_recorded`` and, for a detractor, ``surveys_detractor`` (with a
    follow-up contact activity for the relationship manager if the tenant wants it)."""
    invitation = opened.invitation
    answers = check_answers(opened.definition, raw)
    headline: dict[QuestionType, int] = {}
    for answer in answers:
        if answer.score is not None:
            headline.setdefault(answer.question.type, answer.score)
    now = crmkit.utcnow()
    response = Response(
        id=crmkit.uuid7(),
        invitation_id=invitation.id,
        customer_id=invitation.customer_id,
        survey_id=invitation.survey_id,
        version_id=invitation.version_id,
        version=invitation.version,
        channel=invitation.channel,
        locale=invitation.locale,
        submitted_at=now,
        nps=headline.get(QuestionType.NPS),
        csat=headline.get(QuestionType.CSAT),
        ces=headline.get(QuestionType.CES),
    )
    ctx.session.add(response)
    await ctx.session.flush()  # no relationship orders the inserts: the response first
    for answer in answers:
        question = answer.question
        ctx.session.add(
            Answer(
                response_id=response.id,
                customer_id=invitation.customer_id,
                question_key=question.key,
                kind=question.type.value,
                dimension=question.dimension and question.dimension.value,
                facet=question.facet and question.facet.value,
                score=answer.score,
                choices=list(answer.choices) or None,
                text=answer.text,
            )
        )
    invitation.responded_at = now
    await ctx.session.flush()
    crmkit.emit(
        ctx,
        "surveys_response_recorded",
        "SurveyResponse",
        response.id,
        customer_id=str(response.customer_id),
        survey_id=str(response.survey_id),
        version=response.version,
        nps=response.nps,
        csat=response.csat,
        ces=response.ces,
    )
    for metric, highest in DETRACTORS.items():
        score = headline.get(metric)
        if score is not None and score <= highest:
            await _detractor(ctx, response, metric.value, score)
            break
    return response


async def _detractor(
    ctx: crmkit.TenantContext, response: Response, metric: str, score: int
) -> None:
    crmkit.emit(
        ctx,
        "surveys_detractor",
        "SurveyResponse",
        response.id,
        customer_id=str(response.customer_id),
        survey_id=str(response.survey_id),
        metric=metric,
        score=score,
    )
    if not ctx.settings_as(SurveysSettings).follow_up_detractors:
        return
    customer = await crmkit.get_customer(ctx, response.customer_id)
    await crmkit.record_activity(
        ctx,
        customer_id=customer.id,
        kind=crmkit.ActivityKind.CONTACT,
        channel=crmkit.Channel.OTHER,
        external_ref=f"{NAME}:follow-up:{response.id}",
        attributes={
            "task": "survey_follow_up",
            "assignee": customer.relationship_manager,
            "survey_response_id": str(response.id),
            "metric": metric,
            "score": score,
        },
    )


# --- the customer's rights --------------------------------------------------------------


async def export_of(ctx: crmkit.TenantContext, customer_id: uuid.UUID) -> Any:
    invitations = list(
        await ctx.session.scalars(
            select(Invitation).where(Invitation.customer_id == customer_id).order_by(Invitation.id)
        )
    )
    if not invitations:
        return None
    responses = await ctx.session.scalars(
        select(Response).where(Response.customer_id == customer_id).order_by(Response.id)
    )
    answers: dict[uuid.UUID, list[Answer]] = {}
    for answer in await ctx.session.scalars(
        select(Answer).where(Answer.customer_id == customer_id).order_by(Answer.id)
    ):
        answers.setdefault(answer.response_id, []).append(answer)
    return {
        "invitations": [
            {
                "id": str(i.id),
                "survey_id": str(i.survey_id),
                "version": i.version,
                "trigger": i.trigger,
                "locale": i.locale,
                "created_at": i.created_at.isoformat(),
                "expires_at": i.expires_at.isoformat(),
                "responded_at": i.responded_at and i.responded_at.isoformat(),
            }
            for i in invitations
        ],
        "responses": [
            {
                "id": str(r.id),
                "survey_id": str(r.survey_id),
                "version": r.version,
                "submitted_at": r.submitted_at.isoformat(),
                "answers": [
                    {
                        "question": a.question_key,
                        "score": a.score,
                        "choices": a.choices,
                        "text": a.text,
                    }
                    for a in answers.get(r.id, [])
                ],
            }
            for r in responses
        ],
    }


async def erase(ctx: crmkit.TenantContext, customer_id: uuid.UUID) -> None:
    """Every row naming the customer goes: answers, responses, invitations. Results
    computed afterwards no longer count them."""
    for model in (Answer, Response, Invitation):
        await ctx.session.execute(delete(model).where(model.customer_id == customer_id))
