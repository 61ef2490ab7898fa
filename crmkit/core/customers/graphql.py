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
from strawberry.utils.str_converters import to_camel_case

from crmkit.core.consent import graphql as consent
from crmkit.core.consent.graphql import ConsentFilterInput
from crmkit.core.customers import pages, rights, service
from crmkit.core.customers.disclosure import shown
from crmkit.core.customers.models import (
    Activity,
    ActivityKind,
    Channel,
    Customer,
    CustomerKind,
    LifecycleStage,
)
from crmkit.core.customers.personal import CLASS_OF, FIELDS, unmask_scope
from crmkit.errors import Forbidden
from crmkit.graphql.context import Info, RequestContext
from crmkit.graphql.contrib import DIRECT, field
from crmkit.graphql.pagination import Connection, connection

# the model's enums are the GraphQL enums too (strawberry marks the classes)
strawberry.enum(CustomerKind, name="CustomerKind")
strawberry.enum(LifecycleStage, name="LifecycleStage")
strawberry.enum(ActivityKind, name="ActivityKind")
strawberry.enum(Channel, name="Channel")

READ = "customers:read"
WRITE = "customers:write"
ACTIVITIES_READ = "activities:read"
ACTIVITIES_WRITE = "activities:write"
EXPORT = "privacy:export"
ERASE = "privacy:erase"


def personal_field(name: str, description: str, *, nullable: bool = True) -> Any:
    """A personal field of ``Customer``, masked and logged by :func:`disclose` like every
    personal field (plugins' fields use ``crmkit.personal_field``)."""
    information_class = CLASS_OF[name]
    scope = unmask_scope(information_class)

    def resolve(root: Customer, info: Info) -> str | None:
        value = root.display_name if name == "display_name" else getattr(root.personal, name)
        return shown(info.context, value, scope, "Customer", root.id, name)

    return strawberry.field(
        resolver=resolve,
        graphql_type=str | None if nullable else str,
        description=f"{description} Information class {information_class.value}: "
        f"masked unless the token has {scope}.",
        metadata={DIRECT: lambda _: resolve},  # reads only info.context
    )


@strawberry.type(name="CustomerFields", description="Core fields of a customer.")
class CustomerFields:
    id: uuid.UUID
    kind: CustomerKind
    display_name = personal_field(
        "display_name", "The person's names, or the organisation's.", nullable=False
    )
    given_name = personal_field("given_name", "Given name.")
    family_name = personal_field("family_name", "Family name.")
    organisation_name = personal_field("organisation_name", "Organisation name.")
    email = personal_field("email", "E-mail address.")
    phone = personal_field("phone", "Phone number.")
    postal_address = personal_field("postal_address", "Postal address.")
    national_id = personal_field("national_id", "National identity number.")
    date_of_birth = personal_field("date_of_birth", "Date of birth, YYYY-MM-DD.")
    tag_names: list[str] = strawberry.field(name="tags")
    lifecycle_stage: LifecycleStage
    relationship_manager: str | None
    time_zone: str | None = strawberry.field(
        description="The customer's IANA time zone (Europe/Paris); null: the tenant's."
    )
    external_ref: str | None
    created_at: datetime
    updated_at: datetime
    archived_at: datetime | None
    version: int


def customer_type(extra_fields: dict[str, StrawberryField]) -> type:
    """The ``Customer`` GraphQL type: these fields plus ``extra_fields``."""
    namespace: dict[str, Any] = {"__module__": __name__, **extra_fields}
    return strawberry.type(type("Customer", (CustomerFields,), namespace), name="Customer")


@strawberry.type(name="Activity")
class ActivityType:
    id: uuid.UUID
    customer_id: uuid.UUID
    kind: ActivityKind
    channel: Channel
    amount: Decimal | None
    currency: str | None
    occurred_at: datetime
    attributes: JSON
    external_ref: str | None
    created_at: datetime


@strawberry.input
class CustomerFilterInput:
    tag: str | None = None
    stage: LifecycleStage | None = None
    text: str | None = strawberry.field(
        default=None, description="Whole words of the names, any case and accents."
    )
    email: str | None = strawberry.field(default=None, description="Exact e-mail address.")
    phone: str | None = strawberry.field(default=None, description="Exact phone number.")
    national_id: str | None = strawberry.field(default=None, description="Exact national id.")
    include_archived: bool = False
    consent: ConsentFilterInput | None = None

    def personal_criteria(self) -> list[str]:
        """The criteria that name a personal value (snake_case), in a stable order."""
        return [name for name in PERSONAL_CRITERIA if getattr(self, name) is not None]

    def to_filter(self, context: RequestContext) -> service.CustomerFilter:
        """The service's filter, for this caller.

        Filtering by a personal value confirms it for every customer it matches, so it
        needs the scope that shows that value unmasked: without it, ``FORBIDDEN``
        naming the criterion. Plugins filtering customers (campaigns, segments) use the
        same input and the same check.
        """
        for name in self.personal_criteria():
            scope = unmask_scope(PERSONAL_CRITERIA[name])
            if scope not in context.principal.scopes:
                camel = to_camel_case(name)
                raise Forbidden(f"filtering by {camel} needs the scope {scope!r}", field=camel, scope=scope)
        return service.CustomerFilter(
            tag=self.tag,
            stage=self.stage,
            text=self.text,
            email=self.email,
            phone=self.phone,
            national_id=self.national_id,
            include_archived=self.include_archived,
            consent=consent.criterion(context, self.consent),
        )


PERSONAL_CRITERIA = {
    "text": CLASS_OF["display_name"],
    "email": CLASS_OF["email"],
    "phone": CLASS_OF["phone"],
    "national_id": CLASS_OF["national_id"],
}
"""Filter criteria that match a personal value, with the class of the value."""


