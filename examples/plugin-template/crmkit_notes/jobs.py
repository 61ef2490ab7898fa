"""The plugin's background job. It runs in one tenant's scope and transaction:
``ctx.session`` sees only that tenant, ``ctx.settings`` are the tenant's settings."""

from __future__ import annotations

import uuid

import crmkit

from crmkit_notes import service
from crmkit_notes.models import Note

SYSTEM_AUTHOR = "crmkit:notes"


async def add_archive_note(ctx: crmkit.TenantContext, customer_id: str, event_id: str) -> None:
    """Record on the customer's notes that the customer was archived.

    The payload is plain strings (it travels through the queue as msgpack). Jobs may run
    more than once, so the note takes the event's id as its own: a second run finds it
    and stops.
    """
    note_id = uuid.UUID(event_id)
    if await ctx.session.get(Note, (ctx.tenant_id, note_id)) is not None:
        return  # done by an earlier run
    try:
        customer = await crmkit.get_customer(ctx, uuid.UUID(customer_id))
    except crmkit.NotFound:
        return  # erased since: nothing to note, and nothing may be added
    await service.add_note(
        ctx,
        customer_id=customer.id,
        body="Customer archived.",
        author=SYSTEM_AUTHOR,
        note_id=note_id,
    )
