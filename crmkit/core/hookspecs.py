"""The plugin contract: every hook crmkit calls, each documented where it is declared.

A plugin implements hooks with ``@crmkit.hookimpl`` on module-level functions named
after the hook. Arguments are passed by name, so an implementation takes only the
arguments it uses. Every hook that takes ``ctx`` (lifecycle, validation, data-subject
rights, events) may be ``async def``; crmkit awaits it. The declaration hooks
(``register_*``) must be plain ``def``: they are called once, when the plugin is
registered, and a plugin whose declaration hook is async or raises is refused.

crmkit calls implementations itself, once each, in pluggy's order: ``tryfirst``,
``trylast`` and ``specname`` are honoured; ``optionalhook`` changes nothing (crmkit runs
no check for unknown hooks); ``hookwrapper=True`` and ``wrapper=True`` would never
wrap, so a plugin using them is refused.

Names are checked at registration; a plugin that breaks a rule is refused with the
reason (``crmkit plugins list`` shows it), like one that fails to import:

* scopes start with ``<plugin>:`` (``notes:read``);
* consent purposes and the hooks (event types) a plugin declares start with
  ``<plugin>_`` (``loyalty_offers``, ``notes_note_added``);
* job names are short identifiers: crmkit adds ``<plugin>.`` (``notes.add_archive_note``);
* GraphQL query, mutation and ``Customer`` field names and GraphQL type names need no
  prefix, but may not be one the core or another installed plugin already has.

Three rules hold for every hook that names a tenant:

* it is called only for plugins the tenant has enabled;
* ``ctx`` is a :class:`crmkit.TenantContext` whose ``session`` sees only that
  tenant's rows and whose ``settings`` are *your* plugin's settings for the tenant;
* an exception from a validation hook vetoes the write; raise
  :class:`crmkit.BadUserInput` (or another :class:`crmkit.CrmError`) with a message a
  person can act on.

Event hooks are marked with :func:`event_hookspec`. They run after commit, through the
job queue, each plugin on its own: one plugin that raises is retried alone (with
backoff) and never stops the others. Delivery is at least once: use ``event.id`` to
stay idempotent. A plugin may declare event hooks of its own for other plugins with
the same marker, in a module named by ``PluginInfo.hookspecs``. The event hooks are the
declared event types: :func:`crmkit.emit` of any other type raises at the call, and an
event left in the outbox whose type is no longer declared (its plugin was uninstalled)
is marked dead once, with one failure recorded, instead of being retried.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

import pluggy

if TYPE_CHECKING:
    from crmkit.core.consent.models import ConsentPurpose
    from crmkit.core.customers.models import Activity, Customer
    from crmkit.core.events import DomainEvent
    from crmkit.graphql.contrib import GraphQLContribution
    from crmkit.plugins.info import CronSpec, JobSpec, Scope, TenantContext

PROJECT = "crmkit"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

F = TypeVar("F", bound=Callable[..., Any])
EVENT_HOOK_MARK = "crmkit_event_hook"


def event_hookspec(*, scope: str) -> Callable[[F], F]:
    """Declare a domain-event hook: called after commit, once per enabled plugin.

    ``scope`` is what reading the event's subject needs: partner apps receive the event
    as a webhook only if they were granted it.
    """

    def mark(function: F) -> F:
        setattr(function, EVENT_HOOK_MARK, scope)
        return hookspec(function)

    return mark


# --- declarations: called once, when the plugin is registered; plain ``def`` only -----


@hookspec
def register_scopes() -> Iterable[Scope]:
    """Return the OAuth scopes this plugin defines.

    A field, mutation or job names the scope it needs; tokens carry scopes by name.
    Each name starts with ``<plugin>:`` (``notes:read``), so none can collide.
    """


@hookspec
def register_graphql() -> GraphQLContribution:
    """Return this plugin's GraphQL contribution: query and mutation fields, fields
    added to ``Customer``, and extra types.

    Build fields with :func:`crmkit.field`, which names the scope each needs. The
    fields appear only in the schema of tenants that enabled the plugin. Resolvers of
    ``Customer`` fields get the customer as ``root`` and must batch their reads with
    ``info.context.load(...)`` so a page of customers costs one query, not one per row.
    Field names (Python snake_case keys) and the names of the GraphQL types the fields
    reach may not be ones the core or another installed plugin already uses.
    """


@hookspec
def register_consent_purposes() -> Iterable[ConsentPurpose]:
    """Return the consent purposes this plugin adds to the core's (``marketing``,
    ``service_notices``, ``profiling``, ``third_party_sharing``).

    A tenant can record consent for a purpose only while the declaring plugin is
    enabled. Each name starts with ``<plugin>_`` (``loyalty_offers``) and is at most 64
    lowercase letters, digits and ``_``. Before contacting a customer or sharing data,
    ask ``crmkit.consent_allows``.
    """


@hookspec
def register_jobs() -> Iterable[JobSpec | CronSpec]:
    """Return the plugin's background jobs and cron jobs.

    Jobs run in a tenant's scope with a :class:`crmkit.TenantContext`; cron jobs run
    once per tenant that has the plugin enabled. Payloads travel as JSON/msgpack, so
    they hold ids and plain values, never objects. Names are short identifiers, unique
    in the plugin: crmkit prefixes them with ``<plugin>.`` (``notes.add_archive_note``).
    """


@hookspec
def register_routes() -> Iterable[Any]:
    """Return HTTP routes for callers that hold no crmkit token: litestar route handlers
    (functions decorated with ``litestar.get``, ``litestar.post``, ...).

    crmkit serves them under ``/plugins/<plugin>/`` (a handler at ``/respond/{token:str}``
    of the plugin ``surveys`` answers ``/plugins/surveys/respond/...``): a survey form
    opened from an e-mail, a provider's delivery callback. Such a caller proves who it is
    some other way (a single-use token, a signature), which the handler checks.

    Work in a tenant with ``async with crmkit.plugin_scope(request, tenant_id) as ctx``:
    it answers 404 when the tenant does not exist, is not active or has not enabled
    your plugin, so the route is as invisible as your GraphQL fields; ``ctx`` carries
    your plugin's settings and commits when the block ends. Limit abuse with
    :func:`crmkit.rate_limit`. A :class:`crmkit.CrmError` raised by a handler is answered
    as JSON ``{"error": CODE, "message": ...}`` with the matching HTTP status.
    """


# --- tenant lifecycle: called for the one plugin concerned ---------------------------


@hookspec
def plugin_enabled(ctx: TenantContext) -> None:
    """The tenant enabled this plugin; ``ctx.settings`` holds the validated settings.

    Runs inside the enabling transaction: raising refuses the enablement. Also called
    when a tenant re-enables the plugin; data kept from before is still there.
    """


@hookspec
def plugin_settings_changed(ctx: TenantContext, previous: Any) -> None:
    """The tenant changed this plugin's settings; ``previous`` holds the old ones.

    ``previous`` is an instance of the plugin's settings model (``PluginInfo.settings``),
    validated like ``ctx.settings``, which holds the new ones; ``None`` for a plugin
    without a settings model. Runs inside the transaction: raising refuses the change.
    """


@hookspec
def plugin_disabled(ctx: TenantContext) -> None:
    """The tenant disabled this plugin. Keep the data: re-enabling brings it back.

    Runs inside the transaction. After it the plugin's fields leave the tenant's schema
    and none of its hooks or jobs run for the tenant.
    """


# --- validation: inside the transaction, may veto the write --------------------------


@hookspec
def validate_customer(ctx: TenantContext, customer: Customer, changed: frozenset[str]) -> None:
    """Check a customer about to be created or updated; raise to refuse the write.

    ``changed`` names the attributes set by this write (all of them on creation), as
    snake_case attribute names (``lifecycle_stage``, ``given_name``, ``tags``). On
    creation ``customer.id`` is still ``None``: it is assigned when the row is written,
    after the validation hooks.
    """


@hookspec
def validate_activity(ctx: TenantContext, activity: Activity) -> None:
    """Check an activity about to be recorded; raise to refuse the write."""


# --- data-subject rights: inside the request's transaction ----------------------------


@hookspec
def export_customer_data(ctx: TenantContext, customer_id: uuid.UUID) -> Any:
    """Return everything this plugin holds on the customer, as JSON-able data.

    It becomes your plugin's section of ``exportCustomerData`` (the customer's right of
    access). Return ``None`` when you hold nothing. Include personal values: the export
    goes to the customer.
    """


@hookspec
def erase_customer(ctx: TenantContext, customer_id: uuid.UUID) -> None:
    """Delete (or irreversibly anonymise) the personal data this plugin holds on the
    customer; the core erases its own and keeps a tombstone.

    Runs inside the erasing transaction, before the core's part: raising refuses the
    erasure as a whole. Keep ids you need for integrity, never values.
    """


# --- the demo: ``crmkit demo`` (``make run``) ------------------------------------------


@hookspec
def seed_demo(ctx: TenantContext, customer_ids: list[uuid.UUID]) -> None:
    """Create sample data that shows your plugin in the demo tenant (``make run``).

    Called in one transaction for each enabled plugin, after the demo's sample
    customers (``customer_ids``) exist, whenever the demo enables the plugin; write
    through your own services so the data is validated and audited like real data,
    and keep it idempotent (a second call adds nothing). Use ``crmkit.utcnow()`` and a
    seeded ``random.Random`` so every demo looks the same.
    """


# --- domain events: after commit, at least once, each plugin on its own -----------------


@event_hookspec(scope="customers:read")
def customer_created(event: DomainEvent, ctx: TenantContext) -> None:
    """A customer was created. ``event.subject_id`` is the customer id."""


@event_hookspec(scope="customers:read")
def customer_updated(event: DomainEvent, ctx: TenantContext) -> None:
    """A customer changed; ``event.data["changed"]`` lists the changed attributes,
    sorted, as snake_case attribute names (``lifecycle_stage``, ``given_name``, ``tags``),
    the same names ``validate_customer`` gets in ``changed``, not GraphQL's camelCase."""


@event_hookspec(scope="customers:read")
def customer_archived(event: DomainEvent, ctx: TenantContext) -> None:
    """A customer was archived: hidden from lists, kept for history."""


@event_hookspec(scope="activities:read")
def activity_recorded(event: DomainEvent, ctx: TenantContext) -> None:
    """An activity joined a customer's timeline; ``event.data`` has ``customer_id``
    and ``kind``."""


@event_hookspec(scope="consent:read")
def consent_changed(event: DomainEvent, ctx: TenantContext) -> None:
    """A consent decision was recorded. ``event.data`` has ``customer_id``, ``purpose``,
    ``channel``, ``state`` and ``previous_state`` (``None`` for the pair's first record);
    the state may repeat the previous one (a renewed grant). ``event.subject_id`` is the
    consent record's id.

    Stop what a withdrawal forbids here (queued messages, shares), but still ask
    ``crmkit.consent_allows`` at the moment of contact: events arrive after the fact.
    """


@event_hookspec(scope="customers:read")
def customer_erased(event: DomainEvent, ctx: TenantContext) -> None:
    """A customer's personal data was erased. Remove anything derived from it that you
    keep outside the database (caches, search indexes, files)."""
