"""Benchmark: a 50-customer GraphQL page against a bare litestar endpoint doing the same
work, and against the raw limit: the same SQL through the driver itself.

A figure, not a pass/fail test. For each backend (a SQLite temp file, then PostgreSQL
at ``postgresql+asyncpg://postgres@127.0.0.1:5432/crmkit_bench`` when reachable, the
server connecting there as a login role in crmkit's application role, under row-level
security as in production) it

1. creates the schema, a tenant with the ``notes`` plugin enabled, 50 customers (through
   the core's ``create_customer``: personal data encrypted under per-customer data keys)
   and a note or two on some, in a fresh temp data dir where crmkit generates its
   development keys (master, token signing, audit signing); issues a token with
   ``customers:read notes:read pii:identity pii:contact``;
2. serves :func:`bench_app` in ONE uvicorn process on a free loopback port: crmkit's own
   app, ``GET /bare`` and ``GET /raw`` (below) and ``GET /stats``: the SQL the latest request of each
   path ran (a ``before_cursor_execute`` listener, the request found through a context
   variable, so background jobs are not counted), the server's CPU and GC seconds, and
   the exceptions that became 500s;
3. checks that the three endpoints answer the same JSON with the same statements (after
   one warm-up call each; NOT A VALID COMPARISON when they differ) and leave the same
   access-log audit events;
4. drives each endpoint from another process (``wrk`` when installed, else this file's
   own asyncio client started as a subprocess) with 8 keep-alive connections
   (``--connections``): a warm-up, then the measured time in 2-second rounds
   alternating the endpoints, so drift of a shared machine hits both alike;
5. prints requests/s answered 200 of each, the server's CPU time per request
   (``time.process_time`` read through ``/stats`` around each round: steadier than
   req/s on a noisy machine) and the part the garbage collector took, the ratios
   graphql/bare and graphql/raw of each, SQL statements per request, failures and their
   causes, and crmkit's verdict on the tenant's audit chain after the run.

The server's GraphQL rate limit is set high enough to refuse none of the load (the
limiter itself still runs on every GraphQL request, as in production).

What the endpoints do, per request:

* ``POST /graphql`` (crmkit's handler) with
  ``{ customers(first: 50) { nodes { id displayName email lifecycleStage tags createdAt
  notes { body } } } }``: reads and parses the body, validates the ES256 token,
  opens a tenant session, binds the actor, ``Platform.bind`` (tenant state from the
  access cache; tenant key from the KeyRing's cache; plugin hook caller), checks the
  token is not revoked (the access cache again), parses/validates (cached)/executes the
  query: scope checks, the page read as plain rows (``customer_page``: customers with
  their keys joined, then their tags), ``personal`` decrypted per customer,
  ``displayName`` and ``email`` through the masking resolvers that record the
  disclosure, the notes loaded once for the page (``crmkit.customer_field``); then one
  access-log event (``trail.note``) and commit, whose ``before_commit`` appends it to
  the audit chain.
* ``GET /bare``: the same token validation (``TokenService.verify``) and scope check,
  a tenant session with the same actor bound, ``platform.access.state`` and
  ``session.info[TENANT_KEYS] = await platform.keyring.tenant_keys(...)`` as
  ``Platform.bind`` does (it builds no hook caller: no hook runs on this read), the
  handler's revocation check (``platform.access.ensure_not_revoked``), the
  same page read (crmkit's ``customer_page``), the same notes batch,
  decryption by crmkit itself (``customer.personal``, ``customer.display_name``),
  crmkit's ``mask``/scope decision per field, the same ``trail.note`` and commit, and
  the same JSON serialised as crmkit's handler does.
* ``GET /raw``, the limit: the same token check, then the same SQL written by hand and
  sent through the driver itself (asyncpg on PostgreSQL, sqlite3 on SQLite) in one
  transaction: no ORM, no GraphQL. The tenant's state and the token's revocation are
  asked once and then known, as crmkit's access cache knows them (no other process
  changes them during the run); customers with their keys joined, their tags, the
  notes; each data key unwrapped once per window (crmkit's ``DataKeyCache``), the
  personal data and the notes opened with crmkit's own ``DataKey``, masked by crmkit's
  ``mask`` and scope rule; the same two access-log events appended to the tenant's
  chain by crmkit's own statement (on PostgreSQL its one-statement append compiled for
  asyncpg, with the parameters crmkit computes; on SQLite the head's upsert and the
  INSERT, hashed by crmkit's ``link_hash``); the same JSON.

All three run the same statements (by count for the raw one): on PostgreSQL the
tenant ``set_config`` for row-level security first, then customers with their keys,
tags, notes, and the audit append. The process's first request also reads the tenant
state, the revocation and the tenant key.

On SQLite, concurrent requests of one tenant race in crmkit's audit append (the head
is read outside any write transaction, so two requests take the same ``seq`` and one
fails with IntegrityError): the run then says NOT A VALID COMPARISON and lists the
errors; ``--backend sqlite --connections 1`` measures it without the race.

The ratios are the figures to read: the bare endpoint is what the same work costs
without GraphQL, so 1 - graphql/bare is the share of a request the GraphQL layer
takes; the raw one is what the same statements, decryption and JSON cost with neither
the ORM nor GraphQL.
With ``--profile`` the server also runs cProfile over the GraphQL load and the top
functions are printed.

Run: ``.venv/bin/python bench/graphql_customers.py [--seconds N] [--quick]
[--backend sqlite|postgres|all] [--connections N] [--profile] [-v]``.
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
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import httpx
import postgres_setup
from crmkit_notes.graphql import NOTES
from crmkit_notes.graphql import READ as NOTES_READ
from crmkit_notes.service import add_note
from litestar import Litestar, Request, Response, get
from litestar.types import ASGIApp, Receive, Scope, Send
from sqlalchemy import event, select
from sqlalchemy.dialects.postgresql import asyncpg as asyncpg_dialect

from crmkit import migrations, read_rows
from crmkit.app import create_app
from crmkit.clock import utcnow
from crmkit.core.audit import chain, trail
from crmkit.core.audit.models import GENESIS as AUDIT_GENESIS
from crmkit.core.audit.models import AuditEvent
from crmkit.core.audit.trail import Actor, bind_actor, hashed_fields, link_hash, note
from crmkit.core.customers import pages, service
from crmkit.core.customers.graphql import READ
from crmkit.core.customers.models import CustomerKind, LifecycleStage
from crmkit.core.customers.pages import CustomerRow
from crmkit.core.customers.personal import (
    CLASS_OF,
    TENANT_KEYS,
    InformationClass,
    PersonalData,
    mask,
    unmask_scope,
)
from crmkit.crypto import DataKeyCache, TenantKeys, unwrap_tenant_key
from crmkit.errors import Unauthenticated
from crmkit.graphql.errors import error_body
from crmkit.http.graphql import bearer_token
from crmkit.platform import Platform, enablement
from crmkit.platform.operator_tokens import issue_for_tenant
from crmkit.plugins.info import TenantContext
from crmkit.principal import Principal
from crmkit.settings import Settings
from crmkit.tenants.models import TenantStatus
from crmkit.tenants.service import create_tenant

# --- what is measured ---------------------------------------------------------------

CUSTOMERS = 50
CONNECTIONS = 8
ROUND_SECONDS = 2  # measured time is split into rounds of about this, endpoints alternating
SLUG = "bench-bank"
QUERY = (
    "{ customers(first: 50) { nodes { id displayName email lifecycleStage tags createdAt notes { body } } } }"
)
PG_DATABASE = "crmkit_bench"
PG_URL = postgres_setup.url(PG_DATABASE)
PG_ROLE = f"crmkit_bench_graphql_app_{os.getpid()}"
"""The server's login role on PostgreSQL (roles are cluster-wide: one per run)."""
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
EXCEPTIONS: Counter[str] = Counter()
"""Exceptions that became a 500, by path, type and first line (litestar logs none of
them outside debug mode)."""


