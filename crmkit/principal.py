"""Who calls: the identity a verified token carries, as every resolver and hook sees it.

A plugin reads it as ``info.context.principal``; the auth feature creates it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass


@dataclass(frozen=True)
class Principal:
    """Who is calling: the tenant, the subject and the scopes the token carries."""

    tenant_id: uuid.UUID
    subject: str
    scopes: frozenset[str]
    client_id: str
    token_id: str
    issued_at: float = 0.0
    """When the token was issued, to the millisecond (from its UUIDv7 ``jti``)."""
    grant_id: str | None = None
    """The token family (an authorization code's grant) it belongs to, if any."""
    installation_id: str | None = None
    """The app installation it was issued to, if an app's."""
    expires_at: int = 0

    def revocation_keys(self) -> list[str]:
        return revocation_keys(
            token_id=self.token_id,
            subject=self.subject,
            grant_id=self.grant_id,
            installation_id=self.installation_id,
        )


EVERY_TOKEN = "tenant:all"  # noqa: S105  (a revocation key, not a secret)
"""The revocation key every token of a tenant carries: suspending a tenant revokes it."""


def revocation_keys(
    *,
    token_id: str,
    subject: str,
    grant_id: str | None = None,
    installation_id: str | None = None,
) -> list[str]:
    """The keys a revocation can name: the token, its subject, its family, its
    installation, and every token of the tenant."""
    keys = [f"jti:{token_id}", f"sub:{subject}", EVERY_TOKEN]
    if grant_id:
        keys.append(f"grant:{grant_id}")
    if installation_id:
        keys.append(f"ins:{installation_id}")
    return keys
