"""Customer operations for plugins, through their :class:`crmkit.TenantContext`.

The same operations GraphQL uses, so a plugin's write (a churn alert moving a
customer to ``at_risk``, a channel recording a contact) runs the tenant's validation
hooks, emits its domain event and is audited, like any other.
"""

from __future__ import annotations

import uuid
from typing import Any

from crmkit.core.customers import service
from crmkit.core.customers.models import Activity, Customer
from crmkit.plugins.caller import TenantHooks
from crmkit.plugins.info import TenantContext


def _hooks(ctx: TenantContext) -> TenantHooks:
    if ctx.hooks is None:
        raise RuntimeError("this context is not bound to a tenant's hooks")
    return ctx.hooks


async def get_customer(ctx: TenantContext, customer_id: uuid.UUID) -> Customer:
    """The customer, or :class:`crmkit.NotFound` (also for another tenant's or an erased one)."""
    return await service.get_customer(_hooks(ctx), customer_id)


async def create_customer(ctx: TenantContext, **fields: Any) -> Customer:
    """Create a customer: ``kind`` and the fields ``createCustomer`` takes, in snake_case."""
    return await service.create_customer(_hooks(ctx), **fields)


async def update_customer(ctx: TenantContext, customer_id: uuid.UUID, **changes: Any) -> Customer:
    """Change a customer: e.g. ``lifecycle_stage=crmkit.LifecycleStage.AT_RISK``."""
    return await service.update_customer(_hooks(ctx), customer_id, **changes)


async def record_activity(ctx: TenantContext, **fields: Any) -> Activity:
    """Add to a customer's timeline: ``customer_id``, ``kind``, ``channel``, and optionally
    ``occurred_at``, ``amount`` with ``currency``, ``attributes``, ``external_ref``."""
    return await service.record_activity(_hooks(ctx), **fields)
