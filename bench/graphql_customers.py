"""Benchmark: a 50-customer GraphQL page against a bare litestar endpoint doing the same SQL.

A figure, not a pass/fail test. For each backend (a SQLite temp file, then PostgreSQL
at ``postgresql+asyncpg://postgres@127.0.0.1:5432/crmkit_bench`` when reachable) it

1. creates the schema, a tenant with the ``notes`` plugin enabled, 50 customers (through
   the core's ``create_customer`` and the tenant's hooks) and a note or two on some;
2. serves :func:`bench_app` in ONE uvicorn process on a free loopback port: crmkit's own
   app plus ``GET /bare``, a plain litestar handler that validates the same bearer
   token and runs the same statements (tenant state, the customers page with its tags
   ``selectin``, the notes batch) and answers the same JSON; and ``GET /stats``: the
   SQL the latest request of each path ran (a ``before_cursor_execute`` listener, the
   request found through a context variable, so background jobs are not counted),
   and the server's CPU and GC seconds;
3. checks once that both endpoints answer the same data with the same statements;
4. drives each endpoint from another process (``wrk`` when installed, else this file's
   own asyncio client started as a subprocess) with 8 keep-alive connections: a
   warm-up, then the measured time in 2-second rounds alternating the endpoints, so
   drift of a shared machine hits both alike;
5. prints requests/s of both, the server's CPU time per request (``time.process_time``
   read through ``/stats`` around each round: steadier than req/s on a noisy machine)
   and the part of it the garbage collector took, the ratio graphql/bare of each, and
   SQL statements per request.

The ratio is the figure to read: the bare endpoint is what the same work costs
without GraphQL, so 1 - ratio is the share of a request the GraphQL layer takes.
With ``--profile`` the server also runs cProfile over the GraphQL load and the top
functions are printed.

Run: ``.venv/bin/python bench/graphql_customers.py [--seconds N] [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
from crmkit_notes.graphql import READ as NOTES_READ
from crmkit_notes.models import Note
from crmkit_notes.service import add_note
from crmkit_notes.settings import NotesSettings
from litestar import Litestar, Request, Response, get
from litestar.types import ASGIApp, Receive, Scope, Send
from sqlalchemy import event, select

from crmkit import migrations
from crmkit.app import create_app
from crmkit.auth.tokens import issue_for_tenant
from crmkit.core.customers import service
from crmkit.core.customers.graphql import READ
from crmkit.core.customers.models import Customer, CustomerKind, LifecycleStage
from crmkit.errors import Unauthenticated
from crmkit.graphql.handler import authenticate
from crmkit.platform import Platform
from crmkit.plugins import enablement
from crmkit.settings import Settings
from crmkit.tenants.models import TenantStatus
from crmkit.tenants.service import create_tenant, load_state

# --- what is measured ---------------------------------------------------------------

CUSTOMERS = 50
CONNECTIONS = 8
ROUND_SECONDS = 2  # measured time is split into rounds of about this, endpoints alternating
SLUG = "bench-bank"
QUERY = (
    "{ customers(first: 50) { nodes { id displayName email lifecycleStage tags createdAt notes { body } } } }"
)
PG_ADMIN = {"user": "postgres", "host": "127.0.0.1", "port": 5432, "database": "postgres"}
PG_DATABASE = "crmkit_bench"
PG_URL = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{PG_DATABASE}"
PROFILE_ENV = "CRMKIT_BENCH_PROFILE"
HERE = Path(__file__).resolve().parent


# --- the server side: bench_app() runs inside the uvicorn process --------------------


class StatementRecorder:
    """Records the SQL statements each HTTP request sends (a ``before_cursor_execute``
    listener), keeping the latest request's per path.

    The request's list travels in a context variable, which the tasks a request starts
    (data loader batches) inherit; background jobs (the in-process cron) start outside
    any request, so their statements are not counted.
    """

    def __init__(self) -> None:
        self.current: ContextVar[list[str] | None] = ContextVar("bench_sql", default=None)
        self.last: dict[str, list[str]] = {}

    def __call__(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements = self.current.get()
        if statements is not None:
            statements.append(" ".join(statement.split()))

    def wrap(self, app: ASGIApp) -> ASGIApp:
        async def recording(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            statements: list[str] = []
            token = self.current.set(statements)
            try:
                await app(scope, receive, send)
            finally:
                self.current.reset(token)
                self.last[scope["path"]] = statements

        return recording


STATEMENTS = StatementRecorder()


class GcTimer:
    """Adds up the time the garbage collector pauses the server (a ``gc.callbacks`` entry)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started


