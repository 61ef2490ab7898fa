"""The plugin's GraphQL: definitions and versions, invitations, results, and
``Customer.surveys { latestNps latestCsat responses(first, after) }``.

Resolvers return the ORM rows; strawberry reads their attributes. A free-text answer
and an invitation's link go out through ``crmkit.disclose``: masked without
``pii:contact``, logged when shown.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import crmkit
import strawberry
from sqlalchemy import Select, and_, func, select
from strawberry.scalars import JSON

from crmkit_surveys import results, service
from crmkit_surveys.models import Answer, Invitation, Response, Survey, SurveyVersion
from crmkit_surveys.settings import NAME, SurveysSettings

READ = f"{NAME}:read"
WRITE = f"{NAME}:write"
MANAGE = f"{NAME}:manage"


@strawberry.type(name="SurveyVersion", description="A published, frozen definition.")
class SurveyVersionType:
    id: uuid.UUID
    survey_id: uuid.UUID
    version: int
    definition: JSON = strawberry.field(description="Title, locales and questions as asked.")
    published_at: datetime
    published_by: str


async def load_versions(
    context: crmkit.RequestContext, survey_ids: Sequence[uuid.UUID]
) -> list[list[SurveyVersion]]:
    rows = await context.session.scalars(
        select(SurveyVersion)
        .where(SurveyVersion.survey_id.in_(survey_ids))
        .order_by(SurveyVersion.version)
    )
    return crmkit.rows_by_key(rows, lambda version: version.survey_id, survey_ids)


@strawberry.type(name="Survey", description="A survey: its editable draft and its versions.")
class SurveyType:
    id: uuid.UUID
    key: str
    draft: JSON = strawberry.field(description="The definition publishSurvey would freeze.")
    latest_version: int = strawberry.field(description="0 until first published.")
    created_at: datetime
    updated_at: datetime

    @strawberry.field(description="Every published version, oldest first.")
    async def versions(self, info: crmkit.Info) -> list[SurveyVersionType]:
        return await info.context.load(load_versions, self.id)


@strawberry.type(name="SurveyInvitation", description="One customer invited to one version.")
class SurveyInvitationType:
    id: uuid.UUID
    customer_id: uuid.UUID
    survey_id: uuid.UUID
    version: int
    locale: str
    trigger: str = strawberry.field(description="activity, case_closed, schedule or manual.")
    channel: str | None = strawberry.field(description="The triggering activity's channel.")
    created_at: datetime
    expires_at: datetime
    responded_at: datetime | None
    token: strawberry.Private[str | None]

    @strawberry.field(description="The form's address (personal: masked without pii:contact).")
    def link(self, info: crmkit.Info) -> str | None:
        settings = info.context.tenant_context(NAME).settings_as(SurveysSettings)
        url = None
        if self.token is not None:
            url = service.link(settings, info.context.principal.tenant_id, self.token)
        return crmkit.disclose(
            info,
            url,
            information_class=crmkit.InformationClass.CONTACT,
            target_type="SurveyInvitation",
            target_id=self.id,
            field="link",
        )


@strawberry.type(name="SurveyAnswer")
class SurveyAnswerType:
    id: uuid.UUID
    question_key: str
    kind: str
    dimension: str | None
    facet: str | None
    score: int | None
    choices: list[str] | None
    text = crmkit.personal_field(crmkit.InformationClass.CONTACT, "A free-text answer.")


async def load_answers(
    context: crmkit.RequestContext, response_ids: Sequence[uuid.UUID]
) -> list[list[Answer]]:
    rows = await context.session.scalars(
        select(Answer).where(Answer.response_id.in_(response_ids)).order_by(Answer.id)
    )
    return crmkit.rows_by_key(rows, lambda answer: answer.response_id, response_ids)


@strawberry.type(name="SurveyResponse", description="A customer's answers to one invitation.")
class SurveyResponseType:
    id: uuid.UUID
    survey_id: uuid.UUID
    version: int
    locale: str
    channel: str | None
    submitted_at: datetime
    nps: int | None
    csat: int | None
    ces: int | None

    @strawberry.field(description="In the order of the version's questions.")
    async def answers(self, info: crmkit.Info) -> list[SurveyAnswerType]:
        return await info.context.load(load_answers, self.id)


ResponsesPage = tuple[uuid.UUID, int, uuid.UUID | None]
"""A page of a customer's responses: customer, page size, the cursor's response id."""


async def load_responses(
    context: crmkit.RequestContext, keys: Sequence[ResponsesPage]
) -> list[list[Response]]:
    """``size + 1`` responses per customer, newest first: one windowed statement per
    distinct (size, cursor), which is one for a page of customers."""
    pages: defaultdict[tuple[int, uuid.UUID | None], list[uuid.UUID]] = defaultdict(list)
    for customer_id, size, after in keys:
        pages[(size, after)].append(customer_id)
    found: defaultdict[ResponsesPage, list[Response]] = defaultdict(list)
    for (size, after), customer_ids in pages.items():
        ranked = select(
            Response.tenant_id,
            Response.id,
            func.row_number()
            .over(partition_by=Response.customer_id, order_by=Response.id.desc())
            .label("n"),
        ).where(Response.customer_id.in_(customer_ids))
        if after is not None:
            ranked = ranked.where(Response.id < after)
        page = ranked.subquery()
        for response in await context.session.scalars(
            select(Response)
            .join(page, and_(Response.tenant_id == page.c.tenant_id, Response.id == page.c.id))
            .where(page.c.n <= size + 1)
            .order_by(Response.id.desc())
        ):
            found[(response.customer_id, size, after)].append(response)
    return [found[key] for key in keys]


LatestKey = tuple[uuid.UUID, str]
"""A customer and a headline metric (``nps`` or ``csat``)."""


async def load_latest(
    context: crmkit.RequestContext, keys: Sequence[LatestKey]
) -> list[int | None]:
    """Each customer's latest score of a metric: one windowed statement per metric."""
    by_metric: defaultdict[str, list[uuid.UUID]] = defaultdict(list)
    for customer_id, metric in keys:
        by_metric[metric].append(customer_id)
    found: dict[LatestKey, int] = {}
    for metric, customer_ids in by_metric.items():
        column = getattr(Response, metric)
        ranked = (
            select(
                Response.customer_id,
                column.label("score"),
                func.row_number()
                .over(partition_by=Response.customer_id, order_by=Response.id.desc())
                .label("n"),
            )
            .where(Response.customer_id.in_(customer_ids), column.is_not(None))
            .subquery()
        )
        for customer_id, score in await context.session.execute(
            select(ranked.c.customer_id, ranked.c.score).where(ranked.c.n == 1)
        ):
            found[(customer_id, metric)] = score
    return [found.get(key) for key in keys]


