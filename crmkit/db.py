"""Database access: the shared declarative base, tenant-owned tables and sessions.

Every tenant-owned model inherits :class:`TenantOwned`. A session bound to a tenant
(:func:`Database.tenant_session`) adds ``tenant_id = <tenant>`` to every ORM query and
refuses to flush a row of another tenant; a platform session (operator work) must say
so explicitly. Row-level security on PostgreSQL is the second, independent wall: every
transaction of a tenant session starts with ``set_config('crmkit.tenant_id', <tenant>,
true)`` (transaction-local, so a pooled connection never carries it to the next
tenant), and the policies (:mod:`crmkit.migrations.rls`) show a transaction without it
no tenant-owned row at all, platform sessions included.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import logging
import os
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast

from sqlalchemy import (
    JSON,
    DateTime,
    Enum,
    Executable,
    ForeignKeyConstraint,
    MetaData,
    Table,
    TypeDecorator,
    Uuid,
    event,
    text,
)
from sqlalchemy.engine import Connection, CursorResult, Engine
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    ORMExecuteState,
    Session,
    SessionTransaction,
    UOWTransaction,
    mapped_column,
    with_loader_criteria,
)
from sqlalchemy.pool import NullPool

P = ParamSpec("P")
R = TypeVar("R")

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


_uuid7_lock = threading.Lock()
_uuid7_last = [0, 0]  # the last id's millisecond and its 12-bit sequence


def uuid7() -> uuid.UUID:
    """A time-ordered UUID (RFC 9562 v7): ids sort by creation, so they make keyset cursors.

    Within one millisecond the 12 bits after the time count up (RFC 9562's method 1),
    so ids made by this process sort in the order they were made, not by chance; the
    other 62 bits stay random.
    """
    with _uuid7_lock:
        ms = time.time_ns() // 1_000_000
        last_ms, sequence = _uuid7_last
        if ms <= last_ms:  # the same millisecond (or the clock stepped back): count on
            ms, sequence = last_ms, sequence + 1
            if sequence > 0xFFF:
                ms, sequence = ms + 1, 0
        else:
            sequence = int.from_bytes(os.urandom(1), "big")  # a random start within the ms
        _uuid7_last[:] = [ms, sequence]
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= sequence << 64
    value |= 0b10 << 62
    value |= int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    return uuid.UUID(int=value)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend.

    SQLite keeps no offset: values are converted to UTC before they are stored and
    marked UTC when read, so a time given with any offset means the same instant.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("crmkit stores timezone-aware datetimes only")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


class Model(DeclarativeBase):
    """The declarative base of the core and of every plugin's models."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON(), list[str]: JSON()}


def str_enum(enum_cls: type[enum.StrEnum]) -> Enum:
    """Stores a StrEnum by value as a checked VARCHAR: portable, and readable in SQL."""
    return Enum(
        enum_cls,
        native_enum=False,
        length=max(len(m.value) for m in enum_cls),
        values_callable=lambda e: [m.value for m in e],
        validate_strings=True,
    )


class TenantOwned:
    """Mixin for tenant-owned tables: a ``tenant_id`` column the tenant session enforces.

    ``tenant_id`` leads every primary key, so every unique key includes the tenant (a
    duplicate in another tenant never reveals itself) and rows cluster by tenant, as a
    distributed PostgreSQL (Citus) needs. Load a row by id with
    ``session.get(Model, (ctx.tenant_id, id))``.
    """

    tenant_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, sort_order=-1)


AfterCommit = Callable[[AsyncSession], Awaitable[None]]


def tenant_owned_tables(module_prefix: str | None = None) -> list[Table]:
    """Tables of tenant-owned models (of one package, if named), children before parents."""
    names = {
        cast(Table, mapper.local_table).name
        for mapper in Model.registry.mappers
        if issubclass(mapper.class_, TenantOwned)
        and (module_prefix is None or mapper.class_.__module__.partition(".")[0] == module_prefix)
    }
    return [t for t in reversed(Model.metadata.sorted_tables) if t.name in names]


