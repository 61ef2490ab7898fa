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
from sqlalchemy import Float, Integer, case, cast, func, literal, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import FunctionElement

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


class least(FunctionElement[float]):
    """The smallest of the arguments: ``LEAST`` on PostgreSQL, ``min`` on SQLite."""

    type = Float()
    inherit_cache = True


class greatest(FunctionElement[float]):
    """The largest of the arguments: ``GREATEST`` on PostgreSQL, ``max`` on SQLite."""

    type = Float()
    inherit_cache = True


@compiles(least)
def _least(element: least, compiler: Any, **kw: Any) -> str:
    return f"LEAST({compiler.process(element.clauses, **kw)})"


@compiles(greatest)
def _greatest(element: greatest, compiler: Any, **kw: Any) -> str:
    return f"GREATEST({compiler.process(element.clauses, **kw)})"


@compiles(least, "sqlite")
def _least_sqlite(element: least, compiler: Any, **kw: Any) -> str:
    return f"min({compiler.process(element.clauses, **kw)})"


@compiles(greatest, "sqlite")
def _greatest_sqlite(element: greatest, compiler: Any, **kw: Any) -> str:
    return f"max({compiler.process(element.clauses, **kw)})"


class rounded(FunctionElement[float]):
    """``rounded(value, places)``: half up, as a float. On PostgreSQL in floating point
    (numeric arithmetic would cost several times as much per customer); SQLite's
    ``round`` works on floats already."""

    type = Float()
    inherit_cache = True


@compiles(rounded)
def _rounded_pg(element: rounded, compiler: Any, **kw: Any) -> str:
    value, places = element.clauses.clauses
    scale = float(10 ** int(places.value))
    return f"(floor({compiler.process(value, **kw)} * {scale} + 0.5) / {scale})"


@compiles(rounded, "sqlite")
def _rounded_sqlite(element: rounded, compiler: Any, **kw: Any) -> str:
    return f"round({compiler.process(element.clauses, **kw)})"


def _contribution(rule: Rule, value: Any) -> Any:
    """0 at ``start``, ``weight`` at ``full`` and beyond, linear between (``start`` above
    ``full`` reads "the lower the worse"); NULL without data. To a tenth of a point."""
    share = (value - literal(rule.start, Float)) / literal(rule.full - rule.start, Float)
    return rounded(literal(float(rule.weight), Float) * least(greatest(share, 0.0), 1.0), 1)


def _probability_percent(model: ChurnModel, values: dict[str, Any]) -> Any:
    """The fitted model's probability in percent, from its stored coefficients (a
    feature the customer has no data for reads as the fit read it)."""
    logit: Any = literal(model.intercept, Float)
    for item in model.coefficients:
        value = values.get(item["feature"])
        if value is not None:  # a feature whose source the tenant stopped: left out
            default = literal(item["missing"], Float)
            logit = logit + literal(item["coefficient"], Float) * func.coalesce(value, default)
    bounded = least(greatest(logit, -LOGIT_BOUND), LOGIT_BOUND)
    return cast(rounded(100 / (1 + func.exp(-bounded)), 0), Integer)


def select_scores(
    settings: ChurnSettings,
    used: Sequence[Feature],
    now: datetime,
    customer_ids: Sequence[uuid.UUID] | None = None,
    model: ChurnModel | None = None,
) -> Any:
    """The ``BASE`` columns, the score, the band, then each used feature's value (to
    two decimals) and contribution: one statement for every customer of the tenant."""
    # materialised: each feature is computed once per customer, not once per place the
    # rules read it (the expressions would be copied into each; PostgreSQL then also
    # spends seconds compiling them with its JIT on a large tenant)
    features = (
        select_features(settings, used, now, customer_ids)
        .cte("features")
        .prefix_with("MATERIALIZED")
    )
    rules = {rule.feature: rule for rule in settings.rules}
    figures: list[Any] = []
    for feature in used:
        value = features.c[feature.value]
        figures += [
            rounded(value, 2).label(f"{feature.value}_value"),
            _contribution(rules[feature], value).label(f"{feature.value}_points"),
        ]
    raw = [features.c[f.value].label(f"raw_{f.value}") for f in used] if model else []
    contributions = select(*(features.c[name] for name in BASE), *figures, *raw).subquery("rules")
    if model is None:
        total: Any = sum(
            (func.coalesce(contributions.c[f"{f.value}_points"], 0.0) for f in used),
            literal(0.0, Float),
        )
        # a tenth above: sums of tenths in floating point may fall a hair short of x.5
        score = cast(least(rounded(total + 1e-9, 0), 100), Integer)
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
