"""Creating and finding tenants, and loading what a request needs to know of one."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from crmkit.db import Database, TenantSession, uuid7
from crmkit.errors import BadUserInput, Conflict, NotFound
from crmkit.plugins.models import TenantPlugin
from crmkit.tenants.models import Tenant, TenantStatus

SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")


@dataclass(frozen=True)
class TenantState:
    """A tenant's status and enabled plugins with their raw settings."""

    tenant_id: uuid.UUID
    status: TenantStatus
    plugin_settings: dict[str, dict[str, Any]]

    @property
    def plugins(self) -> frozenset[str]:
        return frozenset(self.plugin_settings)


async def load_state(session: TenantSession, tenant_id: uuid.UUID) -> TenantState | None:
    """One statement: the tenant's status joined with its enabled plugins."""
    rows = (
        await session.execute(
            select(Tenant.status, TenantPlugin.plugin, TenantPlugin.settings)
            .outerjoin(
                TenantPlugin,
                (TenantPlugin.tenant_id == Tenant.id) & TenantPlugin.enabled,
            )
            .where(Tenant.id == tenant_id)
        )
    ).all()
    if not rows:
        return None
    plugins = {row.plugin: row.settings or {} for row in rows if row.plugin is not None}
    return TenantState(tenant_id, rows[0].status, plugins)


def new_tenant(slug: str, name: str) -> Tenant:
    """A checked, not yet stored tenant; its id is known at once."""
    if not SLUG.match(slug):
        raise BadUserInput(
            f"slug {slug!r} must be 1-63 lowercase letters, digits or hyphens, "
            "not starting or ending with a hyphen",
            field="slug",
        )
    if not name.strip():
        raise BadUserInput("name must not be empty", field="name")
    return Tenant(id=uuid7(), slug=slug, name=name.strip())


async def add_tenant(session: TenantSession, tenant: Tenant) -> None:
    """Store ``tenant`` in ``session``'s transaction; a taken slug is a Conflict (the
    transaction is then rolled back: onboarding starts with this, nothing is lost)."""
    session.add(tenant)
    try:
        await session.flush()
    except IntegrityError:
        raise Conflict(f"a tenant with slug {tenant.slug!r} already exists", field="slug") from None


async def create_tenant(db: Database, slug: str, name: str) -> Tenant:
    tenant = new_tenant(slug, name)
    async with db.platform_session() as session:
        await add_tenant(session, tenant)
    return tenant


async def get_tenant(db: Database, slug_or_id: str) -> Tenant:
    async with db.platform_session() as session:
        try:
            criterion = Tenant.id == uuid.UUID(slug_or_id)
        except ValueError:
            criterion = Tenant.slug == slug_or_id
        tenant = await session.scalar(select(Tenant).where(criterion))
    if tenant is None:
        raise NotFound(f"no tenant {slug_or_id!r}")
    return tenant


async def open_tenant(db: Database, slug_or_id: str, *, require_active: bool = False) -> Tenant:
    """A tenant that may still be written to or be issued credentials: never an
    offboarded one (its data and key are gone; a write would start a new key), and
    with ``require_active`` not a suspended one either."""
    tenant = await get_tenant(db, slug_or_id)
    if tenant.status is TenantStatus.OFFBOARDED:
        raise BadUserInput(f"tenant {slug_or_id!r} is offboarded; its data is gone")
    if require_active and tenant.status is not TenantStatus.ACTIVE:
        raise BadUserInput(f"tenant {slug_or_id!r} is {tenant.status.value}")
    return tenant


async def list_tenants(db: Database) -> list[Tenant]:
    async with db.platform_session() as session:
        return list(await session.scalars(select(Tenant).order_by(Tenant.slug)))


async def set_status(db: Database, slug_or_id: str, status: TenantStatus) -> Tenant:
    tenant = await get_tenant(db, slug_or_id)
    async with db.platform_session() as session:
        tenant = await session.merge(tenant)
        tenant.status = status
    return tenant


async def set_retention(db: Database, slug_or_id: str, days: int | None) -> Tenant:
    """Keep a tenant's activities ``days`` days (None: keep them)."""
    if days is not None and not 1 <= days <= 36500:
        raise BadUserInput("activity retention must be between 1 and 36500 days", field="days")
    tenant = await open_tenant(db, slug_or_id)
    async with db.platform_session() as session:
        tenant = await session.merge(tenant)
        tenant.activity_retention_days = days
    return tenant
