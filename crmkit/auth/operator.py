"""What operators issue: operator tokens, and access tokens for a tenant.

Operator tokens are signed like access tokens, for another audience.

They open ``/operator/graphql`` and nothing else; an access token (audience
``crmkit``) never opens the operator API, and an operator token never opens a
tenant's ``/graphql``: each endpoint checks its own audience.
"""

from __future__ import annotations

import time
import uuid

from joserfc import jwt
from joserfc.errors import JoseError

from crmkit.auth.tokens import ALGORITHM, TokenService
from crmkit.errors import BadUserInput, Unauthenticated
from crmkit.platform import Platform

OPERATOR_AUDIENCE = "crmkit-operator"
TOKEN_TYPE = "operator+jwt"  # noqa: S105  (a JWT "typ", not a secret)


class OperatorTokens:
    def __init__(self, tokens: TokenService) -> None:
        self.tokens = tokens
        self._claims = jwt.JWTClaimsRegistry(
            iss={"essential": True, "value": tokens.settings.issuer},
            aud={"essential": True, "value": OPERATOR_AUDIENCE},
            exp={"essential": True},
            sub={"essential": True},
        )

    def issue(self, operator: str, *, minutes: int = 60) -> str:
        now = int(time.time())
        claims = {
            "iss": self.tokens.settings.issuer,
            "aud": OPERATOR_AUDIENCE,
            "sub": f"operator:{operator}",
            "iat": now,
            "exp": now + minutes * 60,
            "jti": uuid.uuid4().hex,
        }
        header = {"alg": ALGORITHM, "typ": TOKEN_TYPE, "kid": self.tokens.kid}
        return jwt.encode(header, claims, self.tokens.key, algorithms=[ALGORITHM])

    def verify(self, token: str) -> str:
        """The operator's subject (``operator:<name>``), or Unauthenticated."""
        try:
            decoded = jwt.decode(token, self.tokens.key, algorithms=[ALGORITHM])
            if decoded.header.get("typ") != TOKEN_TYPE:
                raise Unauthenticated("this endpoint takes operator tokens only")
            self._claims.validate(decoded.claims)
        except (JoseError, ValueError) as exc:
            raise Unauthenticated(f"the operator token is not valid: {exc}") from exc
        return str(decoded.claims["sub"])


async def issue_for_tenant(
    platform: Platform,
    tenant: str,
    scopes: list[str] | None,
    *,
    subject: str = "operator:cli",
    minutes: int | None = None,
) -> str:
    """An operator-issued token; ``scopes=None`` means every scope the tenant can use.

    A scope neither the core nor the tenant's enabled plugins define is refused.
    """
    from crmkit.tenants.service import get_tenant, load_state

    tenant_row = await get_tenant(platform.db, tenant)
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
        tenant_id=tenant_row.id,
        subject=subject,
        scopes=scopes,
        lifetime_seconds=minutes * 60 if minutes else None,
    )
