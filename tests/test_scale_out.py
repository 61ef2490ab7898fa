"""Scale-out: two ``crmkit serve`` and two ``crmkit worker`` processes on one PostgreSQL
database and one Redis, as an operator runs them once one process is not enough.

The processes are the real command, started with production settings (no development
mode: key files and a master key of the test's own), the application connecting as a
login role in ``crmkit_app`` as in production. The test sends customer changes of ten
tenants to both servers alternately and then checks, in the database and at a webhook
receiver, that every event was handled exactly once per enabled plugin and delivered
exactly once per subscribed app installation; that a plugin enabled while both servers
run is served by both on their next request; that a suspension made through one server,
and a token revoked by the CLI, are refused by both (each server answers tenant state
and revocation from its access cache, emptied by the database's notification). It
needs PostgreSQL and Redis, and skips (fails, in CI) without.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from crmkit_notes.jobs import SYSTEM_AUTHOR
from crmkit_notes.models import Note
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID
from joserfc.jwk import ECKey
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook

from crmkit import migrations
from crmkit.auth.apps import register_client
from crmkit.auth.tokens import TokenService
from crmkit.core.events import OutboxEvent
from crmkit.crypto import new_master_key_text
from crmkit.db import create_engine
from crmkit.platform import Platform
from crmkit.platform.operator_tokens import OperatorTokens
from crmkit.platform.registry import load_registry
from crmkit.plugins.models import EventDelivery, HandlerFailure
from crmkit.settings import Settings
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

DATABASE = f"{PG_DB}_scale_out"
APP_LOGIN = f"crmkit_scale_out_{os.getpid()}"
REDIS_DATABASES = range(13, 0, -1)
"""Redis databases a run may claim: not 0 (everyone's default) nor 15 (the other tests').
Runs side by side must not share one: a worker takes any job of its queue, and one of
another run's database would find no such event and drop it."""
CLAIM = "crmkit:scale-out:claim"
CLAIM_SECONDS = 900

TENANTS = 10
NOTES_TENANTS = 7
"""Tenants 0-6 enable the plugin ``notes`` (it handles customer_archived); 7-9 do not."""
CUSTOMERS = 40
UPDATED = range(0, 30)
ARCHIVED = range(10, 40)
"""Per tenant: 40 creations, 30 updates, 30 archives; 1,000 changes over ten tenants."""
APPS = {
    "alpha": (range(0, 6), ["customer_archived"]),
    "beta": (range(4, 10), ["customer_created", "customer_archived"]),
}
"""Partner apps: the tenants that install each, and the events each subscribes to."""
IN_FLIGHT = 12
READY_SECONDS = 120.0
SETTLE_SECONDS = 900.0
"""Deadlines, not waits: on two idle cores the servers answer within seconds and the
workers finish a few seconds after the last change; a machine shared with other work
takes several times longer."""

CREATE = "mutation($input: CreateCustomerInput!) { createCustomer(input: $input) { id } }"
UPDATE = 'mutation($id: UUID!) { updateCustomer(id: $id, input: {familyName: "Moved"}) { id } }'
ARCHIVE = "mutation($id: UUID!) { archiveCustomer(id: $id) { id } }"
NOTES_QUERY = "{ customers(first: 5, filter: {includeArchived: true}) { nodes { id notes { body } } } }"
ONBOARD = """mutation($input: OnboardTenantInput!) { onboardTenant(input: $input) { tenant { id } } }"""


# --- the receiver of the partner apps' webhooks --------------------------------------


@dataclass
class Receiver:
    """Records every arrival as (webhook id, installation), naming the installation by
    the secret its signature verifies with; an arrival no secret verifies is bad."""

    secrets: dict[str, uuid.UUID] = field(default_factory=dict)
    arrivals: list[tuple[str, uuid.UUID]] = field(default_factory=list)
    bad: int = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        installation = self._verified(body, headers)
        if installation is None:
            self.bad += 1
        else:
            self.arrivals.append((headers["webhook-id"], installation))
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    def _verified(self, body: bytes, headers: dict[str, str]) -> uuid.UUID | None:
        for secret, installation in self.secrets.items():
            try:
                Webhook(secret).verify(body, headers)
            except Exception:
                continue
            return installation
        return None


