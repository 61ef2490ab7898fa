"""The transparent score: the sum of the tenant's rules' contributions, capped at 100.

Every point of a score comes from a named rule, so the reasons listed with it are the
whole explanation a relationship manager needs.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from crmkit_churn.features import CustomerFeatures
from crmkit_churn.models import Band
from crmkit_churn.settings import ChurnSettings, Feature


@dataclass(frozen=True)
class Reason:
    feature: str
    value: float
    contribution: float

    def as_data(self) -> dict[str, float | str]:
        return {"feature": self.feature, "value": self.value, "contribution": self.contribution}


@dataclass(frozen=True)
class Score:
    customer_id: uuid.UUID
    score: int
    band: Band
    reasons: list[Reason]
    """Every rule that contributed, largest first."""
    features_used: list[str]
    """The features the score could read: the rules' whose source the tenant runs."""


def band(settings: ChurnSettings, score: int) -> Band:
    if score >= settings.high_band_from:
        return Band.HIGH
    return Band.MEDIUM if score >= settings.alert_threshold else Band.LOW


def score(settings: ChurnSettings, features: CustomerFeatures, used: list[Feature]) -> Score:
    reasons = []
    for rule in settings.rules:
        value = features.values.get(rule.feature)
        if rule.feature not in used or value is None:
            continue
        contribution = round(rule.contribution(value), 1)
        if contribution > 0:
            reasons.append(Reason(rule.feature.value, value, contribution))
    reasons.sort(key=lambda reason: (-reason.contribution, reason.feature))
    total = min(100, round(sum(reason.contribution for reason in reasons)))
    return Score(
        features.customer_id,
        total,
        band(settings, total),
        reasons,
        [feature.value for feature in used],
    )
