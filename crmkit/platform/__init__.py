"""The platform object: settings, database, plugins, hook callers, schemas and jobs,
wired once and passed explicitly to the app, the worker and the CLI."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

from crmkit.core.audit import trail as audit_trail
from crmkit.core.customers import protection
from crmkit.core.customers.personal import TENANT_KEYS
from crmkit.crypto import AuditSigner
from crmkit.db import Database, TenantSession, create_engine
from crmkit.errors import NotFound, Unauthenticated
from crmkit.platform.registry import PluginRegistry, load_registry
from crmkit.plugins.caller import HookCallers, TenantHooks
from crmkit.plugins.info import TenantContext
from crmkit.settings import Settings, get_settings
from crmkit.tenants import cache as access_cache
from crmkit.tenants.keys import KeyRing
from crmkit.tenants.models import TenantStatus
from crmkit.tenants.service import TenantState

if TYPE_CHECKING:
    from crmkit.jobs.queue import JobQueue
    from crmkit.jobs.runner import JobRunner
    from crmkit.platform.schema import SchemaCache


@dataclass
class TenantScope:
    """One tenant's transaction: its session, state and hook caller."""

    state: TenantState
    session: TenantSession
    hooks: TenantHooks

    @property
    def ctx(self) -> TenantContext:
        return self.hooks.ctx


class Platform:
    def __init__(
        self,
        settings: Settings | None = None,
        *,
        registry: PluginRegistry | None = None,
        db: Database | None = None,
    ) -> None:
        self.settings = settings or get_settings()
        self.registry = registry or load_registry()
        if db is None:
            if self.settings.database_url is None:  # the embedded SQLite file
                self.settings.data_dir.mkdir(parents=True, exist_ok=True)
            db = Database(
                create_engine(
                    self.settings.resolved_database_url,
                    pool_size=self.settings.database_pool_size,
                    max_overflow=self.settings.database_max_overflow,
                )
            )
        self.db = db
        self.hook_callers = HookCallers(self.registry)
        self.outbound = self.settings.outbound_policy()
        self.keyring = KeyRing(self.settings)
        self.access = access_cache.AccessCache(self.db.engine)
        """Tenant state and token revocation, answered from memory while it is current."""
        protection.install()  # before the audit recorder: it must see the keys created
        audit_trail.install()
        access_cache.install()
        self.db.after_commit = self.runner.relay_committed

    @cached_property
    def audit_signer(self) -> AuditSigner:
        """Signs audit checkpoints; its key is held outside the database."""
        return AuditSigner.load(self.settings)

    @cached_property
    def runner(self) -> JobRunner:
        from crmkit.jobs.runner import JobRunner

        return JobRunner(self)

    @cached_property
    def queue(self) -> JobQueue:
        from crmkit.jobs.backends import make_queue

        return make_queue(self)

    @cached_property
    def schemas(self) -> SchemaCache:
        from crmkit.platform.schema import SchemaCache

        return SchemaCache(self.registry, self.settings)

    @asynccontextmanager
    async def tenant_scope(
        self, tenant_id: uuid.UUID, *, require_active: bool = True
    ) -> AsyncIterator[TenantScope]:
        """Open a transaction for ``tenant_id``; commits on success, relays its events."""
        scope: TenantScope | None = None
        try:
            async with self.db.tenant_session(tenant_id) as session:
                scope = await self.bind(session, tenant_id, require_active=require_active)
                yield scope
        finally:
            if scope is not None:
                scope.hooks.release()

    async def bind(
        self, session: TenantSession, tenant_id: uuid.UUID, *, require_active: bool = True
    ) -> TenantScope:
        """Load the tenant's state in ``session`` (or take it from the access cache) and
        build its hook caller."""
        state = await self.access.state(session, tenant_id)
        if state is None:
            raise NotFound("no such tenant")
        if require_active and state.status is not TenantStatus.ACTIVE:
            raise Unauthenticated(f"tenant is {state.status.value}")
        session.info[TENANT_KEYS] = keys = await self.keyring.tenant_keys(session, tenant_id)
        ctx = TenantContext(tenant_id=tenant_id, session=session, jobs=self.queue, outbound=self.outbound)
        plugin_set = self.hook_callers.for_plugins(state.plugins)
        ctx.hooks = hooks = plugin_set.bind(ctx, state.plugin_settings, keys)
        return TenantScope(state, session, hooks)

    async def close(self) -> None:
        if "queue" in self.__dict__:
            await self.queue.close()
        await self.access.close()
        await self.db.dispose()