# --- the deployment --------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_keys(folder: Path) -> dict[str, Any]:
    """Production key material, the same for every process: the token signing key, the
    audit signing key and the master key (settings by name)."""
    signing, audit = folder / "signing-key.pem", folder / "audit-key.pem"
    signing.write_bytes(ECKey.generate_key("P-256").as_pem(private=True))
    audit.write_bytes(
        Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return {"signing_key_file": signing, "audit_key_file": audit, "master_key": new_master_key_text()}


def write_receiver_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1: outside development mode webhooks go
    over https only, so the receiver serves TLS and the workers trust it
    (``SSL_CERT_FILE``), as they would a partner's private CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "scale-out receiver")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "receiver.pem", folder / "receiver-key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_file, key_file


@dataclass
class Deployment:
    """Two servers, two workers, the receiver, and an in-process view of the same data."""

    servers: list[str]
    redis_url: str
    env: dict[str, str]
    platform: Platform
    tokens: TokenService
    operator_token: str
    receiver: Receiver
    receiver_url: str
    processes: dict[str, subprocess.Popen[bytes]]
    logs: Path

    def token(self, tenant_id: uuid.UUID) -> str:
        scopes = sorted(self.platform.registry.scopes())
        return self.tokens.issue(tenant_id=tenant_id, subject="operator:scale-out", scopes=scopes)

    def output(self, name: str) -> str:
        """The end of a process's output, for failure messages."""
        return (self.logs / f"{name}.log").read_text(errors="replace")[-4000:]

    def crashed(self) -> str:
        """The processes that exited, with the end of their output."""
        return "\n".join(
            f"{name} exited with {process.returncode}:\n{self.output(name)}"
            for name, process in self.processes.items()
            if process.poll() is not None
        )

    def url(self, server: int) -> str:
        """Server ``server`` modulo the number of servers: callers alternate by counting."""
        return self.servers[server % len(self.servers)]

    async def gql(
        self, client: httpx.AsyncClient, server: int, query: str, variables: dict[str, Any], token: str
    ) -> httpx.Response:
        return await client.post(
            f"{self.url(server)}/graphql",
            json={"query": query, "variables": variables},
            headers={"Authorization": f"Bearer {token}"},
        )

    async def ok(
        self, client: httpx.AsyncClient, server: int, query: str, variables: dict[str, Any], token: str
    ) -> dict[str, Any]:
        response = await self.gql(client, server, query, variables, token)
        body: dict[str, Any] = response.json()
        server_output = self.output(f"serve-{server % len(self.servers)}")
        assert response.status_code == 200 and not body.get("errors"), (
            response.status_code,
            body,
            server_output,
        )
        return body["data"]

    async def operator(self, client: httpx.AsyncClient, server: int, query: str, **variables: Any) -> Any:
        response = await client.post(
            f"{self.url(server)}/operator/graphql",
            json={"query": query, "variables": variables},
            headers={"Authorization": f"Bearer {self.operator_token}"},
        )
        body = response.json()
        assert response.status_code == 200 and not body.get("errors"), body
        return body["data"]

    async def onboard(self, client: httpx.AsyncClient, server: int, slug: str, *plugins: str) -> uuid.UUID:
        """A tenant, onboarded through a server's operator API."""
        data = await self.operator(
            client,
            server,
            ONBOARD,
            input={"slug": slug, "name": slug, "plugins": [{"name": p} for p in plugins]},
        )
        return uuid.UUID(data["onboardTenant"]["tenant"]["id"])

    def cli(self, *args: str) -> str:
        """The operator's command against the same database (a process of its own)."""
        done = subprocess.run(
            [str(crmkit_command()), *args], env=self.env, capture_output=True, timeout=60, check=False
        )
        assert done.returncode == 0, done.stderr.decode(errors="replace")
        return done.stdout.decode()


def crmkit_command() -> Path:
    """The ``crmkit`` console script of the interpreter running the tests."""
    return Path(sys.executable).with_name("crmkit")


async def claim_redis_database() -> str:
    """The URL of a Redis database no other run holds, emptied and claimed for this one."""
    import redis.asyncio as redis

    base = REDIS_URL.rsplit("/", 1)[0]
    for number in REDIS_DATABASES:
        client = redis.from_url(f"{base}/{number}")
        try:
            if await asyncio.wait_for(client.set(CLAIM, os.getpid(), nx=True, ex=CLAIM_SECONDS), 3):
                async with client.pipeline(transaction=True) as pipe:  # what a dead run left
                    await pipe.flushdb().set(CLAIM, os.getpid(), ex=CLAIM_SECONDS).execute()
                return f"{base}/{number}"
        except Exception as exc:
            unavailable("Redis", exc)
        finally:
            await client.aclose()
    pytest.fail(f"every Redis database in {REDIS_DATABASES} is claimed by another run")


async def release_redis_database(url: str) -> None:
    import redis.asyncio as redis

    client = redis.from_url(url)
    try:
        await client.flushdb()
    finally:
        await client.aclose()


async def wait_until(check: Callable[[], Awaitable[bool]], seconds: float, what: str, d: Deployment) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        crashed = d.crashed()
        assert not crashed, crashed
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.25)


