"""Plugin machinery: discovery and refusal, per-tenant schemas and hooks, lifecycle."""

from __future__ import annotations

import types
import uuid
from pathlib import Path

import pytest

import crmkit
from crmkit.core import hookspecs
from crmkit.errors import BadUserInput, NotFound
from crmkit.platform import enablement
from crmkit.platform.registry import load_registry
from crmkit.testing import Env
from tests import recorder_plugin

FIELDS_OF = '{ __type(name: "%s") { fields { name } } }'


async def field_names(env: Env, tenant: uuid.UUID, type_name: str) -> set[str]:
    body = await env.gql(FIELDS_OF % type_name, tenant=tenant)
    return {f["name"] for f in body["data"]["__type"]["fields"]}


async def test_schema_shows_only_enabled_plugins(env: Env) -> None:
    a = await env.tenant("notes", "recorder")
    b = await env.tenant()
    assert "notes" in await field_names(env, a, "Customer")
    assert "addNote" in await field_names(env, a, "Mutation")
    assert "recorderThreshold" in await field_names(env, a, "Query")
    assert "notes" not in await field_names(env, b, "Customer")
    assert "addNote" not in await field_names(env, b, "Mutation")
    assert "recorderThreshold" not in await field_names(env, b, "Query")
    body = await env.gql("{ customers { nodes { notes { body } } } }", tenant=b)
    error = body["errors"][0]
    assert error["extensions"]["code"] == "PLUGIN_NOT_ENABLED"
    assert error["extensions"]["plugin"] == "notes"


async def test_schema_is_built_once_per_plugin_set(env: Env) -> None:
    schemas = env.platform.schemas
    first, second = await env.tenant("recorder"), await env.tenant("recorder")
    await env.gql("{ customers { nodes { id } } }", tenant=first)
    builds = schemas.builds
    await env.gql("{ customers { nodes { id } } }", tenant=second)
    await env.gql("{ customers { nodes { id } } }", tenant=first)
    assert schemas.builds == builds
    assert schemas.for_plugins(frozenset({"recorder"})) is schemas.for_plugins(frozenset({"recorder"}))


async def test_plugin_settings_are_validated_and_reach_the_plugin(env: Env) -> None:
    tenant = await env.tenant()
    slug = str(tenant)
    with pytest.raises(BadUserInput) as refused:
        await enablement.enable(env.platform, slug, "recorder", {"threshold": 1000})
    assert "threshold" in refused.value.message and refused.value.extensions["fields"] == ["threshold"]
    body = await env.gql("{ recorderThreshold }", tenant=tenant)
    assert body["errors"][0]["extensions"]["code"] == "PLUGIN_NOT_ENABLED"

    await enablement.enable(env.platform, slug, "recorder", {"threshold": 42})
    assert (await env.gql("{ recorderThreshold }", tenant=tenant))["data"] == {"recorderThreshold": 42}
    assert recorder_plugin.calls(tenant, "plugin_enabled")[0].threshold == 42

    await enablement.configure(env.platform, slug, "recorder", {"label": "x"})
    previous, current = recorder_plugin.calls(tenant, "plugin_settings_changed")[0]
    assert (previous.label, current.label, current.threshold) == ("rec", "x", 42)
    with pytest.raises(BadUserInput):
        await enablement.configure(env.platform, slug, "recorder", {"threshold": -1})

    await enablement.disable(env.platform, slug, "recorder")
    assert recorder_plugin.calls(tenant, "plugin_disabled") == [None]
    await env.create_customer(tenant, givenName="Quiet")
    await env.queue.drain()
    assert recorder_plugin.calls(tenant, "customer_created") == []

    await enablement.enable(env.platform, slug, "recorder")  # re-enabled: settings kept
    assert (await env.gql("{ recorderThreshold }", tenant=tenant))["data"] == {"recorderThreshold": 42}


async def test_unknown_plugin_is_refused(env: Env) -> None:
    tenant = await env.tenant()
    with pytest.raises(NotFound, match="no plugin 'nope' is installed"):
        await enablement.enable(env.platform, str(tenant), "nope")


