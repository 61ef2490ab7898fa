"""The core's part of the GraphQL schema, gathered from the modules that own it:
customers, consent, audit, staff and apps, webhooks. Plugins' parts join it in
:mod:`crmkit.graphql.schema`."""

from __future__ import annotations

from strawberry.types.field import StrawberryField

from crmkit.auth import graphql as staff
from crmkit.core.audit import graphql as audit
from crmkit.core.consent import graphql as consent
from crmkit.core.customers import graphql as customers
from crmkit.jobs import webhooks


def _merge(*parts: dict[str, StrawberryField]) -> dict[str, StrawberryField]:
    merged: dict[str, StrawberryField] = {}
    for part in parts:
        clash = set(merged) & set(part)
        if clash:
            raise ValueError(f"core GraphQL fields defined twice: {sorted(clash)}")
        merged.update(part)
    return merged


def customer_type(plugin_fields: dict[str, StrawberryField]) -> type:
    """``Customer``: the customers module's fields, consent's, then the plugins'."""
    core = consent.customer_fields()
    clash = set(core) & set(plugin_fields)
    if clash:
        raise ValueError(f"plugins may not redefine core Customer fields: {sorted(clash)}")
    return customers.customer_type({**core, **plugin_fields})


def query_fields(customer: type) -> dict[str, StrawberryField]:
    return _merge(
        customers.query_fields(customer), consent.query_fields(), audit.query_fields(), staff.query_fields()
    )


def mutation_fields(customer: type) -> dict[str, StrawberryField]:
    return _merge(
        customers.mutation_fields(customer),
        consent.mutation_fields(),
        webhooks.mutation_fields(),
        staff.mutation_fields(),
    )
