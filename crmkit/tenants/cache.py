"""The statements before a request's work, answered from the process's memory: a
tenant's state (status and enabled plugins) and whether a token is revoked.

Caches must never widen access, so an answer is kept only while every change that
could alter it reaches this process at once:

- **Changes are seen where they are made.** Any write to ``tenants``,
  ``tenant_plugins`` or ``oauth_revocations`` through a session (the ORM or a
  SQLAlchemy statement) marks its tenant changed; on PostgreSQL the same transaction
  sends ``NOTIFY crmkit_access, '<tenant id>'``, which the server delivers to every
  listening process only if and when the transaction commits. After the commit the
  process that made the change drops its own answers at once.
- **PostgreSQL: LISTEN** (:class:`Listener`) on one connection per process rather than
  Redis pub/sub: the notification is part of the changing transaction, so no committed
  revocation goes unannounced (a publish after the commit can be lost to a crash
  between the two), and it needs no second service. Answers are kept only while the
  listening connection is up: when it drops, everything is forgotten and every request
  asks the database until it is listening again.
- **SQLite** serves one process; a command run in another process against the same
  file (``crmkit tenants suspend``) rewrites a stamp file beside it, which each lookup
  checks with one ``stat``.
- A transaction that changed a tenant reads that tenant from the database (its own
  uncommitted change), and stores nothing.
- Every answer also expires after :data:`TTL_SECONDS`, a bound on the damage of a
  change made behind crmkit's back (raw SQL in ``psql``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
import weakref
from collections import OrderedDict
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import ORMExecuteState, Session, SessionTransaction, UOWTransaction

from crmkit.core.customers.models import CustomerKey
from crmkit.core.customers.personal import PAGE_KEYS, TENANT_KEYS
from crmkit.db import TenantSession
from crmkit.errors import Unauthenticated
from crmkit.plugins.models import TenantPlugin
from crmkit.principal import Principal
from crmkit.tenants.models import Tenant
from crmkit.tenants.revocation import Revocation, is_revoked
from crmkit.tenants.service import TenantState, load_state

log = logging.getLogger(__name__)

CHANNEL = "crmkit_access"
APPLICATION = "crmkit-access-listener"
"""The listening connection's ``application_name`` (``pg_stat_activity``)."""
TTL_SECONDS = 60.0
MAX_TOKENS = 10_000
"""Tokens known not to be revoked, least recently used dropped first."""
PING_SECONDS = 5.0
"""How often the listening connection is checked; a silently dead one is noticed within this."""
CONNECT_SECONDS = 5.0

_CHANGED = "crmkit_access_changed"
"""Where a session keeps the tenants (``None``: all) whose access it changed."""
_ERASED_KEYS = "crmkit_erased_data_keys"
"""Where a session keeps the customers whose data key it deleted."""
_WATCHED = {Tenant.__tablename__, TenantPlugin.__tablename__, Revocation.__tablename__}
_NOTIFY = text("SELECT pg_notify(:channel, :payload)")


