"""Exactly once through arq on the real Redis, with the real processes: ``crmkit serve``
and ``crmkit worker`` (development mode, PostgreSQL as a login role of ``crmkit_app``
under row-level security). A campaign's worker is killed with SIGKILL mid-campaign
while the SMS gateway holds requests it has already accepted (the window between the
provider's accept and our commit); a new worker finishes the campaign, and the gateway
has accepted every recipient's message exactly once. The gateway honours
``Idempotency-Key``, as the README says the guarantee needs; the raw posts it saw are
counted too. The gateway also fails its first two posts (retried with backoff), and
the campaign is started a second time after the kill. Needs PostgreSQL and Redis;
skips (fails, in CI) without."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import uvicorn
from channels_helpers import CONSENT, CREATE_CAMPAIGN, PROGRESS, SAVE, START
from channels_loopback import API_KEY, Gateway, free_port, unique_number
from crmkit.testing import (
    PG_DB,
    REDIS_URL,
    create_app_login,
    drop_app_login,
    drop_pg,
    pg_url,
    unavailable,
)

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

DATABASE = f"{PG_DB}_channels_crash"
LOGIN = f"crmkit_channels_crash_{os.getpid()}"
CLAIM = "crmkit:scale-out:claim"
"""The key a run sets (NX) in a Redis database to hold it, as crmkit's scale-out test does."""
REDIS_DATABASES = range(13, 0, -1)
RECIPIENTS = 60
DEADLINE = 240.0
"""Seconds: a deadline, not a wait (the sweep re-queues lost jobs within ~20 s)."""
CREATE = "mutation($input: CreateCustomerInput!) { createCustomer(input: $input) { id } }"


def crmkit_command() -> str:
    return str(Path(sys.executable).with_name("crmkit"))


async def claim_redis() -> tuple[str, Any]:
    import redis.asyncio as redis

    base = REDIS_URL.rsplit("/", 1)[0]
    for number in REDIS_DATABASES:
        client = redis.from_url(f"{base}/{number}")
        try:
            if await asyncio.wait_for(client.set(CLAIM, os.getpid(), nx=True, ex=900), 3):
                await client.flushdb()
                await client.set(CLAIM, os.getpid(), ex=900)
                return f"{base}/{number}", client
        except Exception as exc:
            await client.aclose()
            unavailable("Redis", exc)
        await client.aclose()
    pytest.skip("every Redis database this test may use is claimed by another run")


