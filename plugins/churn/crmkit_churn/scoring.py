"""The transparent score, computed by the database: each rule's contribution from the
tenant's thresholds and weights (passed as parameters), their sum capped at 100, and
the band. Python only reads the rows, and lists the reasons of the scores it shows or
writes.

Every point of a score comes from a named rule, so the reasons listed with it are the
whole explanation a relationship manager needs. Where the tenant uses a fitted model
(``crmkit_churn.model``), the score is its probability in percent instead, and the
rules' contributions stay the reasons.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from operator import attrgetter
from typing import Any

import crmkit
from sqlalchemy import Float, Integer, Numeric, case, cast, func, literal, select

from crmkit_churn.features import BASE, select_features
from crmkit_churn.models import Band, ChurnModel
from crmkit_churn.settings import ChurnSettings, Feature, Rule

BANDS = {band.value: band for band in Band}
_LARGEST_FIRST = attrgetter("contribution")
LOGIT_BOUND = 30.0
"""The model's log-odds are clipped here: exp() of more overflows on PostgreSQL, and the
probability is 0 or 1 to a millionth long before."""


@dataclass(slots=True)
class Reason:
    feature: str
    value: float
    contribution: float

    def as_data(self) -> dict[str, float | str]:
        return {"feature": self.feature, "value": self.value, "contribution": self.contribution}


@dataclass(slots=True)
class Score:
    customer_id: uuid.UUID
    relationship_manager: str | None
    lifecycle_stage: crmkit.LifecycleStage
    last_active_at: datetime | None
    """The latest engagement within the look-back (``None``: none there)."""
    inactive_days: float
    """Days since the latest engagement (or since the look-back or the customer began)."""
    score: int
    band: Band
    features_used: list[str]
    """The features the score could read: the rules' whose source the tenant runs."""
    figures: tuple[Any, ...]
    """Each used feature's value and contribution, in ``features_used`` order."""

    @property
    def reasons(self) -> list[Reason]:
        """Every rule that contributed, largest first (ties in the rules' order); built
        when asked, since a run reads them only for the alerts it opens."""
        figures = self.figures
        found = [
            Reason(name, figures[2 * n], figures[2 * n + 1])
            for n, name in enumerate(self.features_used)
            if figures[2 * n + 1]
        ]
        found.sort(key=_LARGEST_FIRST, reverse=True)
        return found


def _rounded(value: Any, places: int) -> Any:
    """``value`` rounded half away from zero to ``places`` decimals, as a float."""
    return cast(func.round(cast(value, Numeric(24, 8)), places), Float)


def _contribution(rule: Rule, value: Any) -> Any:
    """0 at ``start``, ``weight`` at ``full`` and beyond, linear between (``start`` above
    ``full`` reads "the lower the worse"); NULL without data. To a tenth of a point."""
    share = (value - literal(rule.start, Float)) / literal(rule.full - rule.start, Float)
    weight = literal(float(rule.weight), Float)
    return _rounded(case((share <= 0, 0.0), (share >= 1, weight), else_=weight * share), 1)


def _capped(total: Any) -> Any:
    return case((total > 100, 100), else_=total)


def _probability_percent(model: ChurnModel, values: dict[str, Any]) -> Any:
    """The fitted model's probability in percent, from its stored coefficients (a
    feature the customer has no data for reads as the fit read it)."""
    logit: Any = literal(model.intercept, Float)
    for item in model.coefficients:
        value = values.get(item["feature"])
        if value is not None:  # a feature whose source the tenant stopped: left out
            default = literal(item["missing"], Float)
            logit = logit + literal(item["coefficient"], Float) * func.coalesce(value, default)
    bounded = case(
        (logit > LOGIT_BOUND, LOGIT_BOUND), (logit < -LOGIT_BOUND, -LOGIT_BOUND), else_=logit
    )
    return cast(func.round(cast(100 / (1 + func.exp(-bounded)), Numeric(24, 8))), Integer)


def select_scores(
    settings: ChurnSettings,
    used: Sequence[Feature],
    now: datetime,
    customer_ids: Sequence[uuid.UUID] | None = None,
    model: ChurnModel | None = None,
) -> Any:
    """The ``BASE`` columns, the score, the band, then each used feature's value (to
    two decimals) and contribution: one statement for every customer of the tenant."""
    features = select_features(settings, used, now, customer_ids).subquery("features")
    rules = {rule.feature: rule for rule in settings.rules}
    figures: list[Any] = []
    for feature in used:
        value = features.c[feature.value]
        figures += [
            _rounded(value, 2).label(f"{feature.value}_value"),
            _contribution(rules[feature], value).label(f"{feature.value}_points"),
        ]
    raw = [features.c[f.value].label(f"raw_{f.value}") for f in used] if model else []
    contributions = select(*(features.c[name] for name in BASE), *figures, *raw).subquery("rules")
    if model is None:
        total: Any = sum(
            (func.coalesce(contributions.c[f"{f.value}_points"], 0.0) for f in used),
            literal(0.0, Float),
        )
        score = _capped(cast(func.round(cast(total, Numeric(24, 8))), Integer))
    else:  # the model reads the values unrounded
        score = _probability_percent(
            model, {f.value: contributions.c[f"raw_{f.value}"] for f in used}
        )
    scored = select(
        *(contributions.c[name] for name in BASE),
        score.label("score"),
        *(contributions.c[c.name] for c in figures),
    ).subquery("scored")
    band = case(
        (scored.c.score >= settings.high_band_from, Band.HIGH.value),
        (scored.c.score >= settings.alert_threshold, Band.MEDIUM.value),
        else_=Band.LOW.value,
    )
    return select(
        *(scored.c[name] for name in BASE),
        scored.c.score,
        band.label("band"),
        *(scored.c[c.name] for c in figures),
    )


async def scores(
    ctx: crmkit.TenantContext,
    settings: ChurnSettings,
    used: Sequence[Feature],
    now: datetime,
    customer_ids: Sequence[uuid.UUID] | None = None,
    model: ChurnModel | None = None,
) -> list[Score]:
    """Every live customer's score (or those of ``customer_ids``), in one statement."""
    names = [feature.value for feature in used]
    rows = await ctx.session.execute(select_scores(settings, used, now, customer_ids, model))
    # rows are unpacked as tuples: named access costs more than the rest of the loop
    return [
        Score(row[0], row[1], row[2], row[3], row[4], row[5], BANDS[row[6]], names, row[7:])
        for row in rows
    ]
