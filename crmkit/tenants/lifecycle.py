"""A tenant's life: onboarding, suspension, reactivation, offboarding.

Each act is recorded in the tenant's own audit chain. Offboarding purges every
tenant-owned row (core and plugins alike, found from the models' metadata) and
destroys the tenant key, so even copies of the data elsewhere can no longer be
read; the audit trail stays, holding ids and field names only.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, delete

from crmkit.core.audit.models import AuditCheckpoint, AuditEvent, AuditHead
from crmkit.core.audit.trail import Actor, bind_actor, note
from crmkit.core.customers.models import Customer
from crmkit.db import tenant_owned_tables
from crmkit.errors import BadUserInput
from crmkit.platform import Platform
from crmkit.plugins import enablement
from crmkit.tenants.models import Tenant, TenantStatus
from crmkit.tenants.service import create_tenant, get_tenant, set_status
from crmkit.tenants.users import Role, StaffUser, create_user, normalise_email

KEPT = {AuditEvent.__tablename__, AuditHead.__tablename__, AuditCheckpoint.__tablename__}
"""Tables an offboarding keeps: the audit trail must still verify afterwards."""


@dataclass(frozen=True)
class Admin:
    """The tenant's first administrator."""

    email: str
    display_name: str


@dataclass(frozen=True)
class Onboarded:
    tenant: Tenant
    plugins: dict[str, dict[str, Any]]
    admin: StaffUser | None = None
    admin_password: str | None = None
    """Generated, shown once: the admin changes it at first login."""


async def onboard(
    platform: Platform,
    slug: str,
    name: str,
    plugins: dict[str, dict[str, Any]] | None = None,
    admin: Admin | None = None,
    operator: str | None = None,
) -> Onboarded:
    """Create a tenant, its first tenant admin and its first plugins. Bad plugin
    settings or a bad admin e-mail are refused before anything is written."""
    plugins = plugins or {}
    for plugin, values in plugins.items():
        enablement.validate_settings(enablement.installed_plugin(platform, plugin), values)
    if admin is not None:
        normalise_email(admin.email)
    tenant = await create_tenant(platform.db, slug, name)
    enabled = {
        plugin: await enablement.enable(platform, slug, plugin, values) for plugin, values in plugins.items()
    }
    user, password = None, None
    async with platform.tenant_scope(tenant.id) as scope:
        bind_actor(scope.session, Actor.from_subject(operator or "operator:cli"))
        if admin is not None:
            user, password = await create_user(
                scope.session, email=admin.email, display_name=admin.display_name, role=Role.TENANT_ADMIN
            )
        note(scope.session, tenant.id, "tenant.onboard", "Tenant", [str(tenant.id)])
    return Onboarded(tenant, enabled, user, password)


async def suspend(platform: Platform, slug: str, operator: str | None = None) -> Tenant:
    """Every token of the tenant is refused from the next request on."""
    tenant = await _change_status(platform, slug, TenantStatus.SUSPENDED)
    await _record(platform, tenant.id, "tenant.suspend", operator)
    return tenant


async def reactivate(platform: Platform, slug: str, operator: str | None = None) -> Tenant:
    tenant = await _change_status(platform, slug, TenantStatus.ACTIVE)
    await _record(platform, tenant.id, "tenant.reactivate", operator)
    return tenant


async def offboard(platform: Platform, slug: str, *, confirm: str, operator: str | None = None) -> Tenant:
    """Purge the tenant's data and destroy its key. ``confirm`` must repeat the slug."""
    tenant = await get_tenant(platform.db, slug)
    if confirm != tenant.slug:
        raise BadUserInput("to offboard, confirm with the tenant's slug", field="confirm")
    customers = cast(Table, Customer.__table__)
    tables = [  # what deleting the customers does not already remove by cascade
        t
        for t in tenant_owned_tables()
        if t.name not in KEPT
        and t is not customers
        and not any(fk.references(customers) for fk in t.foreign_keys)
    ]
    async with platform.db.tenant_session(tenant.id) as session:
        bind_actor(session, Actor.from_subject(operator or "operator:cli"))
        # customers first: their children (consent records included) go by cascade
        await session.execute(delete(Customer).where(Customer.tenant_id == tenant.id))
        for table in tables:
            await session.execute(delete(table).where(table.c.tenant_id == tenant.id))
        note(session, tenant.id, "tenant.offboard", "Tenant", [str(tenant.id)], [t.name for t in tables])
    platform.keyring.forget(tenant.id)
    return await set_status(platform.db, slug, TenantStatus.OFFBOARDED)


async def _change_status(platform: Platform, slug: str, status: TenantStatus) -> Tenant:
    tenant = await get_tenant(platform.db, slug)
    if tenant.status is TenantStatus.OFFBOARDED:
        raise BadUserInput(f"tenant {slug!r} is offboarded; its data is gone")
    return await set_status(platform.db, slug, status)


async def _record(platform: Platform, tenant_id: uuid.UUID, action: str, operator: str | None) -> None:
    async with platform.db.tenant_session(tenant_id) as session:
        bind_actor(session, Actor.from_subject(operator or "operator:cli"))
        note(session, tenant_id, action, "Tenant", [str(tenant_id)])
