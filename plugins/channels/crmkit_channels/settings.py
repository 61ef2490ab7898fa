"""The settings a tenant gives channels. Credentials are ``SecretStr``: crmkit stores
them encrypted under the tenant's key and never shows them."""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

NAME = "channels"


class ChannelsSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sender_name: str = Field("Our bank", max_length=200, description="`tenant.name` in templates.")
    default_region: str = Field("GB", description="Region for phone numbers without +country.")
    time_zone: str = Field("UTC", description="The tenant's time zone, for quiet hours.")
    quiet_hours_start: int | None = Field(None, ge=0, le=23, description="Local hour quiet starts.")
    quiet_hours_end: int | None = Field(None, ge=0, le=23, description="Local hour quiet ends.")
    max_per_day: int = Field(5, ge=1, le=1000, description="Messages per customer, channel, day.")
    max_attempts: int = Field(5, ge=1, le=20, description="Tries for a transient failure.")
    retry_base_seconds: float = Field(30.0, ge=0.0, le=3600.0, description="First retry delay.")
    send_batch_size: int = Field(
        50,
        ge=1,
        le=500,
        description="Messages one send job sends, in one transaction: the most a worker "
        "killed mid-job can leave to be sent again.",
    )
    send_concurrency: int = Field(
        4,
        ge=1,
        le=100,
        description="Provider calls a send job has in flight at once (a worker runs several "
        "jobs: more calls in flight cost the HTTP client more CPU per call than they save).",
    )
    stale_after_seconds: int = Field(
        120,
        ge=5,
        le=86400,
        description="A queued message untouched this long lost its job (a killed worker): "
        "the sweep queues it again.",
    )
    opt_out_keywords: list[str] = Field(["STOP", "退订"], description="Replies that opt out.")
    smtp_host: str | None = None
    smtp_port: int = Field(25, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_sender: str = "noreply@example.com"
    sms_url: str | None = Field(None, description="The SMS gateway's send URL (POST).")
    sms_auth_header: str = "Authorization"
    sms_api_key: SecretStr | None = None
    sms_payload_template: str = Field(
        '{"to": {{ to|tojson }}, "text": {{ text|tojson }}, "reference": {{ reference|tojson }}}',
        description="JSON body for the gateway; variables to, text, reference.",
    )
    webhook_url: str | None = Field(None, description="Where the webhook channel posts.")
    webhook_secret: SecretStr | None = Field(
        None, description="Standard Webhooks secret (whsec_…)."
    )
    callback_secret: SecretStr | None = Field(
        None,
        description="Standard Webhooks secret providers sign status callbacks and replies with.",
    )

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @field_validator("default_region")
    @classmethod
    def _region(cls, value: str) -> str:
        if value.upper() not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"unknown phone region {value!r}")
        return value.upper()
