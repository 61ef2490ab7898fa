"""The core's GraphQL: the ``Customer`` type, customer and activity queries, mutations.

``Customer`` is built per installation by :func:`customer_type`, which adds the
installed plugins' fields to :class:`CustomerFields`; the query fields that return
customers are built against that type by :func:`query_fields`.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

import strawberry
from strawberry.scalars import JSON
from strawberry.types.field import StrawberryField

from crmkit.core.audit import graphql as audit
from crmkit.core.consent import graphql as consent
from crmkit.core.consent.graphql import ConsentFilterInput
from crmkit.core.customers import service
from crmkit.core.customers.models import (
    Activity,
    ActivityKind,
    Channel,
    Customer,
    CustomerKind,
    LifecycleStage,
)
from crmkit.graphql.context import Info
from crmkit.graphql.contrib import field
from crmkit.graphql.pagination import Connection, connection, decode_cursor, page_size

CustomerKindEnum = strawberry.enum(CustomerKind, name="CustomerKind")
LifecycleStageEnum = strawberry.enum(LifecycleStage, name="LifecycleStage")
ActivityKindEnum = strawberry.enum(ActivityKind, name="ActivityKind")
ChannelEnum = strawberry.enum(Channel, name="Channel")

READ = "customers:read"
WRITE = "customers:write"
ACTIVITIES_READ = "activities:read"
ACTIVITIES_WRITE = "activities:write"


@strawberry.type(name="CustomerFields", description="Core fields of a customer.")
class CustomerFields:
    id: uuid.UUID
    kind: CustomerKindEnum  # type: ignore[valid-type]
    display_name: str
    given_name: str | None
    family_name: str | None
    organisation_name: str | None
    email: str | None
    phone: str | None
    postal_address: str | None
    tag_names: list[str] = strawberry.field(name="tags")
    lifecycle_stage: LifecycleStageEnum  # type: ignore[valid-type]
    relationship_manager: str | None
    external_ref: str | None
    created_at: datetime
    updated_at: datetime
    archived_at: datetime | None
    version: int


def customer_type(extra_fields: dict[str, StrawberryField]) -> type:
    """The ``Customer`` GraphQL type: core fields plus the plugins' fields."""
    core_fields = consent.customer_fields()
    clash = set(core_fields) & set(extra_fields)
    if clash:
        raise ValueError(f"plugins may not redefine core Customer fields: {sorted(clash)}")
    namespace: dict[str, Any] = {"__module__": __name__, **core_fields, **extra_fields}
    return strawberry.type(type("Customer", (CustomerFields,), namespace), name="Customer")


@strawberry.type(name="Activity")
class ActivityType:
    id: uuid.UUID
    customer_id: uuid.UUID
    kind: ActivityKindEnum  # type: ignore[valid-type]
    channel: ChannelEnum  # type: ignore[valid-type]
    amount: Decimal | None
    currency: str | None
    occurred_at: datetime
    attributes: JSON
    external_ref: str | None
    created_at: datetime


@strawberry.input
class CustomerFilterInput:
    tag: str | None = None
    stage: LifecycleStageEnum | None = None  # type: ignore[valid-type]
    text: str | None = strawberry.field(default=None, description="Part of the display name.")
    include_archived: bool = False
    consent: ConsentFilterInput | None = None


@strawberry.input
class CreateCustomerInput:
    kind: CustomerKindEnum  # type: ignore[valid-type]
    given_name: str | None = None
    family_name: str | None = None
    organisation_name: str | None = None
    email: str | None = None
    phone: str | None = None
    postal_address: str | None = None
    tags: list[str] = strawberry.field(default_factory=list)
    lifecycle_stage: LifecycleStageEnum = LifecycleStage.NEW  # type: ignore[valid-type]
    relationship_manager: str | None = None
    external_ref: str | None = strawberry.field(
        default=None,
        description="Your system's id; a retry with the same one returns the first customer.",
    )


@strawberry.input
class UpdateCustomerInput:
    kind: CustomerKindEnum | None = None  # type: ignore[valid-type]
    given_name: str | None = strawberry.UNSET
    family_name: str | None = strawberry.UNSET
    organisation_name: str | None = strawberry.UNSET
    email: str | None = strawberry.UNSET
    phone: str | None = strawberry.UNSET
    postal_address: str | None = strawberry.UNSET
    relationship_manager: str | None = strawberry.UNSET
    tags: list[str] | None = None
    lifecycle_stage: LifecycleStageEnum | None = None  # type: ignore[valid-type]


