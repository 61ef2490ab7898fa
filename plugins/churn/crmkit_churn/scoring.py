"""The transparent score: the sum of the tenant's rules' contributions, capped at 100.

Every point of a score comes from a named rule, so the reasons listed with it are the
whole explanation a relationship manager needs.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from operator import attrgetter

from crmkit_churn.features import CustomerFeatures
from crmkit_churn.models import Band
from crmkit_churn.settings import ChurnSettings, Feature


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
    score: int
    band: Band
    reasons: list[Reason]
    """Every rule that contributed, largest first."""
    features_used: list[str]
    """The features the score could read: the rules' whose source the tenant runs."""


_LARGEST_FIRST = attrgetter("contribution")


def scorer(settings: ChurnSettings, used: list[Feature]) -> Callable[[CustomerFeatures], Score]:
    """The tenant's score function for one run: the rules on features it can read,
    looked up once rather than once per customer (a run scores every customer)."""
    rules = [
        (rule.feature, rule.feature.value, rule.contribution)
        for rule in settings.rules
        if rule.feature in used
    ]
    names = [feature.value for feature in used]
    threshold, high = settings.alert_threshold, settings.high_band_from

    def score(features: CustomerFeatures) -> Score:
        values = features.values
        reasons = []
        for feature, name, contribution_of in rules:
            value = values.get(feature)
            if value is not None:
                contribution = contribution_of(value)
                if contribution >= 0.05:  # shown to a tenth of a point
                    reasons.append(Reason(name, round(value, 2), round(contribution, 1)))
        if len(reasons) > 1:  # ties keep the rules' order
            reasons.sort(key=_LARGEST_FIRST, reverse=True)
        total = min(100, round(sum(reason.contribution for reason in reasons)))
        grade = Band.HIGH if total >= high else Band.MEDIUM if total >= threshold else Band.LOW
        return Score(features.customer_id, total, grade, reasons, names)

    return score