async def test_events_of_other_tenants_never_reach_a_plugin(env: Env) -> None:
    a, b = await env.tenant("recorder"), await env.tenant()
    await env.create_customer(a, givenName="A")
    await env.create_customer(b, givenName="B")
    await env.queue.drain()
    assert len(recorder_plugin.calls(a, "customer_created")) == 1
    assert recorder_plugin.CALLS[b] == []


def _module(name: str, **attrs: object) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    return module


def test_unusable_plugins_are_refused_with_a_reason() -> None:
    registry = load_registry(discover=False)

    @crmkit.hookimpl
    def customer_created(event: object, wrong_argument: object) -> None: ...

    cases = {
        "no_info": _module("no_info"),
        "too_new": _module("too_new", plugin_info=crmkit.PluginInfo("too_new", "1", "x", requires=">=99")),
        "bad_spec": _module(
            "bad_spec", plugin_info=crmkit.PluginInfo("bad_spec", "1", "x", requires="whenever")
        ),
        "bad_hook": _module(
            "bad_hook",
            plugin_info=crmkit.PluginInfo("bad_hook", "1", "x", requires=">=0.1"),
            customer_created=customer_created,
        ),
    }
    for name, module in cases.items():
        assert registry.add(module, name=name) is None
    reasons = {r.name: r.reason for r in registry.refused}
    assert "plugin_info" in reasons["no_info"]
    assert "supports crmkit >=99" in reasons["too_new"]
    assert "not a version specifier" in reasons["bad_spec"]
    assert "wrong_argument" in reasons["bad_hook"]
    assert registry.names == []


def test_broken_entry_point_is_refused_and_others_load(monkeypatch: pytest.MonkeyPatch) -> None:
    from crmkit.platform import registry as registry_module

    class Broken:
        name = "broken"

        def load(self) -> object:
            raise ImportError("No module named 'missing_dependency'")

    real = registry_module.entry_points

    def entry_points(group: str) -> list[object]:
        return [Broken(), *real(group=group)]

    monkeypatch.setattr(registry_module, "entry_points", entry_points)
    registry = load_registry()
    assert "notes" in registry.names
    assert [r.name for r in registry.refused] == ["broken"]
    assert "missing_dependency" in registry.refused[0].reason


def test_every_hookspec_is_documented_and_tested() -> None:
    """The contract cannot grow undocumented: each hook has a docstring and a test."""
    specs = [
        name
        for name, fn in vars(hookspecs).items()
        if callable(fn) and hasattr(fn, f"{hookspecs.PROJECT}_spec")
    ]
    assert len(specs) >= 12
    tests = "\n".join(p.read_text() for p in Path(__file__).parent.glob("*.py"))
    for name in specs:
        doc = getattr(hookspecs, name).__doc__
        assert doc and len(doc.strip()) > 20, f"hookspec {name} has no docstring"
        assert f"def {name}(" in tests, f"hookspec {name} has no test implementing it"


async def test_customer_fields_of_plugins_are_batched(env: Env, sql_statements: object) -> None:
    """A customers page with a plugin field costs the same statements for 5 and 50 rows."""
    from crmkit.testing import StatementCounter

    assert isinstance(sql_statements, StatementCounter)
    counts = {}
    for size in (5, 50):
        tenant = await env.tenant("notes")
        for i in range(size):
            customer = await env.create_customer(tenant, givenName=f"N{i}")
            await env.gql(
                'mutation($id: UUID!) { addNote(customerId: $id, body: "hello") { id } }',
                {"id": customer["id"]},
                tenant=tenant,
            )
        await env.queue.drain()
        token = env.token(tenant)
        query = "{ customers(first: 50) { nodes { id displayName tags notes { body } } } }"
        await env.gql(query, token=token)  # warm: connection set-up statements
        sql_statements.statements.clear()
        body = await env.gql(query, token=token)
        assert len(body["data"]["customers"]["nodes"]) == size
        assert all(n["notes"][0]["body"] == "hello" for n in body["data"]["customers"]["nodes"])
        counts[size] = sql_statements.count
    assert counts[5] == counts[50], counts
    # customers (with their data keys), tags, notes; then the access log's audit event:
    # on PostgreSQL one statement (take the chain head, insert the event; a trigger moves
    # the head) after the transaction's set_config naming the tenant for row-level
    # security, on SQLite two (the head's upsert, the insert). The tenant's state and the
    # revoked-token lookup come from the access cache (crmkit.tenants.cache)
    assert counts[50] == 5, [s[:70] for s in sql_statements.statements]