async def count_exception(exc: Exception, scope: Scope) -> None:
    """An ``after_exception`` hook: runs only for requests that fail."""
    first_line = (str(exc).splitlines() or [""])[0][:140]
    EXCEPTIONS[f"{scope['path']}: {type(exc).__name__}: {first_line}"] += 1


def _json(body: dict[str, Any], status: int = 200) -> Response[bytes]:
    """Serialised exactly as crmkit's GraphQL handler does."""
    return Response(
        content=json.dumps(body, separators=(",", ":"), default=str).encode(),
        status_code=status,
        media_type="application/json",
    )


def _personal_value(
    customer: CustomerRow, name: str, scopes: frozenset[str], disclosed: tuple[set[uuid.UUID], set[str]]
) -> str | None:
    """What ``Customer.<name>``'s GraphQL resolver (crmkit's ``personal_field``) answers:
    the value crmkit decrypts (``customer.personal``), masked without the information
    class's scope, else noted as disclosed (``RequestContext.record_disclosure``)."""
    value = customer.display_name if name == "display_name" else getattr(customer.personal, name)
    if value is None or unmask_scope(CLASS_OF[name]) not in scopes:
        return mask(name, value)
    disclosed[0].add(customer.id)
    disclosed[1].add(name)
    return value


def _note_body(note_: Any, scopes: frozenset[str], disclosed: tuple[set[uuid.UUID], set[str]]) -> str | None:
    """What ``Note.body`` (``crmkit.personal_field`` of class contact) answers: the value
    opened with the customer's data key, masked or noted as disclosed like the above."""
    if note_.body is None or unmask_scope(InformationClass.CONTACT) not in scopes:
        return mask("body", note_.body)
    disclosed[0].add(note_.id)
    disclosed[1].add("body")
    return note_.body


