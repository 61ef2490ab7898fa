"""The serving process tunes the garbage collector once started (crmkit.app)."""

from __future__ import annotations

import gc

import pytest

from crmkit.app import create_app
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