GC = GcTimer()


def _json(body: dict[str, Any], status: int = 200) -> Response[bytes]:
    """Serialised exactly as crmkit's GraphQL handler does."""
    return Response(
        content=json.dumps(body, separators=(",", ":"), default=str).encode(),
        status_code=status,
        media_type="application/json",
    )


@get("/bare", include_in_schema=False)
async def bare(request: Request[Any, Any, Any]) -> Response[bytes]:
    """The GraphQL query's answer, hand-written: same token check, same statements."""
    platform = request.app.state.platform
    try:
        principal = authenticate(request, request.app.state.tokens)
    except Unauthenticated as exc:
        return _json({"errors": [{"message": exc.message}]}, 401)
    if not {READ, NOTES_READ} <= principal.scopes:
        return _json({"errors": [{"message": "missing scope"}]}, 403)
    async with platform.db.session_for(principal.tenant_id) as session:
        await session.begin()
        state = await load_state(session, principal.tenant_id)
        if state is None or state.status is not TenantStatus.ACTIVE:
            return _json({"errors": [{"message": "tenant unavailable"}]}, 401)
        rows = (
            await session.scalars(
                select(Customer)
                .order_by(Customer.id)
                .limit(CUSTOMERS + 1)
                .where(Customer.archived_at.is_(None))
            )
        ).all()
        customers = rows[:CUSTOMERS]
        notes: defaultdict[uuid.UUID, list[Note]] = defaultdict(list)
        ids = [c.id for c in customers]
        for note in await session.scalars(select(Note).where(Note.customer_id.in_(ids)).order_by(Note.id)):
            notes[note.customer_id].append(note)
        nodes = [
            {
                "id": str(c.id),
                "displayName": c.display_name,
                "email": c.email,
                "lifecycleStage": c.lifecycle_stage.name,
                "tags": c.tag_names,
                "createdAt": c.created_at.isoformat(),
                "notes": [{"body": n.body} for n in notes[c.id]],
            }
            for c in customers
        ]
        await session.commit()
    await platform.db.committed(session)
    return _json({"data": {"customers": {"nodes": nodes}}})


@get("/stats", include_in_schema=False)
async def stats() -> dict[str, Any]:
    """The SQL of the latest request per path; the server's CPU and GC seconds so far."""
    return {"statements": STATEMENTS.last, "cpu": time.process_time(), "gc": GC.seconds}


def _start_profiler(app: Litestar, path: str) -> None:
    """cProfile the whole server process while ``POST /profile/on`` .. ``/profile/off``."""
    import cProfile

    profiler = cProfile.Profile()

    @get("/profile/{action:str}", include_in_schema=False)
    async def toggle(action: str) -> dict[str, str]:
        if action == "on":
            profiler.enable()
        else:
            profiler.disable()
            profiler.dump_stats(path)
        return {"profile": action}

    app.register(toggle)


def bench_app() -> ASGIApp:
    """uvicorn's factory: crmkit's app for the platform in the environment, plus the
    bench endpoints, recording each request's SQL."""
    platform = Platform(Settings())
    event.listen(platform.db.sync_engine, "before_cursor_execute", STATEMENTS)
    gc.callbacks.append(GC)
    app = create_app(platform)
    app.register(bare)
    app.register(stats)
    app.on_shutdown.append(platform.close)
    if os.environ.get(PROFILE_ENV):
        _start_profiler(app, os.environ[PROFILE_ENV])
    return STATEMENTS.wrap(app)


# --- setting up a database ----------------------------------------------------------


