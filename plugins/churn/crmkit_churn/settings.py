"""The tenant's churn settings: the periods compared, the rules (thresholds and weights)
that make the score, the alert threshold and the retention playbook.

``crmkit plugins configure TENANT churn --set ...`` validates them with this model, so
the scoring never sees a rule on an unknown feature or a playbook step twice.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator

NAME = "churn"
"""The plugin's name: its entry point, scope prefix, migration branch and job prefix."""


class Feature(StrEnum):
    """What the score can look at. Each feature comes from one source (``SOURCES``)."""

    DAYS_INACTIVE = "days_inactive"
    TRANSACTION_DROP = "transaction_drop"
    AMOUNT_DROP = "amount_drop"
    LOGIN_DROP = "login_drop"
    COMPLAINTS = "complaints"
    MARKETING_OPT_OUT = "marketing_opt_out"
    SLA_BREACHES = "sla_breaches"
    LATEST_NPS = "latest_nps"
    LATEST_CSAT = "latest_csat"
    TIER_DROPS = "tier_drops"
    EXPIRING_POINTS = "expiring_points"


CORE = "core"
SOURCES: dict[Feature, str] = {
    Feature.DAYS_INACTIVE: CORE,
    Feature.TRANSACTION_DROP: CORE,
    Feature.AMOUNT_DROP: CORE,
    Feature.LOGIN_DROP: CORE,
    Feature.COMPLAINTS: CORE,
    Feature.MARKETING_OPT_OUT: CORE,
    Feature.SLA_BREACHES: "cases",
    Feature.LATEST_NPS: "surveys",
    Feature.LATEST_CSAT: "surveys",
    Feature.TIER_DROPS: "loyalty",
    Feature.EXPIRING_POINTS: "loyalty",
}
"""The plugin a feature's signal comes from: it counts only while the tenant runs it."""


class Rule(BaseModel):
    """A feature's contribution: 0 at ``start``, ``weight`` at ``full`` and beyond,
    linear between. ``start`` above ``full`` reads "the lower the worse" (an NPS)."""

    model_config = ConfigDict(extra="forbid")

    feature: Feature
    start: float
    full: float
    weight: int = Field(ge=1, le=100)

    @model_validator(mode="after")
    def _span(self) -> Rule:
        if self.start == self.full:
            raise ValueError(f"rule {self.feature.value}: start and full must differ")
        return self

    def contribution(self, value: float) -> float:
        share = (value - self.start) / (self.full - self.start)
        return 0.0 if share <= 0 else self.weight if share >= 1 else self.weight * share


DEFAULT_RULES = (
    Rule(feature=Feature.DAYS_INACTIVE, start=14, full=40, weight=50),
    Rule(feature=Feature.TRANSACTION_DROP, start=0.4, full=0.9, weight=20),
    Rule(feature=Feature.AMOUNT_DROP, start=0.4, full=0.9, weight=10),
    Rule(feature=Feature.LOGIN_DROP, start=0.4, full=0.9, weight=15),
    Rule(feature=Feature.COMPLAINTS, start=0, full=3, weight=15),
    Rule(feature=Feature.MARKETING_OPT_OUT, start=0, full=1, weight=10),
    Rule(feature=Feature.SLA_BREACHES, start=0, full=2, weight=15),
    Rule(feature=Feature.LATEST_NPS, start=7, full=0, weight=20),
    Rule(feature=Feature.LATEST_CSAT, start=3, full=1, weight=10),
    Rule(feature=Feature.TIER_DROPS, start=0, full=1, weight=10),
    Rule(feature=Feature.EXPIRING_POINTS, start=0, full=1000, weight=5),
)


class StepKind(StrEnum):
    """What a playbook step does; all but ``call`` need the plugin that carries it out."""

    CALL = "call"
    WINBACK_OFFER = "winback_offer"
    MESSAGE = "message"
    CASE = "case"


STEP_PLUGINS: dict[StepKind, str | None] = {
    StepKind.CALL: None,
    StepKind.WINBACK_OFFER: "loyalty",
    StepKind.MESSAGE: "channels",
    StepKind.CASE: "cases",
}


class PlaybookStep(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str = Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")
    kind: StepKind
    label: str = Field(min_length=1, max_length=200)
    template: str | None = Field(
        None, max_length=100, description="The channels template a ``message`` step sends."
    )


DEFAULT_PLAYBOOK = (
    PlaybookStep(key="call", kind=StepKind.CALL, label="Call the customer"),
    PlaybookStep(key="winback_offer", kind=StepKind.WINBACK_OFFER, label="Offer a loyalty bonus"),
    PlaybookStep(
        key="message",
        kind=StepKind.MESSAGE,
        label="Send a retention message",
        template="churn.retention",
    ),
    PlaybookStep(key="case", kind=StepKind.CASE, label="Open a service case"),
)


class ChurnSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    period_days: int = Field(
        90, ge=7, le=366, description="The current period, compared with the one before it."
    )
    complaint_window_days: int = Field(90, ge=1, le=366, description="Complaints counted.")
    horizon_days: int = Field(
        180, ge=30, le=1000, description="No activity for this long: the customer has churned."
    )
    min_previous_transactions: int = Field(
        3, ge=1, le=1000, description="A drop counts only against at least this many before."
    )
    alert_threshold: int = Field(50, ge=1, le=100, description="A score from here opens an alert.")
    high_band_from: int = Field(70, ge=1, le=100, description="Scores from here are band high.")
    loyalty_tiers: list[str] = Field(
        default_factory=lambda: ["bronze", "silver", "gold", "private_banking"],
        description="The loyalty tiers, lowest first: a change to a lower one is a tier drop.",
    )
    use_model: bool = Field(
        False,
        description="Score with the tenant's fitted model's probability (the rules stay the "
        "reasons, and the score while no model is fitted).",
    )
    model_min_churned: int = Field(
        50,
        ge=10,
        le=100_000,
        description="The model is fitted only on a history with this many customers labelled "
        "churned or more.",
    )
    rules: list[Rule] = Field(default_factory=lambda: list(DEFAULT_RULES))
    playbook: list[PlaybookStep] = Field(default_factory=lambda: list(DEFAULT_PLAYBOOK))

    @model_validator(mode="after")
    def _consistent(self) -> ChurnSettings:
        features = [rule.feature for rule in self.rules]
        if len(set(features)) != len(features):
            raise ValueError("each feature has at most one rule")
        keys = [step.key for step in self.playbook]
        if len(set(keys)) != len(keys):
            raise ValueError("playbook step keys are unique")
        if self.high_band_from < self.alert_threshold:
            raise ValueError("high_band_from is at least alert_threshold")
        return self

    def step(self, key: str) -> PlaybookStep | None:
        return next((step for step in self.playbook if step.key == key), None)
