"""What the SDK gives plugins beyond GraphQL: their own HTTP routes (``register_routes``),
the demo's sample data (``seed_demo``), and calls to hooks another plugin declares."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from crmkit.testing import Env, FrozenClock
from tests import recorder_plugin


async def test_a_plugin_route_serves_only_tenants_that_enabled_the_plugin(env: Env) -> None:
    with_plugin = await env.tenant("recorder", recorder={"threshold": 42})
    without = await env.tenant()
    await env.create_customer(with_plugin, givenName="Ann")

    ok = await env.client.get(f"/plugins/recorder/hello/{with_plugin}")
    assert ok.status_code == 200, ok.text
    assert ok.json() == {"plugin": "recorder", "threshold": 42, "customers": 1}

    for tenant in (without, uuid.uuid4()):  # not enabled, and no such tenant: the same answer
        hidden = await env.client.get(f"/plugins/recorder/hello/{tenant}")
        assert hidden.status_code == 404
        assert hidden.json() == {"error": "NOT_FOUND", "message": "not found"}


async def test_a_plugin_route_answers_crmkit_errors_as_json_and_is_rate_limited(env: Env) -> None:
    refused = await env.client.get("/plugins/recorder/refuse")
    assert refused.status_code == 400
    assert refused.json() == {"error": "BAD_USER_INPUT", "message": "refused on purpose"}

    tenant = await env.tenant("recorder")
    answers = [(await env.client.get(f"/plugins/recorder/hello/{tenant}")) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert answers[-1].json()["error"] == "RATE_LIMITED"
    assert 1 <= int(answers[-1].headers["Retry-After"]) <= 60


async def test_a_plugin_routes_rate_limit_slides_across_the_turn_of_a_minute(
    env: Env, clock: FrozenClock
) -> None:
    """Three a minute means three in any sixty seconds, not three more at hh:mm:00."""
    tenant = await env.tenant("recorder")
    path = f"/plugins/recorder/hello/{tenant}"
    clock.set(datetime(2025, 1, 6, 9, 0, 58, tzinfo=UTC))
    assert [(await env.client.get(path)).status_code for _ in range(3)] == [200] * 3

    clock.advance(seconds=3)  # 09:01:01, a new minute on the wall
    refused = await env.client.get(path)
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "57"

    clock.advance(seconds=56)  # 09:01:57: one second short, and the refusal did not count
    assert (await env.client.get(path)).status_code == 429
    clock.advance(seconds=1)
    assert (await env.client.get(path)).status_code == 200


async def test_a_hook_no_installed_plugin_declares_calls_nothing(env: Env) -> None:
    tenant = await env.tenant("recorder")
    async with env.platform.tenant_scope(tenant) as scope:
        assert await scope.hooks.call("channels_send_requested", message={}) == []
        ctx = scope.hooks.context_for("recorder")
        assert ctx.plugin_enabled("recorder") and not ctx.plugin_enabled("notes")


async def test_the_demo_seeds_each_plugin_it_enables_once(env: Env) -> None:
    from crmkit.demo import SLUG, setup_demo
    from crmkit.tenants.service import get_tenant

    await setup_demo(env.platform, customers=3)
    tenant = (await get_tenant(env.platform.db, SLUG)).id
    assert recorder_plugin.calls(tenant, "seed_demo") == [3]
    await setup_demo(env.platform, customers=3)  # nothing newly enabled: nothing seeded again
    assert recorder_plugin.calls(tenant, "seed_demo") == [3]


def test_rows_by_key_gives_each_key_its_rows_in_order() -> None:
    """What a plugin's batch loader returns for a one-to-many field: one list per key,
    in the keys' order, empty for a key without rows."""
    import crmkit

    rows = [("a", 1), ("b", 2), ("a", 3)]
    assert crmkit.rows_by_key(rows, lambda row: row[0], ["b", "c", "a"]) == [
        [("b", 2)],
        [],
        [("a", 1), ("a", 3)],
    ]


def test_access_log_lines_hide_what_follows_a_plugin_route() -> None:
    """uvicorn's access log would keep a survey link's token: crmkit's filter cuts it."""
    import logging

    from crmkit.http.plugin_routes import HidePluginPaths

    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", "/plugins/surveys/respond/tok_secret123?x=1", "1.1", 200),
        None,
    )
    assert HidePluginPaths().filter(record)
    assert "tok_secret123" not in record.getMessage()
    assert "/plugins/surveys/…" in record.getMessage()


def test_uuid7_ids_sort_in_the_order_they_were_made() -> None:
    """Plugins order by id (``ORDER BY id`` is chronological): ids made in the same
    millisecond must sort in creation order too, not by chance."""
    import crmkit

    ids = [crmkit.uuid7() for _ in range(20_000)]  # thousands per millisecond
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert {i.version for i in ids} == {7}
