"""Calling hooks for one tenant: only the core and the plugins that tenant enabled.

pluggy's ``subset_hook_caller`` filters the implementations on every call. Here the
list for each hook is built once per distinct set of enabled plugins and cached, so a
call is a loop over prepared functions (see ``bench/hook_dispatch.py``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from pluggy import HookImpl

from crmkit.plugins.info import CORE, TenantContext
from crmkit.plugins.secrets import unseal

if TYPE_CHECKING:
    from crmkit.crypto import TenantKeys
    from crmkit.platform.registry import PluginRegistry


@dataclass(frozen=True)
class PreparedImpl:
    plugin: str
    function: Callable[..., Any]
    wants_ctx: bool
    others: tuple[str, ...]
    """The arguments it takes besides ``ctx``, passed through from the caller."""


class PluginSetHooks:
    """Hook implementations of one plugin set, in pluggy's call order."""

    def __init__(self, registry: PluginRegistry, plugins: frozenset[str]) -> None:
        self.registry = registry
        self.plugins = plugins
        self._members = plugins | {CORE}
        self._prepared: dict[str, list[PreparedImpl]] = {}

    def impls(self, hook: str) -> list[PreparedImpl]:
        prepared = self._prepared.get(hook)
        if prepared is None:
            # a hook no installed plugin declares (another plugin's, not installed here)
            # has no implementations: calling it calls nothing
            caller = getattr(self.registry.pm.hook, hook, None)
            hookimpls: list[HookImpl] = caller.get_hookimpls() if caller is not None else []
            prepared = [
                PreparedImpl(
                    impl.plugin_name,
                    impl.function,
                    "ctx" in impl.argnames,
                    tuple(name for name in impl.argnames if name != "ctx"),
                )
                for impl in reversed(hookimpls)  # pluggy calls the last registered first
                if impl.plugin_name in self._members
            ]
            self._prepared[hook] = prepared
        return prepared

    def bind(self, ctx: TenantContext, settings: dict[str, Any], keys: TenantKeys) -> TenantHooks:
        return TenantHooks(self, ctx, settings, keys)


class TenantHooks:
    """The hook caller handed to one tenant's request or job.

    Each implementation gets a ``ctx`` carrying its own plugin's settings.
    """

    def __init__(
        self, plugin_set: PluginSetHooks, ctx: TenantContext, settings: dict[str, Any], keys: TenantKeys
    ) -> None:
        self.plugin_set = plugin_set
        self.ctx = ctx
        self._raw_settings = settings
        self._keys = keys  # opens secret settings, only for the plugins called
        self._contexts: dict[str, TenantContext] = {}

    @property
    def enabled(self) -> frozenset[str]:
        return self.plugin_set.plugins

    def release(self) -> None:
        """Let go of the contexts once their transaction is over. Each context holds this
        caller as ``hooks`` and the caller holds them: a cycle that kept the transaction's
        session and every row it loaded alive until the garbage collector's next pass."""
        self._contexts.clear()
        vars(self.ctx).pop("hooks", None)  # a second release finds nothing to let go of

    def context_for(self, plugin: str) -> TenantContext:
        ctx = self._contexts.get(plugin)
        if ctx is None:
            info = self.plugin_set.registry.infos[plugin]
            settings = None
            if info.settings is not None:
                stored = self._raw_settings.get(plugin) or {}
                settings = info.settings.model_validate(unseal(self._keys, plugin, info.settings, stored))
            ctx = replace(self.ctx, settings=settings, plugin=plugin)
            ctx.hooks = self  # not an __init__ field, so replace() does not copy it
            self._contexts[plugin] = ctx
        return ctx

    def _arguments(self, impl: PreparedImpl, kwargs: dict[str, Any]) -> dict[str, Any]:
        args = {name: kwargs[name] for name in impl.others}
        if impl.wants_ctx:
            args["ctx"] = self._contexts.get(impl.plugin) or self.context_for(impl.plugin)
        return args

    async def call(self, hook: str, **kwargs: Any) -> list[Any]:
        """Call every enabled implementation in order; the first exception propagates.

        Returns the results that are not None, like pluggy. A hook that no installed
        plugin declares (``channels_send_requested`` where channels is not installed)
        calls nothing and returns ``[]``. The loop is inlined and the
        None check comes before ``isawaitable`` because this is the hot path of every
        write and event (see ``bench/hook_dispatch.py``).
        """
        results = []
        for impl in self.plugin_set.impls(hook):
            result = impl.function(**self._arguments(impl, kwargs))
            if result is not None and inspect.isawaitable(result):
                result = await result
            if result is not None:
                results.append(result)
        return results

    async def call_by_plugin(self, hook: str, **kwargs: Any) -> dict[str, Any]:
        """Call every enabled implementation; each plugin's result under its name."""
        return {
            impl.plugin: await self.call_plugin(impl.plugin, hook, **kwargs)
            for impl in self.plugin_set.impls(hook)
        }

    async def call_plugin(self, plugin: str, hook: str, **kwargs: Any) -> Any:
        """Call one plugin's implementation, if it is enabled and has one."""
        for impl in self.plugin_set.impls(hook):
            if impl.plugin == plugin:
                result = impl.function(**self._arguments(impl, kwargs))
                if result is not None and inspect.isawaitable(result):
                    result = await result
                return result
        return None


class HookCallers:
    """One :class:`PluginSetHooks` per distinct plugin set, built on first use."""

    def __init__(self, registry: PluginRegistry) -> None:
        self.registry = registry
        self._by_set: dict[frozenset[str], PluginSetHooks] = {}

    def for_plugins(self, plugins: frozenset[str]) -> PluginSetHooks:
        hooks = self._by_set.get(plugins)
        if hooks is None:
            hooks = self._by_set[plugins] = PluginSetHooks(self.registry, plugins)
        return hooks