@dataclass
class Target:
    """One backend to measure: its URL and the environment the server gets."""

    name: str
    database_url: str
    workdir: Path

    def env(self) -> dict[str, str]:
        """The server's environment. Development mode only so crmkit generates its keys
        (token signing, audit, ...) in ``workdir``; on the measured path it changes
        nothing (it enables GraphiQL and field suggestions in errors)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("CRMKIT_")}
        env.update(
            CRMKIT_DATABASE_URL=self.database_url,
            CRMKIT_DATA_DIR=str(self.workdir),
            CRMKIT_DEV_MODE="true",
        )
        return env


async def seed(target: Target) -> str:
    """Schema, tenant, notes enabled, 50 customers with some notes; returns a token."""
    settings = Settings(database_url=target.database_url, data_dir=target.workdir, dev_mode=True)
    platform = Platform(settings)
    try:
        await migrations.upgrade(platform.db.engine, platform.registry)
        tenant = await create_tenant(platform.db, SLUG, "Bench Bank")
        await enablement.enable(platform, SLUG, "notes")
        stages = list(LifecycleStage)
        async with platform.tenant_scope(tenant.id) as scope:
            for i in range(CUSTOMERS):
                customer = await service.create_customer(
                    scope.hooks,
                    kind=CustomerKind.PERSON,
                    given_name=f"Given{i}",
                    family_name=f"Family{i}",
                    email=f"person{i}@example.com",
                    tags=["premium", "savings"][: i % 3],
                    lifecycle_stage=stages[i % len(stages)],
                )
                for n in range(i % 3 if i % 2 == 0 else 0):  # 0, 1 or 2 notes
                    await add_note(
                        scope.session,
                        NotesSettings(),
                        customer_id=customer.id,
                        body=f"Note {n} on customer {i}.",
                        author="bench",
                    )
        drain = getattr(platform.queue, "drain", None)
        if drain is not None:
            await drain()
        return await issue_for_tenant(platform, SLUG, None, subject="bench")
    finally:
        await platform.close()


async def create_pg_database() -> bool:
    """A fresh ``crmkit_bench`` database; False when PostgreSQL is unreachable."""
    import asyncpg

    try:
        conn = await asyncpg.connect(**PG_ADMIN, timeout=3)
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        print(f"PostgreSQL skipped: cannot connect to 127.0.0.1:5432 as postgres ({exc})")
        return False
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {PG_DATABASE} WITH (FORCE)")
        await conn.execute(f"CREATE DATABASE {PG_DATABASE}")
    finally:
        await conn.close()
    return True


async def drop_pg_database() -> None:
    import asyncpg

    conn = await asyncpg.connect(**PG_ADMIN, timeout=3)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {PG_DATABASE} WITH (FORCE)")
    finally:
        await conn.close()


# --- the server process -------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def server(target: Target, profile: Path | None) -> Iterator[str]:
    """Run bench_app in one uvicorn process; yields its base URL."""
    port = free_port()
    env = target.env()
    if profile is not None:
        env[PROFILE_ENV] = str(profile)
    command = [
        sys.executable, "-m", "uvicorn", "graphql_customers:bench_app", "--factory",
        "--app-dir", str(HERE), "--host", "127.0.0.1", "--port", str(port),
        "--workers", "1", "--log-level", "warning", "--no-access-log",
    ]  # fmt: skip
    process = subprocess.Popen(command, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the server exited with code {process.returncode}")
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not start within 30 s")
            time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --- one request each, checked ------------------------------------------------------


@dataclass
class Endpoint:
    name: str
    method: str
    path: str
    body: bytes
    headers: dict[str, str]


def endpoints(token: str) -> list[Endpoint]:
    auth = {"Authorization": f"Bearer {token}"}
    return [
        Endpoint(
            "graphql",
            "POST",
            "/graphql",
            json.dumps({"query": QUERY}).encode(),
            {**auth, "Content-Type": "application/json"},
        ),
        Endpoint("bare", "GET", "/bare", b"", auth),
    ]


def call_once(client: httpx.Client, endpoint: Endpoint) -> tuple[dict[str, Any], list[str]]:
    """The endpoint's answer and the SQL statements it ran."""
    response = client.request(
        endpoint.method, endpoint.path, content=endpoint.body or None, headers=endpoint.headers
    )
    assert response.status_code == 200, (endpoint.name, response.status_code, response.text)
    return response.json(), client.get("/stats").json()["statements"][endpoint.path]


def check(base: str, eps: list[Endpoint]) -> dict[str, list[str]]:
    """Asserts both endpoints answer the same data with the same statements."""
    with httpx.Client(base_url=base, timeout=30) as client:
        answers = {e.name: call_once(client, e) for e in eps}
        refused = client.get("/bare", headers={"Authorization": "Bearer not-a-token"})
        assert refused.status_code == 401, refused.status_code
    (graphql, graphql_sql), (bare_, bare_sql) = answers["graphql"], answers["bare"]
    assert "errors" not in graphql, graphql["errors"]
    nodes = graphql["data"]["customers"]["nodes"]
    assert len(nodes) == CUSTOMERS and any(n["notes"] for n in nodes), nodes[:2]
    assert graphql == bare_, "the two endpoints answer differently"
    if graphql_sql != bare_sql:
        sql = "\n".join(f"  {name}: {s[:100]}" for name in answers for s in answers[name][1])
        raise AssertionError(f"the endpoints ran different SQL; make /bare match:\n{sql}")
    return {"graphql": graphql_sql, "bare": bare_sql}


