"""A survey's results, computed in SQL: three statements whatever the number of
responses or groups (scores per group, SERVQUAL means per group and dimension,
invitations per group), then exact arithmetic on the counts in ``Decimal``.

* NPS: % promoters (9-10) minus % detractors (0-6) of the NPS answers;
* CSAT: % of CSAT answers that are 4 or 5;
* CES: the mean CES answer;
* SERVQUAL gap per dimension: mean perception minus mean expectation (perception-only
  dimensions have a perception mean and no gap);
* response rate: % of the invitations made in the period that were answered.

Responses count by when they were submitted, invitations by when they were made. A
group with fewer responses than the tenant's ``min_group_size`` is suppressed (only its
key is shown), so a breakdown never singles out a customer.
"""

from __future__ import annotations

import enum
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import crmkit
import strawberry
from sqlalchemy import (
    ColumnElement,
    Select,
    String,
    and_,
    case,
    func,
    literal,
    literal_column,
    select,
    union_all,
)

from crmkit_surveys.models import Answer, Invitation, Response
from crmkit_surveys.questions import Dimension, Facet, QuestionType
from crmkit_surveys.segments import members
from crmkit_surveys.settings import SurveysSettings

CENT = Decimal("0.01")
NO_KEY = "none"


class GroupBy(enum.StrEnum):
    NONE = "none"
    VERSION = "version"
    CHANNEL = "channel"
    SEGMENT = "segment"
    RELATIONSHIP_MANAGER = "relationship_manager"
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


strawberry.enum(GroupBy, name="SurveyGroupBy")


@dataclass(frozen=True)
class Query:
    survey_id: uuid.UUID
    since: datetime | None = None
    until: datetime | None = None
    version: int | None = None
    segment: str | None = None
    group_by: GroupBy = GroupBy.NONE


@strawberry.type(name="SurveyNps", description="Promoters (9-10) minus detractors (0-6), in %.")
class Nps:
    score: Decimal
    promoters: int
    passives: int
    detractors: int


@strawberry.type(name="SurveyCsat", description="Share of CSAT answers of 4 or 5, in %.")
class Csat:
    percent: Decimal
    satisfied: int
    answers: int


@strawberry.type(name="SurveyCes", description="The mean customer-effort score.")
class Ces:
    mean: Decimal
    answers: int


@strawberry.type(name="SurveyServqualGap", description="Mean perception minus mean expectation.")
class Gap:
    dimension: str
    expectation: Decimal | None
    perception: Decimal | None
    gap: Decimal | None


@strawberry.type(
    name="SurveyResultGroup",
    description="One group's results; a suppressed group (too few responses) shows its key only.",
)
class Group:
    key: str
    suppressed: bool
    responses: int | None = None
    invitations: int | None = None
    response_rate: Decimal | None = None
    nps: Nps | None = None
    csat: Csat | None = None
    ces: Ces | None = None
    servqual: list[Gap] = strawberry.field(default_factory=list)


def share(part: int, whole: int) -> Decimal:
    return (Decimal(part) * 100 / whole).quantize(CENT)


def mean(total: int, count: int) -> Decimal:
    return (Decimal(total) / count).quantize(CENT)


def _period(session: crmkit.TenantSession, unit: GroupBy, column: Any) -> ColumnElement[str]:
    """The ISO date that starts ``column``'s day, week (Monday) or month, in UTC."""
    if session.get_bind().dialect.name == "postgresql":
        start = func.date_trunc(unit.value, func.timezone("UTC", column))
        return func.to_char(start, "YYYY-MM-DD")
    if unit is GroupBy.DAY:
        return func.strftime("%Y-%m-%d", column)  # SQLite stores UTC
    if unit is GroupBy.WEEK:
        return func.date(column, "weekday 0", "-6 days")
    return func.strftime("%Y-%m-01", column)


def _segments(settings: SurveysSettings, only: str | None) -> Any:
    """``(customer_id, segment)`` for every customer of the tenant's segments (of one)."""
    chosen = [s for s in settings.segments if only is None or s.name == only]
    return union_all(*(members(segment) for segment in chosen)).subquery("segments")


def _grouped(
    ctx: crmkit.TenantContext,
    query: Query,
    statement: Select[*tuple[Any, ...]],
    source: type[Response] | type[Invitation],
    when: Any,
) -> Select[*tuple[Any, ...]]:
    """``statement`` narrowed to the query's survey, period, version and segment, with
    the group key as its last column, grouped by it."""
    settings = ctx.settings_as(SurveysSettings)
    where: list[ColumnElement[bool]] = [source.survey_id == query.survey_id]
    if query.since is not None:
        where.append(when >= query.since)
    if query.until is not None:
        where.append(when < query.until)
    if query.version is not None:
        where.append(source.version == query.version)
    segments = None
    if query.segment is not None or query.group_by is GroupBy.SEGMENT:
        segments = _segments(settings, query.segment)
        statement = statement.join(segments, segments.c.customer_id == source.customer_id)
    key: Any
    match query.group_by:
        case GroupBy.NONE:
            key = literal("all", String)
        case GroupBy.VERSION:
            key = source.version
        case GroupBy.CHANNEL:
            key = source.channel
        case GroupBy.SEGMENT:
            assert segments is not None
            key = segments.c.segment
        case GroupBy.RELATIONSHIP_MANAGER:
            statement = statement.join(
                crmkit.Customer,
                and_(
                    crmkit.Customer.tenant_id == source.tenant_id,
                    crmkit.Customer.id == source.customer_id,
                ),
            )
            key = crmkit.Customer.relationship_manager
        case _:
            key = _period(ctx.session, query.group_by, when)
    statement = statement.add_columns(key.label("group_key")).where(*where)
    if query.group_by is not GroupBy.NONE:
        # by the label: PostgreSQL cannot match an expression with bound parameters
        statement = statement.group_by(literal_column("group_key"))
    return statement


