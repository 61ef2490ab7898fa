"""Declarations are read once, at registration; a plugin that declares badly is refused;
event types are declared; an event that cannot be dispatched dies once."""

from __future__ import annotations

import types
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

import pytest
import strawberry
from sqlalchemy import func, select

import crmkit
from crmkit.core.events import OutboxEvent, UndeclaredEvent
from crmkit.platform.registry import PluginRegistry, load_registry
from crmkit.platform.schema import SchemaCache
from crmkit.plugins.models import HandlerFailure
from crmkit.settings import Settings
from crmkit.testing import Env

INFO = {"version": "1", "description": "x", "requires": ">=0.1"}


def plugin(name: str, hookspecs: types.ModuleType | None = None, **hooks: Callable[..., Any]) -> Any:
    """A plugin module named ``name`` with these hook implementations."""
    module = types.ModuleType(name)
    module.__dict__.update(hooks, plugin_info=crmkit.PluginInfo(name, hookspecs=hookspecs, **INFO))
    return module


def returning(value: Any) -> Callable[[], Any]:
    @crmkit.hookimpl
    def declare() -> Any:
        return value

    return declare


def scopes(*names: str) -> Callable[[], Any]:
    return returning([crmkit.Scope(name, "x") for name in names])


def purposes(*names: str) -> Callable[[], Any]:
    return returning([crmkit.ConsentPurpose(name, "x") for name in names])


async def noop(ctx: crmkit.TenantContext) -> None: ...


@strawberry.type(name="Activity")
class NotTheCoreActivity:
    kind: str


def graphql(root: str, name: str, returns: Any = int) -> Callable[[], Any]:
    def resolve() -> Any: ...

    resolve.__annotations__["return"] = returns
    contribution = crmkit.GraphQLContribution(**{root: {name: crmkit.field(resolve, scope="x:read")}})
    return returning(contribution)


def event_hookspecs(*names: str) -> types.ModuleType:
    module = types.ModuleType("specs")
    for name in names:

        def spec(event: crmkit.DomainEvent, ctx: crmkit.TenantContext) -> None:
            """An event."""

        spec.__name__ = name
        setattr(module, name, crmkit.event_hookspec(scope="customers:read")(spec))
    return module


@crmkit.hookimpl
async def async_scopes() -> Iterable[crmkit.Scope]:
    return []


@crmkit.hookimpl
def raising_scopes() -> Iterable[crmkit.Scope]:
    raise RuntimeError("no settings file")


@crmkit.hookimpl(hookwrapper=True)
def wrapping_validate(ctx: crmkit.TenantContext) -> Any:
    yield


@crmkit.hookimpl(wrapper=True)
def new_style_wrapper(ctx: crmkit.TenantContext) -> Any:
    return (yield)


REFUSALS: dict[str, tuple[Any, str]] = {
    "async declaration hook": (plugin("p", register_scopes=async_scopes), "register_scopes is async"),
    "declaration hook raises": (
        plugin("p", register_scopes=raising_scopes),
        "register_scopes raised RuntimeError: no settings file",
    ),
    "not a Scope": (plugin("p", register_scopes=returning(["p:read"])), "not a crmkit.Scope"),
    "unprefixed scope": (plugin("p", register_scopes=scopes("read")), "scope names must start with 'p:'"),
    "unprefixed purpose": (
        plugin("p", register_consent_purposes=purposes("offers")),
        "consent purpose names must start with 'p_'",
    ),
    "malformed purpose": (
        plugin("p", register_consent_purposes=purposes("p_Offers")),
        "1-64 lowercase letters",
    ),
    "unprefixed event": (plugin("p", event_hookspecs("thing_done")), "hook names must start with 'p_'"),
    "job name with a dot": (
        plugin("p", register_jobs=returning([crmkit.JobSpec("a.b", noop)])),
        "job names must be Python identifiers",
    ),
    "job declared twice": (
        plugin("p", register_jobs=returning([crmkit.JobSpec("a", noop), crmkit.CronSpec("a", noop)])),
        "jobs declared twice: ['a']",
    ),
    "scope of the core": (
        plugin("customers", register_scopes=scopes("customers:read")),
        "scopes ['customers:read'] are already defined by 'core'",
    ),
    "purpose of the core": (
        plugin("service", register_consent_purposes=purposes("service_notices")),
        "consent purposes ['service_notices'] are already defined by 'core'",
    ),
    "event of the core": (
        plugin("customer", event_hookspecs("customer_created")),
        "hooks ['customer_created'] are already declared",
    ),
    "not a contribution": (plugin("p", register_graphql=returning({"query": {}})), "GraphQLContribution"),
    "query field of the core": (
        plugin("p", register_graphql=graphql("query", "customers")),
        "GraphQL query fields ['customers'] are already defined by 'core'",
    ),
    "mutation field of another plugin": (
        plugin("p", register_graphql=graphql("mutation", "add_note")),
        "GraphQL mutation fields ['add_note'] are already defined by 'notes'",
    ),
    "Customer field of the core": (
        plugin("p", register_graphql=graphql("customer", "email", str)),
        "GraphQL customer fields ['email'] are already defined by 'core'",
    ),
    "type name of the core": (
        plugin("p", register_graphql=graphql("query", "p_activity", NotTheCoreActivity)),
        "GraphQL types ['Activity'] are already defined by 'core'",
    ),
    "hookwrapper": (plugin("p", validate_customer=wrapping_validate), "hookwrapper=True"),
    "wrapper": (plugin("p", validate_customer=new_style_wrapper), "wrapper=True"),
}