class AccessCache:
    """One process's answers to "what is this tenant's state?" and "is this token
    revoked?" for one database."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._states: dict[uuid.UUID, tuple[TenantState, float]] = {}
        self._tokens: OrderedDict[tuple[uuid.UUID, str], float] = OrderedDict()
        self._generation = 0
        postgres = engine.dialect.name == "postgresql"
        self.listener = Listener(self) if postgres else None
        self._stamp = None if postgres else _stamp_path(engine)
        self._stamp_seen = _stat(self._stamp)
        _caches.add(self)

    def __contains__(self, tenant_id: uuid.UUID) -> bool:
        """Whether the tenant's state is held."""
        return tenant_id in self._states

    @property
    def live(self) -> bool:
        """Whether answers may be kept: every change reaches this process now."""
        return self.listener is None or self.listener.listening

    async def state(self, session: TenantSession, tenant_id: uuid.UUID) -> TenantState | None:
        """The tenant's state (:func:`~crmkit.tenants.service.load_state`)."""
        usable = await self._usable(session, tenant_id)
        if usable:
            cached = self._states.get(tenant_id)
            if cached is not None and cached[1] > time.monotonic():
                return cached[0]
        generation = self._generation
        state = await load_state(session, tenant_id)
        if usable and state is not None and generation == self._generation:
            self._states[tenant_id] = (state, time.monotonic() + TTL_SECONDS)
        return state

    async def ensure_not_revoked(self, session: TenantSession, principal: Principal) -> None:
        """Refuse a revoked token (:mod:`crmkit.tenants.revocation`). Call it in a session
        of the token's tenant."""
        tenant_id = principal.tenant_id
        key = (tenant_id, principal.token_id)
        usable = await self._usable(session, tenant_id)
        if usable:
            expires = self._tokens.get(key)
            if expires is not None and expires > time.monotonic():
                self._tokens.move_to_end(key)
                return
        generation = self._generation
        if await is_revoked(session, tenant_id, principal.revocation_keys(), principal.issued_at):
            raise Unauthenticated("the access token has been revoked")
        if usable and generation == self._generation:
            self._tokens[key] = time.monotonic() + TTL_SECONDS
            if len(self._tokens) > MAX_TOKENS:
                self._tokens.popitem(last=False)

    def invalidate(self, tenant_id: uuid.UUID | None) -> None:
        """Forget the answers about ``tenant_id`` (``None``: every tenant)."""
        self._generation += 1
        if tenant_id is None:
            self._states.clear()
            self._tokens.clear()
            return
        self._states.pop(tenant_id, None)
        for key in [k for k in self._tokens if k[0] == tenant_id]:
            del self._tokens[key]

    async def _usable(self, session: TenantSession, tenant_id: uuid.UUID) -> bool:
        """Whether this lookup may use and keep answers: the process hears every change,
        and the session has not itself changed the tenant."""
        changed = session.info.get(_CHANGED)
        if changed and (None in changed or tenant_id in changed):
            return False
        if self.listener is not None:
            await self.listener.start()
        elif self._stamp is not None:
            seen = _stat(self._stamp)
            if seen != self._stamp_seen:  # another process changed some tenant
                self._stamp_seen = seen
                self.invalidate(None)
        return self.live

    def committed(self, tenants: set[uuid.UUID | None]) -> None:
        """A transaction of this process changed ``tenants``: forget them here, and tell
        other processes on the same SQLite file."""
        for tenant_id in tenants:
            self.invalidate(tenant_id)
        if self._stamp is not None:
            self._stamp.write_bytes(os.urandom(8))

    async def close(self) -> None:
        if self.listener is not None:
            await self.listener.close()


class Listener:
    """``LISTEN crmkit_access`` on a connection of its own, kept up by a background task:
    reconnects after a drop (forgetting every answer, since notifications may have been
    missed meanwhile) and checks the connection every :data:`PING_SECONDS`."""

    def __init__(self, cache: AccessCache) -> None:
        self.cache = cache
        self.listening = False
        self.pid: int | None = None
        """The listening connection's server process (``pg_stat_activity.pid``)."""
        self._task: asyncio.Task[None] | None = None
        self._up: asyncio.Event | None = None

    async def start(self) -> None:
        """Start listening in this event loop if not yet; the first call waits (up to
        :data:`CONNECT_SECONDS`) for the connection, so the process's first requests
        already find it listening."""
        loop = asyncio.get_running_loop()
        if self._task is not None and self._task.get_loop() is loop and not self._task.done():
            return
        self._stopped()  # a task of another (closed) event loop hears nothing here
        self._up = asyncio.Event()
        self._task = loop.create_task(self._run(self._up), name="crmkit access cache listener")
        try:
            await asyncio.wait_for(self._up.wait(), CONNECT_SECONDS)
        except TimeoutError:
            log.warning("access cache: not listening yet; requests read tenant state from the database")

    def _stopped(self) -> None:
        self.listening = False
        self.cache.invalidate(None)

    def _notified(self, connection: Any, pid: int, channel: str, payload: str) -> None:
        self.cache.invalidate(None if payload == "*" else uuid.UUID(payload))

    async def _run(self, up: asyncio.Event) -> None:
        import asyncpg

        args, options = self.cache.engine.dialect.create_connect_args(self.cache.engine.url)
        for name in ("prepared_statement_cache_size", "prepared_statement_name_func", "async_fallback"):
            options.pop(name, None)
        options["server_settings"] = {**options.get("server_settings", {}), "application_name": APPLICATION}
        delay = 0.5
        while True:
            connection = None
            try:
                connection = await asyncpg.connect(*args, timeout=CONNECT_SECONDS, **options)
                delay = 0.5
                await self._listen(connection, up)
                log.warning("access cache: the listening connection closed; reconnecting")
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("access cache: not listening (%s); reconnecting in %.1f s", exc, delay)
            finally:
                self._stopped()
                if connection is not None and not connection.is_closed():
                    connection.terminate()
            await asyncio.sleep(delay)
            delay = min(delay * 2, PING_SECONDS)

    async def _listen(self, connection: Any, up: asyncio.Event) -> None:
        """Listen on ``connection`` until it closes or stops answering."""
        lost = asyncio.Event()
        connection.add_termination_listener(lambda _: lost.set())
        await connection.add_listener(CHANNEL, self._notified)
        self.cache.invalidate(None)  # whatever changed while no one listened
        self.listening, self.pid = True, connection.get_server_pid()
        up.set()
        while not lost.is_set():
            try:
                await asyncio.wait_for(lost.wait(), PING_SECONDS)
            except TimeoutError:
                await connection.fetchval("SELECT 1", timeout=PING_SECONDS)

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None and task.get_loop() is asyncio.get_running_loop():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self._stopped()