@get("/bare", include_in_schema=False)
async def bare(request: Request[Any, Any, Any]) -> Response[bytes]:
    """The GraphQL query's answer, hand-written: same token check, same statements, same
    decryption and masking, same access-log audit event, same JSON."""
    platform: Platform = request.app.state.platform
    request_id = uuid.uuid4().hex
    try:
        principal = request.app.state.tokens.verify(bearer_token(request) or "")
    except Unauthenticated as exc:
        return _json({"errors": [error_body(exc.code, exc.message, request_id)]}, 401)
    if not {READ, NOTES_READ} <= principal.scopes:
        return _json({"errors": [error_body("FORBIDDEN", "missing scope", request_id)]}, 403)
    tenant_id = principal.tenant_id
    async with platform.db.session_for(tenant_id) as session:
        await session.begin()
        bind_actor(session, Actor.from_subject(principal.subject), request_id)
        # what Platform.bind does, less the plugin hook caller (no hook runs here)
        state = await platform.access.state(session, tenant_id)
        if state is None or state.status is not TenantStatus.ACTIVE:
            return _json({"errors": [error_body("UNAUTHENTICATED", "tenant unavailable", request_id)]}, 401)
        session.info[TENANT_KEYS] = await platform.keyring.tenant_keys(session, tenant_id)
        # the handler's revocation check
        try:
            await platform.access.ensure_not_revoked(session, principal)
        except Unauthenticated as exc:
            return _json({"errors": [error_body("UNAUTHENTICATED", exc.message, request_id)]}, 401)
        # the customers query's page read: customers with their keys, then their tags
        ctx = TenantContext(tenant_id=tenant_id, session=session, jobs=platform.queue)
        page = await pages.customer_page(ctx, service.CustomerFilter(), after=None, limit=CUSTOMERS + 1)
        customers = page[:CUSTOMERS]
        # crmkit_notes' load_notes batch: its statement, read as plain rows
        notes: defaultdict[uuid.UUID, list[Any]] = defaultdict(list)
        ids = [c.id for c in customers]
        for note_ in await read_rows(session, NOTES, {"ids": ids}):
            notes[note_.customer_id].append(note_)
        disclosed: tuple[set[uuid.UUID], set[str]] = (set(), set())
        notes_disclosed: tuple[set[uuid.UUID], set[str]] = (set(), set())
        nodes = [
            {
                "id": str(c.id),
                "displayName": _personal_value(c, "display_name", principal.scopes, disclosed),
                "email": _personal_value(c, "email", principal.scopes, disclosed),
                "lifecycleStage": c.lifecycle_stage.name,
                "tags": c.tag_names,
                "createdAt": c.created_at.isoformat(),
                "notes": [{"body": _note_body(n, principal.scopes, notes_disclosed)} for n in notes[c.id]],
            }
            for c in customers
        ]
        # the GraphQL handler's _log_disclosures: one access-log event per type shown
        for target_type, (shown, names) in (("Customer", disclosed), ("Note", notes_disclosed)):
            if shown:
                note(session, tenant_id, "read", target_type, [str(i) for i in shown], sorted(names))
        await session.commit()  # crmkit's before_commit appends the audit event
    await platform.db.committed(session)
    return _json({"data": {"customers": {"nodes": nodes}}})


# --- the raw limit: the same SQL through the driver, no ORM and no GraphQL ---------------

RAW_SQL = {
    "tenant": "SELECT set_config('crmkit.tenant_id', $1, true)",
    "state": (
        "SELECT t.status, p.plugin FROM tenants t LEFT JOIN tenant_plugins p"
        " ON p.tenant_id = t.id AND p.enabled WHERE t.id = $1"
    ),
    "revoked": (
        "SELECT key FROM oauth_revocations WHERE tenant_id = $1 AND key = ANY($2::varchar[])"
        " AND revoked_at >= $3 LIMIT 1"
    ),
    "tenant_key": "SELECT wrapped_key FROM tenant_keys WHERE tenant_id = $1",
    "customers": (
        "SELECT c.id, c.kind, c.pii, c.lifecycle_stage, c.created_at, k.wrapped_key FROM customers c"
        " LEFT JOIN customer_keys k ON k.tenant_id = c.tenant_id AND k.customer_id = c.id"
        " WHERE c.tenant_id = $1 AND c.erased_at IS NULL AND c.archived_at IS NULL ORDER BY c.id LIMIT $2"
    ),
    "tags": (
        "SELECT customer_id, tag FROM customer_tags WHERE tenant_id = $1 AND customer_id = ANY($2::uuid[])"
        " ORDER BY customer_id, tag"
    ),
    "notes": (
        "SELECT id, customer_id, body FROM notes WHERE tenant_id = $1 AND customer_id = ANY($2::uuid[])"
        " ORDER BY id"
    ),
    "head": (
        "INSERT INTO audit_heads (tenant_id, seq, hash) VALUES ($1, 0, $2)"
        " ON CONFLICT (tenant_id) DO UPDATE SET seq = audit_heads.seq RETURNING seq, hash"
    ),
    "events": (
        "INSERT INTO audit_events (tenant_id, seq, occurred_at, actor_type, actor_id, action, target_type,"
        " target_ids, fields, request_id, prev_hash, hash) VALUES {rows}"
    ),
}
_APPEND = trail._statements(asyncpg_dialect.dialect()).try_append
RAW_SQL["append"] = _APPEND.sql
APPEND_ORDER = list(_APPEND.names or ())
"""crmkit's own one-statement access-log append on PostgreSQL, as asyncpg receives it."""
"""The raw endpoint's statements on PostgreSQL (``$n`` parameters); on SQLite the same
with ``?`` and SQLite's types (:func:`_sqlite_sql`)."""


