"""Data-subject rights: a customer's export (access) and erasure.

Both are audited acts. The export gathers the core's data and each enabled plugin's
(``export_customer_data``). Erasure asks each enabled plugin to erase first
(``erase_customer``), then destroys the customer's data key (crypto-shredding: every
copy of the ciphertext, backups included, becomes unreadable once no copy of the key
is left), removes the activities and tags, and keeps a tombstone (ids, kind, dates)
so that the audit chain and the consent evidence still point somewhere.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict
from typing import Any

from sqlalchemy import delete, select

from crmkit.clock import utcnow
from crmkit.core.audit.trail import note
from crmkit.core.consent.models import ConsentRecord
from crmkit.core.customers.models import Activity, Customer, CustomerNameToken, CustomerTag
from crmkit.core.customers.personal import FIELDS, TENANT_KEYS
from crmkit.core.customers.service import erased_ref_index, get_customer
from crmkit.core.events import emit
from crmkit.plugins.info import TenantContext


def _plain(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "value"):  # enums
        return value.value
    return value


def _row(row: Any, names: list[str]) -> dict[str, Any]:
    return {name: _plain(getattr(row, name)) for name in names}


async def export_customer(ctx: TenantContext, customer_id: uuid.UUID) -> dict[str, Any]:
    """Everything the platform and the tenant's enabled plugins hold on the customer."""
    customer = await get_customer(ctx, customer_id)
    session = ctx.session
    activities = await session.scalars(
        select(Activity).where(Activity.customer_id == customer_id).order_by(Activity.id)
    )
    consents = await session.scalars(
        select(ConsentRecord).where(ConsentRecord.customer_id == customer_id).order_by(ConsentRecord.id)
    )
    plugins = await ctx.hooks.call_by_plugin("export_customer_data", customer_id=customer_id)
    note(session, ctx.tenant_id, "customers.export", "Customer", [str(customer_id)], list(FIELDS))
    return {
        "customer": {
            **_row(customer, ["id", "kind", "lifecycle_stage", "relationship_manager", "time_zone"]),
            **_row(customer, ["external_ref"]),
            **_row(customer, ["created_at", "updated_at", "archived_at"]),
            **{k: v for k, v in asdict(customer.personal).items() if v is not None},
            "tags": customer.tag_names,
        },
        "activities": [
            _row(a, ["id", "kind", "channel", "amount", "currency", "occurred_at", "attributes"])
            for a in activities
        ],
        "consents": [
            _row(c, ["id", "purpose", "channel", "state", "source", "policy_version", "legal_basis"])
            | _row(c, ["captured_by", "captured_at", "expires_at"])
            for c in consents
        ],
        "plugins": {name: data for name, data in plugins.items() if data is not None},
    }


async def erase_customer(ctx: TenantContext, customer_id: uuid.UUID) -> Customer:
    """Erase a customer's personal data everywhere; erasing twice reads as not found."""
    customer = await get_customer(ctx, customer_id)
    session = ctx.session
    await ctx.hooks.call("erase_customer", customer_id=customer_id)
    for table in (Activity, CustomerTag, CustomerNameToken):
        await session.execute(delete(table).where(table.customer_id == customer_id))
    session.expire(customer, ["tags"])
    customer.key = None  # the data key goes: no copy of the ciphertext can be read again
    customer.pii = customer.email_index = customer.phone_index = customer.national_id_index = None
    if customer.external_ref is not None:
        customer.erased_ref_index = erased_ref_index(session.info[TENANT_KEYS], customer.external_ref)
    customer.external_ref = None
    customer.relationship_manager = customer.time_zone = None
    customer.erased_at = customer.updated_at = utcnow()
    await session.flush()
    note(session, ctx.tenant_id, "customers.erase", "Customer", [str(customer_id)], list(FIELDS))
    emit(ctx, "customer_erased", "Customer", customer_id)
    return customer
