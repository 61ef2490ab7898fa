"""The serving and worker processes tune the garbage collector once started
(crmkit.app's settle_collector)."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest
from typer.testing import CliRunner

from crmkit.app import create_app
from crmkit.cli import app as cli
from crmkit.settings import get_settings
from crmkit.testing import Env


async def test_once_started_the_server_freezes_start_up_and_collects_less_often(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What start-up built leaves the collector's scans and gen0 is collected every
    ``gc_gen0_threshold`` allocations (a GraphQL page crossed Python's 700 dozens of times)."""
    monkeypatch.setattr(env.platform.settings, "gc_gen0_threshold", 12_345)
    before = gc.get_threshold()
    app = create_app(env.platform)
    gc.unfreeze()
    try:
        async with app.lifespan():
            assert gc.get_threshold() == (12_345, *before[1:])
            assert gc.get_freeze_count() > 0
    finally:
        gc.set_threshold(*before)


def test_a_worker_freezes_start_up_and_collects_less_often(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``crmkit worker`` settles the collector before it runs its first job."""
    for name, value in {
        "CRMKIT_DATA_DIR": str(tmp_path),
        "CRMKIT_DEV_MODE": "true",
        "CRMKIT_REDIS_URL": "redis://127.0.0.1:6379/15",
        "CRMKIT_GC_GEN0_THRESHOLD": "12345",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("CRMKIT_DATABASE_URL", raising=False)
    seen: dict[str, int] = {}

    class Worker:
        def __init__(self, **settings: object) -> None:
            pass

        def run(self) -> None:
            seen.update(threshold=gc.get_threshold()[0], frozen=gc.get_freeze_count())

    monkeypatch.setattr("arq.worker.Worker", Worker)
    get_settings.cache_clear()
    before = gc.get_threshold()
    gc.unfreeze()
    try:
        result = CliRunner().invoke(cli, ["worker"])
    finally:
        gc.set_threshold(*before)
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert seen["threshold"] == 12_345
    assert seen["frozen"] > 0


async def test_a_graphql_request_leaves_its_executor_and_context_to_reference_counting(env: Env) -> None:
    """The executor, its request context and what they hold (the session, the page's
    rows) are freed when the request ends, not kept for the collector's next pass:
    graphql-core's helpers for resolvers held the executor's own bound methods."""
    from crmkit.graphql.context import RequestContext
    from crmkit.graphql.execution import DirectExecutor

    tenant = await env.tenant("notes")
    customer = await env.create_customer(tenant, givenName="Ada", email="ada@example.com")
    note = 'mutation($id: UUID!) { addNote(customerId: $id, body: "hello") { id } }'
    assert "errors" not in await env.gql(note, {"id": customer["id"]}, tenant=tenant)
    page = "{ customers(first: 5) { nodes { id displayName notes { body } } } }"
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        body = await env.gql(page, tenant=tenant)
        gc.collect()
        kept = {type(o) for o in gc.garbage} & {DirectExecutor, RequestContext}
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert body["data"]["customers"]["nodes"][0]["notes"] == [{"body": "hello"}]
    assert kept == set()