class RawDriver:
    """The raw endpoint's connections: an asyncpg pool on PostgreSQL, one sqlite3
    connection on SQLite (a request runs on it without yielding, so none interleave)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.postgres = url.startswith("postgresql")
        self._pool: Any = None
        self._sqlite: sqlite3.Connection | None = None
        self.tenant_keys: dict[uuid.UUID, TenantKeys] = {}
        """The raw side's tenant key, read and unwrapped once, as crmkit's KeyRing does;
        the data keys it unwraps are kept as crmkit keeps them (a DataKeyCache)."""
        self.data_keys = DataKeyCache()
        self.known: set[tuple[uuid.UUID, str]] = set()
        """Tenants found active and tokens found not revoked: asked once, as crmkit's
        access cache does (no other process changes them during the run)."""

    async def pool(self) -> Any:
        if self._pool is None:
            import asyncpg

            self._pool = await asyncpg.create_pool(
                self.url.replace("postgresql+asyncpg://", "postgresql://"),
                min_size=1,
                max_size=CONNECTIONS + 2,
            )
        return self._pool

    def sqlite(self) -> sqlite3.Connection:
        if self._sqlite is None:
            path = self.url.removeprefix("sqlite+aiosqlite:///")
            self._sqlite = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._sqlite.execute("PRAGMA busy_timeout=5000")
        return self._sqlite

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
        if self._sqlite is not None:
            self._sqlite.close()


def _sql(name: str, rows: int) -> str:
    """A raw statement on PostgreSQL; ``events`` with ``rows`` rows of 12 values (one
    multi-row INSERT, as the ORM's flush sends)."""
    if name != "events":
        return RAW_SQL[name]
    values = (", ".join(f"${12 * r + c}" for c in range(1, 13)) for r in range(rows))
    return RAW_SQL[name].format(rows=", ".join(f"({v})" for v in values))


def _sqlite_sql(name: str, rows: int) -> str:
    """A raw statement in SQLite's dialect: ``?`` parameters, lists as JSON arrays,
    uuids as the 32 hex digits SQLAlchemy stores there."""
    sql = _sql(name, rows)
    sql = sql.replace("$2::varchar[]", "SELECT value FROM json_each($2)").replace(
        "$2::uuid[]", "SELECT value FROM json_each($2)"
    )
    sql = sql.replace("= ANY(SELECT", "IN (SELECT").replace("set_config('crmkit.tenant_id', $1, true)", "$1")
    return re.sub(r"\$(\d+)", r"?\1", sql)


class RawRequest:
    """One raw request's statements, run through the driver and recorded like the
    ORM's (so ``/stats`` shows them too)."""

    def __init__(self, driver: RawDriver, connection: Any) -> None:
        self.driver = driver
        self.connection = connection
        self.recorded = STATEMENTS.current.get()

    def _record(self, name: str) -> None:
        if self.recorded is not None:
            self.recorded.append(f"raw {name}")

    async def fetch(self, name: str, *args: Any) -> list[Any]:
        self._record(name)
        if self.driver.postgres:
            return list(await self.connection.fetch(RAW_SQL[name], *args))
        return self.connection.execute(_sqlite_sql(name, 1), [_sqlite_value(a) for a in args]).fetchall()

    async def execute(self, name: str, *args: Any, rows: int = 1) -> None:
        self._record(name)
        if self.driver.postgres:
            await self.connection.execute(_sql(name, rows), *args)
        else:
            self.connection.execute(_sqlite_sql(name, rows), [_sqlite_value(a) for a in args])


def _sqlite_value(value: Any) -> Any:
    """A parameter as SQLAlchemy stores it in SQLite."""
    if isinstance(value, uuid.UUID):
        return value.hex
    if isinstance(value, list):
        return json.dumps([v.hex if isinstance(v, uuid.UUID) else v for v in value])
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
    return value


def _uuid(value: Any) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(hex=value)


def _datetime(value: Any) -> datetime:
    if isinstance(value, str):  # SQLite: naive UTC text
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    return cast(datetime, value)


async def _raw_page(
    raw: RawRequest, platform: Platform, principal: Principal, request_id: str
) -> dict[str, Any] | str:
    """The page's JSON, or why the request is refused (tenant unavailable, token revoked)."""
    tenant_id, scopes = principal.tenant_id, principal.scopes
    known = raw.driver.known
    if raw.driver.postgres:  # row-level security: crmkit names the tenant first
        await raw.fetch("tenant", str(tenant_id))
    if (tenant_id, "") not in known:
        state = await raw.fetch("state", tenant_id)
        if not state or state[0][0] != TenantStatus.ACTIVE.value:
            return "tenant unavailable"
        known.add((tenant_id, ""))
    if (tenant_id, principal.token_id) not in known:
        issued = datetime.fromtimestamp(principal.issued_at, UTC)
        if await raw.fetch("revoked", tenant_id, list(principal.revocation_keys()), issued):
            return "the access token has been revoked"
        known.add((tenant_id, principal.token_id))
    keys = raw.driver.tenant_keys.get(tenant_id)
    if keys is None:
        (wrapped,) = (await raw.fetch("tenant_key", tenant_id))[0]
        keys = unwrap_tenant_key(platform.keyring.master, tenant_id, wrapped, raw.driver.data_keys)
        raw.driver.tenant_keys[tenant_id] = keys
    rows = (await raw.fetch("customers", tenant_id, CUSTOMERS + 1))[:CUSTOMERS]
    ids = [_uuid(row[0]) for row in rows]
    tags: defaultdict[uuid.UUID, list[str]] = defaultdict(list)
    for customer_id, tag in await raw.fetch("tags", tenant_id, ids):
        tags[_uuid(customer_id)].append(tag)
    data_keys = {i: keys.unwrap_data_key(i, row[5]) for i, row in zip(ids, rows, strict=True)}
    notes: defaultdict[uuid.UUID, list[dict[str, str | None]]] = defaultdict(list)
    shown_notes: set[str] = set()
    contact = unmask_scope(InformationClass.CONTACT) in scopes
    for note_id, customer_id, body in await raw.fetch("notes", tenant_id, ids):
        note_id, customer_id = _uuid(note_id), _uuid(customer_id)
        text = data_keys[customer_id].decrypt(bytes(body), table="notes", column="body", row_id=note_id)
        if contact:
            shown_notes.add(str(note_id))
        notes[customer_id].append({"body": text if contact else mask("body", text)})
    shown: dict[str, set[str]] = {}
    nodes = []
    for customer_id, (_, kind, pii, stage, created_at, _) in zip(ids, rows, strict=True):
        personal = PersonalData.from_json(
            data_keys[customer_id].decrypt(bytes(pii), table="customers", column="pii", row_id=customer_id)
        )
        values = {"display_name": personal.display_name(CustomerKind(kind)), "email": personal.email}
        for name, value in values.items():
            if value is None or unmask_scope(CLASS_OF[name]) not in scopes:
                values[name] = mask(name, value)
            else:
                shown.setdefault(name, set()).add(str(customer_id))
        nodes.append(
            {
                "id": str(customer_id),
                "displayName": values["display_name"],
                "email": values["email"],
                "lifecycleStage": LifecycleStage(stage).name,
                "tags": tags[customer_id],
                "createdAt": _datetime(created_at).isoformat(),
                "notes": notes[customer_id],
            }
        )
    customers_shown = sorted({i for shown_ids in shown.values() for i in shown_ids})
    logged = [("Customer", customers_shown, sorted(shown)), ("Note", sorted(shown_notes), ["body"])]
    await _raw_access_log(raw, tenant_id, principal, request_id, [entry for entry in logged if entry[1]])
    return {"data": {"customers": {"nodes": nodes}}}


async def _raw_access_log(
    raw: RawRequest,
    tenant_id: uuid.UUID,
    principal: Principal,
    request_id: str,
    entries: list[tuple[str, list[str], list[str]]],
) -> None:
    """The access-log events crmkit's ``before_commit`` appends, through the driver:
    on PostgreSQL crmkit's own one-statement append (compiled for asyncpg, with crmkit's
    parameters), on SQLite the head's upsert and the INSERT hashed by crmkit's
    ``link_hash`` (a trigger advances the head, for both)."""
    if not entries:
        return
    actor, now = Actor.from_subject(principal.subject), utcnow()  # one time for all, as crmkit
    records = [
        {
            "tenant_id": tenant_id,
            "occurred_at": now,
            "actor_type": actor.type,
            "actor_id": actor.id,
            "action": "read",
            "target_type": target_type,
            "target_ids": ids,
            "fields": fields,
            "request_id": request_id,
        }
        for target_type, ids, fields in entries
    ]
    if raw.driver.postgres:
        parameters = trail._append_parameters(tenant_id, records)
        (known,) = (await raw.fetch("append", *(parameters[name] for name in APPEND_ORDER)))[0][:1]
        if known:
            return
    ((seq, prev),) = await raw.fetch("head", tenant_id, AUDIT_GENESIS)
    values: list[Any] = []
    for record in records:
        seq += 1
        digest = link_hash(prev, hashed_fields({**record, "seq": seq}))
        values += [
            tenant_id, seq, record["occurred_at"], actor.type, actor.id, "read", record["target_type"],
            json.dumps(record["target_ids"]), json.dumps(record["fields"]), request_id, prev, digest,
        ]  # fmt: skip
        prev = digest
    await raw.execute("events", *values, rows=len(records))


@get("/raw", include_in_schema=False)
async def raw_endpoint(request: Request[Any, Any, Any]) -> Response[bytes]:
    """The raw limit: the same token check, the same SQL sent through the driver itself
    (asyncpg or sqlite3) in one transaction, crmkit's own decryption and masking, the
    same access-log audit events, the same JSON."""
    platform: Platform = request.app.state.platform
    driver: RawDriver = request.app.state.raw_driver
    request_id = uuid.uuid4().hex
    try:
        principal = request.app.state.tokens.verify(bearer_token(request) or "")
    except Unauthenticated as exc:
        return _json({"errors": [error_body(exc.code, exc.message, request_id)]}, 401)
    if not {READ, NOTES_READ} <= principal.scopes:
        return _json({"errors": [error_body("FORBIDDEN", "missing scope", request_id)]}, 403)
    if driver.postgres:
        async with (await driver.pool()).acquire() as connection, connection.transaction():
            answer = await _raw_page(RawRequest(driver, connection), platform, principal, request_id)
    else:
        connection = driver.sqlite()
        connection.execute("BEGIN IMMEDIATE")  # the audit append writes: take the write lock first
        try:
            answer = await _raw_page(RawRequest(driver, connection), platform, principal, request_id)
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")
    if isinstance(answer, str):
        return _json({"errors": [error_body("UNAUTHENTICATED", answer, request_id)]}, 401)
    return _json(answer)


@get("/stats", include_in_schema=False)
async def stats() -> dict[str, Any]:
    """The SQL of the latest request per path; the server's CPU and GC seconds and the
    exceptions it raised so far."""
    return {
        "statements": STATEMENTS.last,
        "cpu": time.process_time(),
        "gc": GC.seconds,
        "exceptions": EXCEPTIONS,
    }


def _start_profiler(app: Litestar, path: str) -> None:
    """cProfile the server's event loop thread between ``GET /profile/on`` and
    ``GET /profile/off`` (wall time; the loop's idle wait shows as ``epoll``)."""
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
    app.register(raw_endpoint)
    app.register(stats)
    app.state.raw_driver = RawDriver(platform.settings.resolved_database_url)
    app.on_shutdown.append(app.state.raw_driver.close)
    app.after_exception.append(count_exception)
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
    app_role: str | None = None
    """On PostgreSQL, the login role (in crmkit's application role: owning nothing,
    under row-level security, as in production) the server connects as for all three
    endpoints; ``database_url``, the owner, migrates, seeds and reads the audit trail."""

    @property
    def serve_url(self) -> str:
        if self.app_role is None:
            return self.database_url
        return self.database_url.replace("postgres@", f"{self.app_role}@", 1)

    def env(self) -> dict[str, str]:
        """The server's environment. Development mode only so crmkit generates its keys
        (master key, token signing key, audit signing key) in ``workdir`` on a fresh
        checkout; on the measured path it changes nothing (it enables GraphiQL and
        field suggestions in errors)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("CRMKIT_")}
        env.update(
            CRMKIT_DATABASE_URL=self.serve_url,
            CRMKIT_DATA_DIR=str(self.workdir),
            CRMKIT_DEV_MODE="true",
            # the limiter still runs on every GraphQL request, but refuses none of the load's
            CRMKIT_RATE_LIMIT_GRAPHQL_PER_MINUTE="100000000",
        )
        return env

    def settings(self) -> Settings:
        """The same settings in this process (main() cleared its CRMKIT_ variables)."""
        return Settings(database_url=self.database_url, data_dir=self.workdir, dev_mode=True)


SCOPES = [READ, NOTES_READ, *(unmask_scope(c) for c in (InformationClass.IDENTITY, InformationClass.CONTACT))]
"""The token's scopes: read customers and notes, names and e-mail in clear (so both
endpoints decrypt, disclose and log the read)."""


async def seed(target: Target) -> tuple[str, uuid.UUID]:
    """Schema, tenant, notes enabled, 50 customers with some notes; a token and the tenant id."""
    platform = Platform(target.settings())
    try:
        await migrations.upgrade(platform.db.engine, platform.registry)
        if target.app_role is not None:  # crmkit_app exists once migrated
            await postgres_setup.create_app_login(target.app_role)
        tenant = await create_tenant(platform.db, SLUG, "Bench Bank")
        await enablement.enable(platform, SLUG, "notes")
        stages = list(LifecycleStage)
        async with platform.tenant_scope(tenant.id) as scope:
            for i in range(CUSTOMERS):
                customer = await service.create_customer(
                    scope.ctx,
                    kind=CustomerKind.PERSON,
                    given_name=f"Given{i}",
                    family_name=f"Family{i}",
                    email=f"person{i}@example.com",
                    tags=["premium", "savings"][: i % 3],
                    lifecycle_stage=stages[i % len(stages)],
                )
                for n in range(i % 3 if i % 2 == 0 else 0):  # 0, 1 or 2 notes
                    await add_note(
                        scope.hooks.context_for("notes"),
                        customer_id=customer.id,
                        body=f"Note {n} on customer {i}.",
                        author="bench",
                    )
        drain = getattr(platform.queue, "drain", None)
        if drain is not None:
            await drain()
        token = await issue_for_tenant(platform, SLUG, SCOPES, subject="user:bench")
        return token, tenant.id
    finally:
        await platform.close()


async def audit_report(target: Target, tenant_id: uuid.UUID, last: int) -> tuple[list[AuditEvent], str]:
    """The tenant's ``last`` audit events, and crmkit's verdict on its whole chain."""
    platform = Platform(target.settings())
    try:
        async with platform.db.tenant_session(tenant_id) as session:
            query = select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(last)
            events = list(reversed((await session.scalars(query)).all()))
        verdict = await chain.verify(platform.db, tenant_id, platform.audit_signer)
    finally:
        await platform.close()
    status = "intact" if verdict.ok else f"BROKEN at {verdict.first_bad_seq}: {verdict.reason}"
    return events, f"{verdict.checked} events, chain {status}"


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
        Endpoint("raw", "GET", "/raw", b"", auth),
    ]


def call_once(client: httpx.Client, endpoint: Endpoint) -> tuple[dict[str, Any], list[str]]:
    """The endpoint's answer and the SQL statements it ran."""
    response = client.request(
        endpoint.method, endpoint.path, content=endpoint.body or None, headers=endpoint.headers
    )
    if response.status_code != 200:
        raised = client.get("/stats").json()["exceptions"]
        raise AssertionError(f"{endpoint.name} answered {response.status_code}: {response.text}; {raised}")
    return response.json(), client.get("/stats").json()["statements"][endpoint.path]


