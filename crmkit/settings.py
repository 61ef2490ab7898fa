"""Platform settings, read from the environment (prefix ``CRMKIT_``).

The defaults are the embedded development setup: a SQLite file and generated keys in
``data_dir``, jobs run in-process. Production sets ``CRMKIT_DATABASE_URL``,
``CRMKIT_REDIS_URL`` and ``CRMKIT_SIGNING_KEY_FILE`` and leaves ``dev_mode`` off.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from crmkit.errors import BadUserInput
from crmkit.outbound import OutboundPolicy

ACCESS_TOKEN_MAX_MINUTES = 24 * 60
"""The longest an access token may live, whoever asks: the setting and ``--minutes``."""
OPERATOR_TOKEN_MAX_MINUTES = 8 * 60
"""The longest an operator token may live: it opens every tenant's lifecycle."""


class ConfigurationError(RuntimeError):
    """The platform's configuration is missing or wrong: only its operator can fix it,
    so the CLI says so in one line instead of a traceback."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CRMKIT_", extra="ignore")

    dev_mode: bool = Field(
        default=False,
        description="GraphiQL, field suggestions and generated keys; never in production.",
    )
    data_dir: Path = Path(".crmkit")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy async URL; defaults to a SQLite file in data_dir."
    )
    migration_database_url: str | None = Field(
        default=None,
        description="SQLAlchemy async URL of the role that owns the tables, for `crmkit db "
        "upgrade`; defaults to database_url. On PostgreSQL the application's own role "
        "(database_url) is a member of crmkit_app and owns nothing.",
    )
    database_pool_size: int = Field(
        default=20,
        ge=1,
        le=1000,
        description="Database connections a process keeps open once it has needed them. "
        "The pool closes a connection beyond this when it is returned, so a pool smaller than "
        "the requests or jobs a process runs at once reconnects, and prepares its statements "
        "again, all the time.",
    )
    database_max_overflow: int = Field(
        default=10, ge=0, le=1000, description="Connections opened beyond the pool at a peak, closed after."
    )
    redis_url: str | None = Field(
        default=None, description="Enables the arq job backend; without it jobs run in-process."
    )
    signing_key_file: Path | None = Field(
        default=None, description="PEM EC P-256 private key that signs access tokens."
    )
    master_key: SecretStr | None = Field(
        default=None,
        description="Base64url of 32 random bytes: the platform master key that wraps "
        "tenant keys. Set this or master_key_file.",
    )
    master_key_file: Path | None = Field(
        default=None, description="A file holding the master key as base64url text."
    )
    audit_key_file: Path | None = Field(
        default=None, description="PEM Ed25519 private key that signs audit checkpoints."
    )
    issuer: str = Field(
        default="crmkit",
        description="The https URL of this server as partner apps reach it: the tokens' `iss` and "
        "the base of the OAuth metadata URLs. Required outside development mode.",
    )
    access_token_minutes: int = Field(
        default=60, ge=1, le=ACCESS_TOKEN_MAX_MINUTES, description="Default access token lifetime."
    )
    operator_token_minutes: int = Field(
        default=60, ge=1, le=OPERATOR_TOKEN_MAX_MINUTES, description="Default operator token lifetime."
    )
    refresh_token_days: int = Field(
        default=30, ge=1, le=365, description="Lifetime of an OAuth refresh token (each use rotates it)."
    )
    authorization_code_seconds: int = Field(
        default=300, ge=10, le=600, description="Lifetime of an OAuth authorization code."
    )

    rate_limit_login_per_minute: int = Field(
        default=20, ge=1, description="Login and consent form posts per client address and minute."
    )
    rate_limit_token_per_minute: int = Field(
        default=60,
        ge=1,
        description="Requests to the OAuth token, revocation and introspection endpoints per client "
        "address and minute.",
    )
    outbound_allowed_networks: list[str] = Field(
        default_factory=list,
        description="Private networks (CIDR, as a JSON list: '[\"10.20.0.0/16\"]') that webhooks "
        "and plugins' providers may reach outside development mode, for partners on a "
        "private link; every other destination must be https on a public address.",
    )

    @field_validator("outbound_allowed_networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for network in value:
            ipaddress.ip_network(network, strict=False)  # ValueError names the bad one
        return value

    def outbound_policy(self) -> OutboundPolicy:
        """Where webhooks and providers may be sent (:mod:`crmkit.outbound`)."""
        return OutboundPolicy.of(self.dev_mode, self.outbound_allowed_networks)

    rate_limit_graphql_per_minute: int = Field(
        default=600,
        ge=1,
        description="Requests to /graphql and /operator/graphql per token subject (the client "
        "address without a valid token) and minute.",
    )

    gc_gen0_threshold: int = Field(
        default=50_000,
        ge=100,
        description="Allocations between two young-generation garbage collections in a server "
        "or worker process (Python's default 700): a GraphQL page allocates tens of thousands of "
        "objects, so at 700 the collector runs dozens of times per request.",
    )

    graphql_max_depth: int = 10
    graphql_max_aliases: int = 15
    graphql_max_tokens: int = 2000
    page_size_default: int = 20
    page_size_max: int = 100

    job_max_tries: int = 5
    job_retry_base_seconds: float = 1.0
    worker_max_jobs: int = Field(
        default=10, ge=1, le=1000, description="Jobs one `crmkit worker` runs at once (arq's max_jobs)."
    )
    worker_poll_seconds: float = Field(
        default=0.5,
        gt=0,
        le=10,
        description="How often a worker asks Redis for jobs when it has free slots (arq's "
        "poll_delay): a worker starts at most worker_max_jobs jobs per poll, so short jobs run "
        "at most worker_max_jobs / worker_poll_seconds a second per worker.",
    )
    outbox_sweep_seconds: int = 30
    audit_checkpoint_seconds: int = Field(
        default=600, ge=10, description="How often each tenant's audit chain head is signed."
    )

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.data_dir.resolve() / 'crmkit.db'}"

    @property
    def resolved_migration_database_url(self) -> str:
        return self.migration_database_url or self.resolved_database_url

    def resolved_signing_key_file(self) -> Path:
        """The signing key's path; outside development a key must be configured."""
        if self.signing_key_file is not None:
            return self.signing_key_file
        if not self.dev_mode:
            raise ConfigurationError(
                "CRMKIT_SIGNING_KEY_FILE is not set; outside development mode crmkit "
                "never generates its own signing key."
            )
        return self.data_dir / "dev-signing-key.pem"

    def check_issuer(self) -> None:
        """Outside development mode the issuer must be an https URL: without one the
        OAuth metadata would name whatever ``Host`` a caller sends."""
        if not self.dev_mode and not self.issuer.startswith("https://"):
            raise ConfigurationError(
                f"CRMKIT_ISSUER is {self.issuer!r}; outside development mode set it to this "
                "server's https URL (https://crm.example.com)."
            )

    def access_token_lifetime(self, minutes: int | None) -> int:
        """Minutes an access token lives: ``minutes``, or the setting when None."""
        return _lifetime(minutes, self.access_token_minutes, ACCESS_TOKEN_MAX_MINUTES, "an access token")

    def operator_token_lifetime(self, minutes: int | None) -> int:
        """Minutes an operator token lives: ``minutes``, or the setting when None."""
        return _lifetime(
            minutes, self.operator_token_minutes, OPERATOR_TOKEN_MAX_MINUTES, "an operator token"
        )


def _lifetime(minutes: int | None, default: int, maximum: int, what: str) -> int:
    """The same bounds as the setting's, for every entry point that asks for a lifetime."""
    if minutes is None:
        return default
    if not 1 <= minutes <= maximum:
        raise BadUserInput(f"{what} lives 1 to {maximum} minutes, not {minutes}", field="minutes")
    return minutes


@lru_cache
def get_settings() -> Settings:
    return Settings()
