"""Jobs and event delivery, in-process and on arq with a real Redis."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import func, select

from crmkit.core.customers import service
from crmkit.core.customers.models import CustomerKind
from crmkit.core.events import OutboxEvent
from crmkit.db import Database, create_engine
from crmkit.jobs.backends import ArqQueue, worker_settings
from crmkit.jobs.queue import pack, unpack
from crmkit.platform import Platform
from crmkit.platform.report import plugin_report
from crmkit.plugins.models import EventDelivery, HandlerFailure
from crmkit.testing import Env
from tests import recorder_plugin


async def new_customer(platform: Platform, tenant: uuid.UUID, name: str) -> str:
    async with platform.tenant_scope(tenant) as scope:
        customer = await service.create_customer(scope.ctx, kind=CustomerKind.PERSON, given_name=name)
    return str(customer.id)


async def test_failing_handler_is_retried_alone_and_recorded(env: Env) -> None:
    tenant = await env.tenant("recorder", "notes")
    async with env.platform.tenant_scope(tenant) as scope:
        customer = await service.create_customer(scope.ctx, kind=CustomerKind.PERSON, given_name="Retry")
        recorder_plugin.FAIL_ONCE.add(str(customer.id))
    customer_id = str(customer.id)
    await env.queue.drain()

    assert recorder_plugin.calls(tenant, "customer_created") == [customer_id]
    async with env.platform.db.tenant_session(tenant) as session:
        event_id = await session.scalar(select(OutboxEvent.id).where(OutboxEvent.subject_id == customer_id))
        failures = (await session.scalars(select(HandlerFailure))).all()
        assert await session.scalar(select(OutboxEvent.relayed_at).where(OutboxEvent.id == event_id))
    assert recorder_plugin.HANDLED[str(event_id)] == 1
    assert [(f.plugin, f.attempt, f.gave_up) for f in failures] == [("recorder", 1, False)]
    assert "transient failure" in failures[0].error

    report = await plugin_report(env.platform)
    recorder = next(p for p in report["plugins"] if p["name"] == "recorder")
    assert any(f["error"].startswith("ConnectionError") for f in recorder["recent_failures"])
    assert "customer_created" in recorder["hooks"]


async def test_redelivery_is_skipped_per_plugin(env: Env) -> None:
    tenant = await env.tenant("recorder")
    customer_id = await new_customer(env.platform, tenant, "Twice")
    await env.queue.drain()
    async with env.platform.db.tenant_session(tenant) as session:
        event_id = await session.scalar(select(OutboxEvent.id).where(OutboxEvent.subject_id == customer_id))
        await session.execute(OutboxEvent.__table__.update().values(relayed_at=None))
    # the crash-recovery sweep hands the event over again: the handler is not run twice
    await env.platform.runner.sweep_outbox(older_than_seconds=0)
    await env.queue.drain()
    assert recorder_plugin.HANDLED[str(event_id)] == 1
    async with env.platform.db.tenant_session(tenant) as session:
        assert await session.scalar(select(func.count()).select_from(EventDelivery)) == 1


async def test_plugin_jobs_run_in_the_tenant_scope_and_cron_fans_out(env: Env) -> None:
    enabled, other = await env.tenant("recorder"), await env.tenant()
    async with env.platform.tenant_scope(enabled) as scope:
        await scope.hooks.context_for("recorder").enqueue("count_calls", marker="direct")
    await env.queue.drain()
    assert recorder_plugin.calls(enabled, "job") == ["direct"]

    # a job of a plugin the tenant has not enabled is skipped for that tenant
    await env.queue.enqueue("recorder.count_calls", tenant_id=other, payload={"marker": "x"})
    await env.queue.drain()
    assert recorder_plugin.calls(other, "job") == []

    tenants = await env.platform.runner.fan_out_cron("recorder.nightly")
    await env.queue.drain()
    assert tenants >= 1
    assert recorder_plugin.calls(enabled, "job") == ["direct", "nightly"]
    assert recorder_plugin.calls(other, "job") == []


def test_payloads_are_msgpack_not_pickle() -> None:
    payload = {"event_id": str(uuid.uuid4()), "n": 1, "items": ["a", None]}
    assert unpack(pack(payload)) == payload
    with pytest.raises(TypeError):
        pack({"object": object()})


@pytest.fixture
async def arq_platform(env: Env, redis_url: str) -> AsyncIterator[Platform]:
    settings = env.platform.settings.model_copy(update={"redis_url": redis_url})
    platform = Platform(
        settings,
        registry=env.platform.registry,
        db=Database(create_engine(env.platform.settings.resolved_database_url)),
    )
    yield platform
    await platform.close()


@pytest.mark.redis
async def test_arq_delivers_once_per_plugin_despite_a_failure(env: Env, arq_platform: Platform) -> None:
    from arq.worker import Worker

    assert isinstance(arq_platform.queue, ArqQueue)
    tenant = await env.tenant("recorder", "notes")
    async with arq_platform.tenant_scope(tenant) as scope:
        customer = await service.create_customer(scope.ctx, kind=CustomerKind.PERSON, given_name="Arq")
        recorder_plugin.FAIL_ONCE.add(str(customer.id))
    settings = {**worker_settings(arq_platform), "cron_jobs": [], "poll_delay": 0.05}
    worker = Worker(**settings, burst=True)
    await worker.main()
    await worker.close()
    assert recorder_plugin.calls(tenant, "customer_created") == [str(customer.id)]
    async with arq_platform.db.tenant_session(tenant) as session:
        event_id = await session.scalar(
            select(OutboxEvent.id).where(OutboxEvent.subject_id == str(customer.id))
        )
        failures = (await session.scalars(select(HandlerFailure))).all()
        delivered = (await session.scalars(select(EventDelivery.plugin))).all()
    assert recorder_plugin.HANDLED[str(event_id)] == 1
    assert [(f.plugin, f.attempt) for f in failures] == [("recorder", 1)]
    assert sorted(delivered) == ["recorder"]
    assert worker.jobs_failed == 0


async def test_the_worker_runs_as_many_jobs_and_polls_as_often_as_configured(arq_platform: Platform) -> None:
    default = worker_settings(arq_platform)
    assert (default["max_jobs"], default["poll_delay"]) == (10, 0.5)
    tuned = arq_platform.settings.model_copy(update={"worker_max_jobs": 40, "worker_poll_seconds": 0.05})
    configured = worker_settings(Platform(tuned, registry=arq_platform.registry, db=arq_platform.db))
    assert (configured["max_jobs"], configured["poll_delay"]) == (40, 0.05)
