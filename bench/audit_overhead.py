"""Benchmark: what auditing and encryption cost a customer update, and what one tenant's
audit chain head costs writers that share it.

Figures, not pass/fail tests: each is a ratio of two throughputs measured in the same
run, in rounds alternating the two (6 x 1 s each, after a warm-up), so the drift of a
shared machine hits both alike. Every update is crmkit's own path, in this process:
``Platform.tenant_scope`` (on PostgreSQL the row-level security ``set_config``; the
tenant state; the tenant's keys from the KeyRing's cache), the acting user bound as
the GraphQL handler binds it, then ``update_customer`` with a new e-mail address and
lifecycle stage: the customer read with its data key and tags, its personal data
decrypted, changed and re-encrypted, its blind index and name tokens rewritten, the
row updated, the ``customer_updated`` event written to the outbox, commit. The outbox
relay after commit is switched off (``db.after_commit = None``) on both sides: it
only queues the event's dispatch, a job of its own.

1. **Audit and encryption overhead** (SQLite, then PostgreSQL), one writer: the same
   updates of the same columns, in the same transaction shape, with and without

   * the audit recorder: detached with ``crmkit.core.audit.trail.uninstall()``, the
     counterpart of the ``install()`` the platform calls (crmkit itself never calls
     it). Gone: ``before_flush`` noting the changed fields, and the chain append in
     ``before_commit`` (on PostgreSQL one statement that takes the tenant's head and
     inserts the events, hashed by the database, and the transaction's unflushed
     outbox events, which the plain side inserts with a statement of their own; on
     SQLite the head's upsert, then the INSERT; a trigger advances the head; SHA-256
     over RFC 8785 JSON);
   * encryption: the plain side's platform has a key ring whose tenant keys do no
     cryptography (:class:`PlaintextKeys`): a data key "encrypts" to the plaintext,
     a blind index or name token is the normalised value itself. The encryption step
     still runs at flush and writes the same columns and rows; only AES-GCM
     (unwrapping the data key, decrypting, encrypting) and HMAC are gone.

   Each side has its own tenant and customer (ciphertext or clear text at rest). A
   check first runs one update per side and asserts that they send the same SQL but
   for the audit trail's statements (and, on PostgreSQL, the plain side's outbox
   INSERT, which the append makes on the audited side), that each side writes one
   outbox event, that the audited side appends one audit event and stores ciphertext,
   and that the plain side appends none and stores the clear JSON. Printed per side:
   updates/s; per update the process's CPU time (on SQLite that includes the
   database's own work, done in this process), SQL statements, and the time spent in
   the statement that takes the chain head; then the ratio audited/plain (the goal:
   0.9 or better).

2. **One tenant's chain head under concurrent writers** (PostgreSQL), auditing and
   encryption on: 8 writers in one tenant, against 8 writers spread over 8 tenants.
   Every audited write (and every read that discloses personal data) takes its
   tenant's head row lock in its last statement before COMMIT; a writer that finds it
   taken does not wait but journals its event, which the head's next holder chains
   (``crmkit.core.audit.trail``), in the same one statement. Printed: the same
   columns, and the ratio one tenant/spread (the goal: 0.9 or better); the verdict at
   the end verifies the chains, journaled events chained first.
   The writers are asyncio tasks of this process, each with its own connection and
   customer; they share this process's CPU, as one app server's requests do. Between
   its statements a lock holder waits for its turn on the event loop, so the lock is
   held for more than the statements' round trips.

On PostgreSQL the tables are migrated by the superuser and the platform connects as a
login role in ``crmkit_app``, as in production: it owns nothing and row-level
security applies. The database (``crmkit_bench_audit_<pid>``) and the role are
dropped after the run; the PostgreSQL figures are skipped, with a message, when
127.0.0.1:5432 is not reachable. Each backend ends with crmkit's verdict on the
audited tenants' chains.

Run: ``.venv/bin/python bench/audit_overhead.py [--quick] [--backend sqlite|postgres|all]
[--floor] [-v]`` (``-v`` prints the SQL of one audited update; ``--floor`` also runs the
encrypted update without the audit recorder, another customer of the audited tenant,
against the plain one: what encryption alone costs, the ceiling of audited/plain. The
figures below until the last section's took ``--floor`` as the plain update plus a
``SELECT 1`` before COMMIT: what one more statement of no work cost, the ceiling while
the append was a statement of its own).

Three runs on the shared 2-core machine (load 8-9), min / median / max: audited/plain
0.75 / 0.79 / 0.87 on PostgreSQL (CPU per update 0.76 / 0.83 / 0.83), 0.76 / 0.82 /
0.86 on SQLite; one tenant/spread 0.88 / 0.93 / 0.97. Statements per update: 8 against
7 on PostgreSQL (11 against 8 before the one-statement append), 8 against 6 on SQLite
(10 against 7).

Since an update rewrites only the blind indexes and name tokens of the fields it
changes (this one changes no name: no tokens' DELETE and INSERT) and the trail writes
its canonical JSON with ``json``'s encoder: 6 statements against 5 on PostgreSQL, 6
against 4 on SQLite. Three runs on PostgreSQL alternated with three of the code before
(machine busy): CPU per audited update 2.18 / 2.51 / 2.52 ms (before 2.91 / 2.96 / 3.30),
plain 1.85 / 2.12 / 2.13 (2.56 / 2.59 / 2.73); audited/plain 0.79 / 0.81 / 0.83 (before
0.65 / 0.79 / 0.85), CPU 0.84 / 0.85 / 0.85 (0.83 / 0.87 / 0.89). The ratio gains
little: what both sides saved is work they shared. What the audited side still spends
more, about 0.35 ms of CPU per update: the append's statement (its round trip, mostly
the socket's send, and 0.15 ms of the server's execution, its plan a generic one), noting
the changed fields, and the cryptography (AES-GCM, one HMAC per changed indexed field).

Since the append goes to the driver compiled (``exec_driver_sql``; SQLAlchemy's work per
execution of the text statement was 0.04 ms of the append's 0.30 ms of CPU), three runs
with ``--floor`` alternated with three of the code before, on a busy machine (load 3-5,
the plain side at 70-190 updates/s, so the figures swing), min / median / max:
PostgreSQL audited/plain 0.83 / 0.88 / 0.95 (before 0.80 / 0.80 / 0.84), CPU 0.88 /
0.89 / 0.90 (0.84 / 0.86 / 0.88); one tenant/spread 1.00 / 1.04 / 1.08 (0.89 / 0.97 /
0.99); SQLite, whose path is unchanged, 0.75 / 0.78 / 0.89 (0.72 / 0.81 / 0.87).

The same change measured in one process, blocks of 40 updates rotated between plain,
audited with the append as before and audited as now for 120 s (81 rotations): CPU
per audited update 5.40 -> 5.29 ms (plain 4.65), medians of the ratios to plain 0.825
and 0.806 in updates/s (quartiles 0.66-0.98: noise), 0.845 and 0.862 in CPU.

What is left is mostly the append being a statement of its own. A ``SELECT 1`` before
COMMIT alone (``--floor``) gave 0.94-1.08 in updates/s over those six runs on
PostgreSQL, 0.92-0.99 in CPU; in rotated blocks of 40 updates for 90 s, medians 0.96
and 0.94, against 0.88 and 0.91 for audited/plain in the same run. And the append
is no statement of no work: in the same transaction shape it takes 0.34-0.45 ms to
``SELECT 1``'s 0.09, the event's INSERT and the head's UPDATE by the trigger (neither a
row trigger, nor the head advanced in the statement itself with the trigger gone, nor
a head updatable in place without ``ix_audit_heads_unsigned`` changed that
measurably; the journal and ``known`` parts cost nothing to speak of). It cannot share
a round trip with the last flush's statement: asyncpg sends one statement per
exchange (it pipelines no different statements) and that statement is the ORM's. Nor
is the rest the cryptography: the data key is unwrapped once per cache window (per
update one AES-GCM open, the personal data's, and no key set up), and AES-GCM and the
changed field's HMAC cost under 0.1 ms. The audit's own Python (noting the fields,
the events' canonical JSON around ``seq``, the append's parameters) is 0.1-0.2 ms more
on this busy machine, in pieces of 0.01-0.06 ms (asking each changed attribute's
history directly rather than through ``state.attrs`` saved nothing measurable).

Where the append's server time goes, each variant alone in the same transaction shape as
the app role, interleaved per transaction (medians of 1,500-3,000): ``SELECT 1`` 0.033
ms; taking the head 0.045; with the event's INSERT 0.10-0.12; with the trigger advancing
the head 0.15 (advancing it in the statement instead: 0.007 less); the whole append
0.20-0.22, the last 0.065 being the journal's branches and the recursive hashing. The
append as a PL/pgSQL function running only the branch taken (``crmkit_audit_append``, a
migration of its own) took 0.19-0.21: the per-statement cost of PL/pgSQL took back most
of what it skipped, and in the update path old/new was 1.008 (paired medians of 228
rotated blocks, quartiles 0.94-1.08); not kept. The append asked ``known`` (a second
lookup of the head row) first; asked last it runs only when the head was not taken: no
difference up to 2,600 dead versions of the head row (0.223 and 0.224 ms), 0.427 ->
0.390 with 7,100 (autovacuum off; the head's UPDATE is never HOT, ``seq`` being in
``ix_audit_heads_unsigned``'s predicate). Three runs with ``--floor`` alternated with
three of the code before it (busy machine): audited/plain 0.76 / 0.82 / 0.82 (before
0.80 / 0.83 / 0.89), CPU 0.84 / 0.86 / 0.88 (0.84 / 0.85 / 0.85); plain+SELECT 1/plain
0.95 / 0.96 / 0.98 (0.93 / 0.93 / 0.99); one tenant/spread 0.94 / 1.02 / 1.06 (0.95 /
1.05 / 1.13): the same, within the noise.

In rotated blocks of 40 for 60 s, encryption alone scored 0.965 against plain, the audit
alone 0.83 and ``SELECT 1`` alone 0.94: even an append costing no more than ``SELECT 1``
would leave audited/plain near 0.91. The audit's Python per update (thread CPU over
1,000 updates): executing the append 0.17 ms, of which its parameters 0.04 (15 us
alone); noting the changed fields 0.03; AES-GCM and HMAC 0.05 together. Reaching 0.9
takes the append out of a round trip of its own (asyncpg sends one statement per
exchange; a driver that pipelines, such as psycopg 3, could send it with COMMIT).

Since the append's statement also inserts the transaction's outbox events that no flush
has sent (``crmkit.core.events.take_unflushed``; a query before commit still flushes
them, and a transaction without audit events, SQLite and an uninstalled recorder flush
them as before), the audited update sends as many statements as the plain one on
PostgreSQL: 5 against 5 (6 against 5 before); SQLite unchanged, 6 against 4. Six runs
alternated with six of the code before (shared machine, load 1.9-3.8), min / median /
max: audited/plain 0.72 / 0.87 / 0.97 in updates/s (before 0.78 / 0.80 / 0.95), CPU
0.85 / 0.92 / 0.97 (0.80 / 0.85 / 0.94); one tenant/spread 0.92 / 1.02 / 1.07 (0.89 /
0.96 / 1.17); encrypted/plain (``--floor`` as it is now, three runs) 0.94 / 0.99 / 1.05,
CPU 0.95 / 0.96 / 0.96. In one process, blocks of 40 updates rotated between plain,
audited with the outbox INSERT of its own and audited as now, three runs of 120 s (91,
94 and 138 rotations), min / median / max of the medians of the paired ratios:
0.78 / 0.80 / 0.83 before, 0.86 / 0.875 / 0.88 now in updates/s (quartiles 0.69-1.04
before, 0.76-1.09 now), 0.82 / 0.85 / 0.87 before, 0.91 / 0.92 / 0.95 now in CPU. The
round trip saved was 0.4-0.55 ms of CPU per update (5.80 -> 5.29 ms, 5.36 -> 4.97,
5.48 -> 4.93; plain 4.95, 4.75, 4.47): the ORM's INSERT, its send to the socket
included (a sixth of a sampled update's CPU is sends).

What is left, short of 0.9 in updates/s: thread CPU per audited update, in blocks
alternated with plain ones, the audit's Python 0.19 ms (the append's parameters 0.07,
noting the changed fields 0.06, taking the unflushed events out of the session 0.03,
the bulk-statement check 0.01; executing the append costs the CPU the plain side's
outbox INSERT does) and the cryptography 0.11 (an HMAC from a keyed copy rather than
``hmac.digest`` saved 0.01-0.02: not kept). And the append's server time, which the
wall time shows more than the CPU does (an audited update took ~1.1 ms more than a
plain one, of which 0.34 ms of this process's CPU): client-observed as the app role,
alternated per transaction (medians of 800), the outbox INSERT alone 0.13-0.19 ms,
the head taken in the same statement 0.24, with the audit event's INSERT and the
trigger advancing the head (one event, no journal's branches, no recursion) 0.37, the
whole append 0.43-0.50; its 17 parameters alone cost 0.05-0.07 over ``SELECT 1``. A
statement for the one-event, empty-journal case would save the 0.06 ms of the
journal's branches and the recursion, at the price of a second statement whenever
the journal holds events (under contention, where it costs most); not built.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import postgres_setup
from sqlalchemy import event, func, select
from sqlalchemy.engine import Connection, Engine

from crmkit import migrations
from crmkit.core.audit import chain, trail
from crmkit.core.audit.models import AuditEvent
from crmkit.core.customers import service
from crmkit.core.customers.models import Customer, CustomerKind, LifecycleStage
from crmkit.core.events import OutboxEvent
from crmkit.crypto import KEY_SIZE, DataKey, RowId, TenantKeys
from crmkit.db import TenantSession, create_engine
from crmkit.platform import Platform
from crmkit.platform.registry import load_registry
from crmkit.settings import Settings
from crmkit.tenants.keys import KeyRing
from crmkit.tenants.service import create_tenant

ROUNDS = 6
ROUND_SECONDS = 1.0
WARMUP_SECONDS = 1.0
WRITERS = 8
STAGES = (LifecycleStage.ACTIVE, LifecycleStage.AT_RISK)
ACTOR = trail.Actor("user", "bench")
UPDATE_NUMBERS = itertools.count()
"""Numbers each update's new values, so that every update changes the customer."""


