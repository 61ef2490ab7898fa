"""A tenant's life: onboarding, suspension, reactivation, offboarding.

Each act is recorded in the tenant's own audit chain. Offboarding purges every
tenant-owned row (core and plugins alike, found from the models' metadata) and
destroys the tenant key, so even copies of the data elsewhere can no longer be
read; the audit trail stays, holding ids and field names only.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, delete

from crmkit.auth.sessions import revoke_tenant_sessions
from crmkit.core.audit.models import AuditCheckpoint, AuditEvent, AuditHead, AuditJournal
from crmkit.core.audit.trail import Actor, acting_as, note
from crmkit.core.customers.models import Customer
from crmkit.db import tenant_owned_tables
from crmkit.errors import BadUserInput
from crmkit.platform import Platform, enablement
from crmkit.tenants.models import Tenant, TenantStatus
from crmkit.tenants.service import add_tenant, get_tenant, new_tenant, open_tenant, set_retention, set_status
from crmkit.tenants.users import Role, StaffUser, create_user, normalise_email

KEPT = {
    AuditEvent.__tablename__,
    AuditHead.__tablename__,
    AuditCheckpoint.__tablename__,
    AuditJournal.__tablename__,  # events not chained yet: the next append chains them
}
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
    """Create a tenant, its first tenant admin and its first plugins, in one
    transaction: a refusal or a configuration error (no master key for the tenant's
    key) leaves nothing behind, so the same command can simply be run again."""
    plugins = plugins or {}
    for plugin, values in plugins.items():
        enablement.validate_settings(enablement.installed_plugin(platform, plugin), values)
    if admin is not None:
        normalise_email(admin.email)
    tenant = new_tenant(slug, name)
    user, password = None, None
    with _acting(operator):
        async with platform.db.tenant_session(tenant.id) as session:
            await add_tenant(session, tenant)
            scope = await platform.bind(session, tenant.id)
            enabled = {
                plugin: await enablement.enable_in(platform, scope, plugin, values)
                for plugin, values in plugins.items()
            }
            if admin is not None:
                user, password = await create_user(
                    session, email=admin.email, display_name=admin.display_name, role=Role.TENANT_ADMIN
                )
            note(session, tenant.id, "tenant.onboard", "Tenant", [str(tenant.id)])
    return Onboarded(tenant, enabled, user, password)


async def suspend(platform: Platform, slug: str, operator: str | None = None) -> Tenant:
    """End every session of the tenant: its tokens are refused from the next request
    on, and stay refused after a reactivation (refresh tokens and pending
    authorization codes are deleted, access tokens issued until now revoked)."""
    tenant = await _change_status(platform, slug, TenantStatus.SUSPENDED)
    with _acting(operator):
        async with platform.db.tenant_session(tenant.id) as session:
            await revoke_tenant_sessions(session)
            note(session, tenant.id, "tenant.suspend", "Tenant", [str(tenant.id)])
    return tenant


async def reactivate(platform: Platform, slug: str, operator: str | None = None) -> Tenant:
    tenant = await _change_status(platform, slug, TenantStatus.ACTIVE)
    with _acting(operator):
        async with platform.db.tenant_session(tenant.id) as session:
            note(session, tenant.id, "tenant.reactivate", "Tenant", [str(tenant.id)])
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
    with _acting(operator):
        async with platform.db.tenant_session(tenant.id) as session:
            # customers first: their children (consent records included) go by cascade
            await session.execute(delete(Customer).where(Customer.tenant_id == tenant.id))
            for table in tables:
                await session.execute(delete(table).where(table.c.tenant_id == tenant.id))
            note(session, tenant.id, "tenant.offboard", "Tenant", [str(tenant.id)], [t.name for t in tables])
    platform.keyring.forget(tenant.id)
    return await set_status(platform.db, slug, TenantStatus.OFFBOARDED)


async def configure_retention(
    platform: Platform, slug: str, days: int | None, operator: str | None = None
) -> Tenant:
    """Keep the tenant's activities ``days`` days (None: keep them), recorded in its
    audit trail: a retention policy decides what personal history survives."""
    tenant = await set_retention(platform.db, slug, days)
    with _acting(operator):
        async with platform.db.tenant_session(tenant.id) as session:
            note(
                session,
                tenant.id,
                "tenant.configure",
                "Tenant",
                [str(tenant.id)],
                ["activity_retention_days"],
            )
    return tenant


def _acting(operator: str | None) -> AbstractContextManager[None]:
    """Attribute the act to the operator of an operator API request; the CLI names
    its own actor for the whole run (``crmkit.cli``)."""
    return acting_as(Actor.from_subject(operator)) if operator else nullcontext()


async def _change_status(platform: Platform, slug: str, status: TenantStatus) -> Tenant:
    await open_tenant(platform.db, slug)
    return await set_status(platform.db, slug, status)
