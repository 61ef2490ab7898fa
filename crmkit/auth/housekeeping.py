"""Forgetting what can no longer matter: expired authorization codes and refresh
tokens, and revocations of tokens that have expired anyway. Daily, per tenant."""

from __future__ import annotations

from sqlalchemy import delete

from crmkit.auth.models import AuthorizationCode, RefreshToken
from crmkit.clock import utcnow
from crmkit.plugins.info import CronSpec, TenantContext
from crmkit.tenants.revocation import Revocation


async def purge_expired(ctx: TenantContext) -> int:
    """Delete the tenant's expired codes, refresh tokens and revocations; how many."""
    now = utcnow()
    removed = 0
    for statement in (
        delete(AuthorizationCode).where(AuthorizationCode.expires_at < now),
        delete(RefreshToken).where(RefreshToken.expires_at < now),
        delete(Revocation).where(Revocation.expires_at.is_not(None), Revocation.expires_at < now),
    ):
        result = await ctx.session.execute(statement.execution_options(synchronize_session=False))
        removed += getattr(result, "rowcount", 0) or 0
    return removed


JOBS = [CronSpec("purge_oauth", purge_expired, hour={3}, minute={15})]
