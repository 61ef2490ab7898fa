"""Benchmark: the cost of calling an event hook through crmkit's per-tenant caller.

A figure, not a pass/fail test. For 1, 5 and 20 installed plugins, half of them (at
least one) enabled for the tenant, it times ``customer_created(event, ctx)`` called

* through crmkit's per-tenant caller: ``HookCallers(registry).for_plugins(enabled)
  .bind(ctx, settings)`` then ``await hooks.call("customer_created", event=...)``;
* through pluggy's full hook, ``registry.pm.hook.customer_created(...)``. It calls
  *every* installed plugin, enabled or not: what dispatch would cost without
  per-tenant filtering, and wrong for tenancy (a baseline, not an alternative);
* through ``registry.pm.subset_hook_caller("customer_created", remove_plugins=...)``
  with the tenant's disabled plugins removed, the filtering pluggy offers.

Why the per-tenant caller exists: pluggy's subset caller re-filters the hook's
implementations on every call (its ``_hookimpls`` is a property building a new list,
then copied by ``__call__``), whereas ``PluginSetHooks`` builds the list for each hook
once per distinct set of enabled plugins and caches it, so a tenant call is a loop
over prepared functions. Note that with nothing to remove (1 plugin, 1 enabled)
``subset_hook_caller`` returns the full hook itself.

The machine running this is shared and its absolute timings drift, so all three
callers are measured in the same run, interleaved, best of 5 repeats; read the
figures as ratios between columns of one run, not as absolute costs to compare
across runs or machines. The per-tenant caller is async (it awaits each result), so
every loop runs inside one ``asyncio.run``; the pluggy calls are plain sync calls
made from the same coroutine.

Run: ``.venv/bin/python bench/hook_dispatch.py [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import types
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import crmkit
from crmkit.core.events import DomainEvent
from crmkit.crypto import TenantKeys
from crmkit.platform.registry import PluginRegistry, load_registry
from crmkit.plugins.caller import HookCallers, TenantHooks

SIZES = (1, 5, 20)
REPEATS = 5
ITERATIONS = 20_000
QUICK_ITERATIONS = 500

Hits = dict[str, int]


def make_plugin(index: int, hits: Hits) -> types.ModuleType:
    """A module-like plugin ``p{index}`` with a sync ``customer_created`` doing trivial work."""
    name = f"p{index}"
    module = types.ModuleType(f"bench_plugin_{name}")
    hits[name] = 0

    @crmkit.hookimpl
    def customer_created(event: DomainEvent, ctx: crmkit.TenantContext) -> None:
        hits[name] += 1

    module.customer_created = customer_created  # type: ignore[attr-defined]
    module.plugin_info = crmkit.PluginInfo(  # type: ignore[attr-defined]
        name=name, version="1.0", description="bench", requires=">=0"
    )
    return module


@dataclass
class Setup:
    installed: int
    enabled: frozenset[str]
    registry: PluginRegistry
    hooks: TenantHooks
    full: Callable[..., Any]
    subset: Callable[..., Any]
    event: DomainEvent
    ctx: crmkit.TenantContext
    hits: Hits


def build(installed: int) -> Setup:
    hits: Hits = {}
    registry = load_registry(discover=False)
    for i in range(installed):
        if registry.add(make_plugin(i, hits)) is None:
            raise SystemExit(f"plugin p{i} refused: {registry.refused[-1].reason}")
    names = registry.names
    enabled = frozenset(names[: max(1, installed // 2)])
    disabled = [registry.pm.get_plugin(name) for name in names if name not in enabled]
    tenant_id = uuid.uuid4()
    # The bench hooks never touch the session or the queue; TenantHooks passes ctx through.
    ctx = crmkit.TenantContext(tenant_id=tenant_id, session=None, jobs=None)  # type: ignore[arg-type]
    keys = TenantKeys(tenant_id, os.urandom(32))  # opens secret settings; the bench has none
    hooks = HookCallers(registry).for_plugins(enabled).bind(ctx, {}, keys)
    event = DomainEvent(
        id=uuid.uuid4(),
        type="customer_created",
        tenant_id=tenant_id,
        subject_type="customer",
        subject_id=str(uuid.uuid4()),
        data={},
        occurred_at=datetime.now(UTC),
    )
    return Setup(
        installed=installed,
        enabled=enabled,
        registry=registry,
        hooks=hooks,
        full=registry.pm.hook.customer_created,
        subset=registry.pm.subset_hook_caller("customer_created", remove_plugins=disabled),
        event=event,
        ctx=ctx,
        hits=hits,
    )


async def check(setup: Setup) -> None:
    """Each caller reaches the plugins it should: the enabled ones, or all for the full hook."""
    every = set(setup.hits)

    def called(expected: set[str]) -> None:
        got = {name for name, count in setup.hits.items() if count}
        assert got == expected, (got, expected)
        for name in setup.hits:
            setup.hits[name] = 0

    await setup.hooks.call("customer_created", event=setup.event)
    called(set(setup.enabled))
    setup.subset(event=setup.event, ctx=setup.ctx)
    called(set(setup.enabled))
    setup.full(event=setup.event, ctx=setup.ctx)
    called(every)


async def time_tenant(setup: Setup, n: int) -> int:
    call = setup.hooks.call
    event = setup.event
    start = time.perf_counter_ns()
    for _ in range(n):
        await call("customer_created", event=event)
    return time.perf_counter_ns() - start


def time_pluggy(caller: Callable[..., Any], setup: Setup, n: int) -> int:
    event, ctx = setup.event, setup.ctx
    start = time.perf_counter_ns()
    for _ in range(n):
        caller(event=event, ctx=ctx)
    return time.perf_counter_ns() - start


async def time_full(setup: Setup, n: int) -> int:
    return time_pluggy(setup.full, setup, n)


async def time_subset(setup: Setup, n: int) -> int:
    return time_pluggy(setup.subset, setup, n)


Timer = Callable[[Setup, int], Awaitable[int]]
TIMERS: dict[str, Timer] = {"tenant": time_tenant, "full": time_full, "subset": time_subset}


async def measure(setup: Setup, iterations: int, repeats: int) -> dict[str, float]:
    """Best ns/call of each caller, the three interleaved within each repeat."""
    await check(setup)
    for timer in TIMERS.values():  # warm-up: caches, the per-plugin contexts
        await timer(setup, min(iterations, 200))
    best = {label: float("inf") for label in TIMERS}
    for _ in range(repeats):
        for label, timer in TIMERS.items():
            best[label] = min(best[label], await timer(setup, iterations) / iterations)
    return best


async def main(quick: bool) -> None:
    iterations = QUICK_ITERATIONS if quick else ITERATIONS
    repeats = 2 if quick else REPEATS
    started = time.perf_counter()
    header = (
        f"{'installed':>9} {'enabled':>7} {'per-tenant':>11} {'pluggy full':>12}"
        f" {'pluggy subset':>14} {'subset/per-tenant':>18}"
    )
    print(f"customer_created, ns/call, best of {repeats} x {iterations:,} calls")
    print(header)
    print("-" * len(header))
    for installed in SIZES:
        setup = build(installed)
        best = await measure(setup, iterations, repeats)
        print(
            f"{installed:>9} {len(setup.enabled):>7} {best['tenant']:>11.0f}"
            f" {best['full']:>12.0f} {best['subset']:>14.0f}"
            f" {best['subset'] / best['tenant']:>18.2f}"
        )
    print(f"({time.perf_counter() - started:.1f} s; Python {sys.version.split()[0]})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run, for smoke tests")
    asyncio.run(main(parser.parse_args().quick))