# --- the plain side's keys: the same calls, no cryptography -------------------------


class PlaintextDataKey(DataKey):
    """A data key that "encrypts" to the plaintext."""

    def __init__(self, tenant_id: uuid.UUID, customer_id: uuid.UUID) -> None:
        self.tenant_id, self.customer_id = tenant_id, customer_id  # no AES-GCM to set up

    def encrypt(self, value: str, *, table: str, column: str, row_id: RowId) -> bytes:
        return value.encode()

    def decrypt(self, ciphertext: bytes, *, table: str, column: str, row_id: RowId) -> str:
        return bytes(ciphertext).decode()


class PlaintextKeys(TenantKeys):
    """A tenant's keys without cryptography: data keys are stored as nothing and
    "unwrapped" for free, and a blind index or name token is the normalised value
    itself (``_mac`` is where the HMAC would be)."""

    def __init__(self, tenant_id: uuid.UUID) -> None:
        super().__init__(tenant_id, bytes(KEY_SIZE))  # the key is never used

    def new_data_key(self, customer_id: uuid.UUID) -> tuple[DataKey, bytes]:
        return PlaintextDataKey(self.tenant_id, customer_id), b""

    def unwrap_data_key(self, customer_id: uuid.UUID, wrapped: bytes) -> DataKey:
        return PlaintextDataKey(self.tenant_id, customer_id)

    def _mac(self, kind: str, normalised: str) -> bytes:
        return normalised.encode()


