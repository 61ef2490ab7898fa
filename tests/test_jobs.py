"""Jobs and event delivery, in-process and on arq with a real Redis."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import func, select, text, update

import crmkit
from crmkit.app import create_app
from crmkit.core.audit.chain import verify
from crmkit.core.audit.models import AuditHead, AuditJournal
from crmkit.core.audit.trail import seal
from crmkit.core.customers import service
from crmkit.core.customers.models import CustomerKind
from crmkit.core.events import PENDING_EVENTS, OutboxEvent
from crmkit.db import Database, create_engine, uuid7
from crmkit.jobs import delivery as delivery_module
from crmkit.jobs import runner as runner_module
from crmkit.jobs.backends import ArqQueue, InlineQueue, worker_settings
from crmkit.jobs.delivery import DISPATCH_EVENT, dispatch_payload, mark_relayed
from crmkit.jobs.queue import pack, unpack
from crmkit.jobs.runner import JobRunner, Outcome
from crmkit.platform import Platform
from crmkit.platform.report import plugin_report
from crmkit.plugins.models import EventDelivery, HandlerFailure
from crmkit.testing import Env, StatementCounter
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
        await session.execute(update(OutboxEvent).values(relayed_at=None))
    # the crash-recovery sweep hands the event over again: the handler is not run twice
    await env.platform.runner.sweep_outbox(older_than_seconds=0)
    await env.queue.drain()
    assert recorder_plugin.HANDLED[str(event_id)] == 1
    async with env.platform.db.tenant_session(tenant) as session:
        assert await session.scalar(select(func.count()).select_from(EventDelivery)) == 1


async def test_a_transactions_events_are_dispatched_and_delivered_as_one_batch(
    env: Env, sql_statements: StatementCounter
) -> None:
    """One dispatch job per transaction; its only target (the recorder) is handed the
    events in order by that job: the statements do not grow with the events."""
    tenant = await env.tenant("recorder")
    await new_customer(env.platform, tenant, "Warm")  # the tenant's key is cached after this
    await env.queue.drain()
    counts = {}
    for size in (1, 5):
        async with env.platform.tenant_scope(tenant) as scope:
            for i in range(size):
                crmkit.emit(scope.ctx, "customer_created", "Customer", f"batch-{size}-{i}")
        sql_statements.clear()  # after the commit: what the pipeline costs
        await env.queue.drain()
        counts[size] = sql_statements.count
    # the events with their deliveries (and whether any webhook is subscribed), the
    # events marked relayed, the deliveries recorded (one event took 9 before batching)
    assert counts == {1: 3, 5: 3}
    handled = recorder_plugin.calls(tenant, "customer_created")[1:]
    assert handled == ["batch-1-0", *(f"batch-5-{i}" for i in range(5))]
    async with env.platform.db.tenant_session(tenant) as session:
        assert await session.scalar(select(func.count()).select_from(EventDelivery)) == 7
        assert await session.scalar(select(func.count()).where(OutboxEvent.relayed_at.is_(None))) == 0


async def test_a_failing_plugin_is_retried_alone_with_its_events_only(env: Env) -> None:
    """A batch with two targets: one job per plugin; the recorder's fails once and is
    retried with its own events, the notes plugin's job runs once."""
    tenant = await env.tenant("recorder", "notes")
    archived = await new_customer(env.platform, tenant, "Archived")
    await env.queue.drain()
    async with env.platform.tenant_scope(tenant) as scope:
        created = await service.create_customer(scope.ctx, kind=CustomerKind.PERSON, given_name="Fails")
        recorder_plugin.FAIL_ONCE.add(str(created.id))
        await service.archive_customer(scope.ctx, uuid.UUID(archived))
    await env.queue.drain()

    assert recorder_plugin.calls(tenant, "customer_created")[1:] == [str(created.id)]
    assert recorder_plugin.calls(tenant, "customer_archived") == [archived]
    async with env.platform.db.tenant_session(tenant) as session:
        emitted = select(OutboxEvent).order_by(OutboxEvent.created_at)  # the later customer_created
        events = {row.type: row.id for row in await session.scalars(emitted)}
        deliveries = {(d.event_id, d.plugin) for d in await session.scalars(select(EventDelivery))}
        failures = (await session.scalars(select(HandlerFailure))).all()
    assert [(f.plugin, f.event_id, f.attempt, f.gave_up) for f in failures] == [
        ("recorder", events["customer_created"], 1, False)
    ]
    assert {(events["customer_archived"], "notes"), (events["customer_archived"], "recorder")} <= deliveries
    assert (events["customer_created"], "recorder") in deliveries