def customer_key() -> ForeignKeyConstraint:
    """The foreign key of a ``customer_id`` column: composite with the tenant, so no row
    can point at another tenant's customer, and cascading, so erasing or purging a
    customer takes the rows that hang off it along."""
    return ForeignKeyConstraint(
        ["tenant_id", "customer_id"], ["customers.tenant_id", "customers.id"], ondelete="CASCADE"
    )


class CrossTenantWrite(RuntimeError):
    """A flush tried to write a row of a tenant other than the session's."""


class UnscopedQuery(RuntimeError):
    """A tenant-owned table was queried from a session bound to no tenant."""


def _serialised(method: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    @functools.wraps(method)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        session: TenantSession = args[0]  # type: ignore[assignment]
        task = asyncio.current_task()
        if session._owner is task:  # re-entered (scalars() calls execute())
            return await method(*args, **kwargs)
        async with session._lock:
            session._owner = task
            try:
                return await method(*args, **kwargs)
            finally:
                session._owner = None

    return wrapper


class TenantSession(AsyncSession):
    """An AsyncSession that sibling GraphQL resolvers may share.

    graphql-core resolves sibling fields concurrently; an AsyncSession allows one
    operation at a time, so each operation waits for the previous one.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lock = asyncio.Lock()
        self._owner: asyncio.Task[Any] | None = None

    @property
    def tenant_id(self) -> uuid.UUID | None:
        return self.sync_session.info.get("tenant_id")

    async def execute_core(
        self, statement: Executable, params: Mapping[str, Any]
    ) -> CursorResult[*tuple[Any, ...]]:
        """Run a Core ``statement`` built once (a module constant) on this session's
        connection, in its transaction, in turn with its other operations.

        Without the ORM's work per execution: no tenant criteria (the statement must
        name its tenant itself; row-level security still applies on PostgreSQL), no
        loading, and the statement's cache key, computed once, is reused. For the
        kernel's hot reads of plain rows (a page of customers)."""
        connection = await self.connection()
        return await connection.execute(statement, params)

    if not TYPE_CHECKING:  # same signatures as AsyncSession's (overloads included)
        execute = _serialised(AsyncSession.execute)
        scalar = _serialised(AsyncSession.scalar)
        scalars = _serialised(AsyncSession.scalars)
        get = _serialised(AsyncSession.get)
        get_one = _serialised(AsyncSession.get_one)
        refresh = _serialised(AsyncSession.refresh)
        delete = _serialised(AsyncSession.delete)
        merge = _serialised(AsyncSession.merge)
        flush = _serialised(AsyncSession.flush)
        commit = _serialised(AsyncSession.commit)
        rollback = _serialised(AsyncSession.rollback)
        run_sync = _serialised(AsyncSession.run_sync)
        execute_core = _serialised(execute_core)


_TENANT_CRITERIA = "crmkit_tenant_criteria"


def _add_tenant_criteria(state: ORMExecuteState) -> None:
    if not (state.is_select or state.is_update or state.is_delete):
        return
    if state.execution_options.get("crmkit_cross_tenant") or state.session.info.get("cross_tenant"):
        return
    tenant_id = state.session.info.get("tenant_id")
    if tenant_id is None:
        if any(isinstance(m.class_, type) and issubclass(m.class_, TenantOwned) for m in state.all_mappers):
            raise UnscopedQuery("tenant-owned data queried outside a tenant scope")
        return
    criteria = state.session.info.get(_TENANT_CRITERIA)
    if criteria is None or criteria[0] != tenant_id:  # made once per session, not per statement
        option = with_loader_criteria(
            TenantOwned,
            lambda cls: cls.tenant_id == tenant_id,
            include_aliases=True,
            track_closure_variables=False,
        )
        criteria = state.session.info[_TENANT_CRITERIA] = (tenant_id, option)
    state.statement = state.statement.options(criteria[1])