def start(env: dict[str, str], logs: Path, name: str, *args: str) -> subprocess.Popen[bytes]:
    log = (logs / f"{name}.log").open("wb")
    return subprocess.Popen([str(crmkit_command()), *args], env=env, stdout=log, stderr=subprocess.STDOUT)


def stop(processes: dict[str, subprocess.Popen[bytes]]) -> None:
    for process in processes.values():
        if process.poll() is None:
            process.terminate()
    for process in processes.values():
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
async def deployment(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Deployment]:
    redis_url = await claim_redis_database()
    owner_url = await pg_url(DATABASE)
    folder = tmp_path_factory.mktemp("scale-out")
    registry = load_registry()
    owner_engine = create_engine(owner_url)
    await migrations.upgrade(owner_engine, registry)
    await owner_engine.dispose()
    app_url = await create_app_login(owner_url, APP_LOGIN)
    values: dict[str, Any] = {
        **write_keys(folder),
        "dev_mode": False,
        "data_dir": folder / "data",
        "database_url": app_url,
        "migration_database_url": owner_url,
        "redis_url": redis_url,
        "issuer": "https://crmkit.scale-out.test",
        "job_retry_base_seconds": 0.2,
        # the receiver is on loopback: an operator's allow-list, as for a private partner
        "outbound_allowed_networks": ["127.0.0.0/8"],
    }
    settings = Settings(**values)
    cert_file, key_file = write_receiver_certificate(folder)
    env = {
        **os.environ,
        **{
            f"CRMKIT_{name.upper()}": json.dumps(value) if isinstance(value, list) else str(value)
            for name, value in values.items()
        },
        "SSL_CERT_FILE": str(cert_file),
        # litestar logs an unhandled exception only in debug mode: a 500 must leave its
        # traceback in the output a failure message quotes
        "LITESTAR_DEBUG": "1",
    }
    platform = Platform(settings, registry=registry)
    tokens = TokenService(settings)
    receiver = Receiver()
    server = uvicorn.Server(
        uvicorn.Config(
            receiver,
            host="127.0.0.1",
            port=0,
            log_level="warning",
            lifespan="off",
            ssl_certfile=str(cert_file),
            ssl_keyfile=str(key_file),
        )
    )
    serving = asyncio.create_task(server.serve())
    ports = [free_port(), free_port()]
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        while not server.started:  # noqa: ASYNC110  (uvicorn offers no event to wait on)
            await asyncio.sleep(0.01)
        receiver_port = server.servers[0].sockets[0].getsockname()[1]
        for index, port in enumerate(ports):
            processes[f"serve-{index}"] = start(env, folder, f"serve-{index}", "serve", "--port", str(port))
        for index in range(2):
            processes[f"worker-{index}"] = start(env, folder, f"worker-{index}", "worker")
        d = Deployment(
            servers=[f"http://127.0.0.1:{port}" for port in ports],
            redis_url=redis_url,
            env=env,
            platform=platform,
            tokens=tokens,
            operator_token=OperatorTokens(tokens).issue("scale-out"),
            receiver=receiver,
            receiver_url=f"https://127.0.0.1:{receiver_port}/hooks",
            processes=processes,
            logs=folder,
        )
        async with httpx.AsyncClient(timeout=10) as client:

            async def serving_both() -> bool:
                try:
                    answers = [await client.get(f"{url}/healthz") for url in d.servers]
                except httpx.HTTPError:
                    return False
                return all(a.status_code == 200 for a in answers)

            await wait_until(serving_both, READY_SECONDS, "both servers to answer /healthz", d)
        yield d
    finally:
        stop(processes)
        server.should_exit = True
        await serving
        await platform.close()
        await drop_pg(DATABASE)
        await drop_app_login(APP_LOGIN)
        await release_redis_database(redis_url)


