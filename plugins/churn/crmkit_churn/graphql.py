"""The plugin's GraphQL: ``Customer.churn``, the alerts with their actions, the metrics
and the rules in force. Every field names its scope."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import crmkit
import strawberry
from sqlalchemy import select

from crmkit_churn import metrics, model, service
from crmkit_churn.models import AlertStatus, Band, ChurnAlert, ChurnModel, Outcome
from crmkit_churn.settings import NAME, SOURCES, STEP_PLUGINS, ChurnSettings, StepKind

READ = f"{NAME}:read"
WRITE = f"{NAME}:write"
ADMIN = f"{NAME}:admin"

strawberry.enum(AlertStatus, name="ChurnAlertStatus")
strawberry.enum(Band, name="ChurnBand")
strawberry.enum(Outcome, name="ChurnOutcome")
strawberry.enum(StepKind, name="ChurnStepKind")


@strawberry.type(name="ChurnReason", description="One rule's part of a score.")
class ReasonType:
    feature: str
    value: float = strawberry.field(description="The feature's value for the customer.")
    contribution: float = strawberry.field(description="Points it added to the score.")


def _reasons(data: list[dict[str, Any]]) -> list[ReasonType]:
    return [
        ReasonType(feature=r["feature"], value=r["value"], contribution=r["contribution"])
        for r in data
    ]


@strawberry.type(name="ChurnAlert", description="A customer the churn score flagged.")
class AlertType:
    id: uuid.UUID
    customer_id: uuid.UUID
    status: AlertStatus
    score: int
    band: Band
    features_used: list[str]
    assigned_to: str | None
    opened_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    action_step: str | None
    actioned_at: datetime | None
    outcome: Outcome | None
    resolved_at: datetime | None
    resolved_by: str | None
    note = crmkit.personal_field(
        crmkit.InformationClass.CONTACT,
        "What the manager learnt when resolving it.",
        target_type="ChurnAlert",
    )

    @strawberry.field(description="The rules that raised the score, largest first.")
    def reasons(self, root: strawberry.Parent[Any]) -> list[ReasonType]:
        return _reasons(root.reasons)


@strawberry.type(name="CustomerChurn", description="The customer's churn score now.")
class CustomerChurnType:
    score: int
    band: Band
    reasons: list[ReasonType]
    features_used: list[str]
    alert: AlertType | None = strawberry.field(description="The unresolved alert, if any.")


async def load_churn(
    context: crmkit.RequestContext, customer_ids: Sequence[uuid.UUID]
) -> list[CustomerChurnType | None]:
    """Scores and open alerts of a page of customers: two statements for any page (three
    with a model)."""
    ctx = context.tenant_context(NAME)
    scores = await service.current_scores(ctx, customer_ids)
    alerts = await service.open_alerts(ctx, customer_ids)
    answer: list[CustomerChurnType | None] = []
    for customer_id in customer_ids:
        result = scores.get(customer_id)
        if result is None:  # archived: not scored
            answer.append(None)
            continue
        answer.append(
            CustomerChurnType(
                score=result.score,
                band=result.band,
                reasons=_reasons([reason.as_data() for reason in result.reasons]),
                features_used=result.features_used,
                alert=alerts.get(customer_id),  # type: ignore[arg-type]  # strawberry reads the row
            )
        )
    return answer


@strawberry.input(name="ChurnAlertFilter")
class AlertFilter:
    status: AlertStatus | None = None
    unresolved: bool | None = strawberry.field(
        default=None, description="Only alerts not resolved yet (or only resolved ones)."
    )
    band: Band | None = None
    assigned_to: str | None = None
    customer_id: uuid.UUID | None = None


async def resolve_alerts(
    info: crmkit.Info,
    filter: AlertFilter | None = None,
    first: int | None = None,
    after: str | None = None,
) -> crmkit.Connection[AlertType]:
    """Alerts oldest first, keyset-paginated on their uuid7 ids."""
    size, after_id = info.context.page(first, after)
    query = select(ChurnAlert).order_by(ChurnAlert.id).limit(size + 1)
    if after_id is not None:
        query = query.where(ChurnAlert.id > after_id)
    if filter is not None:
        if filter.status is not None:
            query = query.where(ChurnAlert.status == filter.status)
        if filter.unresolved is not None:
            resolved_at = ChurnAlert.resolved_at
            query = query.where(
                resolved_at.is_(None) if filter.unresolved else resolved_at.isnot(None)
            )
        if filter.band is not None:
            query = query.where(ChurnAlert.band == filter.band)
        if filter.assigned_to is not None:
            query = query.where(ChurnAlert.assigned_to == filter.assigned_to)
        if filter.customer_id is not None:
            query = query.where(ChurnAlert.customer_id == filter.customer_id)
    rows = list(await info.context.session.scalars(query))
    return crmkit.connection(rows, size)  # type: ignore[arg-type]


async def resolve_alert(info: crmkit.Info, id: uuid.UUID) -> AlertType:
    return await service.get_alert(info.context.tenant_context(NAME), id)  # type: ignore[return-value]


@strawberry.type(name="ChurnStepFigures")
class StepFiguresType:
    step: str
    resolved: int
    retained: int
    retention_rate: float | None


@strawberry.type(name="ChurnMetrics")
class MetricsType:
    customers: int = strawberry.field(description="Live customers when the period began.")
    churned: int = strawberry.field(description="Customers marked churned in the period.")
    churn_rate: float | None
    alerts_opened: int
    retained: int
    lost: int
    false_alarms: int
    by_step: list[StepFiguresType] = strawberry.field(
        description="Alerts resolved in the period by the playbook step taken."
    )
    model_precision: float | None = strawberry.field(
        description="The latest model fit's precision on held-out history (null: no fit)."
    )
    model_recall: float | None = strawberry.field(
        description="The latest model fit's recall on held-out history (null: no fit)."
    )


async def resolve_metrics(
    info: crmkit.Info, since: datetime, until: datetime, tag: str | None = None
) -> MetricsType:
    """Churn and retention over ``[since, until)``; ``tag``: one segment of customers."""
    ctx = info.context.tenant_context(NAME)
    found = await metrics.figures(ctx, since, until, tag)
    fitted = await model.latest(ctx)
    return MetricsType(
        model_precision=None if fitted is None else fitted.precision,
        model_recall=None if fitted is None else fitted.recall,
        customers=found.customers,
        churned=found.churned,
        churn_rate=found.churn_rate,
        alerts_opened=found.alerts_opened,
        retained=found.retained,
        lost=found.lost,
        false_alarms=found.false_alarms,
        by_step=[
            StepFiguresType(
                step=s.step,
                resolved=s.resolved,
                retained=s.retained,
                retention_rate=s.retention_rate,
            )
            for s in found.by_step
        ],
    )


@strawberry.type(name="ChurnRule")
class RuleType:
    feature: str
    source: str = strawberry.field(description="core, or the plugin the signal comes from.")
    start: float
    full: float
    weight: int
    active: bool = strawberry.field(description="Whether the tenant runs the source now.")


@strawberry.type(name="ChurnPlaybookStep")
class StepType:
    key: str
    kind: StepKind
    label: str
    available: bool = strawberry.field(description="Whether the plugin it needs is enabled.")


@strawberry.type(name="ChurnRules", description="The churn settings in force for the tenant.")
class RulesType:
    period_days: int
    complaint_window_days: int
    horizon_days: int
    alert_threshold: int
    high_band_from: int
    rules: list[RuleType]
    playbook: list[StepType]


async def resolve_rules(info: crmkit.Info) -> RulesType:
    ctx = info.context.tenant_context(NAME)
    settings = ctx.settings_as(ChurnSettings)

    def runs(plugin: str | None) -> bool:
        return plugin in (None, "core") or ctx.plugin_enabled(plugin)

    return RulesType(
        period_days=settings.period_days,
        complaint_window_days=settings.complaint_window_days,
        horizon_days=settings.horizon_days,
        alert_threshold=settings.alert_threshold,
        high_band_from=settings.high_band_from,
        rules=[
            RuleType(
                feature=r.feature.value,
                source=SOURCES[r.feature],
                start=r.start,
                full=r.full,
                weight=r.weight,
                active=runs(SOURCES[r.feature]),
            )
            for r in settings.rules
        ],
        playbook=[
            StepType(key=s.key, kind=s.kind, label=s.label, available=runs(STEP_PLUGINS[s.kind]))
            for s in settings.playbook
        ],
    )


async def resolve_acknowledge(info: crmkit.Info, id: uuid.UUID) -> AlertType:
    context = info.context
    alert = await service.acknowledge(context.tenant_context(NAME), id, context.principal.subject)
    return alert  # type: ignore[return-value]


async def resolve_act(info: crmkit.Info, id: uuid.UUID, step: str) -> AlertType:
    """Take a playbook step (``churnRules { playbook }`` lists them)."""
    context = info.context
    alert = await service.act(context.tenant_context(NAME), id, step, context.principal.subject)
    return alert  # type: ignore[return-value]


async def resolve_resolve(
    info: crmkit.Info, id: uuid.UUID, outcome: Outcome, note: str | None = None
) -> AlertType:
    context = info.context
    alert = await service.resolve(
        context.tenant_context(NAME), id, outcome, note, context.principal.subject
    )
    return alert  # type: ignore[return-value]


@strawberry.type(name="ChurnModelCoefficient")
class CoefficientType:
    feature: str
    coefficient: float = strawberry.field(description="Log-odds per unit of the value.")


@strawberry.type(name="ChurnModelFit", description="One fit of the tenant's churn model.")
class FitType:
    id: uuid.UUID
    fitted_at: datetime
    fitted_by: str
    cutoff: datetime = strawberry.field(
        description="The history was read as it stood here; no engagement since is churn."
    )
    auc: float = strawberry.field(description="On the held-out customers.")
    precision: float | None = strawberry.field(
        description="On the held-out customers, at the alert threshold (null: none flagged)."
    )
    recall: float | None
    intercept: float
    training_customers: int
    training_churned: int
    held_out_customers: int
    held_out_churned: int

    @strawberry.field(description="Per feature, in the rules' order.")
    def coefficients(self, root: strawberry.Parent[Any]) -> list[CoefficientType]:
        return [
            CoefficientType(feature=c["feature"], coefficient=c["coefficient"])
            for c in root.coefficients
        ]


@strawberry.type(name="ChurnModelState", description="The optional logistic-regression model.")
class ModelStateType:
    use_model: bool = strawberry.field(description="The tenant's use_model setting.")
    min_churned: int = strawberry.field(
        description="Customers labelled churned the history needs before a fit."
    )
    fit: FitType | None = strawberry.field(description="The latest fit (null: never fitted).")
    in_use: bool = strawberry.field(description="Whether scores are the model's probability.")


async def resolve_model(info: crmkit.Info) -> ModelStateType:
    ctx = info.context.tenant_context(NAME)
    settings = ctx.settings_as(ChurnSettings)
    fitted: ChurnModel | None = await model.latest(ctx)
    return ModelStateType(
        use_model=settings.use_model,
        min_churned=settings.model_min_churned,
        fit=fitted,  # type: ignore[arg-type]  # strawberry reads the row
        in_use=settings.use_model and fitted is not None,
    )


async def resolve_fit(info: crmkit.Info) -> FitType:
    """Fit the model on the tenant's history now (needs scikit-learn)."""
    context = info.context
    fitted = await model.fit_model(context.tenant_context(NAME), context.principal.subject)
    return fitted  # type: ignore[return-value]


