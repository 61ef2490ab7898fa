"""Ending every session of a tenant: when it is suspended, nothing issued before works
again after a reactivation."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete

from crmkit.auth.models import AuthorizationCode, RefreshToken
from crmkit.clock import utcnow
from crmkit.db import TenantSession
from crmkit.principal import EVERY_TOKEN
from crmkit.settings import ACCESS_TOKEN_MAX_MINUTES
from crmkit.tenants.revocation import revoke


async def revoke_tenant_sessions(session: TenantSession) -> None:
    """End every session of the session's tenant: its access tokens issued until now
    are revoked (:data:`~crmkit.principal.EVERY_TOKEN`), its refresh tokens and
    pending authorization codes deleted, so none works again after a reactivation."""
    tenant_id = session.tenant_id
    assert tenant_id is not None, "end sessions in a tenant session"
    for model in (RefreshToken, AuthorizationCode):
        await session.execute(delete(model).where(model.tenant_id == tenant_id))
    expires = utcnow() + timedelta(minutes=ACCESS_TOKEN_MAX_MINUTES)  # no token outlives this
    await revoke(session, tenant_id, EVERY_TOKEN, expires_at=expires)
