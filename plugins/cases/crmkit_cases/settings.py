"""The settings a tenant gives the plugin: its SLA targets, business calendar, teams and
routing rules. crmkit validates them when the tenant enables or reconfigures the plugin,
so the services never see a bad value (an unknown time zone, a team no rule can reach)."""

from __future__ import annotations

import enum
from datetime import date, time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

NAME = "cases"
"""The plugin's name: its entry point, scope prefix, migration branch and job prefix."""


class CaseKind(enum.StrEnum):
    ENQUIRY = "enquiry"
    REQUEST = "request"
    COMPLAINT = "complaint"


class CasePriority(enum.StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"


class CaseStatus(enum.StrEnum):
    NEW = "new"
    IN_PROGRESS = "in_progress"
    WAITING_ON_CUSTOMER = "waiting_on_customer"
    RESOLVED = "resolved"
    CLOSED = "closed"


OPEN_STATUSES = frozenset({CaseStatus.NEW, CaseStatus.IN_PROGRESS, CaseStatus.WAITING_ON_CUSTOMER})
"""A case in these counts against its assignee's open-case limit and its SLAs."""


class SlaTarget(BaseModel):
    """Business hours to the first customer-visible reply and to resolution, for one
    kind of case and, optionally, one priority (a rule naming the priority wins)."""

    model_config = ConfigDict(extra="forbid")

    kind: CaseKind
    priority: CasePriority | None = None
    first_response_hours: float = Field(gt=0, le=10_000)
    resolution_hours: float = Field(gt=0, le=10_000)


class Team(BaseModel):
    """Agents (token subjects, ``user:<id>``) who work a queue together; the lead takes
    the team's escalations."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    lead: str | None = Field(None, max_length=200)
    agents: list[str] = Field(default_factory=list)
    open_case_limit: int = Field(25, ge=1, le=10_000)


class RoutingRule(BaseModel):
    """New cases that match every non-empty list go to ``team``; the first rule wins."""

    model_config = ConfigDict(extra="forbid")

    team: str
    kinds: list[CaseKind] = Field(default_factory=list)
    channels: list[str] = Field(default_factory=list)
    tiers: list[str] = Field(default_factory=list)
    """Loyalty tiers, as the loyalty plugin's ``loyalty_tier_changed`` events name them."""
    tags: list[str] = Field(default_factory=list)
    """Customer tags: any one of them matches."""


DEFAULT_SLAS = [
    SlaTarget(kind=CaseKind.ENQUIRY, first_response_hours=8, resolution_hours=24),
    SlaTarget(kind=CaseKind.REQUEST, first_response_hours=16, resolution_hours=40),
    # the guide's service standard: complaints answered within 24 hours, resolved within 48
    SlaTarget(kind=CaseKind.COMPLAINT, first_response_hours=24, resolution_hours=48),
]


class CasesSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt key is refused, not ignored

    time_zone: str = Field("UTC", description="IANA zone the business hours are in.")
    country: str | None = Field(
        None, description="ISO country code whose public holidays close the service desk."
    )
    subdivision: str | None = Field(None, description="State or region, for regional holidays.")
    working_days: list[int] = Field(
        default_factory=lambda: [0, 1, 2, 3, 4], description="0 = Monday ... 6 = Sunday."
    )
    opens_at: time = time(9, 0)
    closes_at: time = time(18, 0)
    closures: list[date] = Field(
        default_factory=list, description="The tenant's own closing days, besides holidays."
    )
    slas: list[SlaTarget] = Field(default_factory=lambda: list(DEFAULT_SLAS))
    warning_share: float = Field(
        0.8, gt=0, lt=1, description="Warn when this share of a target's time is used."
    )
    reopen_window_days: int = Field(14, ge=0, le=365)
    teams: list[Team] = Field(default_factory=list)
    routing: list[RoutingRule] = Field(default_factory=list)
    default_team: str | None = None
    notify_on_escalation: bool = Field(
        True, description="Tell the customer through the channels plugin when it is enabled."
    )
    resolution_codes: list[str] = Field(
        default_factory=lambda: ["answered", "fixed", "refunded", "declined", "duplicate"]
    )
    root_cause_codes: list[str] = Field(
        default_factory=lambda: ["fees", "process", "product", "staff", "system", "other"]
    )

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("working_days")
    @classmethod
    def _weekdays(cls, value: list[int]) -> list[int]:
        if not value or any(not 0 <= day <= 6 for day in value):
            raise ValueError("working_days are 0 (Monday) to 6 (Sunday), at least one")
        return sorted(set(value))

    @model_validator(mode="after")
    def _consistent(self) -> CasesSettings:
        if self.closes_at <= self.opens_at:
            raise ValueError("closes_at must be after opens_at")
        if self.country is not None:
            try:
                holidays.country_holidays(self.country, subdiv=self.subdivision)
            except NotImplementedError as exc:
                raise ValueError(f"no public holidays known for {self.country!r}") from exc
        names = [team.name for team in self.teams]
        if len(names) != len(set(names)):
            raise ValueError("team names must be unique")
        for team in [*(rule.team for rule in self.routing), self.default_team]:
            if team is not None and team not in names:
                raise ValueError(f"routing names team {team!r}, which is not in teams")
        kinds = {target.kind for target in self.slas if target.priority is None}
        if kinds != set(CaseKind):
            raise ValueError("slas need a target without priority for every kind of case")
        return self

    def target(self, kind: CaseKind, priority: CasePriority) -> SlaTarget:
        """The SLA of a kind and priority: the rule naming the priority, else the kind's."""
        by_priority = [t for t in self.slas if t.kind is kind and t.priority is priority]
        return (by_priority or [t for t in self.slas if t.kind is kind and t.priority is None])[0]

    def team(self, name: str | None) -> Team | None:
        return next((team for team in self.teams if team.name == name), None)