class PlaintextKeyRing(KeyRing):
    """Hands out :class:`PlaintextKeys`, cached per tenant as the real ring caches keys."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self._plain: dict[uuid.UUID, TenantKeys] = {}

    async def tenant_keys(self, session: TenantSession, tenant_id: uuid.UUID) -> TenantKeys:
        keys = self._plain.get(tenant_id)
        if keys is None:
            keys = self._plain[tenant_id] = PlaintextKeys(tenant_id)
        return keys


# --- updates and their load ---------------------------------------------------------


@dataclass(frozen=True)
class Writer:
    """What one writer updates: a customer of a tenant."""

    tenant_id: uuid.UUID
    customer_id: uuid.UUID


@dataclass
class Side:
    """One way of running the updates: which platform, recorder on or off, which writers."""

    name: str
    platform: Platform
    audited: bool
    writers: list[Writer]

    def switch_recorder(self) -> None:
        """The audit recorder is process-wide: set it for this side before each round."""
        (trail.install if self.audited else trail.uninstall)()


class Statements:
    """Counts the SQL statements the engine sends, keeping their text while ``recorded``
    is a list, and adds up the time writers spend in the statement that takes the
    tenant's chain head (its row lock: waiting for it shows here). Nothing else uses the
    engine while the bench runs: the outbox relay is off and no job runs."""

    LOCK_HEADS = ("INSERT INTO audit_heads", "WITH RECURSIVE head")  # SQLite; PostgreSQL's whole append
    STARTED = "bench_head_started"

    def __init__(self) -> None:
        self.count = 0
        self.head_seconds = 0.0
        self.recorded: list[str] | None = None

    def listen(self, engine: Engine) -> None:
        event.listen(engine, "before_cursor_execute", self.before)
        event.listen(engine, "after_cursor_execute", self.after)

    def before(self, conn: Connection, cursor: Any, statement: str, *args: Any) -> None:
        self.count += 1
        if self.recorded is not None:
            self.recorded.append(" ".join(statement.split()))
        if statement.startswith(self.LOCK_HEADS):
            conn.info[self.STARTED] = time.perf_counter()

    def after(self, conn: Connection, cursor: Any, statement: str, *args: Any) -> None:
        started = conn.info.pop(self.STARTED, None)
        if started is not None:
            self.head_seconds += time.perf_counter() - started


async def update(platform: Platform, writer: Writer) -> None:
    """One customer update, as the ``updateCustomer`` mutation makes it."""
    n = next(UPDATE_NUMBERS)
    async with platform.tenant_scope(writer.tenant_id) as scope:
        trail.bind_actor(scope.session, ACTOR, uuid.uuid4().hex)
        await service.update_customer(
            scope.ctx, writer.customer_id, email=f"u{n}@example.com", lifecycle_stage=STAGES[n % 2]
        )


@dataclass
class Load:
    updates: int = 0
    seconds: float = 0.0
    cpu: float = 0.0  # seconds of this process's CPU time
    statements: int = 0
    head_seconds: float = 0.0  # in the statement that takes the chain head
    rates: list[float] = field(default_factory=list)  # updates/s of each round

    def add(self, other: Load) -> None:
        self.updates += other.updates
        self.seconds += other.seconds
        self.cpu += other.cpu
        self.statements += other.statements
        self.head_seconds += other.head_seconds
        self.rates += other.rates

    @property
    def rate(self) -> float:
        return self.updates / self.seconds

    def describe(self) -> str:
        per_update = max(1, self.updates)
        head = f"{1000 * self.head_seconds / per_update:6.2f}" if self.head_seconds else "     -"
        rounds = f"; rounds {min(self.rates):.0f}-{max(self.rates):.0f}/s" if len(self.rates) > 1 else ""
        return (
            f"{self.rate:7.1f} updates/s  {1000 * self.cpu / per_update:5.2f} ms CPU"
            f"  {self.statements / per_update:4.1f} SQL  {head} ms head"
            f"  ({self.updates} in {self.seconds:.1f} s{rounds})"
        )


async def drive(side: Side, seconds: float, statements: Statements) -> Load:
    """Every writer of ``side`` updates its customer, one transaction after the other,
    for ``seconds``."""

    async def writer_loop(writer: Writer) -> int:
        done = 0
        while time.perf_counter() < until:
            await update(side.platform, writer)
            done += 1
        return done

    side.switch_recorder()
    counted, head, cpu = statements.count, statements.head_seconds, time.process_time()
    start = time.perf_counter()
    until = start + seconds
    updates = sum(await asyncio.gather(*(writer_loop(w) for w in side.writers)))
    elapsed = time.perf_counter() - start
    return Load(
        updates,
        elapsed,
        time.process_time() - cpu,
        statements.count - counted,
        statements.head_seconds - head,
        [updates / elapsed],
    )


async def compare(
    sides: tuple[Side, Side], args: argparse.Namespace, statements: Statements
) -> tuple[Load, Load]:
    """A warm-up per side, then rounds alternating the two; prints each side's totals and
    returns them."""
    rounds, seconds = (1, 0.5) if args.quick else (ROUNDS, ROUND_SECONDS)
    for side in sides:
        await drive(side, min(seconds, WARMUP_SECONDS), statements)
    first, second = Load(), Load()
    for _ in range(rounds):
        first.add(await drive(sides[0], seconds, statements))
        second.add(await drive(sides[1], seconds, statements))
    trail.install()  # as the platform left it
    writers = len(sides[0].writers)
    print(
        f"  {writers} writer{'s' * (writers > 1)}, {rounds} x {seconds:g} s per side; per update: ms"
        " of this process's CPU, SQL statements, ms in the statement taking the chain head:"
    )
    for side, load in zip(sides, (first, second), strict=True):
        print(f"    {side.name:32} {load.describe()}")
    return first, second


# --- setting up ---------------------------------------------------------------------


async def tenant_with_customers(platform: Platform, slug: str, count: int) -> list[Writer]:
    """A new tenant with ``count`` customers, created through crmkit's own path (so with
    the platform's keys: encrypted, or in clear on the plain side)."""
    tenant = await create_tenant(platform.db, slug, slug)
    writers = []
    async with platform.tenant_scope(tenant.id) as scope:
        for i in range(count):
            customer = await service.create_customer(
                scope.ctx,
                kind=CustomerKind.PERSON,
                given_name=f"Given{i}",
                family_name=f"Family{i}",
                email=f"person{i}@example.com",
                tags=["premium"],
            )
            writers.append(Writer(tenant.id, customer.id))
    return writers