async def test_a_delivery_given_up_is_recorded_and_never_swept_again(env: Env) -> None:
    """The batch's only target, delivered by the dispatch job itself, gives up: the
    failure is the plugin's, and the batch counts as relayed, as after a given-up job."""
    settings = env.platform.settings.model_copy(update={"job_max_tries": 1})
    db = Database(create_engine(settings.resolved_database_url))
    platform = Platform(settings, registry=env.platform.registry, db=db)
    tenant = await env.tenant("recorder")
    async with platform.tenant_scope(tenant) as scope:
        crmkit.emit(scope.ctx, "customer_created", "Customer", "gives-up")
        recorder_plugin.FAIL_ONCE.add("gives-up")
    assert isinstance(platform.queue, InlineQueue)
    await platform.queue.drain()
    await platform.close()
    async with env.platform.db.tenant_session(tenant) as session:
        failures = (await session.scalars(select(HandlerFailure))).all()
        unrelayed = await session.scalar(select(func.count()).where(OutboxEvent.relayed_at.is_(None)))
    assert [(f.plugin, f.attempt, f.gave_up) for f in failures] == [("recorder", 1, True)]
    assert unrelayed == 0
    await env.platform.runner.sweep_outbox(older_than_seconds=0)
    await env.queue.drain()
    assert recorder_plugin.calls(tenant, "customer_created") == []


async def unrelayed_events(platform: Platform, tenant: uuid.UUID, subjects: list[str]) -> list[uuid.UUID]:
    """One committed ``customer_created`` event per subject, not relayed yet (as if the
    worker were behind): their ids."""
    ids = []
    for subject in subjects:
        async with platform.tenant_scope(tenant) as scope:
            row = crmkit.emit(scope.ctx, "customer_created", "Customer", subject)
            await scope.session.flush()
            scope.session.info.pop(PENDING_EVENTS)
        ids.append(row.id)
    return ids


async def dispatch(runner: JobRunner, tenant: uuid.UUID, event_ids: list[uuid.UUID]) -> Outcome:
    return (await runner.run(DISPATCH_EVENT, tenant, dispatch_payload(event_ids), 1)).outcome


async def test_a_dispatch_job_takes_the_tenants_backlog_in_order(
    env: Env, sql_statements: StatementCounter
) -> None:
    """The job of the last event delivers every waiting one, in emitted order; the jobs
    of the others then end without a statement in this process, and after one look at
    the outbox in another (a runner of its own)."""
    tenant = await env.tenant("recorder")
    ids = await unrelayed_events(env.platform, tenant, ["b0", "b1", "b2"])
    assert await dispatch(env.platform.runner, tenant, ids[2:]) is Outcome.DONE
    assert recorder_plugin.calls(tenant, "customer_created") == ["b0", "b1", "b2"]
    sql_statements.clear()
    assert [await dispatch(env.platform.runner, tenant, [event_id]) for event_id in ids[:2]] == [
        Outcome.DONE,
        Outcome.DONE,
    ]
    assert sql_statements.count == 0
    assert await dispatch(JobRunner(env.platform), tenant, ids[:1]) is Outcome.DONE
    # (the tenant set for row-level security on PostgreSQL) the events with their deliveries
    assert sql_statements.count == {"sqlite": 1, "postgresql": 2}[env.backend]
    assert recorder_plugin.calls(tenant, "customer_created") == ["b0", "b1", "b2"]
    async with env.platform.db.tenant_session(tenant) as session:
        assert await session.scalar(select(func.count()).where(OutboxEvent.relayed_at.is_(None))) == 0


async def test_dispatch_jobs_of_a_tenant_at_once_share_one_dispatch(
    env: Env, sql_statements: StatementCounter
) -> None:
    """Jobs that start while their tenant's dispatch runs leave their events to it: it
    takes again once they have, and delivers each event once, in order."""
    tenant = await env.tenant("recorder")
    ids = await unrelayed_events(env.platform, tenant, [f"c{i}" for i in range(5)])
    sql_statements.clear()
    jobs = (dispatch(env.platform.runner, tenant, [event_id]) for event_id in reversed(ids))
    assert await asyncio.gather(*jobs) == [Outcome.DONE] * 5
    # the first take: the events, the deliveries, the events relayed; the second finds none
    # (each transaction sets the tenant for row-level security on PostgreSQL)
    assert sql_statements.count == {"sqlite": 4, "postgresql": 6}[env.backend]
    assert recorder_plugin.calls(tenant, "customer_created") == [f"c{i}" for i in range(5)]


