"""OAuth 2.0 tables: partner apps (platform-wide), their installations in tenants, and
the authorization server's bookkeeping (codes, refresh tokens, revocations).

Only ``oauth_clients`` is a platform table. Everything else is tenant-owned, so it is
filtered by the tenant session and by row-level security like every tenant's data. The
opaque credentials (codes, refresh tokens) name their tenant in clear before a dot
(:func:`new_opaque`), which is how the token endpoint knows which tenant's session to
open; only their SHA-256 is stored.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
import uuid
from datetime import datetime

from sqlalchemy import ForeignKeyConstraint, Index, String, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from crmkit.clock import utcnow
from crmkit.db import Model, TenantOwned, uuid7

SECRET_PREFIX = "sha256:"  # noqa: S105  (a hash label, not a secret)


def hash_secret(secret: str) -> str:
    """Client secrets are 256 random bits: a fast hash is enough (nothing to guess)."""
    return SECRET_PREFIX + hashlib.sha256(secret.encode()).hexdigest()


def new_opaque(tenant_id: uuid.UUID) -> str:
    """``<tenant hex>.<43 random characters>``: a code or refresh token."""
    return f"{tenant_id.hex}.{secrets.token_urlsafe(32)}"


def parse_opaque(value: str) -> tuple[uuid.UUID, str] | None:
    """(tenant, SHA-256 hex of the whole value), or None if it is not one of ours."""
    head, dot, rest = value.partition(".")
    if not dot or "." in rest or len(head) != 32 or not 20 <= len(rest) <= 128:
        return None
    try:
        tenant_id = uuid.UUID(hex=head)
    except ValueError:
        return None
    return tenant_id, hashlib.sha256(value.encode()).hexdigest()


class OAuthClient(Model):
    """A partner app, registered by an operator (``crmkit apps register``).

    Implements authlib's ``ClientMixin``. Redirect URIs are compared exactly, as
    strings; PKCE with S256 is required of every client, confidential or public.
    """

    __tablename__ = "oauth_clients"

    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    secret_hash: Mapped[str | None] = mapped_column(String(100))
    """None for a public client (no secret; PKCE is its only proof)."""
    name: Mapped[str] = mapped_column(String(200))
    redirect_uris: Mapped[list[str]] = mapped_column(default=list)
    scopes: Mapped[list[str]] = mapped_column(default=list)
    """The scopes this app may ever ask for; an installation grants a subset."""
    webhook_url: Mapped[str | None] = mapped_column(String(2000))
    confidential: Mapped[bool] = mapped_column(default=True)
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    # --- authlib ClientMixin ------------------------------------------------------
    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        return None  # a redirect_uri is always required

    def get_allowed_scope(self, scope: str | None) -> str | None:
        """The requested scope if the app may ask for all of it, else None
        (authlib answers ``invalid_scope``); never silently narrowed."""
        if not scope:
            return ""
        return scope if set(scope.split()) <= set(self.scopes) else None

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return any(hmac.compare_digest(redirect_uri.encode(), uri.encode()) for uri in self.redirect_uris)

    def check_client_secret(self, client_secret: str) -> bool:
        if self.secret_hash is None:
            return False
        return hmac.compare_digest(hash_secret(client_secret), self.secret_hash)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if self.confidential:
            return method in {"client_secret_basic", "client_secret_post"}
        return method == "none"

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        allowed = {"authorization_code", "refresh_token"}
        if self.confidential:
            allowed.add("client_credentials")
        return grant_type in allowed


class AppInstallation(TenantOwned, Model):
    """A partner app installed in a tenant with the scopes a tenant admin granted."""

    __tablename__ = "app_installations"
    __table_args__ = (
        UniqueConstraint("tenant_id", "client_id"),
        ForeignKeyConstraint(["client_id"], ["oauth_clients.client_id"]),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid7)
    client_id: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[list[str]] = mapped_column(default=list)
    installed_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    @property
    def subject(self) -> str:
        """The ``sub`` of the app's own (client credentials) tokens."""
        return f"app:{self.id}"


class AuthorizationCode(TenantOwned, Model):
    """An authorization code (stored hashed). Spent codes are kept until they expire so
    that a second use is recognised and the tokens of the first are revoked."""

    __tablename__ = "oauth_authorization_codes"
    __audited__ = False  # credentials bookkeeping; the grant shows in the tokens' use

    code_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64))
    installation_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    redirect_uri: Mapped[str] = mapped_column(String(2000))
    scope: Mapped[str] = mapped_column(String(2000))
    code_challenge: Mapped[str | None] = mapped_column(String(128))
    code_challenge_method: Mapped[str | None] = mapped_column(String(10))
    grant_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    """The token family the exchange starts (revoked if the code is used twice)."""
    expires_at: Mapped[datetime] = mapped_column()
    used_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    # --- authlib AuthorizationCodeMixin --------------------------------------------
    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def is_expired(self) -> bool:
        return self.expires_at <= utcnow()


class RefreshToken(TenantOwned, Model):
    """A refresh token (stored hashed). Each use spends it and issues the next one of
    the same family (``grant_id``); presenting a spent one revokes the family."""

    __tablename__ = "oauth_refresh_tokens"
    __audited__ = False
    __table_args__ = (Index("ix_oauth_refresh_tokens_tenant_id_grant_id", "tenant_id", "grant_id"),)

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    grant_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    client_id: Mapped[str] = mapped_column(String(64))
    installation_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    scope: Mapped[str] = mapped_column(String(2000))
    issued_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    used_at: Mapped[datetime | None] = mapped_column()

    # --- authlib TokenMixin ---------------------------------------------------------
    def check_client(self, client: OAuthClient) -> bool:
        return self.client_id == client.client_id

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return max(0, int(self.expires_at.timestamp() - time.time()))

    def is_expired(self) -> bool:
        return self.expires_at <= utcnow()


class OperatorRevocation(Model):
    """A revoked operator token, by its ``jti``. A platform table: operator tokens
    belong to no tenant. Checked on every ``/operator/graphql`` request."""

    __tablename__ = "operator_revocations"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    revoked_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    """When the token expires anyway: the row may go after this."""
