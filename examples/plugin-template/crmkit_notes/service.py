"""Writing a note: the one path the mutation and the job share, so every note is
checked the same way and every note emits ``notes_note_added``."""

from __future__ import annotations

import uuid

import crmkit
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from crmkit_notes.models import Note
from crmkit_notes.settings import NotesSettings


async def add_note(
    ctx: crmkit.TenantContext,
    *,
    customer_id: uuid.UUID,
    body: str,
    author: str,
    note_id: uuid.UUID | None = None,
) -> Note:
    """Add a note to a customer and emit ``notes_note_added`` in the same transaction.

    ``crmkit.get_customer`` decides whether the customer exists: another tenant's and an
    erased customer are NOT_FOUND, so no personal data reaches an erased customer.
    """
    await crmkit.get_customer(ctx, customer_id)
    settings = ctx.settings_as(NotesSettings)
    body = body.strip()
    if not body:
        raise crmkit.BadUserInput("body must not be empty", field="body")
    if len(body) > settings.max_note_length:
        raise crmkit.BadUserInput(
            f"body is longer than {settings.max_note_length} characters "
            "(the tenant's max_note_length)",
            field="body",
        )
    note = Note(id=note_id or crmkit.uuid7(), customer_id=customer_id, body=body, author=author)
    ctx.session.add(note)
    await ctx.session.flush()
    crmkit.emit(ctx, "notes_note_added", "Note", note.id, customer_id=str(customer_id))
    return note


async def notes_of(session: AsyncSession, customer_id: uuid.UUID) -> list[Note]:
    """A customer's notes, oldest first (the session already limits them to the tenant)."""
    return list(
        await session.scalars(select(Note).where(Note.customer_id == customer_id).order_by(Note.id))
    )


async def delete_notes_of(session: AsyncSession, customer_id: uuid.UUID) -> None:
    await session.execute(delete(Note).where(Note.customer_id == customer_id))
