"""Enabling, configuring and disabling a plugin for one tenant.

Settings are validated by the plugin's pydantic model; a refusal names each bad field
and the reason, and a key the model does not define is refused whatever the model's
own ``extra`` says, so a misspelt setting never passes silently. Secret settings
(``SecretStr`` fields) are stored sealed under the tenant key and returned masked
(:mod:`crmkit.plugins.secrets`). The lifecycle hook
runs inside the same transaction, so a plugin that raises refuses the change.
Offboarded tenants are refused: their data and key are gone.
"""

from __future__ import annotations

import functools
import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError
from sqlalchemy import Table, delete, select

from crmkit.core.audit.trail import note
from crmkit.crypto import TenantKeys
from crmkit.db import tenant_owned_tables
from crmkit.errors import BadUserInput, NotFound
from crmkit.platform import Platform, TenantScope
from crmkit.plugins import secrets
from crmkit.plugins.info import PluginInfo
from crmkit.plugins.models import TenantPlugin
from crmkit.tenants.service import open_tenant


def installed_plugin(platform: Platform, plugin: str) -> PluginInfo:
    if plugin not in platform.registry.names:
        installed = ", ".join(platform.registry.names) or "none"
        raise NotFound(f"no plugin {plugin!r} is installed (installed: {installed})")
    return platform.registry.infos[plugin]


@functools.cache
def _closed(model: type[BaseModel]) -> type[BaseModel]:
    """``model``, refusing keys it does not define (pydantic's default ignores them)."""
    if model.model_config.get("extra") == "forbid":
        return model
    namespace = {"model_config": ConfigDict(extra="forbid"), "__module__": model.__module__}
    return type(model.__name__, (model,), namespace)


def validate_settings(info: PluginInfo, values: dict[str, Any]) -> BaseModel | None:
    if info.settings is None:
        if values:
            raise BadUserInput(f"plugin {info.name!r} takes no settings", fields=sorted(values))
        return None
    try:
        return _closed(info.settings).model_validate(values)
    except ValidationError as exc:
        known = ", ".join(info.settings.model_fields)
        fields = [".".join(str(p) for p in err["loc"]) or "(settings)" for err in exc.errors()]
        problems = "; ".join(
            f"{f}: {f'unknown setting (known: {known})' if err['type'] == 'extra_forbidden' else err['msg']}"
            for f, err in zip(fields, exc.errors(), strict=True)
        )
        raise BadUserInput(f"invalid settings for plugin {info.name!r}: {problems}", fields=fields) from None


def _kept(keys: TenantKeys, info: PluginInfo, row: TenantPlugin | None) -> dict[str, Any]:
    """A row's stored settings that the plugin still defines (a newer version may
    have dropped one; that is no typo of the operator's), secrets opened."""
    if row is None or info.settings is None:
        return {}
    kept = {k: v for k, v in row.settings.items() if k in info.settings.model_fields}
    return secrets.unseal(keys, info.name, info.settings, kept)


def _stored(keys: TenantKeys, info: PluginInfo, model: BaseModel | None) -> dict[str, Any]:
    """What the row holds: secret settings sealed under the tenant key."""
    return secrets.seal(keys, info.name, model) if model is not None else {}


async def _keys(platform: Platform, scope: TenantScope) -> TenantKeys:
    return await platform.keyring.tenant_keys(scope.session, scope.state.tenant_id)


async def _row(scope: TenantScope, plugin: str) -> TenantPlugin | None:
    return await scope.session.scalar(select(TenantPlugin).where(TenantPlugin.plugin == plugin))


async def _tenant_id(platform: Platform, tenant: str) -> uuid.UUID:
    return (await open_tenant(platform.db, tenant)).id


async def enable(
    platform: Platform, tenant: str, plugin: str, values: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Enable (or re-enable, keeping earlier settings) ``plugin``; returns its settings."""
    installed_plugin(platform, plugin)
    tenant_id = await _tenant_id(platform, tenant)
    async with platform.tenant_scope(tenant_id, require_active=False) as scope:
        return await enable_in(platform, scope, plugin, values)


async def enable_in(
    platform: Platform, scope: TenantScope, plugin: str, values: dict[str, Any] | None = None
) -> dict[str, Any]:
    """:func:`enable` in the transaction of ``scope``: onboarding enables a tenant's
    first plugins in the transaction that creates it."""
    info = installed_plugin(platform, plugin)
    row = await _row(scope, plugin)
    keys = await _keys(platform, scope)
    settings = validate_settings(info, {**_kept(keys, info, row), **(values or {})})
    stored = _stored(keys, info, settings)
    if row is None:
        scope.session.add(TenantPlugin(plugin=plugin, settings=stored, enabled=True))
    else:
        row.settings, row.enabled = stored, True
    await scope.session.flush()
    rebound = await platform.bind(scope.session, scope.state.tenant_id, require_active=False)
    await rebound.hooks.call_plugin(plugin, "plugin_enabled")
    return secrets.shown(settings)


async def configure(platform: Platform, tenant: str, plugin: str, values: dict[str, Any]) -> dict[str, Any]:
    """Change some settings of an enabled plugin; the others keep their values."""
    info = installed_plugin(platform, plugin)
    tenant_id = await _tenant_id(platform, tenant)
    async with platform.tenant_scope(tenant_id, require_active=False) as scope:
        row = await _row(scope, plugin)
        if row is None or not row.enabled:
            raise BadUserInput(f"plugin {plugin!r} is not enabled for tenant {tenant!r}")
        keys = await _keys(platform, scope)
        kept = _kept(keys, info, row)
        previous = validate_settings(info, kept)
        settings = validate_settings(info, {**kept, **values})
        row.settings = _stored(keys, info, settings)
        await scope.session.flush()
        rebound = await platform.bind(scope.session, tenant_id, require_active=False)
        await rebound.hooks.call_plugin(plugin, "plugin_settings_changed", previous=previous)
    return secrets.shown(settings)


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
