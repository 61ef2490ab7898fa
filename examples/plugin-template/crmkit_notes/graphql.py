"""The plugin's GraphQL: ``Customer.notes`` and ``Mutation.addNote``.

Resolvers reach everything through ``info.context`` (a ``crmkit.RequestContext``):
the caller, a session already bound to the caller's tenant, and data loaders. The
whole operation is one transaction; an error rolls all of it back.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import crmkit
import strawberry
from sqlalchemy import bindparam, select

from crmkit_notes import service
from crmkit_notes.models import Note
from crmkit_notes.settings import NAME

READ = f"{NAME}:read"
WRITE = f"{NAME}:write"


@strawberry.type(name="Note", description="A staff note on a customer.")
class NoteType:
    id: uuid.UUID
    # Masked for a token without pii:contact; a clear read goes into the access log.
    body = crmkit.personal_field(crmkit.InformationClass.CONTACT, "What the note says.")
    author: str = strawberry.field(description="Who wrote it: the token's subject.")
    created_at: datetime


NOTES = (
    select(Note.id, Note.customer_id, Note.body, Note.author, Note.created_at)
    .where(Note.customer_id.in_(bindparam("ids", expanding=True)))
    .order_by(Note.id)
)
"""The notes of many customers: built once (building a statement costs more than
running it), its ids sent as a parameter."""


async def load_notes(
    context: crmkit.RequestContext, customer_ids: Sequence[uuid.UUID]
) -> list[list[Any]]:
    """``Customer.notes``: the notes of many customers in ONE query, oldest first, one
    list per id in order.

    A page of 50 customers asking for ``notes`` costs this one statement, not 50, and
    the page's rows are completed from its answer (``crmkit.customer_field``). The notes
    are only read here, so they come as plain rows (``crmkit.read_rows``: the body
    opened with its customer's key), not as ORM entities.
    """
    rows = await crmkit.read_rows(context.session, NOTES, {"ids": list(customer_ids)})
    return crmkit.rows_by_key(rows, lambda note: note.customer_id, customer_ids)


async def resolve_add_note(info: crmkit.Info, customer_id: uuid.UUID, body: str) -> NoteType:
    """``addNote``: a missing, erased or other tenant's customer is NOT_FOUND (``add_note``)."""
    ctx = info.context
    note = await service.add_note(
        ctx.tenant_context(NAME),
        customer_id=customer_id,
        body=body,
        author=ctx.principal.subject,
    )
    return note  # type: ignore[return-value]  # strawberry reads the ORM row's attributes


def contribution() -> crmkit.GraphQLContribution:
    """Every field names the scope it needs; ``crmkit.field`` enforces it."""
    return crmkit.GraphQLContribution(
        customer={
            "notes": crmkit.customer_field(load_notes, scope=READ, graphql_type=list[NoteType])
        },
        mutation={"add_note": crmkit.field(resolve_add_note, scope=WRITE)},
    )