def registry_with_notes() -> PluginRegistry:
    import crmkit_notes

    registry = load_registry(discover=False)
    assert registry.add(crmkit_notes)
    return registry


@pytest.mark.parametrize("case", list(REFUSALS))
def test_a_plugin_that_declares_badly_is_refused_with_the_reason(case: str) -> None:
    module, reason = REFUSALS[case]
    registry = registry_with_notes()
    before = {name for name in dir(registry.pm.hook) if not name.startswith("_")}
    hooks_of_notes = registry.hooks_implemented("notes")

    assert registry.add(module) is None
    assert reason in registry.refused[-1].reason, registry.refused[-1].reason
    # no trace: neither the plugin nor its hooks on the pluggy manager
    assert registry.names == ["notes"] and list(registry.declarations) == ["core", "notes"]
    assert not registry.pm.is_registered(module)
    assert {name for name in dir(registry.pm.hook) if not name.startswith("_")} == before
    assert registry.hooks_implemented("notes") == hooks_of_notes


def test_a_refused_plugin_is_listed_with_its_reason() -> None:
    """``registry.refused`` is what ``crmkit plugins list`` shows."""
    registry = registry_with_notes()
    registry.add(plugin("p", register_scopes=scopes("read")))
    assert [(r.name, r.reason) for r in registry.refused] == [
        ("p", "scope names must start with 'p:': ['read']")
    ]


def test_a_refused_plugins_hookspecs_leave_no_trace_when_pluggy_refuses_it() -> None:
    """pluggy's own check (a wrong argument) comes after the hookspecs were added."""

    @crmkit.hookimpl
    def p_thing_done(event: crmkit.DomainEvent, nonsense: int) -> None: ...

    registry = registry_with_notes()
    module = plugin("p", event_hookspecs("p_thing_done"), p_thing_done=p_thing_done)
    assert registry.add(module) is None
    assert "nonsense" in registry.refused[-1].reason
    assert not hasattr(registry.pm.hook, "p_thing_done")
    assert "p_thing_done" not in registry.event_scopes()


def test_tryfirst_and_specname_are_honoured() -> None:
    """Options crmkit's caller honours are accepted: order and hook name come from pluggy."""

    @crmkit.hookimpl(tryfirst=True, specname="validate_customer")
    def check_first(ctx: crmkit.TenantContext) -> None: ...

    registry = registry_with_notes()
    assert registry.add(plugin("p", check_first=check_first)) is not None
    assert "validate_customer" in registry.hooks_implemented("p")


def test_declaration_hooks_are_called_once_at_registration() -> None:
    calls: Counter[str] = Counter()

    def counted(hook: str, value: Any) -> Callable[[], Any]:
        @crmkit.hookimpl(specname=hook)
        def declare() -> Any:
            calls[hook] += 1
            return value

        return declare

    module = plugin(
        "counted",
        event_hookspecs("counted_thing_done"),
        scopes_=counted("register_scopes", [crmkit.Scope("counted:read", "x")]),
        graphql_=counted("register_graphql", crmkit.GraphQLContribution()),
        purposes_=counted("register_consent_purposes", [crmkit.ConsentPurpose("counted_offers", "x")]),
        jobs_=counted("register_jobs", [crmkit.JobSpec("tidy", noop)]),
    )
    registry = load_registry(discover=False)
    assert registry.add(module) is not None
    for _ in range(3):
        assert "counted:read" in registry.scopes(["counted"]) and "counted:read" in registry.scopes()
        assert "counted.tidy" in registry.jobs()
        assert "counted_offers" in registry.consent_purposes(["counted"])
        assert registry.event_scopes()["counted_thing_done"] == "customers:read"
        SchemaCache(registry, Settings()).for_plugins(frozenset({"counted"}))
    assert calls == dict.fromkeys(
        ["register_scopes", "register_graphql", "register_consent_purposes", "register_jobs"], 1
    )


async def test_emit_of_an_undeclared_event_type_raises_at_the_call(env: Env) -> None:
    tenant = await env.tenant()
    customer = (await env.create_customer(tenant, givenName="Ada"))["id"]
    async with env.platform.tenant_scope(tenant) as scope:
        with pytest.raises(UndeclaredEvent) as raised:
            crmkit.emit(scope.ctx, "customer_teleported", "Customer", customer)
        assert "'customer_teleported'" in str(raised.value) and "customer_created" in str(raised.value)
        assert crmkit.emit(scope.ctx, "customer_updated", "Customer", customer, changed=[]).type


async def test_an_event_that_cannot_be_dispatched_dies_once(env: Env) -> None:
    """Its plugin was uninstalled (or its data is unusable): one failure, never re-queued."""
    tenant = await env.tenant()
    async with env.platform.db.tenant_session(tenant) as session:
        gone = OutboxEvent(type="loyalty_points_earned", subject_type="Customer", subject_id="1", data={})
        unusable = OutboxEvent(type="customer_created", subject_type="Customer", subject_id="2", data=[1])
        session.add_all([gone, unusable])
        await session.flush()
        event_ids = [gone.id, unusable.id]
    for _ in range(2):
        await env.platform.runner.sweep_outbox(older_than_seconds=0)
        await env.queue.drain()
        async with env.platform.db.tenant_session(tenant) as session:
            for event_id in event_ids:
                assert (await session.get(OutboxEvent, (tenant, event_id))).dead_at is not None
                failures = select(func.count()).select_from(HandlerFailure)
                assert await session.scalar(failures.where(HandlerFailure.event_id == event_id)) == 1
    assert await env.platform.runner.sweep_outbox(older_than_seconds=0) == 0
