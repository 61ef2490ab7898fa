"""What operators issue and revoke: operator tokens, and access tokens for a tenant.

Operator tokens are signed like access tokens, for another audience.

They open ``/operator/graphql`` and nothing else; an access token (audience
``crmkit``) never opens the operator API, and an operator token never opens a
tenant's ``/graphql``: each endpoint checks its own audience. Every lifetime stays
within its setting's bounds (:mod:`crmkit.settings`), and both kinds are revocable
(``crmkit token revoke``): operator tokens in the platform table
``operator_revocations``, access tokens in their tenant's revocations.
"""

from __future__ import annotations

import re
import time
import uuid
from datetime import UTC, datetime, timedelta

from joserfc import jwt
from joserfc.errors import JoseError
from sqlalchemy import delete, select

from crmkit.auth.models import OperatorRevocation
from crmkit.auth.tokens import ALGORITHM, TokenService
from crmkit.auth.tokens import TOKEN_TYPE as ACCESS_TOKEN_TYPE
from crmkit.clock import utcnow
from crmkit.core.audit.trail import note
from crmkit.db import Database
from crmkit.errors import BadUserInput, Unauthenticated
from crmkit.platform import Platform
from crmkit.settings import ACCESS_TOKEN_MAX_MINUTES, OPERATOR_TOKEN_MAX_MINUTES
from crmkit.tenants.revocation import revoke

OPERATOR_AUDIENCE = "crmkit-operator"
TOKEN_TYPE = "operator+jwt"  # noqa: S105  (a JWT "typ", not a secret)
CLI_OPERATOR = "operator:cli"
"""The ``crmkit`` command's own subject: every act of a CLI run is attributed to it."""
OPERATOR_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,99}$")


class OperatorTokens:
    def __init__(self, tokens: TokenService) -> None:
        self.tokens = tokens
        self._claims = jwt.JWTClaimsRegistry(
            iss={"essential": True, "value": tokens.settings.issuer},
            aud={"essential": True, "value": OPERATOR_AUDIENCE},
            exp={"essential": True},
            sub={"essential": True},
            jti={"essential": True},
        )

    def issue(self, operator: str, *, minutes: int | None = None) -> str:
        """A token naming ``operator`` in audit events; ``minutes`` defaults to the setting."""
        if not OPERATOR_NAME.match(operator):
            raise BadUserInput(
                f"an operator name is 1-100 letters, digits or . _ @ -, not {operator!r}", field="name"
            )
        if f"operator:{operator}" == CLI_OPERATOR:
            raise BadUserInput("the name 'cli' stands for the crmkit command itself", field="name")
        lifetime = self.tokens.settings.operator_token_lifetime(minutes)
        now = int(time.time())
        claims = {
            "iss": self.tokens.settings.issuer,
            "aud": OPERATOR_AUDIENCE,
            "sub": f"operator:{operator}",
            "iat": now,
            "exp": now + lifetime * 60,
            "jti": uuid.uuid4().hex,
        }
        header = {"alg": ALGORITHM, "typ": TOKEN_TYPE, "kid": self.tokens.kid}
        return jwt.encode(header, claims, self.tokens.key, algorithms=[ALGORITHM])

    def _verify(self, token: str) -> tuple[str, str]:
        """The operator's subject (``operator:<name>``) and the token's ``jti``, or
        Unauthenticated. Signature and claims only: :meth:`authenticate` also checks
        revocation."""
        try:
            decoded = jwt.decode(token, self.tokens.key, algorithms=[ALGORITHM])
            if decoded.header.get("typ") != TOKEN_TYPE:
                raise Unauthenticated("this endpoint takes operator tokens only")
            self._claims.validate(decoded.claims)
        except (JoseError, ValueError) as exc:
            raise Unauthenticated(f"the operator token is not valid: {exc}") from exc
        return str(decoded.claims["sub"]), str(decoded.claims["jti"])

    async def authenticate(self, db: Database, token: str) -> str:
        """The operator's subject, for a valid operator token not revoked (one
        primary-key lookup); else Unauthenticated."""
        subject, jti = self._verify(token)
        async with db.platform_session() as session:
            if await session.scalar(select(OperatorRevocation.jti).where(OperatorRevocation.jti == jti)):
                raise Unauthenticated("the operator token has been revoked")
        return subject


