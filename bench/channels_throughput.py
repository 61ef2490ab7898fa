"""Benchmark: a channels campaign of 10,000 SMS through arq, against the receiver's own
ceiling measured in the same run.

The receiver is a loopback HTTP server in a process of its own (uvicorn), playing the
SMS gateway: it accepts each message once per ``Idempotency-Key`` and counts them.

1. **Ceiling**: a plain client (this process, as many requests in flight as the
   workers run jobs at once) posts the same 10,000 messages, same payloads, to a fresh
   count: messages/s, three times: httpx through one client's pool, httpx with a client
   of one connection per sender, and aiohttp through one session (the client the
   plugin sends with). A client's own CPU per request can be its limit rather than the
   receiver's (httpx's shared pool at 20 in flight is), so the fastest of the three is
   the ceiling.
2. **Campaign**: PostgreSQL as the app role under row-level security (bench/
   postgres_setup.py), Redis, and ``crmkit worker`` processes (``--workers``, default
   2: one per core; :data:`MAX_JOBS` jobs each, polling every :data:`POLL_SECONDS`).
   10,000 customers with SMS marketing consent, a template, and one campaign started
   (after an untimed warm-up campaign of :data:`WARM_UP`, and once the workers have
   dispatched the set-up's events, untimed: :func:`relay_set_up`); timed from the start
   to the receiver's 10,000th distinct message. The tables are ANALYZEd once prepared, as
   autovacuum would have done in production: the development server runs without it,
   and without statistics PostgreSQL planned the campaign's customer query (a tag
   filter) as a nested loop over every tagged customer for each customer: 2 s of CPU
   per 2,000 customers out of 10,000, most of the database's work in the campaign.
   Every message goes crmkit's whole path: campaign batches of 2,000 turned into messages
   in one transaction each, the ``channels_messages_queued`` event relayed after
   commit, one send job per batch of the plugin's ``send_batch_size`` messages (default
   50: row locks, consent, frequency caps, templates and customers asked once per batch;
   each text rendered and encrypted, provider calls ``send_concurrency`` at a time, the
   outcomes written by one statement and one audit event, committed together).

Printed: the rates, the ratio to httpx's one-pool client and the ratio campaign/ceiling
(the goal: 0.5 or better). Measured (plugins/channels/README.md, runs 25-30), the
shared 2-core machine at load 2.9-5.8, three runs: ratio 0.063 / 0.131 / 0.174 (min /
median / max), campaign 395 / 444 / 519 messages/s against ceilings of 2,275-8,233;
the goal is not met. Skips,
with a message, without PostgreSQL or Redis. The database, the role and the Redis
database's keys are removed after the run.

Run: ``.venv/bin/python bench/channels_throughput.py [--messages N] [--workers N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import postgres_setup
from redis_setup import claim_redis, release_redis
from sqlalchemy import text

HERE = Path(__file__).parent
BATCH = 500
WARM_UP = 20
"""Messages of a first, untimed campaign: the workers have started and connected."""
MAX_JOBS = 10
"""Jobs a worker runs at once (CRMKIT_WORKER_MAX_JOBS): the plain client keeps as many
requests in flight as all workers can."""
POLL_SECONDS = 0.02
"""CRMKIT_WORKER_POLL_SECONDS: arq starts at most MAX_JOBS jobs per poll."""


# --- the receiver (run as ``channels_throughput.py --receiver PORT``) -----------------


class Receiver:
    """POST /sms accepts once per Idempotency-Key; GET /count answers the count;
    POST /reset forgets every message."""

    def __init__(self) -> None:
        self.keys: set[str] = set()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        headers = dict(scope["headers"])
        if scope["path"] == "/sms":
            self.keys.add(headers.get(b"idempotency-key", b"").decode())
            body = b'{"id": "ok"}'
        elif scope["path"] == "/reset":
            self.keys.clear()
            body = b"{}"
        else:
            body = json.dumps({"count": len(self.keys)}).encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})


def run_receiver(port: int) -> None:
    import uvicorn

    uvicorn.run(Receiver(), host="127.0.0.1", port=port, log_level="warning", access_log=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def count(client: httpx.AsyncClient) -> int:
    return int((await client.get("/count")).json()["count"])


# --- the ceiling ---------------------------------------------------------------------


def plain_message(index: int, number: str) -> tuple[str, dict[str, str]]:
    """The body and headers the plain client posts for message ``index``."""
    payload = json.dumps({"to": number, "text": f"News for C{index}", "reference": str(index)})
    return payload, {"Idempotency-Key": f"plain-{index}", "Authorization": "k"}


async def ceiling(client: httpx.AsyncClient, numbers: list[str], in_flight: int, how: str) -> float:
    """Messages/s of a plain client posting the same messages, ``in_flight`` at a time:
    ``shared``, through ``client``'s one pool; ``own``, each sender with an httpx client
    of one connection of its own (httpx's shared pool looks over every idle connection
    whenever a request starts or ends, which costs it more CPU per request than the
    requests themselves at 20 in flight); ``aiohttp``, through one aiohttp session of
    as many connections, the plugin's client, a quarter of httpx's CPU per request. The
    campaign is judged against the fastest: what the receiver takes."""
    await client.post("/reset")
    queue = list(enumerate(numbers))
    url = str(client.base_url.join("/sms"))
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    senders = [
        httpx.AsyncClient(base_url=client.base_url, timeout=30, limits=limits) if how == "own" else client
        for _ in range(in_flight)
    ]

    async def sender(through: httpx.AsyncClient) -> None:
        while queue:
            payload, headers = plain_message(*queue.pop())
            if how == "aiohttp":
                async with session.post(url, data=payload.encode(), headers=headers) as answer:
                    await answer.read()
            else:
                (await through.post("/sms", content=payload, headers=headers)).read()

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=in_flight)) as session:
        start = time.perf_counter()
        await asyncio.gather(*(sender(through) for through in senders))
        elapsed = time.perf_counter() - start
    if how == "own":
        await asyncio.gather(*(through.aclose() for through in senders))
    assert await count(client) == len(numbers)
    return len(numbers) / elapsed


# --- the campaign --------------------------------------------------------------------


async def prepare(platform: Any, numbers: list[str], gateway: str) -> tuple[uuid.UUID, uuid.UUID]:
    """A tenant with channels, the customers with SMS marketing consent, the campaign."""
    from crmkit_channels import service

    import crmkit
    from crmkit.platform.enablement import enable
    from crmkit.tenants.service import create_tenant

    slug = f"bench-{uuid.uuid4().hex[:8]}"
    tenant = await create_tenant(platform.db, slug, "Bench Bank")
    settings = {"sms_url": f"{gateway}/sms", "sms_api_key": "k", "max_per_day": 100}
    await enable(platform, slug, "channels", settings)
    for start in range(0, len(numbers), BATCH):
        async with platform.tenant_scope(tenant.id) as scope:
            for index in range(start, min(start + BATCH, len(numbers))):
                customer = await crmkit.create_customer(
                    scope.ctx,
                    kind=crmkit.CustomerKind.PERSON,
                    tags=["bench"],
                    given_name=f"C{index}",
                    phone=numbers[index],
                )
                await crmkit.record_consent(
                    scope.ctx,
                    customer_id=customer.id,
                    purpose="marketing",
                    channel=crmkit.ConsentChannel.SMS,
                    state=crmkit.ConsentState.GRANTED,
                    source=crmkit.ConsentSource.WEB,
                    policy_version="1",
                    legal_basis=crmkit.LegalBasis.CONSENT,
                    captured_by="bench",
                )
    async with platform.tenant_scope(tenant.id) as scope:
        ctx = scope.hooks.context_for("channels")
        await service.save_template(
            ctx,
            key="news",
            channel="sms",
            locale="en",
            subject=None,
            body="News for {{ customer.given_name }}",
        )
        campaign = await service.create_campaign(
            ctx,
            name="bench",
            template="news",
            channel="sms",
            purpose="marketing",
            locale="en",
            filter={"tag": "bench"},
            created_by="bench",
            unmask=["pii:identity"],
        )
    return tenant.id, campaign.id


async def relay_set_up(platform: Any, owner: Any, tenant: uuid.UUID) -> None:
    """Have the workers dispatch the events the set-up wrote (each customer created and
    given consent), and wait until they have, as production would have right after each
    commit. Left undispatched, they would be the campaign's: a dispatch job takes the
    tenant's oldest events first, 100 a transaction, so the campaign's own events (its
    batches of messages to send) would wait behind 20,000 of the set-up's, timed."""
    unrelayed = text("SELECT id FROM outbox_events WHERE tenant_id = :tenant AND relayed_at IS NULL")
    async with owner.connect() as conn:
        ids = list((await conn.execute(unrelayed, {"tenant": tenant})).scalars())
    await platform.runner.relay(tenant, ids)
    while ids:
        await asyncio.sleep(0.2)
        async with owner.connect() as conn:
            ids = list((await conn.execute(unrelayed, {"tenant": tenant})).scalars())