def test_declarations_are_collected_with_their_plugin() -> None:
    registry = load_registry(discover=False)
    registry.add(recorder_plugin)
    assert registry.scopes(["recorder"])["recorder:read"].description
    assert "recorder:read" not in registry.scopes([])
    assert "customers:read" in registry.scopes([])
    jobs = registry.jobs()
    assert jobs["recorder.count_calls"][0] == "recorder"
    assert isinstance(jobs["recorder.nightly"][1], crmkit.CronSpec)
    assert "core.deliver_event" in jobs


async def test_plugins_change_customers_through_the_public_api(env: Env) -> None:
    """A plugin's write runs the validation hooks, emits the event and is audited."""
    tenant = await env.tenant("recorder")
    customer = uuid.UUID((await env.create_customer(tenant, givenName="Churny"))["id"])
    async with env.platform.tenant_scope(tenant) as scope:
        ctx = scope.hooks.context_for("recorder")
        updated = await crmkit.update_customer(ctx, customer, lifecycle_stage=crmkit.LifecycleStage.AT_RISK)
        assert updated.lifecycle_stage is crmkit.LifecycleStage.AT_RISK
        await crmkit.record_activity(
            ctx, customer_id=customer, kind=crmkit.ActivityKind.COMPLAINT, channel=crmkit.Channel.PHONE
        )
        with pytest.raises(crmkit.NotFound):
            await crmkit.get_customer(ctx, uuid.uuid4())
    await env.queue.drain()
    assert recorder_plugin.calls(tenant, "customer_updated") == [("lifecycle_stage",)]
    assert recorder_plugin.calls(tenant, "activity_recorded") == ["complaint"]
    assert frozenset({"lifecycle_stage"}) in recorder_plugin.calls(tenant, "validate_customer")


async def test_purging_a_disabled_plugin_deletes_its_data_for_one_tenant(env: Env) -> None:
    from crmkit_notes.models import Note
    from sqlalchemy import func, select

    from crmkit.core.audit.models import AuditEvent

    a, b = await env.tenant("notes"), await env.tenant("notes")
    for tenant in (a, b):
        customer = await env.create_customer(tenant, givenName="Noted")
        await env.gql(
            'mutation($id: UUID!) { addNote(customerId: $id, body: "kept?") { id } }',
            {"id": customer["id"]},
            tenant=tenant,
        )
    with pytest.raises(BadUserInput, match="disable"):
        await enablement.purge(env.platform, str(a), "notes", confirm="notes")
    await enablement.disable(env.platform, str(a), "notes")
    with pytest.raises(BadUserInput, match="confirm"):
        await enablement.purge(env.platform, str(a), "notes", confirm="yes")
    assert await enablement.purge(env.platform, str(a), "notes", confirm="notes") == ["notes"]
    for tenant, left in ((a, 0), (b, 1)):
        async with env.platform.db.tenant_session(tenant) as session:
            assert await session.scalar(select(func.count()).select_from(Note)) == left
    async with env.platform.db.tenant_session(a) as session:
        assert "plugin.purge" in list(await session.scalars(select(AuditEvent.action)))


async def test_a_tenant_scope_leaves_its_transaction_to_reference_counting(env: Env) -> None:
    """Contexts hold their hook caller and the caller holds them: released when the scope
    ends, so its session and rows are freed at once, not at the collector's next pass."""
    import gc

    from crmkit.db import TenantSession
    from crmkit.plugins.caller import TenantHooks
    from crmkit.plugins.info import TenantContext

    tenant = await env.tenant("notes")
    await env.create_customer(tenant, givenName="Ada")
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        async with env.platform.tenant_scope(tenant) as scope:
            scope.hooks.context_for("notes")
            await crmkit.list_customers(scope.ctx, crmkit.CustomerFilter(), after=None, limit=5)
        del scope
        gc.collect()
        kept = {type(o) for o in gc.garbage} & {TenantContext, TenantHooks, TenantSession}
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert kept == set()