@strawberry.type(name="CustomerSurveys", description="A customer's survey answers.")
class CustomerSurveysType:
    customer_id: strawberry.Private[uuid.UUID]

    @strawberry.field(description="The NPS score of the customer's latest NPS answer.")
    async def latest_nps(self, info: crmkit.Info) -> int | None:
        return await info.context.load(load_latest, (self.customer_id, "nps"))

    @strawberry.field(description="The CSAT score of the customer's latest CSAT answer.")
    async def latest_csat(self, info: crmkit.Info) -> int | None:
        return await info.context.load(load_latest, (self.customer_id, "csat"))

    @strawberry.field(description="Newest first.")
    async def responses(
        self, info: crmkit.Info, first: int | None = None, after: str | None = None
    ) -> crmkit.Connection[SurveyResponseType]:
        size, after_id = info.context.page(first, after)
        rows = await info.context.load(load_responses, (self.customer_id, size, after_id))
        return crmkit.connection(rows, size)


# --- resolvers --------------------------------------------------------------------------


def _ctx(info: crmkit.Info) -> crmkit.TenantContext:
    return info.context.tenant_context(NAME)


def _page(
    statement: Select[Any], model: Any, info: crmkit.Info, first: int | None, after: str | None
) -> tuple[Select[Any], int]:
    size, after_id = info.context.page(first, after)
    if after_id is not None:
        statement = statement.where(model.id > after_id)
    return statement.order_by(model.id).limit(size + 1), size


async def resolve_surveys(
    info: crmkit.Info, first: int | None = None, after: str | None = None
) -> crmkit.Connection[SurveyType]:
    statement, size = _page(select(Survey), Survey, info, first, after)
    return crmkit.connection(list(await info.context.session.scalars(statement)), size)