async def stored(side: Side) -> tuple[int, int, bytes]:
    """The numbers of audit events and of outbox events of the side's first tenant, and
    its first customer's ``pii`` as stored."""
    writer = side.writers[0]
    async with side.platform.db.tenant_session(writer.tenant_id) as session:
        events = await session.scalar(select(func.count()).select_from(AuditEvent))
        emitted = await session.scalar(select(func.count()).select_from(OutboxEvent))
        pii = await session.scalar(select(Customer.pii).where(Customer.id == writer.customer_id))
    assert events is not None and emitted is not None and pii is not None
    return events, emitted, bytes(pii)


def is_json(data: bytes) -> bool:
    try:
        json.loads(data)
    except ValueError:
        return False
    return True


async def check(audited: Side, plain: Side, statements: Statements, verbose: bool) -> None:
    """One update per side (after a warm-up, so the tenant key is cached): the same SQL
    but the audit trail's, whose append on PostgreSQL also inserts the outbox event (the
    plain side's INSERT of its own); one outbox event per side; one audit event and
    ciphertext on the audited side, none and the clear JSON on the plain one."""
    sql: dict[str, list[str]] = {}
    for side in (audited, plain):
        side.switch_recorder()
        await update(side.platform, side.writers[0])
        events_before, emitted_before, _ = await stored(side)
        statements.recorded = []
        await update(side.platform, side.writers[0])
        sql[side.name], statements.recorded = statements.recorded, None
        events_after, emitted_after, pii = await stored(side)
        appended = events_after - events_before
        assert appended == (1 if side.audited else 0), f"{side.name}: {appended} audit events appended"
        assert emitted_after - emitted_before == 1, f"{side.name}: {emitted_after - emitted_before} emitted"
        assert is_json(pii) != side.audited, f"{side.name}: pii stored as {pii[:40]!r}"
    trail.install()
    audit_sql = [s for s in sql[audited.name] if "audit_" in s]
    plain_sql = sql[plain.name]
    if any("INSERT INTO outbox_events" in s for s in audit_sql):  # PostgreSQL's append
        plain_sql = [s for s in plain_sql if not s.startswith("INSERT INTO outbox_events")]
    if [s for s in sql[audited.name] if "audit_" not in s] != plain_sql:
        listing = "\n".join(f"  {name}: {s[:120]}" for name in sql for s in sql[name])
        raise AssertionError(f"the sides ran different SQL besides the audit trail's:\n{listing}")
    print(
        f"  checked: the same {len(plain_sql)} SQL statements per update, plus the audit trail's"
        f" {len(audit_sql)} on the audited side (the plain side's {len(sql[plain.name])} all told)"
    )
    if verbose:
        for statement in sql[audited.name]:
            print(f"    {statement[:150]}")