def _stamp_path(engine: AsyncEngine) -> Path | None:
    """The stamp file beside a SQLite database file (none for an in-memory database)."""
    database = engine.url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database).with_name(Path(database).name + "-crmkit-access")


def _stat(path: Path | None) -> tuple[int, int] | None:
    if path is None:
        return None
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_ino, stat.st_mtime_ns


# --- seeing changes where they are made ------------------------------------------------

_caches: weakref.WeakSet[AccessCache] = weakref.WeakSet()


def _changed(session: Session, tenant_id: uuid.UUID | None) -> None:
    """Note that ``session`` changed the tenant's access; on PostgreSQL announce it in the
    same transaction (delivered at commit, dropped on rollback): once per tenant, but
    again inside a savepoint, whose rollback would drop the announcement."""
    changed: set[uuid.UUID | None] = session.info.setdefault(_CHANGED, set())
    if tenant_id in changed and not session.in_nested_transaction():
        return
    changed.add(tenant_id)
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        payload = "*" if tenant_id is None else str(tenant_id)
        connection.execute(_NOTIFY, {"channel": CHANNEL, "payload": payload})


def _after_flush(session: Session, flush_context: UOWTransaction) -> None:
    """Rows the flush wrote (orphans it deleted included)."""
    erased: list[tuple[uuid.UUID, uuid.UUID]] = []
    for state, (isdelete, listonly) in flush_context.states.items():
        obj = state.obj()
        if listonly or obj is None:
            continue
        if isinstance(obj, Tenant):
            _changed(session, obj.id)
        elif isinstance(obj, TenantPlugin | Revocation):
            _changed(session, obj.tenant_id)
        elif isdelete and isinstance(obj, CustomerKey):
            erased.append((obj.tenant_id, obj.customer_id))
    if erased:
        session.info.setdefault(_ERASED_KEYS, []).extend(erased)
        _forget_data_keys(session, erased)


def _before_statement(state: ORMExecuteState) -> None:
    """A bulk statement on a watched table: its tenant is the session's (all tenants
    for a platform session)."""
    if state.is_select or not (state.is_insert or state.is_update or state.is_delete):
        return
    table = state.statement.entity_description.get("table")  # type: ignore[attr-defined]
    if getattr(table, "name", None) in _WATCHED:
        _changed(state.session, state.session.info.get("tenant_id"))


def _forget_data_keys(session: Session, erased: list[tuple[uuid.UUID, uuid.UUID]]) -> None:
    keys = session.info.get(TENANT_KEYS)
    page_keys = session.info.get(PAGE_KEYS, {})
    for _, customer_id in erased:
        page_keys.pop(customer_id, None)
        if keys is not None:
            keys.forget_data_key(customer_id)


def _after_commit(session: Session) -> None:
    erased = session.info.pop(_ERASED_KEYS, None)
    if erased:  # again: a request may have cached the key before this commit
        _forget_data_keys(session, erased)
    changed = session.info.pop(_CHANGED, None)
    if changed:
        for cache in list(_caches):
            if cache.engine.sync_engine is session.bind:
                cache.committed(changed)


def _after_rollback(session: Session, previous: SessionTransaction) -> None:
    """The transaction's changes are gone (a savepoint's leave the notes: forgetting
    too much is harmless)."""
    if not previous.nested:
        session.info.pop(_CHANGED, None)
        session.info.pop(_ERASED_KEYS, None)


_LISTENERS = (
    ("after_flush", _after_flush),
    ("do_orm_execute", _before_statement),
    ("after_commit", _after_commit),
    ("after_soft_rollback", _after_rollback),
)


def install() -> None:
    """Watch every ORM session for access changes (idempotent; the platform calls it)."""
    for name, listener in _LISTENERS:
        if not event.contains(Session, name, listener):
            event.listen(Session, name, listener)
