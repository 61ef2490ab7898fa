"""The optional per-tenant logistic-regression model (``pip install crmkit-churn[model]``,
scikit-learn), fitted on the tenant's own history.

The history is read as it stood at a cut-off ``horizon_days`` ago: the same features the
rules read (one statement, ``crmkit_churn.features``), and, for every customer engaged
then, the label "churned": no engagement at all since. A quarter of those customers is
held out (stratified, seeded) for the AUC, and for the precision and recall at the
tenant's alert threshold. The coefficients are stored as numbers (``churn_models``), so
the database scores with them (``crmkit_churn.scoring``); scikit-learn is needed only to
fit. The rules stay the fallback (no fit, or ``use_model`` off) and the explanation.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

import crmkit
from sqlalchemy import exists, select

from crmkit_churn.features import ENGAGEMENT, available_features, select_features
from crmkit_churn.models import ChurnModel
from crmkit_churn.settings import ChurnSettings, Feature

log = logging.getLogger(__name__)
HELD_OUT = 0.25
SEED = 13
"""The held-out split is seeded: the same history gives the same fit."""


@dataclass
class History:
    cutoff: datetime
    features: list[Feature]
    missing: list[float]
    """What stands for a feature a customer has no data for: its rule's ``start``, where
    the rule sees no sign at all."""
    values: list[list[float]]
    """One row per customer engaged at the cut-off: their features then."""
    churned: list[int]
    """1 for a customer with no engagement since the cut-off."""


@dataclass
class Fit:
    intercept: float
    coefficients: list[float]
    """Per unit of each feature's value, in ``History.features`` order."""
    auc: float
    precision: float | None
    recall: float | None
    training: tuple[int, int]
    held_out: tuple[int, int]
    """(customers, of them churned)."""


async def latest(ctx: crmkit.TenantContext) -> ChurnModel | None:
    """The tenant's latest fit, if any."""
    newest = select(ChurnModel).order_by(ChurnModel.fitted_at.desc(), ChurnModel.id.desc())
    found: ChurnModel | None = await ctx.session.scalar(newest.limit(1))
    return found


async def in_force(ctx: crmkit.TenantContext, settings: ChurnSettings) -> ChurnModel | None:
    """The fit the score uses: the latest, while the tenant's ``use_model`` is on."""
    return await latest(ctx) if settings.use_model else None


async def history(ctx: crmkit.TenantContext, settings: ChurnSettings) -> History:
    """The labelled history, in one statement: customers engaged at the cut-off (with
    activity before it, inactive for less than the horizon), with their features then."""
    now = crmkit.utcnow()
    cutoff = now - timedelta(days=settings.horizon_days)
    used = available_features(ctx, settings)
    starts = {rule.feature: rule.start for rule in settings.rules}
    missing = [starts[feature] for feature in used]
    activity, customer = crmkit.Activity, crmkit.Customer
    came_back = exists().where(
        activity.customer_id == customer.id,
        activity.kind.in_(ENGAGEMENT),
        activity.occurred_at > cutoff,
        activity.occurred_at <= now,
    )
    query = (
        select_features(settings, used, cutoff)
        .add_columns((~came_back).label("churned"))
        .order_by(customer.id)  # the held-out split follows the rows' order: keep it
    )
    found = History(cutoff, used, missing, [], [])
    names = [feature.value for feature in used]
    for row in (await ctx.session.execute(query)).mappings():
        if row["last_active_at"] is not None and row["inactive"] < settings.horizon_days:
            found.values.append(
                [
                    default if row[name] is None else float(row[name])
                    for name, default in zip(names, missing, strict=True)
                ]
            )
            found.churned.append(int(row["churned"]))
    return found


def fit(found: History, alert_threshold: int) -> Fit:
    """Fit on three quarters, measure on the held-out quarter. The features are
    standardised for the fit; the coefficients are returned per unit of the raw value,
    which is what the database multiplies."""
    try:
        import numpy as np
        from sklearn.linear_model import LogisticRegression
        from sklearn.metrics import precision_score, recall_score, roc_auc_score
        from sklearn.model_selection import train_test_split
        from sklearn.preprocessing import StandardScaler
    except ImportError as exc:
        raise crmkit.Conflict(
            "fitting the churn model needs scikit-learn: install crmkit-churn[model]"
        ) from exc
    x, y = np.asarray(found.values, dtype=float), np.asarray(found.churned, dtype=int)
    x_fit, x_out, y_fit, y_out = train_test_split(
        x, y, test_size=HELD_OUT, stratify=y, random_state=SEED
    )
    scaler = StandardScaler().fit(x_fit)
    regression = LogisticRegression(max_iter=1000).fit(scaler.transform(x_fit), y_fit)
    probability = regression.predict_proba(scaler.transform(x_out))[:, 1]
    flagged = np.floor(probability * 100 + 0.5) >= alert_threshold  # as the score rounds
    scaled = regression.coef_[0] / scaler.scale_
    return Fit(
        intercept=float(regression.intercept_[0] - float(np.dot(scaled, scaler.mean_))),
        coefficients=[float(c) for c in scaled],
        auc=round(float(roc_auc_score(y_out, probability)), 4),
        precision=round(float(precision_score(y_out, flagged, zero_division=0)), 4)
        if flagged.any()
        else None,
        recall=round(float(recall_score(y_out, flagged)), 4),
        training=(len(y_fit), int(y_fit.sum())),
        held_out=(len(y_out), int(y_out.sum())),
    )


async def fit_model(ctx: crmkit.TenantContext, by: str) -> ChurnModel:
    """Fit the tenant's model on its history and store it; refused, with nothing
    stored, while the history has fewer churned customers than ``model_min_churned``
    (or no customer who stayed)."""
    settings = ctx.settings_as(ChurnSettings)
    found = await history(ctx, settings)
    churned = sum(found.churned)
    if churned < settings.model_min_churned or churned == len(found.churned):
        raise crmkit.Conflict(
            f"the churn model needs a history of at least {settings.model_min_churned} "
            f"customers labelled churned and some who stayed; this tenant's has {churned} "
            f"churned of {len(found.churned)}",
            churned=churned,
            customers=len(found.churned),
        )
    result = await asyncio.to_thread(fit, found, settings.alert_threshold)
    stored = ChurnModel(
        id=crmkit.uuid7(),
        fitted_at=crmkit.utcnow(),
        fitted_by=by,
        cutoff=found.cutoff,
        intercept=result.intercept,
        coefficients=[
            {"feature": feature.value, "coefficient": coefficient, "missing": default}
            for feature, coefficient, default in zip(
                found.features, result.coefficients, found.missing, strict=True
            )
        ],
        auc=result.auc,
        precision=result.precision,
        recall=result.recall,
        training_customers=result.training[0],
        training_churned=result.training[1],
        held_out_customers=result.held_out[0],
        held_out_churned=result.held_out[1],
    )
    ctx.session.add(stored)
    await ctx.session.flush()
    return stored


async def scheduled_fit(ctx: crmkit.TenantContext) -> None:
    """The weekly refit, for tenants that score with the model: a history not yet
    sufficient is logged and left for next week."""
    if not ctx.settings_as(ChurnSettings).use_model:
        return
    try:
        await fit_model(ctx, "crmkit:churn")
    except crmkit.Conflict as refused:
        log.info("churn model not refitted for tenant %s: %s", ctx.tenant_id, refused.message)