# --- load: wrk, or this file's own client in a subprocess ---------------------------


@dataclass
class Load:
    requests: int
    seconds: float
    errors: int
    server_cpu: float = 0.0  # seconds of the server process's CPU time
    server_gc: float = 0.0  # seconds of it the garbage collector took


@dataclass
class ClientSpec:
    host: str
    port: int
    method: str
    path: str
    body: str
    headers: dict[str, str]
    connections: int
    seconds: float


def run_wrk(base: str, endpoint: Endpoint, seconds: float, workdir: Path) -> Load:
    script = workdir / f"{endpoint.name}.lua"
    lines = [f'wrk.method = "{endpoint.method}"']
    if endpoint.body:
        lines.append(f"wrk.body = [==[{endpoint.body.decode()}]==]")
    lines += [f'wrk.headers["{k}"] = "{v}"' for k, v in endpoint.headers.items()]
    script.write_text("\n".join(lines) + "\n")
    command = [
        "wrk", "-t1", f"-c{CONNECTIONS}", f"-d{max(1, round(seconds))}s", "--timeout", "10s",
        "-s", str(script), base + endpoint.path,
    ]  # fmt: skip
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    done = re.search(r"(\d+) requests in ([\d.]+)(m?s)", out)
    if done is None:
        raise RuntimeError(f"cannot read wrk's output:\n{out}")
    elapsed = float(done[2]) / (1000 if done[3] == "ms" else 1)
    errors = sum(int(n) for n in re.findall(r"(?:Non-2xx or 3xx responses|timeout): (\d+)", out))
    errors += sum(int(n) for n in re.findall(r"(?:connect|read|write) (\d+)", out))
    return Load(int(done[1]), elapsed, errors)