def _check_tenant_writes(session: Session, flush_context: UOWTransaction, instances: Any) -> None:
    if session.info.get("cross_tenant"):
        return
    tenant_id = session.info.get("tenant_id")
    for obj in session.new:
        if isinstance(obj, TenantOwned):
            if tenant_id is None:
                raise CrossTenantWrite("tenant-owned row written outside a tenant scope")
            if obj.tenant_id is None:
                obj.tenant_id = tenant_id
    for obj in (*session.new, *session.dirty, *session.deleted):
        if isinstance(obj, TenantOwned) and obj.tenant_id != tenant_id:
            raise CrossTenantWrite(f"refusing to write a {type(obj).__name__} of another tenant")


TENANT_SETTING = "crmkit.tenant_id"
"""The PostgreSQL setting the row-level security policies compare ``tenant_id`` with."""
_SET_TENANT = text(f"SELECT set_config('{TENANT_SETTING}', :tenant, true)")


def _set_tenant(session: Session, transaction: SessionTransaction, connection: Connection) -> None:
    """First statement of every tenant transaction on PostgreSQL: name the tenant for
    row-level security, for this transaction only (``is_local``)."""
    if transaction.nested or connection.dialect.name != "postgresql":
        return
    tenant_id = session.info.get("tenant_id")
    if tenant_id is not None:
        connection.execute(_SET_TENANT, {"tenant": str(tenant_id)})


event.listen(Session, "do_orm_execute", _add_tenant_criteria)
event.listen(Session, "before_flush", _check_tenant_writes)
event.listen(Session, "after_begin", _set_tenant)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def create_engine(url: str, *, pool: bool = True, pool_size: int = 20, max_overflow: int = 10) -> AsyncEngine:
    """An async engine whose errors and logs never show statement parameters: they
    hold personal data and credentials (``hide_parameters``). ``pool=False`` opens a
    connection per use (migrations); else ``pool_size`` stay open
    (``Settings.database_pool_size``)."""
    kwargs: dict[str, Any] = {"hide_parameters": True}
    if not pool:
        kwargs["poolclass"] = NullPool
    else:
        kwargs.update(pool_size=pool_size, max_overflow=max_overflow)
    engine = create_async_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        # aiosqlite logs every call with its arguments at DEBUG: keep it above that
        logging.getLogger("aiosqlite").setLevel(logging.INFO)
    return engine


class Database:
    """An engine plus the two kinds of session crmkit hands out."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._sessions = async_sessionmaker(engine, class_=TenantSession, expire_on_commit=False)
        self.after_commit: AfterCommit | None = None

    @property
    def sync_engine(self) -> Engine:
        return self.engine.sync_engine

    def session_for(self, tenant_id: uuid.UUID) -> TenantSession:
        session = self._sessions()
        session.sync_session.info["tenant_id"] = tenant_id
        return session

    @asynccontextmanager
    async def tenant_session(self, tenant_id: uuid.UUID) -> AsyncIterator[TenantSession]:
        """A session scoped to one tenant; commits on success, rolls back on error."""
        async with self.session_for(tenant_id) as session:
            async with session.begin():
                yield session
            await self.committed(session)

    async def committed(self, session: AsyncSession) -> None:
        """Run after a tenant transaction commits: hands its outbox events to the relay."""
        if self.after_commit is not None:
            await self.after_commit(session)

    @asynccontextmanager
    async def platform_session(self) -> AsyncIterator[TenantSession]:
        """A session bound to no tenant: operator tools and schedulers only.

        It reads and writes platform tables (``tenants``). On PostgreSQL row-level
        security shows it no tenant-owned row: work on tenants' data lists the tenants
        here, then opens one :meth:`tenant_session` per tenant.
        """
        async with self._sessions() as session:
            session.sync_session.info["cross_tenant"] = True
            async with session.begin():
                yield session

    async def dispose(self) -> None:
        await self.engine.dispose()
