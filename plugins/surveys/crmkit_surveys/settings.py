"""The settings a tenant gives the plugin: fatigue, expiry, suppression, segments and
triggers. crmkit validates them when the tenant enables or reconfigures the plugin, so
the services never see a bad value (a trigger naming a segment that does not exist)."""

from __future__ import annotations

import enum
from typing import Literal

import crmkit
from pydantic import BaseModel, ConfigDict, Field, model_validator

NAME = "surveys"
"""The plugin's name: its entry point, scope prefix, migration branch and job prefix."""

PURPOSE = "surveys_feedback"
"""The consent purpose asked before every invitation."""

KEY_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
"""Survey keys, question keys, option keys and segment names."""


class Segment(BaseModel):
    """A named group of customers (a customer filter): results break down by it and a
    scheduled trigger invites it. Every condition given must hold."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=KEY_PATTERN)
    tag: str | None = Field(None, min_length=1, max_length=64)
    stage: crmkit.LifecycleStage | None = None

    @model_validator(mode="after")
    def _some_condition(self) -> Segment:
        if self.tag is None and self.stage is None:
            raise ValueError(f"segment {self.name!r} needs a tag or a stage")
        return self


class TriggerKind(enum.StrEnum):
    ACTIVITY = "activity"
    CASE_CLOSED = "case_closed"
    SCHEDULE = "schedule"


class Trigger(BaseModel):
    """When to invite to the survey with key ``survey``: after an activity of ``kind``
    (and ``channel``, if given), after a service case closes (the cases plugin's
    ``cases_closed``), or every ``every_days`` days for the customers of ``segment``."""

    model_config = ConfigDict(extra="forbid")

    on: TriggerKind
    survey: str = Field(pattern=KEY_PATTERN)
    kind: crmkit.ActivityKind | None = None
    channel: crmkit.Channel | None = None
    segment: str | None = None
    every_days: int | None = Field(None, ge=1, le=3660)
    locale: str | None = Field(None, min_length=2, max_length=16)

    @model_validator(mode="after")
    def _fits_its_kind(self) -> Trigger:
        if self.on is TriggerKind.ACTIVITY and self.kind is None:
            raise ValueError("an activity trigger names the activity kind")
        if self.on is TriggerKind.SCHEDULE and (self.segment is None or self.every_days is None):
            raise ValueError("a schedule trigger names a segment and every_days")
        if self.on is not TriggerKind.ACTIVITY and (self.kind or self.channel):
            raise ValueError("only activity triggers take kind and channel")
        if self.on is not TriggerKind.SCHEDULE and (self.segment or self.every_days):
            raise ValueError("only schedule triggers take segment and every_days")
        return self


class SurveysSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt key is refused, not ignored

    fatigue_days: int = Field(
        30, ge=0, le=3660, description="At most one invitation per customer in this many days."
    )
    invitation_valid_days: int = Field(14, ge=1, le=365, description="Days a link stays valid.")
    min_group_size: int = Field(
        5, ge=1, le=1000, description="Result groups with fewer responses are suppressed."
    )
    delivery_channel: Literal["email", "sms", "in_app"] = Field(
        "email", description="Consent is asked for this channel; channels sends through it."
    )
    public_base_url: str = Field(
        "http://127.0.0.1:8000",
        pattern=r"^https?://[^\s/]+(/[^\s]*)?$",
        description="Where crmkit is served: the start of every invitation link.",
    )
    follow_up_detractors: bool = Field(
        True, description="A detractor opens a contact activity for the relationship manager."
    )
    responses_per_minute_per_address: int = Field(30, ge=1, le=10_000)
    segments: list[Segment] = Field(default_factory=list)
    triggers: list[Trigger] = Field(default_factory=list)

    @model_validator(mode="after")
    def _segments_known(self) -> SurveysSettings:
        names = [segment.name for segment in self.segments]
        if len(set(names)) != len(names):
            raise ValueError("segment names must be unique")
        for trigger in self.triggers:
            if trigger.segment is not None and trigger.segment not in names:
                raise ValueError(f"trigger names segment {trigger.segment!r}, which is not defined")
        return self

    def segment(self, name: str) -> Segment:
        for segment in self.segments:
            if segment.name == name:
                return segment
        raise crmkit.BadUserInput(f"no segment named {name!r} in the settings", field="segment")
