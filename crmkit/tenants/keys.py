"""Each tenant's keys, created on first use and unwrapped with the master key.

Unwrapped tenant keys are cached in the process for a few minutes, so a request costs
no key lookup; a destroyed key stops working everywhere once the cache entry expires.
The customers' data keys they unwrap are cached too (:class:`~crmkit.crypto.DataKeyCache`),
for the same window, and dropped at once when a customer is erased or the tenant offboarded.
"""

from __future__ import annotations

import time
import uuid

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from crmkit.crypto import DataKeyCache, MasterKey, TenantKeys, new_tenant_key, unwrap_tenant_key
from crmkit.db import TenantSession
from crmkit.settings import Settings
from crmkit.tenants.models import TenantKey

CACHE_SECONDS = 300.0


class KeyRing:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._master: MasterKey | None = None
        self._cache: dict[uuid.UUID, tuple[TenantKeys, float]] = {}
        self.data_keys = DataKeyCache(seconds=CACHE_SECONDS)

    @property
    def master(self) -> MasterKey:
        if self._master is None:
            self._master = MasterKey.load(self.settings)
        return self._master

    async def tenant_keys(self, session: TenantSession, tenant_id: uuid.UUID) -> TenantKeys:
        cached = self._cache.get(tenant_id)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        wrapped = await session.scalar(select(TenantKey.wrapped_key))
        if wrapped is None:
            wrapped = await self._create(session, tenant_id)
        keys = unwrap_tenant_key(self.master, tenant_id, wrapped, self.data_keys)
        self._cache[tenant_id] = (keys, time.monotonic() + CACHE_SECONDS)
        return keys

    async def _create(self, session: TenantSession, tenant_id: uuid.UUID) -> bytes:
        """Create the tenant's key; under a race the first writer's key wins."""
        _, wrapped = new_tenant_key(self.master, tenant_id)
        dialect = (await session.connection()).dialect.name
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        await session.execute(
            insert(TenantKey)
            .values(tenant_id=tenant_id, wrapped_key=wrapped)
            .on_conflict_do_nothing(index_elements=["tenant_id"])
        )
        stored = await session.scalar(select(TenantKey.wrapped_key))
        assert stored is not None
        return stored

    def forget(self, tenant_id: uuid.UUID) -> None:
        """Drop the tenant's keys and its customers' data keys (offboarding)."""
        self._cache.pop(tenant_id, None)
        self.data_keys.forget(tenant_id)