@strawberry.type(name="ChurnRun")
class RunType:
    scored: int
    opened: int
    retained: int
    churned: int
    won_back: int


async def resolve_run(info: crmkit.Info) -> RunType:
    """The daily scoring, now (the same run the cron job makes)."""
    summary = await service.score_customers(info.context.tenant_context(NAME))
    return RunType(**vars(summary))


def contribution() -> crmkit.GraphQLContribution:
    return crmkit.GraphQLContribution(
        customer={
            "churn": crmkit.customer_field(
                load_churn, scope=READ, graphql_type=CustomerChurnType | None
            )
        },
        query={
            "churn_alerts": crmkit.field(resolve_alerts, scope=READ),
            "churn_alert": crmkit.field(resolve_alert, scope=READ),
            "churn_metrics": crmkit.field(resolve_metrics, scope=READ),
            "churn_rules": crmkit.field(resolve_rules, scope=READ),
            "churn_model": crmkit.field(resolve_model, scope=READ),
        },
        mutation={
            "acknowledge_churn_alert": crmkit.field(resolve_acknowledge, scope=WRITE),
            "act_on_churn_alert": crmkit.field(resolve_act, scope=WRITE),
            "resolve_churn_alert": crmkit.field(resolve_resolve, scope=WRITE),
            "run_churn_scoring": crmkit.field(resolve_run, scope=ADMIN),
            "fit_churn_model": crmkit.field(resolve_fit, scope=ADMIN),
        },
    )