@strawberry.input
class RecordActivityInput:
    customer_id: uuid.UUID
    kind: ActivityKindEnum  # type: ignore[valid-type]
    channel: ChannelEnum  # type: ignore[valid-type]
    occurred_at: datetime | None = None
    amount: Decimal | None = None
    currency: str | None = None
    attributes: JSON | None = None
    external_ref: str | None = strawberry.field(
        default=None,
        description="Your system's id; a retry with the same one returns the first activity.",
    )


def _text_fields(data: Any, names: tuple[str, ...]) -> dict[str, Any]:
    return {
        name: service.UNSET if getattr(data, name) is strawberry.UNSET else getattr(data, name)
        for name in names
    }


UPDATABLE = tuple(service.TEXT_FIELDS)


async def resolve_customers(
    info: Info,
    first: int | None = None,
    after: str | None = None,
    filter: CustomerFilterInput | None = None,
) -> Connection[Any]:
    ctx = info.context
    size = page_size(first, ctx.settings.page_size_default, ctx.settings.page_size_max)
    f = filter or CustomerFilterInput()
    consent_filter = consent.criterion(ctx, f.consent)
    rows = await service.list_customers(
        ctx.hooks,
        service.CustomerFilter(f.tag, f.stage, f.text, f.include_archived, consent_filter),
        after=decode_cursor(after) if after else None,
        limit=size + 1,
    )
    return connection(rows, size)


async def resolve_customer(info: Info, id: uuid.UUID) -> Customer:
    return await service.get_customer(info.context.hooks, id)


async def resolve_activities(
    info: Info,
    customer_id: uuid.UUID,
    first: int | None = None,
    after: str | None = None,
    kind: ActivityKindEnum | None = None,  # type: ignore[valid-type]
) -> Connection[Any]:
    ctx = info.context
    size = page_size(first, ctx.settings.page_size_default, ctx.settings.page_size_max)
    rows = await service.list_activities(
        ctx.hooks,
        customer_id,
        kind=kind,
        after=decode_cursor(after) if after else None,
        limit=size + 1,
    )
    return connection(rows, size)


async def resolve_create_customer(info: Info, input: CreateCustomerInput) -> Customer:
    return await service.create_customer(
        info.context.hooks,
        kind=input.kind,
        tags=input.tags,
        lifecycle_stage=input.lifecycle_stage,
        external_ref=input.external_ref,
        **{name: getattr(input, name) for name in UPDATABLE},
    )


async def resolve_update_customer(
    info: Info,
    id: uuid.UUID,
    input: UpdateCustomerInput,
    expected_version: Annotated[
        int | None,
        strawberry.argument(description="Refuse with CONFLICT if the customer moved on."),
    ] = None,
) -> Customer:
    return await service.update_customer(
        info.context.hooks,
        id,
        expected_version=expected_version,
        kind=input.kind,
        tags=input.tags,
        lifecycle_stage=input.lifecycle_stage,
        **_text_fields(input, UPDATABLE),
    )


async def resolve_archive_customer(info: Info, id: uuid.UUID) -> Customer:
    return await service.archive_customer(info.context.hooks, id)


async def resolve_record_activity(info: Info, input: RecordActivityInput) -> Activity:
    return await service.record_activity(
        info.context.hooks,
        customer_id=input.customer_id,
        kind=input.kind,
        channel=input.channel,
        occurred_at=input.occurred_at,
        amount=input.amount,
        currency=input.currency,
        attributes=input.attributes,
        external_ref=input.external_ref,
    )


def query_fields(customer: type) -> dict[str, StrawberryField]:
    return {
        "customers": field(resolve_customers, scope=READ, graphql_type=Connection[customer]),  # type: ignore[valid-type]
        "customer": field(resolve_customer, scope=READ, graphql_type=customer),
        "activities": field(resolve_activities, scope=ACTIVITIES_READ, graphql_type=Connection[ActivityType]),
        **consent.query_fields(),
        **audit.query_fields(),
    }


def mutation_fields(customer: type) -> dict[str, StrawberryField]:
    return {
        "create_customer": field(resolve_create_customer, scope=WRITE, graphql_type=customer),
        "update_customer": field(resolve_update_customer, scope=WRITE, graphql_type=customer),
        "archive_customer": field(resolve_archive_customer, scope=WRITE, graphql_type=customer),
        "record_activity": field(resolve_record_activity, scope=ACTIVITIES_WRITE, graphql_type=ActivityType),
        **consent.mutation_fields(),
    }
