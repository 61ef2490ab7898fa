"""What ``crmkit plugins list`` shows an operator."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from crmkit.platform import Platform
from crmkit.plugins.info import CORE
from crmkit.plugins.models import HandlerFailure, TenantPlugin
from crmkit.tenants.models import Tenant

RECENT_FAILURES = 5


async def plugin_report(platform: Platform) -> dict[str, Any]:
    registry = platform.registry
    async with platform.db.platform_session() as session:
        tenants = (await session.execute(select(Tenant.id, Tenant.slug).order_by(Tenant.slug))).all()
    enabled: list[tuple[str, str]] = []
    failures: list[tuple[HandlerFailure, str]] = []
    for tenant_id, slug in tenants:  # the tenants' own data: one transaction each
        async with platform.db.tenant_session(tenant_id) as session:
            names = await session.scalars(select(TenantPlugin.plugin).where(TenantPlugin.enabled))
            enabled += [(plugin, slug) for plugin in names]
            failures += [
                (failure, slug)
                for failure in await session.scalars(
                    select(HandlerFailure)
                    .order_by(HandlerFailure.occurred_at.desc())
                    .limit(RECENT_FAILURES * max(1, len(registry.names) + 1))
                )
            ]
    failures.sort(key=lambda pair: pair[0].occurred_at, reverse=True)

    def recent(owner: str) -> list[dict[str, Any]]:
        return [
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
            if f.plugin == owner
        ][:RECENT_FAILURES]

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
                "recent_failures": recent(name),
            }
        )
    refused = [{"name": r.name, "reason": r.reason, "compatible": False} for r in registry.refused]
    # the core's own jobs: event dispatch, webhook deliveries, retention
    return {"plugins": plugins, "refused": refused, "core_failures": recent(CORE)}