# --- what the tests send and read ----------------------------------------------------

INSTALL = """mutation($client: String!) {
  installApp(clientId: $client, scopes: ["customers:read"]) { id } }"""
SUBSCRIBE = """mutation($installation: UUID!, $types: [String!]!) {
  subscribeWebhooks(installationId: $installation, eventTypes: $types) { secret } }"""


@dataclass(frozen=True)
class Subscription:
    installation: uuid.UUID
    event_types: frozenset[str]


async def install_apps(
    d: Deployment, client: httpx.AsyncClient, tenants: list[uuid.UUID]
) -> dict[uuid.UUID, list[Subscription]]:
    """Register the partner apps (an operator act), install and subscribe them through
    the servers; each tenant's subscriptions."""
    subscriptions: dict[uuid.UUID, list[Subscription]] = {tenant: [] for tenant in tenants}
    for name, (where, event_types) in APPS.items():
        registered = await register_client(
            d.platform.db,
            d.platform.registry,
            name=name,
            redirect_uris=["https://partner.example/cb"],
            scopes=["customers:read", "webhooks:subscribe"],
            webhook_url=f"{d.receiver_url}/{name}",
            outbound=d.platform.outbound,
        )
        for index in where:
            token = d.token(tenants[index])
            installed = await d.ok(client, index, INSTALL, {"client": registered.client.client_id}, token)
            installation = uuid.UUID(installed["installApp"]["id"])
            variables = {"installation": str(installation), "types": event_types}
            subscribed = await d.ok(client, index + 1, SUBSCRIBE, variables, token)
            d.receiver.secrets[subscribed["subscribeWebhooks"]["secret"]] = installation
            subscriptions[tenants[index]].append(Subscription(installation, frozenset(event_types)))
    return subscriptions