async def test_a_dispatch_job_takes_so_many_batches_and_queues_one_for_the_rest(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A backlog longer than a job's share: the job returns after its batches (here one
    of two events) and the job it queued delivers the rest."""
    monkeypatch.setattr(runner_module, "DISPATCH_TAKES", 1)
    monkeypatch.setattr(runner_module, "DISPATCH_BATCH", 2)
    monkeypatch.setattr(delivery_module, "DISPATCH_BATCH", 2)
    tenant = await env.tenant("recorder")
    ids = await unrelayed_events(env.platform, tenant, ["t0", "t1", "t2"])
    assert await dispatch(env.platform.runner, tenant, ids[2:]) is Outcome.DONE
    assert recorder_plugin.calls(tenant, "customer_created") == ["t0", "t1"]
    await env.queue.drain()
    assert recorder_plugin.calls(tenant, "customer_created") == ["t0", "t1", "t2"]


@pytest.mark.postgres_only
async def test_a_dispatch_in_another_process_waits_for_the_events_one_is_taking(env: Env) -> None:
    """Rows a dispatch has taken are locked: a rival dispatch of the tenant (another
    process: a runner of its own) waits, then passes over those relayed meanwhile."""
    tenant = await env.tenant("recorder")
    ids = await unrelayed_events(env.platform, tenant, ["w0", "w1"])
    async with env.platform.db.tenant_session(tenant) as session:
        locked = select(OutboxEvent.id).where(OutboxEvent.relayed_at.is_(None)).with_for_update()
        assert set(await session.scalars(locked)) == set(ids)
        rival = asyncio.create_task(dispatch(JobRunner(env.platform), tenant, ids))
        await asyncio.sleep(0.5)
        assert not rival.done()
        await mark_relayed(session, ids)
    assert await rival is Outcome.DONE
    assert recorder_plugin.calls(tenant, "customer_created") == []


async def test_a_dispatch_gives_up_only_the_event_it_failed_on(env: Env) -> None:
    """A backlog taken by one job whose only target fails for good on its first event:
    that event is given up (recorded, relayed); the next dispatch delivers the others."""
    settings = env.platform.settings.model_copy(update={"job_max_tries": 1})
    platform = Platform(
        settings, registry=env.platform.registry, db=Database(create_engine(settings.resolved_database_url))
    )
    tenant = await env.tenant("recorder")
    ids = await unrelayed_events(platform, tenant, ["g0", "g1", "g2"])
    recorder_plugin.FAIL_ONCE.add("g0")
    assert await dispatch(platform.runner, tenant, ids[2:]) is Outcome.FAILED
    assert isinstance(platform.queue, InlineQueue)
    await platform.queue.drain()
    await platform.close()
    assert recorder_plugin.calls(tenant, "customer_created") == ["g1", "g2"]
    async with env.platform.db.tenant_session(tenant) as session:
        failures = (await session.scalars(select(HandlerFailure))).all()
        unrelayed = await session.scalar(select(func.count()).where(OutboxEvent.relayed_at.is_(None)))
        delivered = set(await session.scalars(select(EventDelivery.event_id)))
    assert [(f.event_id, f.attempt, f.gave_up) for f in failures] == [(ids[0], 1, True)]
    assert (unrelayed, delivered) == (0, set(ids[1:]))


async def upkeep_statements(env: Env, counter: StatementCounter) -> int:
    """Statements of a sweep, a checkpoint and a plugin cron's fan-out with nothing new."""
    runner = env.platform.runner
    await runner.sweep_outbox(older_than_seconds=0)  # what earlier tests left is done first
    await runner.checkpoint_audit()
    await env.queue.drain()
    counter.clear()
    assert await runner.sweep_outbox(older_than_seconds=0) == 0
    assert await runner.checkpoint_audit() == 0
    await runner.fan_out_cron("recorder.nightly")
    count = counter.count  # the nightly jobs fanned out have not started yet
    await env.queue.drain()
    return count


async def test_upkeep_costs_the_same_with_1_and_50_idle_tenants(
    env: Env, sql_statements: StatementCounter
) -> None:
    """The sweep, the checkpoint and a plugin cron each find their tenants in one query."""
    await new_customer(env.platform, await env.tenant(), "Idle")  # a chain head, signed below
    one = await upkeep_statements(env, sql_statements)
    for _ in range(49):
        await new_customer(env.platform, await env.tenant(), "Idle")
    fifty = await upkeep_statements(env, sql_statements)
    assert (one, fifty) == (3, 3)