AUDITED = ("actor_type", "actor_id", "action", "target_type", "target_ids", "fields")


def check(base: str, eps: list[Endpoint], target: Target, tenant_id: uuid.UUID) -> dict[str, list[str]]:
    """Asserts both endpoints answer the same data with the same statements and leave
    the same access-log event; returns each one's statements.

    Each endpoint is called once first: the first request of the process also looks up
    the tenant key (then cached by crmkit's KeyRing) and warms the schema's caches.
    """
    with httpx.Client(base_url=base, timeout=30) as client:
        first = {e.name: call_once(client, e)[1] for e in eps}
        answers = {e.name: call_once(client, e) for e in eps}
        refused = client.get("/bare", headers={"Authorization": "Bearer not-a-token"})
        assert refused.status_code == 401, refused.status_code
    (graphql, graphql_sql), (bare_, bare_sql), (raw, raw_sql) = (
        answers[e] for e in ("graphql", "bare", "raw")
    )
    assert "errors" not in graphql, graphql["errors"]
    nodes = graphql["data"]["customers"]["nodes"]
    assert len(nodes) == CUSTOMERS and any(n["notes"] for n in nodes), nodes[:2]
    assert "*" not in nodes[0]["email"], f"personal data masked: {nodes[0]}"
    assert graphql == bare_, "graphql and bare answer differently"
    assert graphql == raw, "graphql and raw answer differently"
    if graphql_sql != bare_sql or len(raw_sql) != len(graphql_sql):
        sql = "\n".join(f"    {name}: {s[:100]}" for name in answers for s in answers[name][1])
        print(f"  NOT A VALID COMPARISON: the endpoints ran different SQL; make /bare and /raw match:\n{sql}")
    if len(first["graphql"]) != len(graphql_sql):
        print(
            f"  (the process's first request ran {len(first['graphql'])} statements: the tenant key lookup)"
        )
    events, _ = asyncio.run(audit_report(target, tenant_id, 6))  # Customer and Note reads, thrice
    logged = [{name: getattr(event, name) for name in AUDITED} for event in events]
    assert len(logged) == 6 and logged[:2] == logged[2:4] == logged[4:], (
        f"different access-log events: {logged}"
    )
    assert logged[0]["action"] == "read" and len(logged[0]["target_ids"]) == CUSTOMERS, logged[0]
    assert (logged[1]["target_type"], logged[1]["fields"]) == ("Note", ["body"]), logged[1]
    return {"graphql": graphql_sql, "bare": bare_sql, "raw": raw_sql}