def run_python_client(base: str, endpoint: Endpoint, seconds: float) -> Load:
    host, port = base.removeprefix("http://").split(":")
    spec = ClientSpec(
        host, int(port), endpoint.method, endpoint.path, endpoint.body.decode(),
        endpoint.headers, CONNECTIONS, seconds,
    )  # fmt: skip
    out = subprocess.run(
        [sys.executable, __file__, "--client-spec", json.dumps(asdict(spec))],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return Load(**json.loads(out))


async def client_main(spec: ClientSpec) -> Load:
    """Keep-alive HTTP/1.1 over raw asyncio streams: little client work per request."""
    body = spec.body.encode()
    head = f"{spec.method} {spec.path} HTTP/1.1\r\nHost: {spec.host}:{spec.port}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in spec.headers.items())
    request = (head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    counted = {"requests": 0, "errors": 0}

    async def connection(until: float) -> None:
        reader, writer = await asyncio.open_connection(spec.host, spec.port)
        try:
            while time.perf_counter() < until:
                writer.write(request)
                header = await reader.readuntil(b"\r\n\r\n")
                length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", header)
                assert length is not None, header
                await reader.readexactly(int(length[1]))
                counted["requests" if header[9:12] == b"200" else "errors"] += 1
        finally:
            writer.close()

    start = time.perf_counter()
    until = start + spec.seconds
    await asyncio.gather(*(connection(until) for _ in range(spec.connections)))
    return Load(counted["requests"], time.perf_counter() - start, counted["errors"])


def drive(base: str, endpoint: Endpoint, seconds: float, use_wrk: bool, workdir: Path) -> Load:
    """Load ``endpoint`` for ``seconds`` from another process."""
    if use_wrk:
        return run_wrk(base, endpoint, seconds, workdir)
    return run_python_client(base, endpoint, seconds)


def server_times(base: str) -> tuple[float, float]:
    """The server's CPU and GC seconds so far."""
    stats = httpx.get(f"{base}/stats").json()
    return float(stats["cpu"]), float(stats["gc"])


def measure(
    base: str, eps: list[Endpoint], seconds: float, warmup: float, use_wrk: bool, workdir: Path
) -> dict[str, Load]:
    """Warm-up, then rounds alternating the endpoints (so a shared machine's drift hits
    both alike); totals per endpoint, with the server CPU time each took."""
    rounds = max(1, round(seconds / ROUND_SECONDS))
    totals = {e.name: Load(0, 0.0, 0) for e in eps}
    for round_ in range(rounds):
        for e in eps:
            if round_ == 0:
                drive(base, e, warmup, use_wrk, workdir)
            cpu, gc_ = server_times(base)
            load = drive(base, e, seconds / rounds, use_wrk, workdir)
            cpu_after, gc_after = server_times(base)
            total = totals[e.name]
            total.server_cpu += cpu_after - cpu
            total.server_gc += gc_after - gc_
            total.requests += load.requests
            total.seconds += load.seconds
            total.errors += load.errors
    return totals


def print_profile(path: Path, top: int = 25) -> None:
    import pstats

    print(f"\n  cProfile of the server under GraphQL load (top {top} by own time):")
    stats = pstats.Stats(str(path))
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)


def profile_graphql(base: str, endpoint: Endpoint, seconds: float, use_wrk: bool, workdir: Path) -> None:
    httpx.get(f"{base}/profile/on")
    load = drive(base, endpoint, seconds, use_wrk, workdir)
    httpx.get(f"{base}/profile/off")
    print(f"\n  profiled {load.requests} GraphQL requests")


# --- the whole run ------------------------------------------------------------------


def run_target(target: Target, args: argparse.Namespace, use_wrk: bool) -> float | None:
    started = time.monotonic()
    token = asyncio.run(seed(target))
    profile = target.workdir / "graphql.prof" if args.profile else None
    with server(target, profile) as base:
        eps = endpoints(token)
        statements = check(base, eps)
        totals = measure(base, eps, args.seconds, args.warmup, use_wrk, target.workdir)
        if profile is not None:
            profile_graphql(base, eps[0], args.seconds, use_wrk, target.workdir)
    rates = {name: load.requests / load.seconds for name, load in totals.items()}
    cpu_ms = {name: 1000 * load.server_cpu / load.requests for name, load in totals.items()}
    gc_ms = {name: 1000 * load.server_gc / load.requests for name, load in totals.items()}
    ratio = rates["graphql"] / rates["bare"]
    print(f"\n{target.name}  ({time.monotonic() - started:.0f} s)")
    for name, load in totals.items():
        errors = f"  ERRORS {load.errors}" if load.errors else ""
        print(
            f"  {name:8} {rates[name]:7.1f} req/s  {cpu_ms[name]:6.2f} ms server CPU/request"
            f" (GC {gc_ms[name]:.2f})"
            f"  {len(statements[name])} SQL statements/request"
            f"  ({load.requests} requests in {load.seconds:.1f} s){errors}"
        )
    print(
        f"  ratio graphql/bare: {ratio:.2f} in req/s, "
        f"{cpu_ms['bare'] / cpu_ms['graphql']:.2f} in server CPU per request"
    )
    if args.verbose:
        for sql in statements["graphql"]:
            print(f"    {sql[:160]}")
    if profile is not None:
        print_profile(profile)
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured time per endpoint")
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up per endpoint")
    parser.add_argument("--quick", action="store_true", help="2 s per endpoint, 1 s warm-up")
    parser.add_argument("--backend", choices=["sqlite", "postgres", "all"], default="all")
    parser.add_argument("--client", choices=["auto", "wrk", "python"], default="auto")
    parser.add_argument("--profile", action="store_true", help="cProfile the GraphQL path")
    parser.add_argument("-v", "--verbose", action="store_true", help="print the SQL")
    parser.add_argument("--client-spec", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client_spec:  # this process is the load generator
        load = asyncio.run(client_main(ClientSpec(**json.loads(args.client_spec))))
        print(json.dumps(asdict(load)))
        return
    if args.quick:
        args.seconds, args.warmup = 2.0, 1.0
    use_wrk = args.client == "wrk" or (args.client == "auto" and shutil.which("wrk") is not None)
    client = "wrk" if use_wrk else "asyncio client"
    print(
        f"{CUSTOMERS} customers per page, {CONNECTIONS} connections, {args.seconds:g} s per "
        f"endpoint after {args.warmup:g} s warm-up, load by {client}"
    )
    with tempfile.TemporaryDirectory(prefix="crmkit-bench-") as tmp:
        if args.backend in ("sqlite", "all"):
            workdir = Path(tmp, "sqlite")
            workdir.mkdir()
            url = f"sqlite+aiosqlite:///{workdir / 'bench.db'}"
            run_target(Target("SQLite", url, workdir), args, use_wrk)
        if args.backend in ("postgres", "all") and asyncio.run(create_pg_database()):
            workdir = Path(tmp, "postgres")
            workdir.mkdir()
            try:
                run_target(Target("PostgreSQL", PG_URL, workdir), args, use_wrk)
            finally:
                asyncio.run(drop_pg_database())


if __name__ == "__main__":
    main()