async def audit_verdict(platform: Platform, tenant_ids: Sequence[uuid.UUID]) -> str:
    """crmkit's verdict on the tenants' chains."""
    verdicts = [await chain.verify(platform.db, t, platform.audit_signer) for t in tenant_ids]
    broken = [f"{v.tenant_id} at {v.first_bad_seq}: {v.reason}" for v in verdicts if not v.ok]
    state = f"BROKEN ({'; '.join(broken)})" if broken else "intact"
    return f"{len(verdicts)} chains, {sum(v.checked for v in verdicts)} events, {state}"


# --- the whole run ------------------------------------------------------------------


@dataclass
class Backend:
    name: str
    url: str  # what the platform connects as (its tables migrated)
    workdir: Path


async def run_backend(backend: Backend, args: argparse.Namespace, concurrent: bool) -> None:
    started = time.monotonic()
    settings = Settings(database_url=backend.url, data_dir=backend.workdir, dev_mode=True)
    platform = Platform(settings)
    plain_platform = Platform(settings, registry=platform.registry, db=platform.db)
    plain_platform.keyring = PlaintextKeyRing(settings)
    platform.db.after_commit = None  # no outbox relay (each Platform() set its own)
    statements = Statements()
    statements.listen(platform.db.sync_engine)
    try:
        tenants = [await tenant_with_customers(platform, f"audited-{i}", WRITERS) for i in range(WRITERS)]
        trail.uninstall()
        plain_writers = await tenant_with_customers(plain_platform, "plain-0", 1)
        trail.install()
        audited = Side("audited and encrypted", platform, True, tenants[0][:1])
        plain = Side("plain (no audit, no encryption)", plain_platform, False, plain_writers)
        print(f"\n{backend.name}")
        await check(audited, plain, statements, args.verbose)
        with_, without = await compare((audited, plain), args, statements)
        print(
            f"  ratio audited/plain: {with_.rate / without.rate:.2f} in updates/s (goal 0.9 or better),"
            f" {(without.cpu / without.updates) / (with_.cpu / with_.updates):.2f} in CPU per update"
        )
        if args.floor:  # another customer of the audited tenant, updated unaudited
            floor = Side("encrypted, not audited", platform, False, tenants[0][1:2])
            more, base = await compare((floor, plain), args, statements)
            print(
                f"  ratio encrypted/plain: {more.rate / base.rate:.2f} in updates/s,"
                f" {(base.cpu / base.updates) / (more.cpu / more.updates):.2f} in CPU per update"
                " (the ceiling of audited/plain: what encryption alone costs)"
            )
        if concurrent:
            one = Side(f"{WRITERS} writers in one tenant", platform, True, tenants[0])
            spread = Side(
                f"{WRITERS} writers over {WRITERS} tenants", platform, True, [t[0] for t in tenants]
            )
            shared, apart = await compare((one, spread), args, statements)
            ratio = shared.rate / apart.rate
            print(f"  ratio one tenant/spread: {ratio:.2f} in updates/s (goal 0.9 or better)")
        verdict = await audit_verdict(platform, [t[0].tenant_id for t in tenants])
        print(f"  ({time.monotonic() - started:.0f} s; audit after the run: {verdict})")
    finally:
        await platform.close()