# --- load: wrk, or this file's own client in a subprocess ---------------------------


@dataclass
class Load:
    requests: int  # answers received
    seconds: float
    failed: int  # of them, answers other than 200
    errors: int = 0  # connection errors and timeouts (no answer)
    server_cpu: float = 0.0  # seconds of the server process's CPU time
    server_gc: float = 0.0  # seconds of it the garbage collector took

    @property
    def ok(self) -> int:
        return self.requests - self.failed

    def add(self, other: Load) -> None:
        for name in ("requests", "seconds", "failed", "errors", "server_cpu", "server_gc"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


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


@dataclass
class Driver:
    """Loads an endpoint from another process: wrk, or this file's asyncio client."""

    use_wrk: bool
    connections: int
    workdir: Path

    def drive(self, base: str, endpoint: Endpoint, seconds: float) -> Load:
        if self.use_wrk:
            return self.run_wrk(base, endpoint, seconds)
        return self.run_python_client(base, endpoint, seconds)

    def run_wrk(self, base: str, endpoint: Endpoint, seconds: float) -> Load:
        script = self.workdir / f"{endpoint.name}.lua"
        lines = [f'wrk.method = "{endpoint.method}"']
        if endpoint.body:
            lines.append(f"wrk.body = [==[{endpoint.body.decode()}]==]")
        lines += [f'wrk.headers["{k}"] = "{v}"' for k, v in endpoint.headers.items()]
        script.write_text("\n".join(lines) + "\n")
        command = [
            "wrk", "-t1", f"-c{self.connections}", f"-d{max(1, round(seconds))}s",
            "--timeout", "10s", "-s", str(script), base + endpoint.path,
        ]  # fmt: skip
        out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        done = re.search(r"(\d+) requests in ([\d.]+)(m?s)", out)
        if done is None:
            raise RuntimeError(f"cannot read wrk's output:\n{out}")
        elapsed = float(done[2]) / (1000 if done[3] == "ms" else 1)
        failed = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", out))
        errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
        return Load(int(done[1]), elapsed, failed, errors)

    def run_python_client(self, base: str, endpoint: Endpoint, seconds: float) -> Load:
        host, port = base.removeprefix("http://").split(":")
        spec = ClientSpec(
            host, int(port), endpoint.method, endpoint.path, endpoint.body.decode(),
            endpoint.headers, self.connections, seconds,
        )  # fmt: skip
        out = subprocess.run(
            [sys.executable, __file__, "--client-spec", json.dumps(asdict(spec))],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return Load(**json.loads(out))


async def client_main(spec: ClientSpec) -> dict[str, Any]:
    """Keep-alive HTTP/1.1 over raw asyncio streams: little client work per request."""
    body = spec.body.encode()
    head = f"{spec.method} {spec.path} HTTP/1.1\r\nHost: {spec.host}:{spec.port}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in spec.headers.items())
    request = (head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    counted = {"requests": 0, "failed": 0}

    async def connection(until: float) -> None:
        reader, writer = await asyncio.open_connection(spec.host, spec.port)
        try:
            while time.perf_counter() < until:
                writer.write(request)
                header = await reader.readuntil(b"\r\n\r\n")
                length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", header)
                assert length is not None, header
                await reader.readexactly(int(length[1]))
                counted["requests"] += 1
                counted["failed"] += header[9:12] != b"200"
        finally:
            writer.close()

    start = time.perf_counter()
    until = start + spec.seconds
    await asyncio.gather(*(connection(until) for _ in range(spec.connections)))
    return {**counted, "seconds": time.perf_counter() - start}


def server_stats(base: str) -> dict[str, Any]:
    """The server's CPU and GC seconds so far, and the exceptions it raised."""
    return dict(httpx.get(f"{base}/stats").json())


def measure(base: str, eps: list[Endpoint], seconds: float, warmup: float, driver: Driver) -> dict[str, Load]:
    """Warm-up, then rounds alternating the endpoints (so a shared machine's drift hits
    both alike); totals per endpoint, with the server CPU time each took."""
    rounds = max(1, round(seconds / ROUND_SECONDS))
    totals = {e.name: Load(0, 0.0, 0) for e in eps}
    for round_ in range(rounds):
        for e in eps:
            if round_ == 0:
                driver.drive(base, e, warmup)
            before = server_stats(base)
            load = driver.drive(base, e, seconds / rounds)
            after = server_stats(base)
            load.server_cpu = after["cpu"] - before["cpu"]
            load.server_gc = after["gc"] - before["gc"]
            totals[e.name].add(load)
    return totals


PACKAGES = {
    "idle (epoll wait)": "epoll",
    "graphql-core": "/graphql/",
    "strawberry": "/strawberry/",
    "sqlalchemy": "/sqlalchemy/",
    "asyncpg/aiosqlite": "/asyncpg/|/aiosqlite/|sqlite3",
    "litestar/uvicorn": "/litestar/|/uvicorn/|/h11/|/httptools/",
    "crmkit": "/crmkit/",
    "asyncio": "/asyncio/|_socket",
    "json": "/json/|_json",
    "cryptography/joserfc": "/cryptography/|/joserfc/|cryptography.hazmat|openssl",
    "uuid": "/uuid.py",
    "builtins": "^~ ",
}


def print_profile(path: Path, requests: int, top: int = 25) -> None:
    """Own time by package, then the top functions by own time and by cumulative time."""
    import pstats

    stats = pstats.Stats(str(path))
    by_package: Counter[str] = Counter()
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    for (filename, _, name), (_, _, own, _, _) in raw.items():
        where = f"{filename} {name}"
        package = next(
            (p for p, pattern in PACKAGES.items() if re.search(pattern, where)),
            "other",
        )
        by_package[package] += own
    total = sum(own for package, own in by_package.items() if not package.startswith("idle"))
    print(
        "\n  cProfile of the server under GraphQL load: own CPU time by package"
        " (ms/request, inflated by cProfile; % of the busy time)"
    )
    for package, own in by_package.most_common():
        share = "" if package.startswith("idle") else f"{100 * own / total:5.1f}%"
        print(f"    {package:22} {1000 * own / requests:6.2f}  {share}")
    print(f"\n  top {top} functions by own time:")
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)


def profile_graphql(base: str, endpoint: Endpoint, seconds: float, driver: Driver) -> Load:
    httpx.get(f"{base}/profile/on")
    load = driver.drive(base, endpoint, seconds)
    httpx.get(f"{base}/profile/off")
    return load


# --- the whole run ------------------------------------------------------------------


def run_target(target: Target, args: argparse.Namespace, driver: Driver) -> None:
    started = time.monotonic()
    token, tenant_id = asyncio.run(seed(target))
    profile = target.workdir / "graphql.prof" if args.profile else None
    with server(target, profile) as base:
        eps = endpoints(token)
        statements = check(base, eps, target, tenant_id)
        totals = measure(base, eps, args.seconds, args.warmup, driver)
        profiled = None if profile is None else profile_graphql(base, eps[0], args.seconds, driver)
        raised: dict[str, int] = server_stats(base)["exceptions"]
    _, audit = asyncio.run(audit_report(target, tenant_id, 0))
    rates = {name: load.ok / load.seconds for name, load in totals.items()}
    cpu_ms = {name: 1000 * load.server_cpu / max(1, load.requests) for name, load in totals.items()}
    gc_ms = {name: 1000 * load.server_gc / max(1, load.requests) for name, load in totals.items()}
    print(f"\n{target.name}  ({time.monotonic() - started:.0f} s; audit trail after the run: {audit})")
    for name, load in totals.items():
        failed = f"  FAILED {load.failed} ({100 * load.failed / max(1, load.requests):.0f}%)"
        errors = f"  NO ANSWER {load.errors}" if load.errors else ""
        print(
            f"  {name:8} {rates[name]:7.1f} req/s  {cpu_ms[name]:6.2f} ms server CPU/request"
            f" (GC {gc_ms[name]:.2f})  {len(statements[name])} SQL statements/request"
            f"  ({load.ok} answered 200 in {load.seconds:.1f} s){failed if load.failed else ''}{errors}"
        )
    for ceiling in ("bare", "raw"):
        print(
            f"  ratio graphql/{ceiling}: {rates['graphql'] / max(rates[ceiling], 1e-9):.2f} in req/s, "
            f"{cpu_ms[ceiling] / cpu_ms['graphql']:.2f} in server CPU per request"
        )
    if any(load.failed or load.errors for load in totals.values()):
        print("  NOT A VALID COMPARISON: requests failed; the server raised:")
        for what, count in sorted(raised.items(), key=lambda item: -item[1]):
            print(f"    {count:6} x {what}")
    if args.verbose:
        for sql in statements["graphql"]:
            print(f"    {sql[:160]}")
    if profile is not None and profiled is not None:
        print(f"\n  profiled {profiled.requests} GraphQL requests ({profiled.failed} failed)")
        print_profile(profile, profiled.requests)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured time per endpoint")
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up per endpoint")
    parser.add_argument("--quick", action="store_true", help="2 s per endpoint, 1 s warm-up")
    parser.add_argument("--backend", choices=["sqlite", "postgres", "all"], default="all")
    parser.add_argument("--client", choices=["auto", "wrk", "python"], default="auto")
    parser.add_argument("--connections", type=int, default=CONNECTIONS, help="concurrent connections")
    parser.add_argument("--profile", action="store_true", help="cProfile the GraphQL path")
    parser.add_argument("-v", "--verbose", action="store_true", help="print the SQL")
    parser.add_argument("--client-spec", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client_spec:  # this process is the load generator
        print(json.dumps(asyncio.run(client_main(ClientSpec(**json.loads(args.client_spec))))))
        return
    if args.quick:
        args.seconds, args.warmup = 2.0, 1.0
    for name in [k for k in os.environ if k.startswith("CRMKIT_")]:  # the bench sets its own
        del os.environ[name]
    use_wrk = args.client == "wrk" or (args.client == "auto" and shutil.which("wrk") is not None)
    client = "wrk" if use_wrk else "asyncio client"
    print(
        f"{CUSTOMERS} customers per page, {args.connections} connections, {args.seconds:g} s per "
        f"endpoint after {args.warmup:g} s warm-up, load by {client}"
    )
    with tempfile.TemporaryDirectory(prefix="crmkit-bench-") as tmp:
        if args.backend in ("sqlite", "all"):
            workdir = Path(tmp, "sqlite")
            workdir.mkdir()
            url = f"sqlite+aiosqlite:///{workdir / 'bench.db'}"
            run_target(Target("SQLite", url, workdir), args, Driver(use_wrk, args.connections, workdir))
        if args.backend in ("postgres", "all") and asyncio.run(postgres_setup.create_database(PG_DATABASE)):
            workdir = Path(tmp, "postgres")
            workdir.mkdir()
            try:
                target = Target("PostgreSQL (as the app role)", PG_URL, workdir, PG_ROLE)
                run_target(target, args, Driver(use_wrk, args.connections, workdir))
            finally:
                asyncio.run(postgres_setup.drop_database(PG_DATABASE))
                asyncio.run(postgres_setup.drop_role(PG_ROLE))


if __name__ == "__main__":
    main()
