"""Retention: activities older than the tenant's ``activity_retention_days`` are purged
by a daily cron job, one transaction per tenant, as one audited act."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, select

from crmkit.clock import utcnow
from crmkit.core.audit.trail import note
from crmkit.core.customers.models import Activity
from crmkit.plugins.info import CronSpec, TenantContext
from crmkit.tenants.models import Tenant


async def purge_activities(ctx: TenantContext) -> int:
    days = await ctx.session.scalar(select(Tenant.activity_retention_days).where(Tenant.id == ctx.tenant_id))
    if not days:
        return 0
    cutoff = utcnow() - timedelta(days=days)
    expired = list(await ctx.session.scalars(select(Activity.id).where(Activity.occurred_at < cutoff)))
    if expired:
        await ctx.session.execute(delete(Activity).where(Activity.id.in_(expired)))
        note(ctx.session, ctx.tenant_id, "activities.purge", "Activity", [str(i) for i in expired])
    return len(expired)


JOBS = [CronSpec("purge_activities", purge_activities, hour={2}, minute={30})]
