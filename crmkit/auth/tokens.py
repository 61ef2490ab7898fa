"""Signed JWT access tokens (RFC 9068 profile): issuing them and validating them.

Every way into the API (operator-issued tokens today, OAuth 2.0 grants later)
validates through :meth:`TokenService.verify`, and the tenant comes from the token's
``tid`` claim only, never from a header.
"""

from __future__ import annotations

import os
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey

from crmkit.db import uuid7
from crmkit.errors import Unauthenticated
from crmkit.principal import Principal
from crmkit.settings import ConfigurationError, Settings

ALGORITHM = "ES256"
TOKEN_TYPE = "at+jwt"  # noqa: S105  (a JWT "typ", not a secret)
AUDIENCE = "crmkit"
VERIFIED_TOKENS = 4096
"""Tokens whose signature and claims were checked, kept until they expire (least
recently used dropped first)."""


def _issued_at(jti: str, iat: object) -> float:
    """A UUIDv7 ``jti`` carries the issue time in milliseconds; else the ``iat`` second."""
    try:
        value = uuid.UUID(hex=jti)
    except ValueError:
        value = None
    if value is not None and value.version == 7:
        return (value.int >> 80) / 1000
    return float(iat) if isinstance(iat, int | float) else 0.0


def load_signing_key(settings: Settings) -> ECKey:
    """The signing key; in development mode one is generated on first use (git-ignored)."""
    path = settings.resolved_signing_key_file()
    if not path.exists():
        if not settings.dev_mode:
            raise ConfigurationError(f"signing key file {path} does not exist")
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
        self._verified: OrderedDict[str, Principal] = OrderedDict()
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
        grant_id: str | None = None,
        installation_id: str | None = None,
    ) -> str:
        """A signed access token. ``grant_id`` (claim ``gid``) names the token family
        and ``installation_id`` (claim ``ins``) the app installation, so that revoking
        either revokes the token."""
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
            "jti": uuid7().hex,
        }
        if grant_id:
            claims["gid"] = grant_id
        if installation_id:
            claims["ins"] = installation_id
        header = {"alg": ALGORITHM, "typ": TOKEN_TYPE, "kid": self.kid}
        return jwt.encode(header, claims, self.key, algorithms=[ALGORITHM])

    def verify(self, token: str) -> Principal:
        """The token's principal, or :class:`Unauthenticated` saying what is wrong.

        A token verified before is not verified again until it expires (its signature
        check is most of a small request's CPU, and the rate limiter asks too): the
        exact token string, signature included, is the cache key."""
        known = self._verified.get(token)
        if known is not None:
            if known.expires_at > time.time():
                self._verified.move_to_end(token)
                return known
            del self._verified[token]
        principal = self._verify(token)
        self._verified[token] = principal
        if len(self._verified) > VERIFIED_TOKENS:
            self._verified.popitem(last=False)
        return principal

    def _verify(self, token: str) -> Principal:
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
            issued_at=_issued_at(str(claims["jti"]), claims.get("iat")),
            grant_id=str(claims["gid"]) if claims.get("gid") else None,
            installation_id=str(claims["ins"]) if claims.get("ins") else None,
            expires_at=int(claims["exp"]),
        )