@strawberry.input
class CreateCustomerInput:
    kind: CustomerKind
    given_name: str | None = None
    family_name: str | None = None
    organisation_name: str | None = None
    email: str | None = None
    phone: str | None = None
    postal_address: str | None = None
    national_id: str | None = None
    date_of_birth: str | None = None
    tags: list[str] = strawberry.field(default_factory=list)
    lifecycle_stage: LifecycleStage = LifecycleStage.NEW
    relationship_manager: str | None = None
    time_zone: str | None = strawberry.field(
        default=None, description="An IANA time zone name (Europe/Paris); null: the tenant's."
    )
    external_ref: str | None = strawberry.field(
        default=None,
        description="Your system's id; a retry with the same one returns the first customer.",
    )


@strawberry.input
class UpdateCustomerInput:
    kind: CustomerKind | None = None
    given_name: str | None = strawberry.UNSET
    family_name: str | None = strawberry.UNSET
    organisation_name: str | None = strawberry.UNSET
    email: str | None = strawberry.UNSET
    phone: str | None = strawberry.UNSET
    postal_address: str | None = strawberry.UNSET
    national_id: str | None = strawberry.UNSET
    date_of_birth: str | None = strawberry.UNSET
    relationship_manager: str | None = strawberry.UNSET
    time_zone: str | None = strawberry.field(
        default=strawberry.UNSET, description="An IANA time zone name; null: the tenant's."
    )
    tags: list[str] | None = None
    lifecycle_stage: LifecycleStage | None = None


@strawberry.input
class RecordActivityInput:
    customer_id: uuid.UUID
    kind: ActivityKind
    channel: Channel
    occurred_at: datetime | None = None
    amount: Decimal | None = None
    currency: str | None = None
    attributes: JSON | None = None
    external_ref: str | None = strawberry.field(
        default=None,
        description="Your system's id; a retry with the same one returns the first activity.",
    )


def _sent(data: Any, names: tuple[str, ...]) -> dict[str, Any]:
    """The fields of an update input, with those the caller left out as ``UNSET``."""
    return {
        name: service.UNSET if getattr(data, name) is strawberry.UNSET else getattr(data, name)
        for name in names
    }


async def resolve_customers(
    info: Info,
    first: int | None = None,
    after: str | None = None,
    filter: CustomerFilterInput | None = None,
) -> Connection[Any]:
    ctx = info.context
    size, after_id = ctx.page(first, after)
    f = filter or CustomerFilterInput()
    rows = await pages.customer_page(ctx.tenant, f.to_filter(ctx), after=after_id, limit=size + 1)
    confirmed = ["display_name" if name == "text" else name for name in f.personal_criteria()]
    for customer in rows[:size] if confirmed else ():  # a match confirms what it was found by
        for name in confirmed:
            ctx.record_disclosure("Customer", customer.id, name)
    return connection(rows, size)


async def resolve_customer(info: Info, id: uuid.UUID) -> Customer:
    return await service.get_customer(info.context.tenant, id)


async def resolve_activities(
    info: Info,
    customer_id: uuid.UUID,
    first: int | None = None,
    after: str | None = None,
    kind: ActivityKind | None = None,
) -> Connection[Any]:
    ctx = info.context
    size, after_id = ctx.page(first, after)
    rows = await service.list_activities(
        ctx.tenant,
        customer_id,
        kind=kind,
        after=after_id,
        limit=size + 1,
    )
    return connection(rows, size)


async def resolve_create_customer(info: Info, input: CreateCustomerInput) -> Customer:
    return await service.create_customer(
        info.context.tenant,
        kind=input.kind,
        tags=input.tags,
        lifecycle_stage=input.lifecycle_stage,
        external_ref=input.external_ref,
        relationship_manager=input.relationship_manager,
        time_zone=input.time_zone,
        **{name: getattr(input, name) for name in FIELDS},
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
        info.context.tenant,
        id,
        expected_version=expected_version,
        kind=input.kind,
        tags=input.tags,
        lifecycle_stage=input.lifecycle_stage,
        **_sent(input, (*FIELDS, "relationship_manager", "time_zone")),
    )


async def resolve_archive_customer(info: Info, id: uuid.UUID) -> Customer:
    return await service.archive_customer(info.context.tenant, id)


@strawberry.type(description="What stays of an erased customer: a tombstone.")
class ErasedCustomer:
    id: uuid.UUID
    erased_at: datetime


async def resolve_export_customer_data(info: Info, id: uuid.UUID) -> JSON:
    """Everything held on the customer, core and plugins: the right of access."""
    return JSON(await rights.export_customer(info.context.tenant, id))


async def resolve_erase_customer(info: Info, id: uuid.UUID) -> ErasedCustomer:
    """Erase the customer's personal data from the core and every plugin."""
    customer = await rights.erase_customer(info.context.tenant, id)
    assert customer.erased_at is not None
    return ErasedCustomer(id=customer.id, erased_at=customer.erased_at)


async def resolve_record_activity(info: Info, input: RecordActivityInput) -> Activity:
    return await service.record_activity(
        info.context.tenant,
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
        "export_customer_data": field(resolve_export_customer_data, scope=EXPORT),
    }


def mutation_fields(customer: type) -> dict[str, StrawberryField]:
    return {
        "create_customer": field(resolve_create_customer, scope=WRITE, graphql_type=customer),
        "update_customer": field(resolve_update_customer, scope=WRITE, graphql_type=customer),
        "archive_customer": field(resolve_archive_customer, scope=WRITE, graphql_type=customer),
        "record_activity": field(resolve_record_activity, scope=ACTIVITIES_WRITE, graphql_type=ActivityType),
        "erase_customer": field(resolve_erase_customer, scope=ERASE),
    }
