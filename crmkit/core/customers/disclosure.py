"""Personal fields in GraphQL: masked by information class, every clear read logged.

The core's ``Customer`` fields and plugins' fields go through :func:`disclose`, so a
value is shown in clear only to a token holding its class's unmask scope, masked
otherwise, and every clear read lands in the request's one access-log record.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import strawberry

from crmkit.core.customers.personal import InformationClass, mask, unmask_scope
from crmkit.graphql.context import Info, RequestContext
from crmkit.graphql.contrib import DIRECT


def disclose(
    info: Info,
    value: str | None,
    *,
    information_class: InformationClass,
    target_type: str,
    target_id: uuid.UUID,
    field: str,
) -> str | None:
    """``value`` as the caller may see it: in clear if their token holds the unmask scope
    of ``information_class`` (and then noted for the access log as ``field`` of
    ``target_type`` ``target_id``), masked otherwise. Nothing to show discloses nothing."""
    return shown(info.context, value, unmask_scope(information_class), target_type, target_id, field)


def shown(
    context: RequestContext, value: str | None, scope: str, target_type: str, target_id: uuid.UUID, field: str
) -> str | None:
    """:func:`disclose` with the unmask ``scope`` worked out once per field, not per row."""
    if value is None or scope not in context.principal.scopes:
        return mask(field, value)
    context.record_disclosure(target_type, target_id, field)
    return value


def personal_field(
    information_class: InformationClass,
    description: str | None = None,
    *,
    target_type: str | None = None,
) -> Any:
    """A strawberry field showing the row attribute of the same name through :func:`disclose`.

    The access log names the row by its ``id`` and its type by ``target_type`` (default:
    the row's class name, ``Note``). The field is nullable: a value in a
    ``crmkit.PersonalText`` column reads as null once its customer is erased.

    The resolver reads only ``info.context``, so graphql-core calls it directly (the
    scope it needs worked out here, once), not through strawberry's per-field wrapper.
    """
    scope = unmask_scope(information_class)

    def make(name: str) -> Callable[[Any, Any], str | None]:
        def resolve(root: Any, info: Any) -> str | None:
            kind = target_type or type(root).__name__
            return shown(info.context, getattr(root, name), scope, kind, root.id, name)

        return resolve

    def resolve(root: Any, info: Info) -> str | None:
        return make(info.python_name)(root, info)

    note = f"Information class {information_class.value}: masked unless the token has {scope}."
    return strawberry.field(
        resolver=resolve,
        graphql_type=str | None,
        description=f"{description} {note}" if description else note,
        metadata={DIRECT: make},
    )
