"""Operator tokens: signed like access tokens, for another audience.

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
from crmkit.errors import Unauthenticated

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
