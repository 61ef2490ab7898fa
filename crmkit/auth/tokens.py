"""Signed JWT access tokens (RFC 9068 profile): issuing them and validating them.

Every way into the API (operator-issued tokens today, OAuth 2.0 grants later)
validates through :meth:`TokenService.verify`, and the tenant comes from the token's
``tid`` claim only, never from a header.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey

from crmkit.errors import BadUserInput, Unauthenticated
from crmkit.settings import Settings

if TYPE_CHECKING:
    from crmkit.platform import Platform

ALGORITHM = "ES256"
TOKEN_TYPE = "at+jwt"  # noqa: S105  (a JWT "typ", not a secret)
AUDIENCE = "crmkit"


@dataclass(frozen=True)
class Principal:
    """Who is calling: the tenant, the subject and the scopes the token carries."""

    tenant_id: uuid.UUID
    subject: str
    scopes: frozenset[str]
    client_id: str
    token_id: str


def load_signing_key(settings: Settings) -> ECKey:
    """The signing key; in development mode one is generated on first use (git-ignored)."""
    path = settings.resolved_signing_key_file()
    if not path.exists():
        if not settings.dev_mode:
            raise RuntimeError(f"signing key file {path} does not exist")
        _write_private(path, ECKey.generate_key("P-256").as_pem(private=True))
    return ECKey.import_key(path.read_bytes())


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


class TokenService:
    def __init__(self, settings: Settings, key: ECKey | None = None) -> None:
        self.settings = settings
        self.key = key or load_signing_key(settings)
        self.kid = self.key.thumbprint()
        self._claims = jwt.JWTClaimsRegistry(
            iss={"essential": True, "value": settings.issuer},
            aud={"essential": True, "value": AUDIENCE},
            exp={"essential": True},
            sub={"essential": True},
            tid={"essential": True},
            jti={"essential": True},
            client_id={"essential": True},
        )

    def issue(
        self,
        *,
        tenant_id: uuid.UUID,
        subject: str,
        scopes: Iterable[str],
        client_id: str = "crmkit-cli",
        lifetime_seconds: int | None = None,
    ) -> str:
        now = int(time.time())
        lifetime = lifetime_seconds or self.settings.access_token_minutes * 60
        claims = {
            "iss": self.settings.issuer,
            "aud": AUDIENCE,
            "sub": subject,
            "client_id": client_id,
            "tid": str(tenant_id),
            "scope": " ".join(sorted(set(scopes))),
            "iat": now,
            "exp": now + lifetime,
            "jti": uuid.uuid4().hex,
        }
        header = {"alg": ALGORITHM, "typ": TOKEN_TYPE, "kid": self.kid}
        return jwt.encode(header, claims, self.key, algorithms=[ALGORITHM])

    def verify(self, token: str) -> Principal:
        """The token's principal, or :class:`Unauthenticated` saying what is wrong."""
        try:
            decoded = jwt.decode(token, self.key, algorithms=[ALGORITHM])
        except (JoseError, ValueError) as exc:
            raise Unauthenticated("the access token is malformed or its signature is invalid") from exc
        if decoded.header.get("typ") != TOKEN_TYPE:
            raise Unauthenticated("the token is not an access token")
        try:
            self._claims.validate(decoded.claims)
        except JoseError as exc:
            raise Unauthenticated(f"the access token is not valid: {exc.description or exc.error}") from exc
        claims = decoded.claims
        try:
            tenant_id = uuid.UUID(str(claims["tid"]))
        except ValueError:
            raise Unauthenticated("the access token names no valid tenant") from None
        return Principal(
            tenant_id=tenant_id,
            subject=str(claims["sub"]),
            scopes=frozenset(str(claims.get("scope", "")).split()),
            client_id=str(claims["client_id"]),
            token_id=str(claims["jti"]),
        )


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