async def issue_for_tenant(
    platform: Platform,
    tenant: str,
    scopes: list[str] | None,
    *,
    subject: str = CLI_OPERATOR,
    minutes: int | None = None,
) -> str:
    """An operator-issued token; ``scopes=None`` means every scope the tenant can use.

    A scope neither the core nor the tenant's enabled plugins define is refused, and
    so is a tenant that is not active: suspended tenants get no new credentials.
    """
    from crmkit.tenants.service import load_state, open_tenant

    lifetime = platform.settings.access_token_lifetime(minutes)
    tenant_row = await open_tenant(platform.db, tenant, require_active=True)
    async with platform.db.tenant_session(tenant_row.id) as session:
        state = await load_state(session, tenant_row.id)
    assert state is not None
    available = platform.registry.scopes(state.plugins)
    if scopes is None:
        scopes = sorted(available)
    unknown = sorted(set(scopes) - set(available))
    if unknown:
        raise BadUserInput(
            f"unknown scopes for this tenant: {', '.join(unknown)} "
            f"(available: {', '.join(sorted(available))})",
            field="scopes",
        )
    if not scopes:
        raise BadUserInput("name at least one scope, or use --all-scopes", field="scopes")
    return TokenService(platform.settings).issue(
        tenant_id=tenant_row.id, subject=subject, scopes=scopes, lifetime_seconds=lifetime * 60
    )


async def revoke_token(platform: Platform, token_or_jti: str, tenant: str | None = None) -> str:
    """Revoke an operator token or a tenant's access token, given whole or by its
    ``jti`` (an access token's with its ``tenant``); says what was revoked.

    A whole token must carry crmkit's signature; it says its own kind and tenant.
    """
    from crmkit.tenants.service import get_tenant

    if "." in token_or_jti:
        try:
            decoded = jwt.decode(token_or_jti, TokenService(platform.settings).key, algorithms=[ALGORITHM])
        except (JoseError, ValueError):
            raise BadUserInput("this is no token crmkit signed", field="token") from None
        claims, kind = decoded.claims, decoded.header.get("typ")
        jti, expires = str(claims.get("jti", "")), datetime.fromtimestamp(int(claims.get("exp", 0)), UTC)
        if kind == TOKEN_TYPE:
            return await _revoke_operator_token(platform.db, jti, expires)
        if kind == ACCESS_TOKEN_TYPE:
            return await _revoke_access_token(platform, uuid.UUID(str(claims["tid"])), jti, expires)
        raise BadUserInput(f"crmkit revokes operator and access tokens, not {kind!r}", field="token")
    jti = token_or_jti.strip()
    if not jti or len(jti) > 64:
        raise BadUserInput("a token id (jti) has 1 to 64 characters", field="token")
    if tenant is not None:
        expires = utcnow() + timedelta(minutes=ACCESS_TOKEN_MAX_MINUTES)
        return await _revoke_access_token(platform, (await get_tenant(platform.db, tenant)).id, jti, expires)
    if _is_uuid7(jti):
        raise BadUserInput("this jti is an access token's: name its tenant (--tenant)", field="tenant")
    expires = utcnow() + timedelta(minutes=OPERATOR_TOKEN_MAX_MINUTES)
    return await _revoke_operator_token(platform.db, jti, expires)


def _is_uuid7(value: str) -> bool:
    """Access tokens' ``jti`` are UUIDv7, operator tokens' UUIDv4."""
    try:
        return uuid.UUID(hex=value).version == 7
    except ValueError:
        return False


async def _revoke_operator_token(db: Database, jti: str, expires: datetime) -> str:
    """Record the revocation; rows of tokens expired anyway go in the same transaction."""
    async with db.platform_session() as session:
        await session.execute(delete(OperatorRevocation).where(OperatorRevocation.expires_at < utcnow()))
        await session.merge(OperatorRevocation(jti=jti, revoked_at=utcnow(), expires_at=expires))
    return f"operator token {jti}"


async def _revoke_access_token(platform: Platform, tenant_id: uuid.UUID, jti: str, expires: datetime) -> str:
    async with platform.db.tenant_session(tenant_id) as session:
        await revoke(session, tenant_id, f"jti:{jti}", expires_at=expires)
        note(session, tenant_id, "token.revoke", "Token", [jti])
    return f"access token {jti} of tenant {tenant_id}"
