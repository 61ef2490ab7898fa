"""How the core and plugins contribute to the GraphQL schema."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from dataclasses import field as dc_field
from operator import attrgetter
from typing import Any, cast

import strawberry
from strawberry.extensions.field_extension import FieldExtension
from strawberry.types import Info
from strawberry.types.field import StrawberryField

from crmkit.errors import Forbidden
from crmkit.graphql.context import BatchLoad

DIRECT = "crmkit_direct"
"""A field's metadata key (``strawberry.field(metadata={DIRECT: make})``): ``make(name)``,
given the field's Python name, returns a resolver ``(root, info)`` that reads nothing of
``info`` but ``info.context``, which graphql-core then calls itself, per row, without
strawberry's per-field wrapper (:func:`direct_resolver`)."""


def direct_resolver(definition: StrawberryField) -> Callable[..., Any] | None:
    """The resolver graphql-core may call for ``definition`` itself, per row, with no
    strawberry wrapper in between; None where strawberry's own is needed (arguments,
    field extensions such as a scope check, a resolver that reads more of ``info``).

    A field with no resolver is read as the attribute of the same name, which is what
    strawberry's default resolver (``getattr``) does; a field marked :data:`DIRECT`
    gets its own function."""
    if definition.extensions or definition.arguments:
        return None
    resolver = definition.base_resolver
    if resolver is None:
        return Attribute(definition.python_name)
    make = definition.metadata.get(DIRECT)
    return None if make is None else cast(Callable[..., Any], make(definition.python_name))


class Attribute:
    """A resolver reading the source's attribute ``name``; ``read`` is the same without
    ``info``, for an executor that calls it per row (:class:`operator.attrgetter`,
    cheaper than a Python function)."""

    __slots__ = ("read",)

    def __init__(self, name: str) -> None:
        self.read = attrgetter(name)

    def __call__(self, source: Any, _: Any) -> Any:
        return self.read(source)


BATCH = "crmkit_batch"
"""A field's metadata key (:func:`customer_field`): ``(load, scope)``, so the executor
loads the field for a whole list of customers before it completes them."""


def require_scope(context: Any, scope: str) -> None:
    """FORBIDDEN, naming the scope, unless the caller's token carries it."""
    if scope not in context.principal.scopes:
        raise Forbidden(f"this field needs the scope {scope!r}", scope=scope)


class RequireScope(FieldExtension):
    """Refuses the field with FORBIDDEN, naming the scope, unless the token carries it."""

    def __init__(self, scope: str) -> None:
        self.scope = scope

    def _check(self, info: Info) -> None:
        require_scope(info.context, self.scope)

    def resolve(self, next_: Callable[..., Any], source: Any, info: Info, **kwargs: Any) -> Any:
        self._check(info)
        return next_(source, info, **kwargs)

    async def resolve_async(
        self, next_: Callable[..., Awaitable[Any]], source: Any, info: Info, **kwargs: Any
    ) -> Any:
        self._check(info)
        return await next_(source, info, **kwargs)


def field(
    resolver: Callable[..., Any] | None = None,
    *,
    scope: str,
    name: str | None = None,
    description: str | None = None,
    graphql_type: Any | None = None,
) -> Any:
    """A GraphQL field that needs ``scope``: ``strawberry.field`` plus the scope check.

    Every query field, mutation and ``Customer`` field a plugin contributes is made
    with this, so no field can forget its scope.
    """
    return strawberry.field(
        resolver=resolver,  # type: ignore[arg-type]
        name=name,
        description=description,
        graphql_type=graphql_type,
        extensions=[RequireScope(scope)],
    )


def customer_field(load: BatchLoad, *, scope: str, graphql_type: Any, description: str | None = None) -> Any:
    """A ``Customer`` field whose values ``load(context, customer_ids)`` returns, one per
    id and in their order; it needs ``scope``.

    On a list of customers (a page of ``customers``) ``load`` runs once for all of them
    before the rows are completed, and each row's value is then plain data: no
    coroutine, loader future or scope extension per row. On a single customer it goes
    through the request's data loader (:meth:`RequestContext.load`), so customers asked
    for in one step still share one call.
    """

    def resolve(root: Any, info: Info) -> Any:
        context = info.context
        require_scope(context, scope)
        return context.batched(load, root.id)

    return strawberry.field(
        resolver=resolve,
        graphql_type=graphql_type,
        description=description,
        metadata={DIRECT: lambda _: resolve, BATCH: (load, scope)},  # reads only info.context
    )


@dataclass
class GraphQLContribution:
    """A plugin's part of the schema; keys are Python (snake_case) field names.

    ``customer`` fields are added to the core ``Customer`` type and receive the
    customer as ``root``: a ``Customer``, or on a page of customers a read-only
    ``CustomerRow`` with the same attributes. ``types`` lists types reachable only
    through interfaces.
    """

    query: dict[str, StrawberryField] = dc_field(default_factory=dict)
    mutation: dict[str, StrawberryField] = dc_field(default_factory=dict)
    customer: dict[str, StrawberryField] = dc_field(default_factory=dict)
    types: list[type] = dc_field(default_factory=list)
