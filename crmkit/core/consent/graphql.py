"""The consent ledger's GraphQL: ``recordConsent``, ``consentHistory``,
``consentPurposes`` and ``Customer.consents``.

These are core fields: :mod:`crmkit.core.customers.graphql` merges them into the
``Query``, ``Mutation`` and ``Customer`` types of every tenant's schema. Each builder
returns fresh field objects, since a schema composition takes ownership of them.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import strawberry
from strawberry.types.field import StrawberryField

from crmkit.core.consent import service
from crmkit.core.consent.models import (
    ConsentChannel,
    ConsentRecord,
    ConsentSource,
    ConsentState,
    LegalBasis,
)
from crmkit.core.customers.models import Customer
from crmkit.graphql.context import Info, RequestContext
from crmkit.graphql.contrib import field
from crmkit.graphql.pagination import Connection, connection

READ = "consent:read"
WRITE = "consent:write"

# the model's enums are the GraphQL enums too (strawberry marks the classes)
strawberry.enum(ConsentChannel, name="ConsentChannel")
strawberry.enum(ConsentState, name="ConsentState")
strawberry.enum(ConsentSource, name="ConsentSource")
strawberry.enum(LegalBasis, name="LegalBasis")


@strawberry.type(
    name="ConsentRecord",
    description="One recorded consent decision and its evidence; records never change.",
)
class ConsentRecordType:
    id: uuid.UUID
    customer_id: uuid.UUID
    purpose: str
    channel: ConsentChannel
    state: ConsentState
    source: ConsentSource
    policy_version: str
    legal_basis: LegalBasis
    captured_by: str = strawberry.field(description="Who captured it: the token's subject.")
    captured_at: datetime
    recorded_at: datetime
    expires_at: datetime | None

    @strawberry.field(description="True once expiresAt has passed.")
    def expired(self) -> bool:
        return ConsentRecord.expired(self)  # type: ignore[arg-type]  # self is the ORM row


@strawberry.type(name="ConsentPurpose")
class ConsentPurposeType:
    name: str
    description: str
    plugin: str = strawberry.field(description="Who declares it: 'core' or a plugin's name.")


@strawberry.input
class RecordConsentInput:
    customer_id: uuid.UUID
    purpose: str = strawberry.field(description="A name listed by consentPurposes.")
    channel: ConsentChannel
    state: ConsentState
    source: ConsentSource
    policy_version: str = strawberry.field(
        description="The version of the privacy notice or terms the customer was shown."
    )
    legal_basis: LegalBasis
    captured_at: datetime | None = strawberry.field(
        default=None,
        description="When the customer decided, if earlier than now (a paper form, an "
        "import); never earlier than the decision in force for the purpose and channel.",
    )
    expires_at: datetime | None = None


@strawberry.input(
    description="Customers whose current consent for purpose and channel is state; GRANTED "
    "means granted and unexpired (what a plugin's consent check allows)."
)
class ConsentFilterInput:
    purpose: str
    channel: ConsentChannel
    state: ConsentState


def criterion(context: RequestContext, f: ConsentFilterInput | None) -> service.ConsentCriterion | None:
    """The ``consent`` criterion of ``CustomerFilterInput``; an unknown purpose is BAD_USER_INPUT."""
    if f is None:
        return None
    service.check_purpose(context.tenant, f.purpose)
    return service.ConsentCriterion(f.purpose, f.channel, f.state)


async def load_current_consents(
    context: RequestContext, customer_ids: Sequence[uuid.UUID]
) -> list[list[ConsentRecord]]:
    return await service.current_consents_of(context.session, customer_ids)


async def resolve_consents(root: Customer, info: Info) -> list[ConsentRecordType]:
    """``Customer.consents``: one query per page of customers, through the data loader."""
    return await info.context.load(load_current_consents, root.id)


async def resolve_consent_history(
    info: Info,
    customer_id: uuid.UUID,
    first: int | None = None,
    after: str | None = None,
    purpose: str | None = None,
    channel: ConsentChannel | None = None,
) -> Connection[Any]:
    """Newest first."""
    ctx = info.context
    size, after_id = ctx.page(first, after)
    rows = await service.consent_history(
        ctx.session,
        customer_id,
        purpose=purpose,
        channel=channel,
        after=after_id,
        limit=size + 1,
    )
    return connection(rows, size)


async def resolve_consent_purposes(info: Info) -> list[ConsentPurposeType]:
    declared = service.purposes(info.context.tenant)
    return [
        ConsentPurposeType(name=name, description=d.purpose.description, plugin=d.plugin)
        for name, d in sorted(declared.items())
    ]


async def resolve_record_consent(info: Info, input: RecordConsentInput) -> ConsentRecord:
    ctx = info.context
    return await service.record_consent(
        ctx.tenant,
        customer_id=input.customer_id,
        purpose=input.purpose,
        channel=input.channel,
        state=input.state,
        source=input.source,
        policy_version=input.policy_version,
        legal_basis=input.legal_basis,
        captured_by=ctx.principal.subject,
        captured_at=input.captured_at,
        expires_at=input.expires_at,
    )


def customer_fields() -> dict[str, StrawberryField]:
    return {
        "consents": field(
            resolve_consents,
            scope=READ,
            description="The current consent per purpose and channel: the latest record "
            "of each pair. A pair never recorded is absent, which means no consent.",
        )
    }


def query_fields() -> dict[str, StrawberryField]:
    return {
        "consent_history": field(
            resolve_consent_history, scope=READ, graphql_type=Connection[ConsentRecordType]
        ),
        "consent_purposes": field(
            resolve_consent_purposes,
            scope=READ,
            description="The purposes this tenant can record: the core's and its plugins'.",
        ),
    }


def mutation_fields() -> dict[str, StrawberryField]:
    return {
        "record_consent": field(resolve_record_consent, scope=WRITE, graphql_type=ConsentRecordType),
    }
