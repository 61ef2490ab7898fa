"""The scoring run and the alert's life: opened by the score, acknowledged, actioned
with a playbook step, resolved with an outcome. Every change emits its event in the
transaction that makes it."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import crmkit
from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite

from crmkit_churn import features as feature_sets
from crmkit_churn import model, scoring
from crmkit_churn.models import AlertStatus, ChurnAlert, ChurnSignal, Outcome, SignalKind
from crmkit_churn.scoring import Score
from crmkit_churn.settings import NAME, STEP_PLUGINS, ChurnSettings, StepKind

SYSTEM = "crmkit:churn"
"""Who resolves an alert the scoring closes itself."""
PRELOAD_CHUNK = 1000
ALERTABLE = frozenset(
    {
        crmkit.LifecycleStage.NEW,
        crmkit.LifecycleStage.ACTIVE,
        crmkit.LifecycleStage.DORMANT,
        crmkit.LifecycleStage.AT_RISK,
    }
)
"""The stages an alert can open in (not churned, which the horizon decides)."""


@dataclass
class RunSummary:
    scored: int
    opened: int
    retained: int
    churned: int
    won_back: int


async def current_scores(
    ctx: crmkit.TenantContext, customer_ids: Sequence[uuid.UUID] | None = None
) -> dict[uuid.UUID, Score]:
    """Every live customer's score now (or those of ``customer_ids``): one statement,
    and one more for the model when the tenant uses one."""
    settings = ctx.settings_as(ChurnSettings)
    used = feature_sets.available_features(ctx, settings)
    fitted = await model.in_force(ctx, settings)
    found = await scoring.scores(ctx, settings, used, crmkit.utcnow(), customer_ids, fitted)
    return {score.customer_id: score for score in found}


async def open_alerts(
    ctx: crmkit.TenantContext, customer_ids: Sequence[uuid.UUID] | None = None
) -> dict[uuid.UUID, ChurnAlert]:
    query = select(ChurnAlert).where(ChurnAlert.resolved_at.is_(None))
    if customer_ids is not None:
        query = query.where(ChurnAlert.customer_id.in_(customer_ids))
    return {alert.customer_id: alert for alert in await ctx.session.scalars(query)}


async def _preload(ctx: crmkit.TenantContext, customer_ids: list[uuid.UUID]) -> None:
    """Load the customers a run changes, a chunk per statement, so that
    ``crmkit.update_customer`` finds each in the session instead of querying it."""
    for start in range(0, len(customer_ids), PRELOAD_CHUNK):
        chunk = customer_ids[start : start + PRELOAD_CHUNK]
        await ctx.session.scalars(select(crmkit.Customer).where(crmkit.Customer.id.in_(chunk)))


async def score_customers(ctx: crmkit.TenantContext) -> RunSummary:
    """The cron job: score every customer of the tenant in one transaction.

    A score over the threshold opens an alert unless one is open; an open alert whose
    customer is engaged again (activity since it opened) and scores under the threshold
    closes as retained; no activity past the horizon marks the customer churned and
    closes their alert as lost; a churned customer active again is active (won back).
    Running it twice at one instant changes nothing the second time: the decisions read
    the alerts and stages the first run wrote.
    """
    settings = ctx.settings_as(ChurnSettings)
    scores = await current_scores(ctx)
    alerts = await open_alerts(ctx)
    churned: list[uuid.UUID] = []
    to_open: list[Score] = []
    retained: list[ChurnAlert] = []
    won_back: list[uuid.UUID] = []
    threshold, horizon = settings.alert_threshold, settings.horizon_days
    for customer_id, result in scores.items():
        alert = alerts.get(customer_id)
        if result.inactive_days >= horizon:
            if result.lifecycle_stage is not crmkit.LifecycleStage.CHURNED:
                churned.append(customer_id)
        elif result.lifecycle_stage is crmkit.LifecycleStage.CHURNED:
            won_back.append(customer_id)
        elif alert is None:
            if result.score >= threshold and result.lifecycle_stage in ALERTABLE:
                to_open.append(result)
        elif (
            result.score < threshold
            and result.last_active_at is not None
            and result.last_active_at > alert.opened_at
        ):
            retained.append(alert)
    await _preload(
        ctx,
        [
            *churned,
            *won_back,
            *(s.customer_id for s in to_open),
            *(a.customer_id for a in retained),
        ],
    )
    opened = await _open(ctx, to_open)
    for alert in retained:
        await _resolve(ctx, alert, Outcome.RETAINED, SYSTEM, None)
    for customer_id in churned:
        alert = alerts.get(customer_id)
        if alert is not None:
            await _resolve(ctx, alert, Outcome.LOST, SYSTEM, None)
        else:
            await _mark_churned(ctx, customer_id)
    for customer_id in won_back:
        await _set_stage(ctx, customer_id, crmkit.LifecycleStage.ACTIVE)
    await ctx.session.flush()
    return RunSummary(len(scores), opened, len(retained), len(churned), len(won_back))


async def _set_stage(
    ctx: crmkit.TenantContext, customer_id: uuid.UUID, stage: crmkit.LifecycleStage
) -> None:
    await crmkit.update_customer(ctx, customer_id, lifecycle_stage=stage)


async def _mark_churned(ctx: crmkit.TenantContext, customer_id: uuid.UUID) -> None:
    """The customer's stage becomes churned, and the churn is recorded for the metrics."""
    await _set_stage(ctx, customer_id, crmkit.LifecycleStage.CHURNED)
    ctx.session.add(
        ChurnSignal(
            id=crmkit.uuid7(),
            customer_id=customer_id,
            kind=SignalKind.CHURNED.value,
            occurred_at=crmkit.utcnow(),
        )
    )


