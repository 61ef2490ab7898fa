"""crmkit-churn: explainable churn early warning, retention alerts and win-back.

A daily job scores every customer from the core's activities and the signals other
plugins' events leave here (cases, surveys, loyalty, consent); a score over the tenant's
threshold opens an alert for the customer's relationship manager. Read this file as
the plugin's table of contents.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import crmkit

from crmkit_churn import graphql, hookspecs, model, service
from crmkit_churn.models import SignalKind
from crmkit_churn.settings import NAME, ChurnSettings

plugin_info = crmkit.PluginInfo(
    name=NAME,
    version="0.1.0",
    description="Explainable churn early warning, retention alerts and win-back.",
    requires=">=0.1,<0.2",
    settings=ChurnSettings,
    migrations=Path(__file__).parent / "migrations",
    hookspecs=hookspecs,
)

MANAGERS = frozenset({crmkit.Role.RELATIONSHIP_MANAGER})


@crmkit.hookimpl
def register_scopes() -> Iterable[crmkit.Scope]:
    return [
        crmkit.Scope(graphql.READ, "Read churn scores, alerts, metrics and rules.", MANAGERS),
        crmkit.Scope(graphql.WRITE, "Acknowledge, action and resolve churn alerts.", MANAGERS),
        crmkit.Scope(graphql.ADMIN, "Run the churn scoring and fit the churn model now."),
    ]


@crmkit.hookimpl
def register_graphql() -> crmkit.GraphQLContribution:
    return graphql.contribution()


async def _score(ctx: crmkit.TenantContext) -> None:
    await service.score_customers(ctx)


@crmkit.hookimpl
def register_jobs() -> Iterable[crmkit.JobSpec | crmkit.CronSpec]:
    """The daily scoring, per tenant, one transaction each, idempotent; the weekly refit
    of the model (Sundays, before the scoring) where the tenant uses one."""
    return [
        crmkit.CronSpec("score_customers", _score, hour={2}, minute={30}),
        crmkit.CronSpec("fit_model", model.scheduled_fit, weekday={6}, hour={2}, minute={0}),
    ]


# --- other plugins' signals: kept once per event, read by the features ----------------


@crmkit.hookimpl
async def cases_sla_breached(event: crmkit.DomainEvent, ctx: crmkit.TenantContext) -> None:
    """A breach counts until its case closes. (Complaints reach the score through the
    core ``complaint`` activity cases records for each one, so they count once.)"""
    await service.record_signal(ctx, event, SignalKind.SLA_BREACH)


@crmkit.hookimpl
async def cases_closed(event: crmkit.DomainEvent, ctx: crmkit.TenantContext) -> None:
    await service.record_signal(ctx, event, SignalKind.CASE_CLOSED)


@crmkit.hookimpl
async def surveys_response_recorded(event: crmkit.DomainEvent, ctx: crmkit.TenantContext) -> None:
    """The latest NPS and CSAT answers are features; a detractor is a low latest NPS."""
    for kind, key in ((SignalKind.NPS, "nps"), (SignalKind.CSAT, "csat")):
        if event.data.get(key) is not None:
            await service.record_signal(ctx, event, kind, value=event.data[key])


@crmkit.hookimpl
async def loyalty_tier_changed(event: crmkit.DomainEvent, ctx: crmkit.TenantContext) -> None:
    """A change to a lower tier (by the order of the churn settings' ``loyalty_tiers``)."""
    tiers = ctx.settings_as(ChurnSettings).loyalty_tiers
    old, new = event.data.get("old_tier"), event.data.get("new_tier")
    if old in tiers and new in tiers and tiers.index(new) < tiers.index(old):
        await service.record_signal(ctx, event, SignalKind.TIER_DROP)


@crmkit.hookimpl
async def loyalty_points_expiring(event: crmkit.DomainEvent, ctx: crmkit.TenantContext) -> None:
    """Points about to expire unused count until the day they expire."""
    expires_on = date.fromisoformat(str(event.data["expires_on"]))
    until = datetime.combine(expires_on + timedelta(days=1), time(), tzinfo=UTC)
    await service.record_signal(
        ctx, event, SignalKind.POINTS_EXPIRING, value=event.data["points"], expires_at=until
    )


@crmkit.hookimpl
async def consent_changed(event: crmkit.DomainEvent, ctx: crmkit.TenantContext) -> None:
    """A marketing opt-out (withdrawn or denied, on any channel) is a feature; a later
    grant clears it."""
    if event.data.get("purpose") != "marketing":
        return
    opted_out = event.data.get("state") != crmkit.ConsentState.GRANTED.value
    await service.record_signal(ctx, event, SignalKind.MARKETING_CONSENT, value=int(opted_out))


# --- the customer's rights -------------------------------------------------------------


@crmkit.hookimpl
async def export_customer_data(ctx: crmkit.TenantContext, customer_id: uuid.UUID) -> Any:
    alerts = await service.alerts_of(ctx, customer_id)
    signals = await service.signals_of(ctx, customer_id)
    if not alerts and not signals:
        return None
    return {
        "alerts": [
            {
                "id": str(a.id),
                "status": a.status,
                "score": a.score,
                "band": a.band,
                "reasons": a.reasons,
                "opened_at": a.opened_at.isoformat(),
                "action_step": a.action_step,
                "outcome": a.outcome,
                "resolved_at": a.resolved_at and a.resolved_at.isoformat(),
                "note": a.note,
            }
            for a in alerts
        ],
        "signals": [
            {
                "kind": s.kind,
                "value": None if s.value is None else str(s.value),
                "occurred_at": s.occurred_at.isoformat(),
            }
            for s in signals
        ],
    }


@crmkit.hookimpl
async def erase_customer(ctx: crmkit.TenantContext, customer_id: uuid.UUID) -> None:
    """Alerts (notes included) and signals go; nothing about the customer is kept."""
    await service.erase(ctx, customer_id)


@crmkit.hookimpl
async def seed_demo(ctx: crmkit.TenantContext, customer_ids: list[uuid.UUID]) -> None:
    """Two demo customers whose transactions stopped a few months ago, then a scoring
    run: the demo shows their alerts. Activities carry external refs, so a second call
    records nothing, and the run opens no second alert."""
    rng = random.Random(13)  # noqa: S311 - sample data, not security
    now = crmkit.utcnow()
    for customer_id in customer_ids[:2]:
        for index in range(6):
            await crmkit.record_activity(
                ctx,
                customer_id=customer_id,
                kind=crmkit.ActivityKind.TRANSACTION,
                channel=crmkit.Channel.APP,
                occurred_at=now - timedelta(days=100 + 10 * index + rng.randint(0, 5)),
                amount=str(rng.randint(20, 400)),
                currency="EUR",
                external_ref=f"churn-demo-{customer_id}-{index}",
            )
    await service.score_customers(ctx)
