"""What ``crmkit plugins list`` shows an operator."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from crmkit.platform import Platform
from crmkit.plugins.models import HandlerFailure, TenantPlugin
from crmkit.tenants.models import Tenant

RECENT_FAILURES = 5


async def plugin_report(platform: Platform) -> dict[str, Any]:
    registry = platform.registry
    async with platform.db.platform_session() as session:
        enabled = (
            await session.execute(
                select(TenantPlugin.plugin, Tenant.slug)
                .join(Tenant, Tenant.id == TenantPlugin.tenant_id)
                .where(TenantPlugin.enabled)
                .order_by(Tenant.slug)
            )
        ).all()
        failures = (
            await session.execute(
                select(HandlerFailure, Tenant.slug)
                .join(Tenant, Tenant.id == HandlerFailure.tenant_id)
                .order_by(HandlerFailure.occurred_at.desc())
                .limit(RECENT_FAILURES * max(1, len(registry.names) + 1))
            )
        ).all()
    plugins = []
    for name in registry.names:
        info = registry.infos[name]
        plugins.append(
            {
                "name": name,
                "version": info.version,
                "description": info.description,
                "requires": info.requires,
                "compatible": True,
                "hooks": registry.hooks_implemented(name),
                "enabled_tenants": [slug for plugin, slug in enabled if plugin == name],
                "recent_failures": [
                    {
                        "tenant": slug,
                        "job": f.job,
                        "event_id": f.event_id,
                        "attempt": f.attempt,
                        "gave_up": f.gave_up,
                        "error": f.error,
                        "occurred_at": f.occurred_at.isoformat(),
                    }
                    for f, slug in failures
                    if f.plugin == name
                ][:RECENT_FAILURES],
            }
        )
    refused = [{"name": r.name, "reason": r.reason, "compatible": False} for r in registry.refused]
    return {"plugins": plugins, "refused": refused}