async def migrate(url: str) -> None:
    """The core's and the installed plugins' tables, created as their owner."""
    owner = create_engine(url, pool=False)
    try:
        await migrations.upgrade(owner, load_registry())
    finally:
        await owner.dispose()


async def run_sqlite(args: argparse.Namespace, workdir: Path) -> None:
    url = f"sqlite+aiosqlite:///{workdir / 'bench.db'}"
    await migrate(url)
    await run_backend(Backend("SQLite", url, workdir), args, concurrent=False)


async def run_postgres(args: argparse.Namespace, workdir: Path) -> None:
    """Migrated by the superuser; the platform connects as a login role in ``crmkit_app``."""
    database, role = f"crmkit_bench_audit_{os.getpid()}", f"crmkit_bench_app_{os.getpid()}"
    if not await postgres_setup.create_database(database):
        return
    try:
        await migrate(postgres_setup.url(database))
        await postgres_setup.create_app_login(role)
        backend = Backend(
            "PostgreSQL (as a crmkit_app login role)", postgres_setup.url(database, role), workdir
        )
        await run_backend(backend, args, concurrent=True)
    finally:
        await postgres_setup.drop_database(database)
        await postgres_setup.drop_role(role)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one 0.5 s round per side, for smoke tests")
    parser.add_argument("--backend", choices=["sqlite", "postgres", "all"], default="all")
    parser.add_argument("-v", "--verbose", action="store_true", help="print the SQL of one update")
    parser.add_argument(
        "--floor",
        action="store_true",
        help="also the encrypted update without the audit recorder against the plain one",
    )
    args = parser.parse_args()
    for name in [k for k in os.environ if k.startswith("CRMKIT_")]:  # the bench sets its own
        del os.environ[name]
    with tempfile.TemporaryDirectory(prefix="crmkit-bench-") as tmp:
        if args.backend in ("sqlite", "all"):
            workdir = Path(tmp, "sqlite")
            workdir.mkdir()
            asyncio.run(run_sqlite(args, workdir))
        if args.backend in ("postgres", "all"):
            workdir = Path(tmp, "postgres")
            workdir.mkdir()
            asyncio.run(run_postgres(args, workdir))


if __name__ == "__main__":
    main()
