"""GraphQL for tenant admins: staff users (scope ``users:admin``) and installed
partner apps (scope ``apps:admin``). Merged into the core's Query and Mutation by
:mod:`crmkit.core.customers.graphql`, like consent's and audit's fields."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import strawberry
from strawberry.types.field import StrawberryField

from crmkit.auth import apps
from crmkit.auth.models import AppInstallation, OAuthClient
from crmkit.graphql.context import Info
from crmkit.graphql.contrib import field
from crmkit.graphql.pagination import Connection, connection
from crmkit.tenants import users
from crmkit.tenants.users import APPS_ADMIN, USERS_ADMIN, Role, StaffUser

# the model's enums are the GraphQL enums too (strawberry marks the classes)
strawberry.enum(Role, name="Role", description="A staff user's role; roles map to scopes.")


@strawberry.type(name="StaffUser")
class StaffUserType:
    id: uuid.UUID
    email: str
    display_name: str
    role: Role
    active: bool
    created_at: datetime


@strawberry.type
class CreatedUser:
    user: StaffUserType
    password: str | None = strawberry.field(
        description="The generated password when none was given: shown this once, never stored in clear."
    )


@strawberry.input
class CreateUserInput:
    email: str
    display_name: str
    role: Role
    password: str | None = strawberry.field(
        default=None, description="At least 12 characters; leave out to have one generated."
    )


@strawberry.input
class UpdateUserInput:
    role: Role | None = None
    active: bool | None = strawberry.field(
        default=None, description="false deactivates the user and revokes the user's tokens."
    )
    display_name: str | None = None


@strawberry.type(name="AppInstallation")
class AppInstallationType:
    id: uuid.UUID
    client_id: str
    app_name: str
    scopes: list[str]
    installed_by: str
    created_at: datetime


def _installation(row: AppInstallation, client: OAuthClient) -> AppInstallationType:
    return AppInstallationType(
        id=row.id,
        client_id=row.client_id,
        app_name=client.name,
        scopes=list(row.scopes),
        installed_by=row.installed_by,
        created_at=row.created_at,
    )


async def resolve_users(
    info: Info,
    first: int | None = None,
    after: str | None = None,
    role: Role | None = None,
    active: bool | None = None,
) -> Connection[Any]:
    ctx = info.context
    size, after_id = ctx.page(first, after)
    rows = await users.list_users(
        ctx.session,
        after=after_id,
        limit=size + 1,
        role=role,
        active=active,
    )
    return connection(rows, size)


async def resolve_create_user(info: Info, input: CreateUserInput) -> CreatedUser:
    user, password = await users.create_user(
        info.context.session,
        email=input.email,
        display_name=input.display_name,
        role=input.role,
        password=input.password,
    )
    return CreatedUser(user=user, password=password)  # type: ignore[arg-type]


async def resolve_update_user(info: Info, id: uuid.UUID, input: UpdateUserInput) -> StaffUser:
    return await users.update_user(
        info.context.session,
        id,
        role=input.role,
        active=input.active,
        display_name=input.display_name,
    )


async def resolve_unlock_user(info: Info, id: uuid.UUID) -> StaffUser:
    return await users.unlock_user(info.context.session, id)


async def resolve_app_installations(info: Info) -> list[AppInstallationType]:
    return [_installation(row, client) for row, client in await apps.list_installations(info.context.session)]


async def resolve_install_app(info: Info, client_id: str, scopes: list[str]) -> AppInstallationType:
    ctx = info.context
    row = await apps.install_app(
        ctx.session,
        ctx.hooks.plugin_set.registry,
        ctx.hooks.enabled,
        client_id=client_id,
        scopes=scopes,
        installed_by=ctx.principal.subject,
    )
    return _installation(row, await apps.get_client(ctx.session, client_id))


async def resolve_uninstall_app(info: Info, client_id: str) -> uuid.UUID:
    return await apps.uninstall_app(info.context.session, client_id)


def query_fields() -> dict[str, StrawberryField]:
    return {
        "users": field(
            resolve_users,
            scope=USERS_ADMIN,
            graphql_type=Connection[StaffUserType],
            description="The tenant's staff users (listUsers).",
        ),
        "app_installations": field(
            resolve_app_installations,
            scope=APPS_ADMIN,
            description="Partner apps installed in this tenant, with the scopes granted.",
        ),
    }


def mutation_fields() -> dict[str, StrawberryField]:
    return {
        "create_user": field(resolve_create_user, scope=USERS_ADMIN),
        "update_user": field(resolve_update_user, scope=USERS_ADMIN, graphql_type=StaffUserType),
        "unlock_user": field(
            resolve_unlock_user,
            scope=USERS_ADMIN,
            graphql_type=StaffUserType,
            description="End the user's sign-in locks (from every address) after failed passwords.",
        ),
        "install_app": field(
            resolve_install_app,
            scope=APPS_ADMIN,
            description="Install a partner app, or change the scopes it is granted (its tokens are revoked).",
        ),
        "uninstall_app": field(
            resolve_uninstall_app,
            scope=APPS_ADMIN,
            description="Remove a partner app from the tenant; its tokens stop working at once.",
        ),
    }
