"""Discovery and registration of installed plugins.

Plugins are found through the ``crmkit.plugins`` entry-point group. Each entry point
names a module with ``@hookimpl`` functions and a module-level ``plugin_info``. A
plugin that fails to import, lacks ``plugin_info``, does not support this crmkit
version or implements a hook wrongly is *refused*: logged with its name and the
reason, listed by ``crmkit plugins list``, and the platform starts without it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from types import ModuleType
from typing import Any, cast

import pluggy
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import Version

from crmkit.core import hookspecs
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
    refused: list[RefusedPlugin] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.pm.add_hookspecs(hookspecs)

    @property
    def names(self) -> list[str]:
        """Installed (accepted) plugins, the core excluded."""
        return [name for name in self.infos if name != CORE]

    def add(self, module: ModuleType | Any, *, name: str | None = None) -> PluginInfo | None:
        """Register a plugin object; refuse it (and return None) if it is unusable."""
        info = getattr(module, "plugin_info", None)
        label = str(name or getattr(info, "name", None) or getattr(module, "__name__", module))
        reason = self._problem(info)
        if reason is None:
            assert isinstance(info, PluginInfo)
            try:
                if info.hookspecs is not None:
                    self.pm.add_hookspecs(info.hookspecs)
                self.pm.register(module, name=info.name)
            except Exception as exc:  # pluggy's validation names the bad hook
                reason = f"{type(exc).__name__}: {exc}"
        if reason is not None:
            log.error("plugin %s refused: %s", label, reason)
            self.refused.append(RefusedPlugin(label, reason))
            return None
        assert isinstance(info, PluginInfo)
        self.infos[info.name] = info
        return info

    def _problem(self, info: object) -> str | None:
        if not isinstance(info, PluginInfo):
            return "its module has no `plugin_info = crmkit.PluginInfo(...)`"
        if info.name in self.infos:
            return f"a plugin named {info.name!r} is already installed"
        if not info.name.isidentifier():
            return f"plugin name {info.name!r} must be a Python identifier"
        try:
            supported = SpecifierSet(info.requires)
        except InvalidSpecifier:
            return f"`requires` {info.requires!r} is not a version specifier"
        if Version(__version__) not in supported:
            return f"supports crmkit {info.requires}, this is crmkit {__version__}"
        return None

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
        wanted = None if plugins is None else {CORE, *plugins}
        found: dict[str, Scope] = {}
        for impl in self.pm.hook.register_scopes.get_hookimpls():
            if wanted is None or impl.plugin_name in wanted:
                scopes = cast(Iterable[Scope], impl.function())
                for scope in scopes:
                    found[scope.name] = scope
        return found

    def event_scopes(self) -> dict[str, str]:
        """Each event hook (core and plugin-declared) with the scope its subject needs."""
        found = {}
        for name in dir(self.pm.hook):
            spec = getattr(getattr(self.pm.hook, name), "spec", None)
            scope = getattr(spec.function, hookspecs.EVENT_HOOK_MARK, None) if spec else None
            if scope:
                found[name] = scope
        return found

    def jobs(self) -> dict[str, tuple[str, JobSpec | CronSpec]]:
        """Every job by its full name ``plugin.job``, with the plugin that owns it."""
        found: dict[str, tuple[str, JobSpec | CronSpec]] = {}
        for impl in self.pm.hook.register_jobs.get_hookimpls():
            specs = cast(Iterable[JobSpec | CronSpec], impl.function())
            for spec in specs:
                found[f"{impl.plugin_name}.{spec.name}"] = (impl.plugin_name, spec)
        return found


def load_registry(*, discover: bool = True) -> PluginRegistry:
    """The core plus (unless ``discover`` is off) every installed plugin."""
    from crmkit.plugins import core as core_plugin

    registry = PluginRegistry()
    registry.add(core_plugin)
    if discover:
        registry.discover()
    return registry