async def campaign_rate(
    platform: Any, tenant: uuid.UUID, campaign: uuid.UUID, client: httpx.AsyncClient, messages: int
) -> float:
    from crmkit_channels import service

    await client.post("/reset")
    start = time.perf_counter()
    async with platform.tenant_scope(tenant) as scope:
        await service.start_campaign(scope.hooks.context_for("channels"), campaign)
    while await count(client) < messages:  # noqa: ASYNC110 - the count is another process's
        await asyncio.sleep(0.05)
    return messages / (time.perf_counter() - start)


async def main(messages: int, workers: int) -> None:
    from crmkit import migrations
    from crmkit.db import Database, create_engine
    from crmkit.platform import Platform
    from crmkit.platform.registry import load_registry
    from crmkit.settings import Settings

    name, role = f"crmkit_bench_channels_{os.getpid()}", f"crmkit_bench_channels_{os.getpid()}"
    if not await postgres_setup.create_database(name):
        return
    redis_url = await claim_redis()
    if redis_url is None:
        await postgres_setup.drop_database(name)
        return
    port = free_port()
    receiver = subprocess.Popen([sys.executable, __file__, "--receiver", str(port)])  # noqa: ASYNC220
    processes: list[subprocess.Popen[bytes]] = []
    folder = Path(tempfile.mkdtemp(prefix="crmkit-bench-channels-"))
    owner = create_engine(postgres_setup.url(name))
    try:
        registry = load_registry()
        await migrations.upgrade(owner, registry)
        await postgres_setup.create_app_login(role)
        app_url = postgres_setup.url(name, role)
        settings = Settings(dev_mode=True, data_dir=folder, database_url=app_url, redis_url=redis_url)
        platform = Platform(settings, registry=registry, db=Database(create_engine(app_url)))
        platform.db.after_commit = None  # the set-up's own events need no worker
        numbers = [f"+4474{index:08d}" for index in range(messages)]
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            for _ in range(100):
                try:
                    await count(client)
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
            print(f"preparing {messages} customers with consent ...", flush=True)
            tenant, campaign = await prepare(platform, numbers, base)
            warm_up = await prepare(platform, [f"+4475{index:08d}" for index in range(WARM_UP)], base)
            async with owner.connect() as conn:
                await conn.execute(text("ANALYZE"))
            in_flight = workers * MAX_JOBS
            shared, own, session = [
                await ceiling(client, numbers, in_flight, how) for how in ("shared", "own", "aiohttp")
            ]
            plain = max(shared, own, session)
            environment = {
                **os.environ,
                "CRMKIT_DEV_MODE": "1",
                "CRMKIT_DATA_DIR": str(folder),
                "CRMKIT_DATABASE_URL": app_url,
                "CRMKIT_REDIS_URL": redis_url,
                "CRMKIT_WORKER_MAX_JOBS": str(MAX_JOBS),
                "CRMKIT_WORKER_POLL_SECONDS": str(POLL_SECONDS),
            }
            crmkit_command = str(Path(sys.executable).with_name("crmkit"))
            for _ in range(workers):
                processes.append(
                    subprocess.Popen(  # noqa: ASYNC220 - starting it does not wait for it
                        [crmkit_command, "worker"], env=environment, stdout=subprocess.DEVNULL
                    )
                )
            await campaign_rate(platform, *warm_up, client, WARM_UP)  # the workers are up
            await relay_set_up(platform, owner, tenant)
            rate = await campaign_rate(platform, tenant, campaign, client, messages)
        print(f"ceiling, plain client, {in_flight} in flight over one pool:  {shared:8.0f} messages/s")
        print(f"ceiling, plain client, {in_flight} in flight, a connection each: {own:8.0f} messages/s")
        print(f"ceiling, plain aiohttp session, {in_flight} in flight: {session:8.0f} messages/s")
        print(f"campaign through arq ({workers} workers x {MAX_JOBS} jobs): {rate:8.0f} messages/s")
        print(f"ratio campaign/httpx one pool: {rate / shared:.3f}")
        print(f"ratio campaign/ceiling (the faster): {rate / plain:.3f} (goal: 0.5 or better)")
        await platform.close()
    finally:
        for process in [*processes, receiver]:
            process.terminate()
            process.wait(30)
        await owner.dispose()
        await postgres_setup.drop_database(name)
        await postgres_setup.drop_role(role)
        await release_redis(redis_url)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--receiver", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.receiver:
        run_receiver(args.receiver)
    else:
        asyncio.run(main(args.messages, args.workers))
