"""Discovery and registration of installed plugins.

Plugins are found through the ``crmkit.plugins`` entry-point group. Each entry point
names a module with ``@hookimpl`` functions and a module-level ``plugin_info``. A
plugin that fails to import, lacks ``plugin_info``, does not support this crmkit
version, implements a hook wrongly or makes a declaration crmkit refuses (see
:mod:`crmkit.platform.declarations`) is *refused*: logged with its name and the reason,
listed by ``crmkit plugins list``, and the platform starts without it, leaving no
trace on the pluggy manager.

Declarations are read once, at :meth:`PluginRegistry.add`; :meth:`~PluginRegistry.scopes`,
:meth:`~PluginRegistry.jobs`, :meth:`~PluginRegistry.event_scopes`,
:meth:`~PluginRegistry.consent_purposes` and schema composition read the records.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from types import ModuleType
from typing import Any

import pluggy
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import Version

from crmkit.core import hookspecs
from crmkit.core.consent.service import DeclaredPurpose
from crmkit.platform import declarations
from crmkit.platform.declarations import Declarations, Refusal
from crmkit.plugins.info import CORE, CronSpec, JobSpec, PluginInfo, Scope
from crmkit.version import __version__

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "crmkit.plugins"


@dataclass(frozen=True)
class RefusedPlugin:
    name: str
    reason: str


@dataclass
class PluginRegistry:
    """The installed plugins of one process, registered on one pluggy manager.

    The core registers itself as the plugin ``core`` (always enabled), so it reaches
    GraphQL, scopes and jobs through the same hooks as everyone else.
    """

    pm: pluggy.PluginManager = field(default_factory=lambda: pluggy.PluginManager(hookspecs.PROJECT))
    infos: dict[str, PluginInfo] = field(default_factory=dict)
    declarations: dict[str, Declarations] = field(default_factory=dict)
    refused: list[RefusedPlugin] = field(default_factory=list)
    _event_scopes: dict[str, str] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        """Installed (accepted) plugins, the core excluded."""
        return [name for name in self.infos if name != CORE]

    def add(self, module: ModuleType | Any, *, name: str | None = None) -> PluginInfo | None:
        """Register a plugin object; refuse it (and return None) if it is unusable."""
        info = getattr(module, "plugin_info", None)
        label = str(name or getattr(info, "name", None) or getattr(module, "__name__", module))
        try:
            info = self._checked_info(info)
            declared = declarations.collect(self.pm, module, info)
            declarations.check(declared, self.declarations.values(), self.pm)
            self._register(module, info, declared)
        except Refusal as refusal:
            log.error("plugin %s refused: %s", label, refusal)
            self.refused.append(RefusedPlugin(label, str(refusal)))
            return None
        self.infos[info.name] = info
        self.declarations[info.name] = declared
        self._event_scopes.update(declared.events)
        return info

    def _checked_info(self, info: object) -> PluginInfo:
        if not isinstance(info, PluginInfo):
            raise Refusal("its module has no `plugin_info = crmkit.PluginInfo(...)`")
        if info.name in self.infos:
            raise Refusal(f"a plugin named {info.name!r} is already installed")
        if not info.name.isidentifier():
            raise Refusal(f"plugin name {info.name!r} must be a Python identifier")
        try:
            supported = SpecifierSet(info.requires)
        except InvalidSpecifier:
            raise Refusal(f"`requires` {info.requires!r} is not a version specifier") from None
        if Version(__version__) not in supported:
            raise Refusal(f"supports crmkit {info.requires}, this is crmkit {__version__}")
        return info

    def _register(self, module: Any, info: PluginInfo, declared: Declarations) -> None:
        """Add the plugin's hooks and implementations to pluggy, or nothing at all."""
        try:
            if info.hookspecs is not None:
                self.pm.add_hookspecs(info.hookspecs)
            self.pm.register(module, name=info.name)
        except Exception as exc:  # pluggy's validation names the bad hook
            if self.pm.is_registered(module):
                self.pm.unregister(module)
            for hook in declared.hooks:  # checked unclaimed before: these are the plugin's
                caller = getattr(self.pm.hook, hook)
                if caller.get_hookimpls():  # other plugins' optional implementations
                    caller.spec = None
                else:
                    delattr(self.pm.hook, hook)
            raise Refusal(f"{type(exc).__name__}: {exc}") from exc

    def discover(self) -> None:
        """Load every plugin installed through the ``crmkit.plugins`` entry points."""
        for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            try:
                module = ep.load()
            except Exception as exc:
                log.exception("plugin %s refused: it failed to import", ep.name)
                self.refused.append(RefusedPlugin(ep.name, f"failed to import: {exc!r}"))
                continue
            self.add(module, name=ep.name)

    def hooks_implemented(self, name: str) -> list[str]:
        plugin = self.pm.get_plugin(name)
        return sorted(caller.name for caller in (self.pm.get_hookcallers(plugin) or []) if caller.name)

    def scopes(self, plugins: Iterable[str] | None = None) -> dict[str, Scope]:
        """Scopes defined by the core and the given plugins (all installed if None)."""
        return {scope.name: scope for d in self._declared_by(plugins) for scope in d.scopes}

    def consent_purposes(self, plugins: Iterable[str]) -> dict[str, DeclaredPurpose]:
        """Consent purposes of the core and the given plugins, with their declarer."""
        return {
            purpose.name: DeclaredPurpose(purpose, d.plugin)
            for d in self._declared_by(plugins)
            for purpose in d.consent_purposes
        }

    def event_scopes(self) -> dict[str, str]:
        """Every declared event type (core and plugins) with the scope its subject needs.

        The registry's own record: read it, never change it."""
        return self._event_scopes

    def jobs(self) -> dict[str, tuple[str, JobSpec | CronSpec]]:
        """Every job by its full name ``plugin.job``, with the plugin that owns it."""
        return {
            f"{d.plugin}.{spec.name}": (d.plugin, spec) for d in self.declarations.values() for spec in d.jobs
        }

    def _declared_by(self, plugins: Iterable[str] | None) -> list[Declarations]:
        if plugins is None:
            return list(self.declarations.values())
        wanted = {CORE, *plugins}
        return [d for name, d in self.declarations.items() if name in wanted]


def load_registry(*, discover: bool = True) -> PluginRegistry:
    """The core plus (unless ``discover`` is off) every installed plugin."""
    from crmkit.platform import core_plugin

    registry = PluginRegistry()
    registry.add(core_plugin)
    if discover:
        registry.discover()
    return registry
