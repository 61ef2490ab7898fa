"""``/operator/graphql``: the platform operator's API. Only operator tokens reach it.

It onboards, suspends, reactivates and offboards tenants and reports installed
plugins; the same acts as the ``crmkit`` CLI, through the same services.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import strawberry
from litestar import Request, Response, post
from strawberry.scalars import JSON
from strawberry.types import ExecutionResult

from crmkit.errors import BadUserInput
from crmkit.http.graphql import MAX_BODY_BYTES, Execute, Operation, run_request
from crmkit.platform import Platform, lifecycle
from crmkit.platform.operator_tokens import OperatorTokens
from crmkit.platform.report import plugin_report
from crmkit.platform.schema import LimitedSchema
from crmkit.tenants.models import TenantStatus
from crmkit.tenants.service import list_tenants

# the model's enums are the GraphQL enums too (strawberry marks the classes)
strawberry.enum(TenantStatus, name="TenantStatus")


@dataclass
class OperatorContext:
    platform: Platform
    operator: str


OperatorInfo = strawberry.Info[OperatorContext, None]


@strawberry.type(name="Tenant")
class TenantType:
    id: uuid.UUID
    slug: str
    name: str
    status: TenantStatus
    created_at: datetime
    activity_retention_days: int | None


@strawberry.input
class PluginSettingsInput:
    name: str
    settings: JSON | None = strawberry.field(
        default=None, description="The plugin's settings as a JSON object; omitted: its defaults."
    )


@strawberry.input
class TenantAdminInput:
    email: str
    display_name: str


@strawberry.input
class OnboardTenantInput:
    slug: str
    name: str
    admin: TenantAdminInput | None = None
    plugins: list[PluginSettingsInput] = strawberry.field(default_factory=list)


@strawberry.type
class OnboardedTenant:
    tenant: TenantType
    admin_email: str | None
    admin_password: str | None = strawberry.field(
        description="Generated for the first tenant admin; shown once, never stored in clear."
    )


@strawberry.type
class OperatorQuery:
    @strawberry.field
    async def tenants(self, info: OperatorInfo) -> list[TenantType]:
        return await list_tenants(info.context.platform.db)  # type: ignore[return-value]

    @strawberry.field(description="Installed plugins, refused plugins and recent failures.")
    async def plugins(self, info: OperatorInfo) -> JSON:
        return JSON(await plugin_report(info.context.platform))


@strawberry.type
class OperatorMutation:
    @strawberry.mutation
    async def onboard_tenant(self, info: OperatorInfo, input: OnboardTenantInput) -> OnboardedTenant:
        plugins: dict[str, dict[str, Any]] = {}
        for plugin in input.plugins:
            settings: object = {} if plugin.settings is None else plugin.settings
            if not isinstance(settings, dict):
                raise BadUserInput(f"settings of {plugin.name!r} must be a JSON object", field="settings")
            plugins[plugin.name] = settings
        admin = lifecycle.Admin(input.admin.email, input.admin.display_name) if input.admin else None
        done = await lifecycle.onboard(
            info.context.platform, input.slug, input.name, plugins, admin, info.context.operator
        )
        return OnboardedTenant(
            tenant=done.tenant,  # type: ignore[arg-type]
            admin_email=done.admin.email if done.admin else None,
            admin_password=done.admin_password,
        )

    @strawberry.mutation
    async def suspend_tenant(self, info: OperatorInfo, slug: str) -> TenantType:
        return await lifecycle.suspend(info.context.platform, slug, info.context.operator)  # type: ignore[return-value]

    @strawberry.mutation
    async def reactivate_tenant(self, info: OperatorInfo, slug: str) -> TenantType:
        return await lifecycle.reactivate(info.context.platform, slug, info.context.operator)  # type: ignore[return-value]

    @strawberry.mutation(description="Purge the tenant's data and destroy its key; confirm repeats the slug.")
    async def offboard_tenant(self, info: OperatorInfo, slug: str, confirm: str) -> TenantType:
        return await lifecycle.offboard(  # type: ignore[return-value]
            info.context.platform, slug, confirm=confirm, operator=info.context.operator
        )


class OperatorEndpoint:
    """``/operator/graphql``: operator tokens only. No surrounding transaction: each
    act commits through its service, as it does from the CLI."""

    def __init__(self, platform: Platform, operators: OperatorTokens) -> None:
        self.platform = platform
        self.operators = operators
        self.schema = LimitedSchema(platform.settings, query=OperatorQuery, mutation=OperatorMutation)

    @property
    def plugin_of_field(self) -> Mapping[tuple[str, str], str]:
        return {}  # the operator API has no plugin fields

    async def authenticate(self, token: str) -> str:
        return await self.operators.authenticate(self.platform.db, token)

    async def run(
        self, operator: str, operation: Operation, request_id: str, execute: Execute
    ) -> ExecutionResult:
        return await execute(self.schema, OperatorContext(self.platform, operator))


@post("/operator/graphql", status_code=200, request_max_body_size=MAX_BODY_BYTES)
async def operator_graphql(request: Request[Any, Any, Any]) -> Response[bytes]:
    endpoint: OperatorEndpoint = request.app.state.operator_graphql
    return await run_request(request, endpoint)