async def send_changes(d: Deployment, client: httpx.AsyncClient, tenants: list[uuid.UUID]) -> int:
    """Create, update and archive customers of every tenant, each change to the other
    server than the one before, many at once; the number of changes sent."""
    in_flight = asyncio.Semaphore(IN_FLIGHT)
    sent = 0

    async def change(server: int, query: str, variables: dict[str, Any], token: str) -> dict[str, Any]:
        nonlocal sent
        async with in_flight:
            data = await d.ok(client, server, query, variables, token)
        sent += 1
        return data

    async def life(index: int, tenant: uuid.UUID, n: int) -> None:
        token, server = d.token(tenant), index + n
        person = {"kind": "PERSON", "givenName": f"Customer {n}", "email": f"c{n}@t{index}.example"}
        created = await change(server, CREATE, {"input": person}, token)
        customer = created["createCustomer"]["id"]
        if n in UPDATED:
            await change(server + 1, UPDATE, {"id": customer}, token)
        if n in ARCHIVED:
            await change(server + 2, ARCHIVE, {"id": customer}, token)

    await asyncio.gather(
        *(life(index, tenant, n) for index, tenant in enumerate(tenants) for n in range(CUSTOMERS))
    )
    return sent


def client_of_the_servers() -> httpx.AsyncClient:
    """An HTTP client that drops an idle connection before uvicorn does (it closes them
    after 5 s): reusing one the server is closing at that moment fails the request."""
    return httpx.AsyncClient(timeout=30, limits=httpx.Limits(keepalive_expiry=2))


EVENT_JOBS = ("dispatch:", "deliver:", "webhook:")
"""The ids of the jobs events cause (crmkit.jobs): the work this test waits for. Cron
jobs (``cron:``, ``crmkit:``) of every installed plugin come and go all the time."""


async def quiet(d: Deployment) -> bool:
    """No event job queued, deferred or running in Redis, twice in a row."""
    import redis.asyncio as redis

    client = redis.from_url(d.redis_url)
    try:
        for _ in range(2):
            queued = [job.decode() async for job, _ in client.zscan_iter("arq:queue")]
            running = [
                key.decode().removeprefix("arq:in-progress:")
                async for key in client.scan_iter("arq:in-progress:*")
            ]
            if any(job.startswith(EVENT_JOBS) for job in (*queued, *running)):
                return False
            await asyncio.sleep(0.5)
        return True
    finally:
        await client.aclose()


@dataclass
class TenantRecord:
    """What one tenant's transactions show once the workers are done."""

    events: list[OutboxEvent]
    deliveries: list[EventDelivery]
    archive_notes: list[Note]
    failures: list[HandlerFailure]


async def read_tenant(d: Deployment, tenant: uuid.UUID) -> TenantRecord:
    """Read as the application (row-level security applies), in the tenant's transaction."""
    async with d.platform.db.tenant_session(tenant) as session:
        return TenantRecord(
            events=list(await session.scalars(select(OutboxEvent))),
            deliveries=list(await session.scalars(select(EventDelivery))),
            archive_notes=list(await session.scalars(select(Note).where(Note.author == SYSTEM_AUTHOR))),
            failures=list(await session.scalars(select(HandlerFailure))),
        )


# --- the tests -------------------------------------------------------------------------


async def test_every_change_is_handled_once_per_plugin_and_delivered_once_per_installation(
    deployment: Deployment,
) -> None:
    d = deployment
    async with client_of_the_servers() as client:
        tenants = [
            await d.onboard(client, index, f"scale-{index}", *(["notes"] if index < NOTES_TENANTS else []))
            for index in range(TENANTS)
        ]
        subscriptions = await install_apps(d, client, tenants)
        assert await send_changes(d, client, tenants) == 1000
    await wait_until(lambda: quiet(d), SETTLE_SECONDS, "the workers to finish", d)

    expected_arrivals: Counter[tuple[str, uuid.UUID]] = Counter()
    for index, tenant in enumerate(tenants):
        record = await read_tenant(d, tenant)
        assert record.failures == []
        assert all(event.relayed_at is not None for event in record.events)
        by_type = Counter(event.type for event in record.events)
        archived = [event for event in record.events if event.type == "customer_archived"]
        assert (by_type["customer_created"], by_type["customer_updated"], len(archived)) == (40, 30, 30)
        delivered = Counter((delivery.event_id, delivery.plugin) for delivery in record.deliveries)
        if index < NOTES_TENANTS:  # one handling per archive event, one note per archive
            assert delivered == Counter((event.id, "notes") for event in archived)
            assert sorted(note.id for note in record.archive_notes) == sorted(event.id for event in archived)
            assert sorted(str(note.customer_id) for note in record.archive_notes) == sorted(
                event.subject_id for event in archived
            )
            assert by_type["notes_note_added"] == 30
        else:  # the plugin is not enabled here: nothing handled it
            assert delivered == Counter() and record.archive_notes == [] and by_type["notes_note_added"] == 0
        for subscription in subscriptions[tenant]:
            for event in record.events:
                if event.type in subscription.event_types:
                    expected_arrivals[(str(event.id), subscription.installation)] += 1
    assert d.receiver.bad == 0
    assert Counter(d.receiver.arrivals) == expected_arrivals
    assert sum(expected_arrivals.values()) == 6 * 30 + 6 * 70
    assert not d.crashed()