async def _open(ctx: crmkit.TenantContext, results: list[Score]) -> int:
    """Open the alerts of ``results`` with multi-row inserts (a thousand rows each); a
    customer who has an unresolved alert already (a run at the same time opened it)
    keeps that one and is skipped.
    Each alert opened moves its customer to ``at_risk`` and emits its event."""
    if not results:
        return 0
    now = crmkit.utcnow()
    rows: list[dict[str, Any]] = []
    for result in results:
        reasons = [reason.as_data() for reason in result.reasons]
        rows.append(
            {
                "tenant_id": ctx.tenant_id,
                "id": crmkit.uuid7(),
                "customer_id": result.customer_id,
                "status": AlertStatus.OPEN,
                "score": result.score,
                "band": result.band,
                "reasons": reasons,
                "features_used": result.features_used,
                "assigned_to": result.relationship_manager,
                "opened_at": now,
            }
        )
    dialect = ctx.session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    # an ORM bulk insert: SQLAlchemy sends the rows in a few multi-row statements
    written = await ctx.session.scalars(
        insert(ChurnAlert)
        .on_conflict_do_nothing(
            index_elements=["tenant_id", "customer_id"],
            index_where=ChurnAlert.resolved_at.is_(None),
        )
        .returning(ChurnAlert.id),
        rows,
    )
    opened = set(written)
    for row in rows:
        if row["id"] not in opened:
            continue
        await _set_stage(ctx, row["customer_id"], crmkit.LifecycleStage.AT_RISK)
        crmkit.emit(
            ctx,
            "churn_alert_opened",
            "ChurnAlert",
            row["id"],
            customer_id=str(row["customer_id"]),
            score=row["score"],
            band=row["band"].value,
            reasons=[
                {"feature": r["feature"], "contribution": r["contribution"]} for r in row["reasons"]
            ],
            assigned_to=row["assigned_to"],
        )
    return len(opened)


async def _resolve(
    ctx: crmkit.TenantContext,
    alert: ChurnAlert,
    outcome: Outcome,
    by: str,
    note: str | None,
) -> None:
    alert.status = AlertStatus.RESOLVED
    alert.outcome = outcome
    alert.resolved_at = crmkit.utcnow()
    alert.resolved_by = by
    if note is not None:
        alert.note = note
    if outcome is Outcome.LOST:
        await _mark_churned(ctx, alert.customer_id)
    else:
        await _set_stage(ctx, alert.customer_id, crmkit.LifecycleStage.ACTIVE)
    crmkit.emit(
        ctx,
        "churn_alert_resolved",
        "ChurnAlert",
        alert.id,
        customer_id=str(alert.customer_id),
        score=alert.score,
        band=alert.band.value,
        outcome=outcome.value,
        action_step=alert.action_step,
    )


async def get_alert(ctx: crmkit.TenantContext, alert_id: uuid.UUID) -> ChurnAlert:
    alert = await ctx.session.get(ChurnAlert, (ctx.tenant_id, alert_id))
    if alert is None:
        raise crmkit.NotFound(f"no churn alert {alert_id}")
    await crmkit.get_customer(ctx, alert.customer_id)  # an erased customer's alert is gone
    return alert


def _unresolved(alert: ChurnAlert) -> None:
    if alert.resolved_at is not None:
        raise crmkit.Conflict(
            f"the alert was resolved ({alert.outcome and alert.outcome.value}); it cannot change"
        )


async def acknowledge(ctx: crmkit.TenantContext, alert_id: uuid.UUID, by: str) -> ChurnAlert:
    """The manager has seen it. Acknowledging twice keeps the first acknowledgement."""
    alert = await get_alert(ctx, alert_id)
    _unresolved(alert)
    if alert.acknowledged_at is None:
        alert.acknowledged_at, alert.acknowledged_by = crmkit.utcnow(), by
        if alert.status is AlertStatus.OPEN:
            alert.status = AlertStatus.ACKNOWLEDGED
        await ctx.session.flush()
    return alert