async def test_upkeep_still_sweeps_and_signs_a_tenant_with_work(env: Env) -> None:
    tenant = await env.tenant("recorder")
    await upkeep_statements(env, StatementCounter())
    customer = await new_customer(env.platform, tenant, "Work")  # audited: the head moves
    await env.queue.drain()
    async with env.platform.db.tenant_session(tenant) as session:
        await session.execute(update(OutboxEvent).values(relayed_at=None))
        head = await session.scalar(select(AuditHead))
        assert head is not None and head.seq > head.checkpoint_seq
    runner = env.platform.runner
    assert await runner.sweep_outbox(older_than_seconds=0) == 1
    assert await runner.checkpoint_audit() == 1
    await env.queue.drain()
    assert recorder_plugin.calls(tenant, "customer_created") == [customer]  # redelivery skipped
    async with env.platform.db.tenant_session(tenant) as session:
        head = await session.scalar(select(AuditHead))
        assert head is not None and head.checkpoint_seq == head.seq
        assert await session.scalar(text("SELECT count(*) FROM audit_checkpoints")) >= 1
    assert await runner.sweep_outbox(older_than_seconds=0) == 0
    assert await runner.checkpoint_audit() == 0


@pytest.mark.postgres_only  # where a transaction that finds the head taken journals its events
async def test_the_checkpoint_signs_a_tenant_whose_events_wait_in_the_journal(env: Env) -> None:
    tenant = await env.tenant()
    customer = uuid.UUID(await new_customer(env.platform, tenant, "Journal"))
    await upkeep_statements(env, StatementCounter())  # the head signed
    holder = env.platform.db.session_for(tenant)
    await holder.begin()
    await holder.run_sync(seal, tenant)  # takes the head and keeps it until it commits
    async with env.platform.tenant_scope(tenant) as scope:
        await service.update_customer(scope.ctx, customer, given_name="Journaled")
    await holder.commit()
    await holder.close()
    async with env.platform.db.tenant_session(tenant) as session:
        assert await session.scalar(select(func.count()).select_from(AuditJournal)) == 1
        head = await session.scalar(select(AuditHead))
        assert head is not None and head.seq == head.checkpoint_seq  # the head did not move

    assert await env.platform.runner.checkpoint_audit() == 1
    async with env.platform.db.tenant_session(tenant) as session:
        assert await session.scalar(select(func.count()).select_from(AuditJournal)) == 0
        head = await session.scalar(select(AuditHead))
        assert head is not None and head.checkpoint_seq == head.seq
    assert (await verify(env.platform.db, tenant, env.platform.audit_signer)).ok


def scheduler_running() -> bool:
    return any(
        "run_scheduler" in getattr(task.get_coro(), "__qualname__", "") for task in asyncio.all_tasks()
    )


@pytest.mark.redis
async def test_the_web_app_runs_upkeep_only_without_a_worker(env: Env, arq_platform: Platform) -> None:
    """With arq, ``crmkit worker`` runs the sweep and the checkpoint: the web server does
    not; with the inline queue there is no worker, so the web server must."""
    async with create_app(arq_platform).lifespan():
        assert not scheduler_running()
    async with create_app(env.platform).lifespan():
        assert scheduler_running()
    await asyncio.sleep(0)
    assert not scheduler_running()


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


@pytest.mark.redis
async def test_transactions_committed_together_share_a_dispatch_job(env: Env, arq_platform: Platform) -> None:
    """Relays at the same time queue one batch (a group commit), in their order."""
    tenant = await env.tenant("recorder")
    committed = [[uuid7()] for _ in range(10)]
    await asyncio.gather(*(arq_platform.runner.relay(tenant, ids) for ids in committed))
    assert isinstance(arq_platform.queue, ArqQueue)
    pool = await arq_platform.queue.pool()
    jobs = sorted(await pool.queued_jobs(), key=lambda job: job.enqueue_time)
    await pool.flushdb()
    batches = [job.args[2]["event_ids"] for job in jobs]
    assert batches == [[str(ids[0]) for ids in committed]]


async def test_the_worker_runs_as_many_jobs_and_polls_as_often_as_configured(arq_platform: Platform) -> None:
    default = worker_settings(arq_platform)
    assert (default["max_jobs"], default["poll_delay"]) == (10, 0.5)
    tuned = arq_platform.settings.model_copy(update={"worker_max_jobs": 40, "worker_poll_seconds": 0.05})
    configured = worker_settings(Platform(tuned, registry=arq_platform.registry, db=arq_platform.db))
    assert (configured["max_jobs"], configured["poll_delay"]) == (40, 0.05)