async def test_a_plugin_enabled_while_both_serve_is_served_by_both(deployment: Deployment) -> None:
    d = deployment
    async with client_of_the_servers() as client:
        tenant = await d.onboard(client, 0, "scale-late")
        token = d.token(tenant)
        for server in (0, 1):  # both have served the tenant without the plugin
            refused = (await d.gql(client, server, NOTES_QUERY, {}, token)).json()
            assert refused["errors"][0]["extensions"]["code"] == "PLUGIN_NOT_ENABLED"
        d.cli("plugins", "enable", "scale-late", "notes")
        person = {"input": {"kind": "PERSON", "givenName": "Late"}}
        customer = (await d.ok(client, 1, CREATE, person, token))["createCustomer"]["id"]
        await d.ok(client, 0, ARCHIVE, {"id": customer}, token)

        async def noted() -> bool:  # the workers handle the tenant's events with it, too
            data = await d.ok(client, 1, NOTES_QUERY, {}, token)
            return [n["body"] for n in data["customers"]["nodes"][0]["notes"]] == ["Customer archived."]

        await wait_until(noted, SETTLE_SECONDS, "the archive note", d)
        await d.ok(client, 0, NOTES_QUERY, {}, token)


async def test_a_tenant_suspended_through_one_server_is_refused_by_both(deployment: Deployment) -> None:
    d = deployment
    query = "{ customers(first: 1) { nodes { id } } }"
    async with client_of_the_servers() as client:
        tenant = await d.onboard(client, 1, "scale-paused")
        token = d.token(tenant)
        for server in (0, 1):
            await d.ok(client, server, query, {}, token)
        await d.operator(client, 0, 'mutation { suspendTenant(slug: "scale-paused") { status } }')
        for server in (0, 1):
            refused = await d.gql(client, server, query, {}, token)
            assert refused.status_code == 401
            assert refused.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
        await d.operator(client, 1, 'mutation { reactivateTenant(slug: "scale-paused") { status } }')
        token = d.token(tenant)  # suspending revoked the tokens issued before it
        for server in (0, 1):
            await d.ok(client, server, query, {}, token)


async def test_a_token_revoked_by_the_cli_is_refused_by_both_servers(deployment: Deployment) -> None:
    """Each server has seen the token and keeps it as not revoked (its access cache): the
    revocation, made by a third process, reaches both as it commits."""
    d = deployment
    query = "{ customers(first: 1) { nodes { id } } }"
    async with client_of_the_servers() as client:
        tenant = await d.onboard(client, 0, "scale-revoked")
        token, kept = d.token(tenant), d.token(tenant)
        for server in (0, 1, 0, 1):
            await d.ok(client, server, query, {}, token)
        d.cli("token", "revoke", token)
        for server in (0, 1):
            refused = await d.gql(client, server, query, {}, token)
            assert refused.status_code == 401
            assert refused.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
            await d.ok(client, server, query, {}, kept)
