"""crmkit-notes: staff notes on customers, the smallest complete crmkit plugin.

crmkit loads this module through the ``crmkit.plugins`` entry point. It finds the
plugin's identity in ``plugin_info`` and its hook implementations (the functions
marked ``@crmkit.hookimpl`` below). Read this file as the plugin's table of contents.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import crmkit

from crmkit_notes import graphql, hookspecs, jobs, service
from crmkit_notes.settings import NAME, NotesSettings

plugin_info = crmkit.PluginInfo(
    name=NAME,
    version="0.1.0",
    description="Staff notes on customers.",
    requires=">=0.1,<0.2",
    settings=NotesSettings,
    migrations=Path(__file__).parent / "migrations",
    hookspecs=hookspecs,
)


@crmkit.hookimpl
def register_scopes() -> Iterable[crmkit.Scope]:
    """Scopes are prefixed with the plugin name so they cannot collide."""
    return [
        crmkit.Scope(graphql.READ, "Read staff notes on customers."),
        crmkit.Scope(graphql.WRITE, "Add staff notes to customers."),
    ]


@crmkit.hookimpl
def register_graphql() -> crmkit.GraphQLContribution:
    return graphql.contribution()


@crmkit.hookimpl
def register_jobs() -> Iterable[crmkit.JobSpec | crmkit.CronSpec]:
    """Job names are short; crmkit prefixes them with the plugin name (``notes.…``)."""
    return [crmkit.JobSpec("add_archive_note", jobs.add_archive_note)]


@crmkit.hookimpl
async def customer_archived(event: crmkit.DomainEvent, ctx: crmkit.TenantContext) -> None:
    """Runs after the archive committed, only for tenants that enabled the plugin.

    Hand the work to a job with plain-data arguments; ``event.id`` goes along as the
    job's idempotency key, because both the event and the job may arrive twice.
    """
    if ctx.settings_as(NotesSettings).note_on_archive:
        await ctx.enqueue("add_archive_note", customer_id=event.subject_id, event_id=str(event.id))


@crmkit.hookimpl
async def export_customer_data(ctx: crmkit.TenantContext, customer_id: uuid.UUID) -> Any:
    """The notes go into the customer's export: they are personal data about them."""
    return [
        {
            "id": str(n.id),
            "body": n.body,
            "author": n.author,
            "created_at": n.created_at.isoformat(),
        }
        for n in await service.notes_of(ctx.session, customer_id)
    ]


@crmkit.hookimpl
async def erase_customer(ctx: crmkit.TenantContext, customer_id: uuid.UUID) -> None:
    """Erasure deletes the notes; the audit trail keeps only their ids."""
    await service.delete_notes_of(ctx.session, customer_id)
