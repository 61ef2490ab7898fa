"""What a plugin says about itself. These types are re-exported from ``crmkit``."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel

from crmkit.outbound import PRODUCTION, OutboundPolicy

if TYPE_CHECKING:
    from crmkit.db import TenantSession
    from crmkit.jobs.queue import JobQueue
    from crmkit.platform.registry import PluginRegistry
    from crmkit.plugins.caller import TenantHooks

S = TypeVar("S", bound=BaseModel)

CORE = "core"
"""The core's own plugin name: always enabled, it declares the core's hooks."""


@dataclass(frozen=True)
class PluginInfo:
    """A plugin's identity and static resources, as ``plugin_info`` in its entry-point module.

    ``requires`` is a PEP 440 specifier of the crmkit versions the plugin supports.
    ``settings`` validates a tenant's settings when the plugin is enabled or configured;
    a field typed ``pydantic.SecretStr`` (a provider's password) is stored encrypted under
    the tenant's key and shown masked by every command and query that shows settings.
    ``migrations`` is the folder of the plugin's alembic branch (labelled ``name``).
    ``hookspecs`` is a module of hooks the plugin declares for other plugins.
    """

    name: str
    version: str
    description: str
    requires: str
    settings: type[BaseModel] | None = None
    migrations: Path | None = None
    hookspecs: ModuleType | None = None


@dataclass(frozen=True)
class Scope:
    """An OAuth scope a plugin (or the core) defines; fields and jobs require them by name.

    ``roles`` names the staff roles that hold it (``crmkit.Role`` values, e.g.
    ``roles={crmkit.Role.RELATIONSHIP_MANAGER, crmkit.Role.SERVICE_AGENT}``); tenant
    admins hold every scope. Without ``roles``, relationship managers hold a plugin's
    ``<plugin>:read`` and ``<plugin>:write`` scopes and no other role holds any.
    """

    name: str
    description: str
    roles: frozenset[str] = frozenset()


@dataclass
class TenantContext:
    """What a hook, job, service or resolver may touch for one tenant: the first
    argument of every operation that works in a tenant.

    ``session`` is bound to the tenant: its queries only see that tenant's rows.
    ``settings`` is the calling plugin's validated settings for the tenant (``None`` for
    plugins without a settings model, and for the core). ``hooks`` calls hooks of the
    tenant's enabled plugins (validation hooks, and hooks plugins declare for others).
    """

    tenant_id: uuid.UUID
    session: TenantSession
    jobs: JobQueue
    settings: BaseModel | None = None
    plugin: str | None = None
    outbound: OutboundPolicy = PRODUCTION
    """Where this context may send requests (webhooks, providers): ``ctx.outbound.post``
    checks the destination, as registered and as resolved now (:mod:`crmkit.outbound`)."""
    hooks: TenantHooks = field(init=False, repr=False)
    """Set by the platform when it binds the context to the tenant's plugin set."""

    @property
    def registry(self) -> PluginRegistry:
        """Every installed plugin's declarations (scopes, events, jobs)."""
        return self.hooks.plugin_set.registry

    def plugin_enabled(self, plugin: str) -> bool:
        """Whether the tenant enabled ``plugin``: use another plugin's features only then
        (send through ``channels`` when it is enabled, else degrade gracefully)."""
        return plugin in self.hooks.enabled

    def settings_as(self, model: type[S]) -> S:
        """The settings, typed: ``ctx.settings_as(MySettings)`` in your plugin's code."""
        if not isinstance(self.settings, model):
            found = type(self.settings).__name__
            raise TypeError(f"{self.plugin!r} settings are {found}, not {model.__name__}")
        return self.settings

    async def enqueue(self, job: str, **payload: Any) -> None:
        """Queue one of the calling plugin's jobs for this tenant, by its short name.

        The payload must be plain data (msgpack: str, numbers, bool, None, lists, dicts).
        """
        await self.jobs.enqueue(f"{self.plugin or 'core'}.{job}", tenant_id=self.tenant_id, payload=payload)


JobFunction = Callable[..., Awaitable[Any]]


@dataclass(frozen=True)
class JobSpec:
    """A background job: ``function(ctx: TenantContext, **payload)``, run in the tenant's scope."""

    name: str
    function: JobFunction
    max_tries: int | None = None


@dataclass(frozen=True)
class CronSpec:
    """A periodic job, run once per tenant that has the plugin enabled, one transaction each.

    The schedule fields follow arq's ``cron``: sets of values, ``None`` meaning every.
    """

    name: str
    function: JobFunction
    minute: set[int] | None = None
    hour: set[int] | None = None
    weekday: set[int] | None = None
    second: set[int] = field(default_factory=lambda: {0})