@pytest_asyncio.fixture(loop_scope="session")
async def deployment(tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    owner = await pg_url(DATABASE)
    app = await create_app_login(owner, LOGIN)
    redis_url, claim = await claim_redis()
    environment = {
        **os.environ,
        "CRMKIT_DEV_MODE": "1",
        "CRMKIT_DATA_DIR": str(tmp_path / "data"),
        "CRMKIT_DATABASE_URL": app,
        "CRMKIT_MIGRATION_DATABASE_URL": owner,
        "CRMKIT_REDIS_URL": redis_url,
        "CRMKIT_RATE_LIMIT_GRAPHQL_PER_MINUTE": "100000",
    }
    processes: dict[str, subprocess.Popen[bytes]] = {}

    def cli(*args: str) -> str:
        done = subprocess.run(
            [crmkit_command(), *args],
            env=environment,
            capture_output=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr.decode(errors="replace")
        return done.stdout.decode()

    def start(name: str, *args: str) -> subprocess.Popen[bytes]:
        log = (tmp_path / f"{name}.log").open("ab")
        processes[name] = subprocess.Popen(
            [crmkit_command(), *args], env=environment, stdout=log, stderr=log
        )
        return processes[name]

    try:
        yield {"cli": cli, "start": start, "processes": processes, "logs": tmp_path}
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
        if await claim.get(CLAIM) == str(os.getpid()).encode():
            await claim.delete(CLAIM)
        await claim.aclose()
        await drop_pg(DATABASE)
        await drop_app_login(LOGIN)


def outputs(logs: Path) -> str:
    """The end of each process's output, for a failure message."""
    return "\n".join(p.read_text(errors="replace")[-3000:] for p in logs.glob("*.log"))


async def wait_for(check: Any, what: str, logs: Path) -> None:
    deadline = time.monotonic() + DEADLINE
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{outputs(logs)}")
        await asyncio.sleep(0.2)


@pytest.mark.postgres_only
async def test_a_worker_killed_mid_campaign_and_restarted_sends_each_recipient_once(
    deployment: dict[str, Any], backend: str
) -> None:
    gateway = Gateway(delay=0.3)
    gateway_port, port = free_port(), free_port()
    receiver = uvicorn.Server(
        uvicorn.Config(
            gateway, host="127.0.0.1", port=gateway_port, log_level="warning", lifespan="off"
        )
    )
    receiver_task = asyncio.create_task(receiver.serve())
    cli, start, logs = deployment["cli"], deployment["start"], deployment["logs"]
    try:
        cli("db", "upgrade")
        slug = f"crash-{uuid.uuid4().hex[:8]}"
        cli("tenants", "create", slug, "Crash Bank")
        cli(
            "plugins",
            "enable",
            slug,
            "channels",
            "--set",
            f"sms_url=http://127.0.0.1:{gateway_port}/sms",
            "--set",
            f"sms_api_key={API_KEY}",
            "--set",
            "stale_after_seconds=5",
        )
        token = cli(
            "token", "issue", "--tenant", slug, "--all-scopes", "--subject", "user:t"
        ).strip()
        start("serve", "serve", "--port", str(port))
        worker = start("worker-1", "worker")
        headers = {"Authorization": f"Bearer {token.splitlines()[-1]}"}
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=30
        ) as client:

            async def gql(query: str, variables: dict[str, Any]) -> dict[str, Any]:
                response = await client.post(
                    "/graphql", json={"query": query, "variables": variables}
                )
                body: dict[str, Any] = response.json()
                assert response.status_code == 200 and "errors" not in body, body
                return body["data"]

            async def up() -> bool:
                try:
                    return (await client.get("/healthz")).status_code < 500
                except httpx.HTTPError:
                    return False

            await wait_for(up, "the server", logs)
            await gql(
                SAVE,
                {
                    "input": {
                        "key": "news",
                        "channel": "sms",
                        "body": "News {{ customer.given_name }}",
                    }
                },
            )
            numbers = []
            for i in range(RECIPIENTS):
                phone = unique_number()
                numbers.append("+44" + phone.replace(" ", "")[1:])
                customer = await gql(
                    CREATE,
                    {
                        "input": {
                            "kind": "PERSON",
                            "givenName": f"R{i}",
                            "phone": phone,
                            "tags": ["all"],
                        }
                    },
                )
                decision = {
                    "customerId": customer["createCustomer"]["id"],
                    "purpose": "marketing",
                    "channel": "SMS",
                    "state": "GRANTED",
                    "source": "WEB",
                    "policyVersion": "1",
                    "legalBasis": "CONSENT",
                }
                await gql(CONSENT, {"input": decision})
            created = await gql(
                CREATE_CAMPAIGN,
                {
                    "input": {
                        "name": "crash",
                        "template": "news",
                        "channel": "sms",
                        "purpose": "marketing",
                        "filter": {"tag": "all"},
                    }
                },
            )
            campaign_id = created["createCampaign"]["id"]
            gateway.fail_next = 2  # two transient failures, retried with backoff
            await gql(START, {"id": campaign_id})

            async def some_accepted() -> bool:
                return len(gateway.sms) >= RECIPIENTS // 4

            await wait_for(some_accepted, "the first messages", logs)
            worker.send_signal(signal.SIGKILL)
            worker.wait(10)
            killed_at = len(gateway.sms)
            await gql(START, {"id": campaign_id})  # and the campaign is started a second time
            start("worker-2", "worker")

            async def finished() -> bool:
                data = await gql(PROGRESS, {"id": campaign_id})
                progress = data["campaign"]["progress"]
                assert progress["failed"] == progress["suppressed"] == 0, progress
                return bool(progress["sent"] == RECIPIENTS)

            await wait_for(finished, "the campaign to finish", logs)
            await asyncio.sleep(2)  # anything still in flight would arrive now
        assert killed_at < RECIPIENTS, "the worker was killed after the campaign"
        accepted = sorted(message["to"] for message in gateway.sms.values())
        assert accepted == sorted(numbers)  # every recipient once
        # posts beyond RECIPIENTS are resends of messages accepted just before the kill
        print(f"accepted {len(accepted)}, posts {gateway.sms_posts}, killed after {killed_at}")
    finally:
        receiver.should_exit = True
        await receiver_task
