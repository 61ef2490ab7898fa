"""The loyalty programme of a tenant: ``crmkit plugins enable TENANT loyalty --set ...``.

crmkit validates these settings when the tenant enables or reconfigures the plugin, so
the earning, tier and expiry code never sees a rule that contradicts itself.
"""

from __future__ import annotations

import enum
from datetime import date
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal

from pydantic import BaseModel, ConfigDict, Field, model_validator

NAME = "loyalty"
"""The plugin's name: its entry point, scope prefix, migration branch and job prefix."""


class Rounding(enum.StrEnum):
    """How fractional points become whole points."""

    DOWN = "down"
    HALF_UP = "half_up"
    UP = "up"

    def apply(self, points: Decimal) -> int:
        mode = {"down": ROUND_FLOOR, "half_up": ROUND_HALF_UP, "up": ROUND_CEILING}[self.value]
        return int(points.quantize(Decimal(1), rounding=mode))


class CapPeriod(enum.StrEnum):
    DAY = "day"
    MONTH = "month"
    YEAR = "year"


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt key is refused, not ignored


class EarningRule(_Closed):
    """Points for one kind of activity (``transaction``, ``login``, ...), optionally on one
    channel only (``app``, ``branch``, ...). The most specific rule wins: one naming the
    activity's channel before one for every channel."""

    kind: str = Field(min_length=1, max_length=20)
    channel: str | None = Field(None, max_length=20)
    points_per_unit: Decimal = Field(
        Decimal(0), ge=0, description="Points per unit of the activity's amount (per euro)."
    )
    points_per_activity: Decimal = Field(
        Decimal(0), ge=0, description="Points for the activity itself, amount or not."
    )


class BonusCampaign(_Closed):
    """A multiplier on the points of activities that occur inside its date window
    (inclusive). Where campaigns overlap, the highest multiplier applies."""

    name: str = Field(min_length=1, max_length=100)
    starts_on: date
    ends_on: date
    multiplier: Decimal = Field(gt=0, le=100)
    kinds: list[str] = Field(default_factory=list, description="Activity kinds; empty: all.")

    @model_validator(mode="after")
    def _window(self) -> BonusCampaign:
        if self.ends_on < self.starts_on:
            raise ValueError(f"campaign {self.name!r} ends before it starts")
        return self


class Tier(_Closed):
    """A tier and the points earned in the rolling window that qualify for it."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")
    min_points: int = Field(ge=0)


DEFAULT_TIERS = [
    Tier(name="bronze", min_points=0),
    Tier(name="silver", min_points=1_000),
    Tier(name="gold", min_points=5_000),
    Tier(name="private_banking", min_points=20_000),
]


class LoyaltySettings(_Closed):
    rules: list[EarningRule] = Field(
        default_factory=lambda: [EarningRule(kind="transaction", points_per_unit=Decimal(1))],
        description="Earning rules by activity kind and channel.",
    )
    rounding: Rounding = Rounding.DOWN
    cap_points: int | None = Field(
        None, ge=1, description="Most points one customer earns from activities per period."
    )
    cap_period: CapPeriod = CapPeriod.MONTH
    campaigns: list[BonusCampaign] = Field(default_factory=list)
    tiers: list[Tier] = Field(default_factory=lambda: list(DEFAULT_TIERS))
    tier_window_days: int = Field(365, ge=1, le=3660, description="The rolling window of tiers.")
    downgrade_grace_days: int = Field(
        30, ge=0, le=3660, description="How long a customer keeps a tier after falling below it."
    )
    expiry_days: int = Field(730, ge=1, le=36600, description="How long earned points last.")
    expiry_warning_days: int = Field(
        30, ge=0, le=3660, description="How long before expiry loyalty_points_expiring fires."
    )
    winback_points: int = Field(
        500,
        ge=1,
        le=1_000_000,
        description="Bonus points a churn alert's win-back offer grants (once per alert).",
    )
    point_value: Decimal = Field(
        Decimal("0.01"), ge=0, description="What one outstanding point is worth (liability)."
    )
    currency: str = Field("EUR", pattern=r"^[A-Z]{3}$")

    @model_validator(mode="after")
    def _tiers(self) -> LoyaltySettings:
        if not self.tiers or self.tiers[0].min_points != 0:
            raise ValueError("tiers start with a tier of min_points 0")
        thresholds = [tier.min_points for tier in self.tiers]
        if thresholds != sorted(set(thresholds)):
            raise ValueError("tiers are listed by strictly increasing min_points")
        if len({tier.name for tier in self.tiers}) != len(self.tiers):
            raise ValueError("tier names are unique")
        keys = [(rule.kind, rule.channel) for rule in self.rules]
        if len(set(keys)) != len(keys):
            raise ValueError("one earning rule per kind and channel")
        return self

    def tier_rank(self, name: str | None) -> int:
        """A tier's position (0: the lowest); a tier since removed from the settings ranks
        lowest, so the next recomputation moves the customer to a tier that exists."""
        names = [tier.name for tier in self.tiers]
        return names.index(name) if name in names else -1

    def tier_for(self, points: int) -> str:
        """The highest tier ``points`` earned in the window qualify for."""
        return [tier.name for tier in self.tiers if tier.min_points <= points][-1]