async def results(ctx: crmkit.TenantContext, query: Query) -> list[Group]:
    """The survey's results for ``query``, one group per key, keys in order."""
    settings = ctx.settings_as(SurveysSettings)
    if query.segment is not None:
        settings.segment(query.segment)  # BAD_USER_INPUT for an unknown name
    if query.group_by is GroupBy.SEGMENT and not settings.segments:
        raise crmkit.BadUserInput("the tenant defines no segments", field="groupBy")

    def counted(condition: ColumnElement[bool]) -> Any:
        return func.sum(case((condition, 1), else_=0))

    kind, score = Answer.kind, Answer.score
    scores = _grouped(
        ctx,
        query,
        select(
            func.count(func.distinct(Response.id)),
            counted(and_(kind == QuestionType.NPS.value, score >= 9)),
            counted(and_(kind == QuestionType.NPS.value, score.between(7, 8))),
            counted(and_(kind == QuestionType.NPS.value, score <= 6)),
            counted(and_(kind == QuestionType.CSAT.value, score >= 4)),
            counted(kind == QuestionType.CSAT.value),
            func.sum(case((kind == QuestionType.CES.value, score), else_=0)),
            counted(kind == QuestionType.CES.value),
        )
        .select_from(Response)
        .outerjoin(
            Answer,
            and_(Answer.tenant_id == Response.tenant_id, Answer.response_id == Response.id),
        ),
        Response,
        Response.submitted_at,
    )
    servqual = _grouped(
        ctx,
        query,
        select(Answer.dimension, Answer.facet, func.sum(score), func.count(score))
        .select_from(Response)
        .join(
            Answer, and_(Answer.tenant_id == Response.tenant_id, Answer.response_id == Response.id)
        )
        .where(kind == QuestionType.SERVQUAL.value)
        .group_by(Answer.dimension, Answer.facet),
        Response,
        Response.submitted_at,
    )
    invited = _grouped(
        ctx,
        query,
        select(func.count(Invitation.id), func.count(Invitation.responded_at)).select_from(
            Invitation
        ),
        Invitation,
        Invitation.created_at,
    )
    groups: dict[str, Group] = {}

    def group(key: Any) -> Group:
        name = NO_KEY if key is None else str(key)
        return groups.setdefault(name, Group(key=name, suppressed=False))

    for (
        n,
        promoters,
        passives,
        detractors,
        satisfied,
        csat_n,
        ces_sum,
        ces_n,
        key,
    ) in await ctx.session.execute(scores):
        found = group(key)
        found.responses = n
        promoters, passives, detractors = promoters or 0, passives or 0, detractors or 0
        satisfied, csat_n, ces_sum, ces_n = satisfied or 0, csat_n or 0, ces_sum or 0, ces_n or 0
        nps_n = promoters + passives + detractors
        if nps_n:
            found.nps = Nps(
                score=share(promoters, nps_n) - share(detractors, nps_n),
                promoters=promoters,
                passives=passives,
                detractors=detractors,
            )
        if csat_n:
            found.csat = Csat(percent=share(satisfied, csat_n), satisfied=satisfied, answers=csat_n)
        if ces_n:
            found.ces = Ces(mean=mean(ces_sum, ces_n), answers=ces_n)
    means: defaultdict[str, dict[tuple[str, str], Decimal]] = defaultdict(dict)
    for dimension, facet, total, count, key in await ctx.session.execute(servqual):
        means[group(key).key][(dimension, facet)] = Decimal(total) / count
    for key, found_means in means.items():
        for dimension in Dimension:
            expectation = found_means.get((dimension.value, Facet.EXPECTATION.value))
            perception = found_means.get((dimension.value, Facet.PERCEPTION.value))
            if expectation is None and perception is None:
                continue
            gap = None if expectation is None or perception is None else perception - expectation
            groups[key].servqual.append(
                Gap(
                    dimension=dimension.value,
                    expectation=None if expectation is None else expectation.quantize(CENT),
                    perception=None if perception is None else perception.quantize(CENT),
                    gap=None if gap is None else gap.quantize(CENT),
                )
            )
    for invitations, responded, key in await ctx.session.execute(invited):
        found = group(key)
        found.invitations = invitations
        if invitations:
            found.response_rate = share(responded, invitations)
    for found in groups.values():
        if (found.responses or 0) < settings.min_group_size:
            groups[found.key] = Group(key=found.key, suppressed=True)
    # versions in number order; names and ISO dates in text order
    return [groups[key] for key in sorted(groups, key=lambda k: (k.isdigit() and len(k), k))]
