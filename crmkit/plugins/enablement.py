"""Enabling, configuring and disabling a plugin for one tenant.

Settings are validated by the plugin's pydantic model; a refusal names each bad field
and the reason. The lifecycle hook runs inside the same transaction, so a plugin that
raises refuses the change.
"""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy import Table, delete, select

from crmkit.core.audit.trail import note
from crmkit.db import tenant_owned_tables
from crmkit.errors import BadUserInput, NotFound
from crmkit.platform import Platform, TenantScope
from crmkit.plugins.info import PluginInfo
from crmkit.plugins.models import TenantPlugin
from crmkit.tenants.service import get_tenant


def installed_plugin(platform: Platform, plugin: str) -> PluginInfo:
    if plugin not in platform.registry.names:
        installed = ", ".join(platform.registry.names) or "none"
        raise NotFound(f"no plugin {plugin!r} is installed (installed: {installed})")
    return platform.registry.infos[plugin]


def validate_settings(info: PluginInfo, values: dict[str, Any]) -> BaseModel | None:
    if info.settings is None:
        if values:
            raise BadUserInput(f"plugin {info.name!r} takes no settings")
        return None
    try:
        return info.settings.model_validate(values)
    except ValidationError as exc:
        fields = [".".join(str(p) for p in err["loc"]) or "(settings)" for err in exc.errors()]
        problems = "; ".join(f"{f}: {err['msg']}" for f, err in zip(fields, exc.errors(), strict=True))
        raise BadUserInput(f"invalid settings for plugin {info.name!r}: {problems}", fields=fields) from None


def _stored(model: BaseModel | None) -> dict[str, Any]:
    return model.model_dump(mode="json") if model is not None else {}


async def _row(scope: TenantScope, plugin: str) -> TenantPlugin | None:
    return await scope.session.scalar(select(TenantPlugin).where(TenantPlugin.plugin == plugin))


async def _tenant_id(platform: Platform, tenant: str) -> uuid.UUID:
    return (await get_tenant(platform.db, tenant)).id


async def enable(
    platform: Platform, tenant: str, plugin: str, values: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Enable (or re-enable, keeping earlier settings) ``plugin``; returns its settings."""
    info = installed_plugin(platform, plugin)
    tenant_id = await _tenant_id(platform, tenant)
    async with platform.tenant_scope(tenant_id, require_active=False) as scope:
        row = await _row(scope, plugin)
        settings = _stored(validate_settings(info, {**(row.settings if row else {}), **(values or {})}))
        if row is None:
            scope.session.add(TenantPlugin(plugin=plugin, settings=settings, enabled=True))
        else:
            row.settings, row.enabled = settings, True
        await scope.session.flush()
        rebound = await platform.bind(scope.session, tenant_id, require_active=False)
        await rebound.hooks.call_plugin(plugin, "plugin_enabled")
    return settings


async def configure(platform: Platform, tenant: str, plugin: str, values: dict[str, Any]) -> dict[str, Any]:
    """Change some settings of an enabled plugin; the others keep their values."""
    info = installed_plugin(platform, plugin)
    tenant_id = await _tenant_id(platform, tenant)
    async with platform.tenant_scope(tenant_id, require_active=False) as scope:
        row = await _row(scope, plugin)
        if row is None or not row.enabled:
            raise BadUserInput(f"plugin {plugin!r} is not enabled for tenant {tenant!r}")
        previous = validate_settings(info, row.settings)
        row.settings = _stored(validate_settings(info, {**row.settings, **values}))
        await scope.session.flush()
        rebound = await platform.bind(scope.session, tenant_id, require_active=False)
        await rebound.hooks.call_plugin(plugin, "plugin_settings_changed", previous=previous)
    return row.settings


async def disable(platform: Platform, tenant: str, plugin: str) -> None:
    """Disable ``plugin`` for ``tenant``; its data stays for a later re-enable."""
    installed_plugin(platform, plugin)
    tenant_id = await _tenant_id(platform, tenant)
    async with platform.tenant_scope(tenant_id, require_active=False) as scope:
        row = await _row(scope, plugin)
        if row is None or not row.enabled:
            raise BadUserInput(f"plugin {plugin!r} is not enabled for tenant {tenant!r}")
        await scope.hooks.call_plugin(plugin, "plugin_disabled")
        row.enabled = False


def plugin_tables(platform: Platform, plugin: str) -> list[Table]:
    """The tenant-owned tables of ``plugin``'s models (defined in its package)."""
    module = platform.registry.pm.get_plugin(plugin)
    return tenant_owned_tables(getattr(module, "__name__", "").partition(".")[0])


async def purge(platform: Platform, tenant: str, plugin: str, *, confirm: str) -> list[str]:
    """Delete a disabled plugin's data of one tenant, as one audited act; ``confirm``
    repeats the plugin's name. Returns the tables purged."""
    installed_plugin(platform, plugin)
    if confirm != plugin:
        raise BadUserInput("to purge, confirm with the plugin's name", field="confirm")
    tenant_id = await _tenant_id(platform, tenant)
    tables = plugin_tables(platform, plugin)
    async with platform.tenant_scope(tenant_id, require_active=False) as scope:
        row = await _row(scope, plugin)
        if row is not None and row.enabled:
            raise BadUserInput(f"disable plugin {plugin!r} for tenant {tenant!r} before purging its data")
        for table in tables:
            await scope.session.execute(delete(table).where(table.c.tenant_id == tenant_id))
        if row is not None:
            await scope.session.delete(row)
        note(scope.session, tenant_id, "plugin.purge", "Plugin", [plugin], [t.name for t in tables])
    return [t.name for t in tables]