async def act(ctx: crmkit.TenantContext, alert_id: uuid.UUID, step_key: str, by: str) -> ChurnAlert:
    """Take a playbook step. A step carried out by another plugin needs it enabled: a
    message is requested from channels; a win-back offer (loyalty) and a case (cases)
    are requested with ``churn_action_requested``, which those plugins handle."""
    settings = ctx.settings_as(ChurnSettings)
    step = settings.step(step_key)
    if step is None:
        keys = ", ".join(s.key for s in settings.playbook)
        raise crmkit.BadUserInput(
            f"no playbook step {step_key!r}; the steps are {keys}", field="step"
        )
    plugin = STEP_PLUGINS[step.kind]
    if plugin is not None and not ctx.plugin_enabled(plugin):
        raise crmkit.BadUserInput(
            f"step {step.key!r} needs the {plugin} plugin, which this tenant has not enabled",
            field="step",
        )
    alert = await get_alert(ctx, alert_id)
    _unresolved(alert)
    now = crmkit.utcnow()
    alert.status = AlertStatus.ACTIONED
    alert.action_step, alert.action_kind = step.key, step.kind.value
    alert.actioned_at, alert.actioned_by = now, by
    if alert.acknowledged_at is None:
        alert.acknowledged_at, alert.acknowledged_by = now, by
    await ctx.session.flush()
    customer = str(alert.customer_id)
    if step.kind is StepKind.MESSAGE:
        crmkit.emit(
            ctx,
            "channels_send_requested",
            "ChurnAlert",
            alert.id,
            customer_id=customer,
            purpose="marketing",
            template=step.template or "churn.retention",
            variables={"alert_id": str(alert.id), "step": step.key},
            idempotency_key=f"churn:retention:{alert.id}:{step.key}",
            requested_by=NAME,
        )
    elif step.kind is not StepKind.CALL:
        crmkit.emit(
            ctx,
            "churn_action_requested",
            "ChurnAlert",
            alert.id,
            customer_id=customer,
            step=step.key,
            kind=step.kind.value,
            idempotency_key=f"churn:{step.kind.value}:{alert.id}:{step.key}",
        )
    return alert


async def resolve(
    ctx: crmkit.TenantContext, alert_id: uuid.UUID, outcome: Outcome, note: str | None, by: str
) -> ChurnAlert:
    """Close the alert with its outcome: retained and false alarm make the customer
    active again, lost makes them churned."""
    if note is not None:
        note = note.strip() or None
        if note is not None and len(note) > 2000:
            raise crmkit.BadUserInput("note is longer than 2000 characters", field="note")
    alert = await get_alert(ctx, alert_id)
    _unresolved(alert)
    await _resolve(ctx, alert, outcome, by, note)
    await ctx.session.flush()
    return alert


async def record_signal(
    ctx: crmkit.TenantContext,
    event: crmkit.DomainEvent,
    kind: SignalKind,
    *,
    value: object = None,
    expires_at: datetime | None = None,
) -> None:
    """Keep another plugin's event as a signal, once per event and kind (its id derives
    from both). A signal for an erased or unknown customer is dropped: nothing new may
    reach them."""
    signal_id = uuid.uuid5(event.id, kind.value)
    if await ctx.session.get(ChurnSignal, (ctx.tenant_id, signal_id)) is not None:
        return
    customer_id = uuid.UUID(str(event.data["customer_id"]))
    try:
        await crmkit.get_customer(ctx, customer_id)
    except crmkit.NotFound:
        return
    ctx.session.add(
        ChurnSignal(
            id=signal_id,
            customer_id=customer_id,
            kind=kind.value,
            subject_id=str(event.subject_id),
            value=None if value is None else Decimal(str(value)),
            occurred_at=event.occurred_at,
            expires_at=expires_at,
        )
    )
    await ctx.session.flush()


async def alerts_of(ctx: crmkit.TenantContext, customer_id: uuid.UUID) -> list[ChurnAlert]:
    return list(
        await ctx.session.scalars(
            select(ChurnAlert).where(ChurnAlert.customer_id == customer_id).order_by(ChurnAlert.id)
        )
    )


async def signals_of(ctx: crmkit.TenantContext, customer_id: uuid.UUID) -> list[ChurnSignal]:
    return list(
        await ctx.session.scalars(
            select(ChurnSignal)
            .where(ChurnSignal.customer_id == customer_id)
            .order_by(ChurnSignal.occurred_at)
        )
    )


async def erase(ctx: crmkit.TenantContext, customer_id: uuid.UUID) -> None:
    await ctx.session.execute(delete(ChurnAlert).where(ChurnAlert.customer_id == customer_id))
    await ctx.session.execute(delete(ChurnSignal).where(ChurnSignal.customer_id == customer_id))