async def resolve_survey(info: crmkit.Info, id: uuid.UUID) -> SurveyType:
    return await service.get_survey(_ctx(info), id)  # type: ignore[return-value]


async def resolve_invitations(
    info: crmkit.Info,
    first: int | None = None,
    after: str | None = None,
    survey_id: uuid.UUID | None = None,
    customer_id: uuid.UUID | None = None,
) -> crmkit.Connection[SurveyInvitationType]:
    """Invitations, oldest first; filter by survey or customer."""
    statement = select(Invitation)
    if survey_id is not None:
        statement = statement.where(Invitation.survey_id == survey_id)
    if customer_id is not None:
        statement = statement.where(Invitation.customer_id == customer_id)
    statement, size = _page(statement, Invitation, info, first, after)
    return crmkit.connection(list(await info.context.session.scalars(statement)), size)


async def resolve_results(
    info: crmkit.Info,
    survey_id: uuid.UUID,
    group_by: results.GroupBy = results.GroupBy.NONE,
    since: datetime | None = None,
    until: datetime | None = None,
    version: int | None = None,
    segment: str | None = None,
) -> list[results.Group]:
    """Results computed in SQL (see results.py), over ``[since, until)``."""
    if since is not None and until is not None and until <= since:
        raise crmkit.BadUserInput("until must be after since", field="until")
    ctx = _ctx(info)
    await service.get_survey(ctx, survey_id)
    query = results.Query(survey_id, since, until, version, segment, group_by)
    return await results.results(ctx, query)


async def resolve_create_survey(info: crmkit.Info, key: str, definition: JSON) -> SurveyType:
    """A survey with its first draft: ``{"title": {"en": ...}, "locales": ["en"],
    "questions": [{"key", "type", "text": {"en": ...}, "required", "options",
    "dimension", "facet"}]}``."""
    survey = await service.create_survey(_ctx(info), key, _object(definition))
    return survey  # type: ignore[return-value]


async def resolve_update_survey_draft(
    info: crmkit.Info, id: uuid.UUID, definition: JSON
) -> SurveyType:
    survey = await service.update_draft(_ctx(info), id, _object(definition))
    return survey  # type: ignore[return-value]


async def resolve_publish_survey(info: crmkit.Info, id: uuid.UUID) -> SurveyVersionType:
    version = await service.publish(_ctx(info), id, info.context.principal.subject)
    return version  # type: ignore[return-value]


async def resolve_invite(
    info: crmkit.Info, survey_id: uuid.UUID, customer_id: uuid.UUID, locale: str | None = None
) -> SurveyInvitationType:
    """Invite now (trigger ``manual``): refused without consent (CONSENT_REQUIRED) or
    within the fatigue window (CONFLICT)."""
    ctx = _ctx(info)
    survey = await service.get_survey(ctx, survey_id)
    made = await service.invite(
        ctx,
        survey=survey,
        customer_id=customer_id,
        trigger="manual",
        trigger_ref=f"manual:{crmkit.uuid7()}",
        locale=locale,
    )
    return made.invitation  # type: ignore[return-value]


async def resolve_customer_surveys(root: crmkit.Customer, info: crmkit.Info) -> CustomerSurveysType:
    return CustomerSurveysType(customer_id=root.id)


def _object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise crmkit.BadUserInput("definition must be a JSON object", field="definition")
    return value


def contribution() -> crmkit.GraphQLContribution:
    return crmkit.GraphQLContribution(
        query={
            "surveys": crmkit.field(resolve_surveys, scope=READ),
            "survey": crmkit.field(resolve_survey, scope=READ),
            "survey_invitations": crmkit.field(resolve_invitations, scope=READ),
            "survey_results": crmkit.field(resolve_results, scope=READ),
        },
        mutation={
            "create_survey": crmkit.field(resolve_create_survey, scope=MANAGE),
            "update_survey_draft": crmkit.field(resolve_update_survey_draft, scope=MANAGE),
            "publish_survey": crmkit.field(resolve_publish_survey, scope=MANAGE),
            "invite_to_survey": crmkit.field(resolve_invite, scope=WRITE),
        },
        customer={"surveys": crmkit.field(resolve_customer_surveys, scope=READ)},
    )
