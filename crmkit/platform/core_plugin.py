"""The core, registered as the always-enabled plugin ``core``.

Its scopes, jobs, consent purposes and GraphQL go through the same hooks as every
plugin's. This is composition: it gathers the core's features (customers, consent,
audit, staff and apps, webhooks) and the platform jobs, so it sits above them.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from strawberry.types.base import get_object_definition
from strawberry.types.field import StrawberryField

from crmkit.auth import graphql as staff
from crmkit.auth import housekeeping
from crmkit.core import hookspecs
from crmkit.core.audit import graphql as audit_graphql
from crmkit.core.consent import graphql as consent_graphql
from crmkit.core.consent.models import ConsentPurpose
from crmkit.core.consent.service import CORE_PURPOSES
from crmkit.core.customers import graphql as customers_graphql
from crmkit.core.customers.personal import InformationClass, unmask_scope
from crmkit.core.hookspecs import hookimpl
from crmkit.core.imports import graphql as imports_graphql
from crmkit.graphql.contrib import GraphQLContribution
from crmkit.jobs import delivery
from crmkit.plugins.info import CORE, CronSpec, JobSpec, PluginInfo, Scope
from crmkit.tenants import retention
from crmkit.tenants.users import APPS_ADMIN, USERS_ADMIN
from crmkit.version import __version__
from crmkit.webhooks import graphql as webhooks_graphql

plugin_info = PluginInfo(
    name=CORE,
    version=__version__,
    description="Customers, activities, consent and audit.",
    requires=f"=={__version__}",
    migrations=Path(__file__).parent.parent / "migrations" / "versions",
    hookspecs=hookspecs,
)


@hookimpl
def register_scopes() -> Iterable[Scope]:
    return [
        Scope(customers_graphql.READ, "Read customers and their tags and stage."),
        Scope(webhooks_graphql.SUBSCRIBE, "Subscribe an installed app to domain events, as webhooks."),
        Scope(customers_graphql.WRITE, "Create, update and archive customers."),
        Scope(customers_graphql.ACTIVITIES_READ, "Read customers' activity timelines."),
        Scope(customers_graphql.ACTIVITIES_WRITE, "Record activities."),
        Scope(customers_graphql.EXPORT, "Export everything held on a customer (right of access)."),
        Scope(customers_graphql.ERASE, "Erase a customer's personal data (right to erasure)."),
        Scope(consent_graphql.READ, "Read customers' consent and its history."),
        Scope(consent_graphql.WRITE, "Record customers' consent decisions."),
        Scope(audit_graphql.READ, "Read the audit trail (compliance officers)."),
        Scope(
            imports_graphql.WRITE,
            "Bulk-import customers, activities and consent decisions, up to 1,000 rows a call.",
        ),
        Scope(USERS_ADMIN, "Manage the tenant's staff users and their roles (tenant admins)."),
        Scope(APPS_ADMIN, "Install partner apps in the tenant and grant them scopes (tenant admins)."),
        *(
            Scope(unmask_scope(c), f"See customers' {c.value} data in clear (else it is masked).")
            for c in (InformationClass.IDENTITY, InformationClass.CONTACT)
        ),
    ]


@hookimpl
def register_consent_purposes() -> Iterable[ConsentPurpose]:
    return CORE_PURPOSES


@hookimpl
def register_jobs() -> Iterable[JobSpec | CronSpec]:
    return [*delivery.JOBS, *retention.JOBS, *housekeeping.JOBS]


def _merge(*parts: dict[str, StrawberryField]) -> dict[str, StrawberryField]:
    merged: dict[str, StrawberryField] = {}
    for part in parts:
        clash = set(merged) & set(part)
        if clash:
            raise ValueError(f"core GraphQL fields defined twice: {sorted(clash)}")
        merged.update(part)
    return merged


@hookimpl
def register_graphql() -> GraphQLContribution:
    """The core's own fields and types, declared so that no plugin can redefine them.

    They are built against a ``Customer`` without plugin fields; the schema composes the
    real ones with :func:`customer_type`, :func:`query_fields` and :func:`mutation_fields`.
    """
    customer = customer_type({})
    core_customer = get_object_definition(customers_graphql.CustomerFields, strict=True).fields
    return GraphQLContribution(
        query=query_fields(customer),
        mutation=mutation_fields(customer),
        customer={f.python_name: f for f in core_customer} | consent_graphql.customer_fields(),
    )


def customer_type(plugin_fields: dict[str, StrawberryField]) -> type:
    """``Customer``: the customers module's fields, consent's, then the plugins' (which
    registration keeps from redefining the core's)."""
    return customers_graphql.customer_type({**consent_graphql.customer_fields(), **plugin_fields})


def query_fields(customer: type) -> dict[str, StrawberryField]:
    return _merge(
        customers_graphql.query_fields(customer),
        consent_graphql.query_fields(),
        audit_graphql.query_fields(),
        staff.query_fields(),
    )


def mutation_fields(customer: type) -> dict[str, StrawberryField]:
    return _merge(
        customers_graphql.mutation_fields(customer),
        consent_graphql.mutation_fields(),
        imports_graphql.mutation_fields(),
        webhooks_graphql.mutation_fields(),
        staff.mutation_fields(),
    )
