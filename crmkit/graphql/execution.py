"""Execution with a short path for plain leaf fields, and batch fields loaded per list.

graphql-core executes every field of every row alike: a resolve-info object, a path,
the resolver, then a walk down the return type to complete the value. For a page of
fifty customers that is hundreds of fields, and for the ones whose resolver is direct
(:func:`crmkit.graphql.contrib.direct_resolver`: an attribute, or a personal field's
masking) and whose type is a scalar, an enum or a list of them, that machinery costs
several times the field's own work.

:class:`DirectExecutor` plans each selection set once per request (which of its fields
take the short path) and resolves those fields with the resolver and the type's own
``coerce_output_value`` only (an attribute read without a Python call of its own, an
enum's names looked up rather than searched). Anything out of the ordinary on that
path — the resolver raising, a null where the type forbids it, a value the type
refuses, an awaitable — hands the field back to graphql-core, which resolves it again
and reports it as it always does. A direct field whose value is a list of objects (a
customer's notes) has its rows executed the same way, row by row, without
graphql-core's per-field steps. The other fields (arguments, scope checks, single
objects, asynchronous resolvers) take graphql-core's path unchanged.

A list of objects whose selection has ``crmkit.customer_field`` fields has them loaded
for all its rows at once before the rows are completed
(:meth:`RequestContext.prefetch`), so each row's value is already there: graphql-core
completes the rows without a coroutine, a loader future and a task per row. A batch
that fails is left to each row, whose field then goes through the data loader and
reports its error where graphql-core locates it.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, NamedTuple, cast

from graphql import (
    GraphQLBoolean,
    GraphQLEnumType,
    GraphQLField,
    GraphQLID,
    GraphQLLeafType,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLResolveInfo,
    GraphQLResolveInfoHelpers,
    GraphQLString,
    is_leaf_type,
    is_list_type,
    is_non_null_type,
)
from graphql.execution.collect_fields import FieldDetailsList, GroupedFieldSet
from graphql.execution.executor import to_nodes
from graphql.pyutils import AwaitableOrValue, Path, Undefined, gather_with_cancel
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from crmkit.graphql.context import BatchLoad
from crmkit.graphql.contrib import Attribute

DIRECT_FIELD = "crmkit_direct_field"
"""Set in a ``GraphQLField``'s extensions when its resolver is direct: it is synchronous
and reads nothing of ``info`` but ``info.context``."""
BATCH_FIELD = "crmkit_batch_field"
"""Set in a ``GraphQLField``'s extensions to ``(load, scope)`` for a
``crmkit.customer_field``."""


class _ContextOnly:
    """What a direct resolver receives as ``info``: the one attribute it may read."""

    __slots__ = ("context",)

    def __init__(self, context: Any) -> None:
        self.context = context


class _Leaf(NamedTuple):
    """A field on the short path: how to resolve it and how to complete its value."""

    resolve: Callable[[Any, Any], Any]
    read: Callable[[Any], Any] | None
    """The resolver without ``info``, for an attribute (:class:`Attribute`)."""
    leaf: GraphQLLeafType
    non_null: bool
    """The field's own type is non-null."""
    listed: bool
    """The type is a list of ``leaf``."""
    items_non_null: bool
    passes: type | None
    """The Python type whose values ``leaf`` returns unchanged (``str`` for a String)."""
    whole: type | None
    """The Python type whose values complete as themselves: ``passes``, for a field that
    is not a list."""
    members: type | None
    """An enum type's Python enum, whose members ``names`` maps to their GraphQL names,
    for a field that is not a list."""
    names: dict[Any, str]
    coerce: Callable[[Any], Any]
    """``leaf``'s ``coerce_output_value``."""


class _Rows(NamedTuple):
    """A field on the short path whose value is a list of objects (a customer's notes):
    resolved directly, its rows completed by :meth:`DirectExecutor._execute_rows`."""

    field: GraphQLField
    resolve: Callable[[Any, Any], Any]
    field_type: GraphQLOutputType
    item_type: GraphQLOutputType
    """The list's item type as declared (non-null or not)."""
    row_type: GraphQLObjectType
    non_null: bool


_Steps = tuple[tuple[str, FieldDetailsList, _Leaf | _Rows | None], ...]
"""An object's fields in order, by response name, with their short path (None: taken
by graphql-core)."""


def _short_path(field: GraphQLField, field_details: FieldDetailsList) -> _Leaf | _Rows | None:
    """The plan for ``field`` if it takes the short path, else None: worked out once per
    field of the schema (kept in its extensions), whatever the request."""
    if any(details.node.arguments for details in field_details):
        return None
    plan = field.extensions.get(_PLAN, _UNPLANNED)
    if plan is _UNPLANNED:
        plan = field.extensions[_PLAN] = _field_plan(field)
    return cast(_Leaf | _Rows | None, plan)


_PLAN = "crmkit_short_path"
_UNPLANNED = object()


def _field_plan(field: GraphQLField) -> _Leaf | _Rows | None:
    if not field.extensions.get(DIRECT_FIELD) or field.resolve is None or field.args:
        return None
    graphql_type: GraphQLOutputType = field.type
    non_null = is_non_null_type(graphql_type)
    if non_null:
        graphql_type = graphql_type.of_type  # type: ignore[union-attr]
    listed = items_non_null = False
    if is_list_type(graphql_type):
        listed = True
        item_type = graphql_type = graphql_type.of_type
        items_non_null = is_non_null_type(graphql_type)
        if items_non_null:
            graphql_type = graphql_type.of_type  # type: ignore[union-attr]
        if isinstance(graphql_type, GraphQLObjectType) and graphql_type.is_type_of is None:
            return _Rows(field, field.resolve, field.type, item_type, graphql_type, non_null)
    if not is_leaf_type(graphql_type):
        return None
    passes = _PASSES.get(graphql_type.name) if graphql_type is _BUILT_IN.get(graphql_type.name) else None
    members, names = (None, {}) if listed else _enum_names(graphql_type)
    read = field.resolve.read if isinstance(field.resolve, Attribute) else None
    whole = None if listed else passes
    return _Leaf(
        field.resolve,
        read,
        graphql_type,
        non_null,
        listed,
        items_non_null,
        passes,
        whole,
        members,
        names,
        graphql_type.coerce_output_value,
    )


def _enum_names(leaf: GraphQLLeafType) -> tuple[type | None, dict[Any, str]]:
    """A strawberry enum's members and the names its type gives them: its
    ``coerce_output_value`` searches the enum's values for every value it outputs. Each
    member's name is the first whose value equals the member's, as that search answers."""
    members = getattr(leaf, "wrapped_cls", None)
    if not isinstance(leaf, GraphQLEnumType) or members is None:
        return None, {}
    names = {
        member: next(name for name, value in leaf.values.items() if member.value == value.value)
        for member in members
    }
    return members, names


_BUILT_IN = {scalar.name: scalar for scalar in (GraphQLString, GraphQLID, GraphQLBoolean)}
_PASSES = {"String": str, "ID": str, "Boolean": bool}
"""What graphql-core's own scalars serialise as themselves: such a value needs no call."""

_REFUSED = object()
"""What the short path answers when graphql-core must resolve the field itself."""


def _complete(leaf: GraphQLLeafType, value: Any, non_null: bool) -> Any:
    if value is None:
        return _REFUSED if non_null else None
    coerced = leaf.coerce_output_value(value)
    return _REFUSED if coerced is None or coerced is Undefined else coerced


def _leaf_value(plan: _Leaf, value: Any) -> Any:
    """A resolved leaf's value as graphql-core completes it; raises where graphql-core
    would report an error (the caller hands the field back to it)."""
    kind = type(value)
    if kind is plan.whole:
        return value
    if kind is plan.members:
        return plan.names[value]
    if value is None:
        return _REFUSED if plan.non_null else None
    if not plan.listed:
        coerced = plan.coerce(value)
        return _REFUSED if coerced is None or coerced is Undefined else coerced
    if isinstance(value, (str, bytes, dict)):
        return _REFUSED
    passes = plan.passes
    items = [
        item if type(item) is passes else _complete(plan.leaf, item, plan.items_non_null) for item in value
    ]
    return _REFUSED if _REFUSED in items else items


def _weakly(method: Callable[..., Any]) -> Callable[..., Any]:
    """``method`` called through a weak reference to its object: graphql-core's helpers
    for resolvers hold the executor's own bound methods, a cycle that kept each
    request's whole object graph (its context, session, loaded rows) alive until the
    garbage collector's next pass."""
    ref = weakref.WeakMethod(method)

    def call(*args: Any, **kwargs: Any) -> Any:
        bound = ref()
        if bound is None:
            raise RuntimeError("the execution has ended")
        return bound(*args, **kwargs)

    return call


class DirectExecutor(StrawberryGraphQLCoreExecutionContext):
    """graphql-core's executor, with the short path for direct leaf fields."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._plans: dict[int, tuple[GroupedFieldSet, _Steps | None]] = {}
        self._loads: dict[int, tuple[FieldDetailsList, list[BatchLoad]]] = {}
        self._selections: dict[int, tuple[FieldDetailsList, GroupedFieldSet | None]] = {}
        self._info = _ContextOnly(self.context_value)
        self.async_helpers = GraphQLResolveInfoHelpers(
            gather=_weakly(self.gather_async_work), track=_weakly(self.track_async_work)
        )

    def _batches(self, item_type: GraphQLOutputType, field_details: FieldDetailsList) -> list[BatchLoad]:
        """The batch loads of the fields selected on the rows of a list of ``item_type``
        that the caller's scopes allow (a refused one fails per row, as it should)."""
        if is_non_null_type(item_type):
            item_type = item_type.of_type
        if not isinstance(item_type, GraphQLObjectType):
            return []
        cached = self._loads.get(id(field_details))
        if cached is not None and cached[0] is field_details:  # a nested list's rows share it
            return cached[1]
        grouped_field_set = self.collect_subfields(item_type, field_details).grouped_field_set
        loads: list[BatchLoad] = []
        for details in grouped_field_set.values():
            field = self.schema.get_field(item_type, details[0].node.name.value)
            batch = None if field is None else field.extensions.get(BATCH_FIELD)
            if (
                batch is not None
                and batch[0] not in loads
                and batch[1] in self.context_value.principal.scopes
            ):
                loads.append(batch[0])
        self._loads[id(field_details)] = (field_details, loads)  # kept alive: ids stay unique
        return loads

    def complete_iterable_value(
        self,
        item_type: GraphQLOutputType,
        field_details_list: FieldDetailsList,
        info: GraphQLResolveInfo,
        path: Path,
        items: Iterable[Any],
        position_context: Any,
    ) -> AwaitableOrValue[list[Any]]:
        loads = self._batches(item_type, field_details_list)
        if not loads:
            return self._complete_rows(item_type, field_details_list, info, path, items, position_context)
        rows = list(items)
        complete = self._complete_rows

        async def prefetched() -> list[Any]:
            keys = [row.id for row in rows if row is not None]
            for load in loads:
                with contextlib.suppress(Exception):  # each row's field loads it again and reports it
                    await self.context_value.prefetch(load, keys)
            completed = complete(item_type, field_details_list, info, path, rows, position_context)
            if self.is_awaitable(completed):
                return await cast(Awaitable[list[Any]], completed)
            return cast(list[Any], completed)

        return (
            prefetched()
            if rows
            else complete(item_type, field_details_list, info, path, rows, position_context)
        )

    def _complete_rows(
        self,
        item_type: GraphQLOutputType,
        field_details_list: FieldDetailsList,
        info: GraphQLResolveInfo,
        path: Path,
        items: Iterable[Any],
        position_context: Any,
    ) -> AwaitableOrValue[list[Any]]:
        """A list of objects completed by executing each row's fields directly
        (:meth:`_execute_rows`), or graphql-core's way where that does not apply."""
        row_type = item_type.of_type if is_non_null_type(item_type) else item_type
        if (
            position_context is not None
            or not isinstance(items, list)
            or not isinstance(row_type, GraphQLObjectType)
            or row_type.is_type_of is not None
            or not self._rows_completable(field_details_list, path, items)
        ):
            return super().complete_iterable_value(
                item_type, field_details_list, info, path, items, position_context
            )
        grouped_field_set, new_defer_usages, _ = self.collect_subfields(row_type, field_details_list)
        if new_defer_usages:
            return super().complete_iterable_value(
                item_type, field_details_list, info, path, items, position_context
            )
        return self._execute_rows(item_type, row_type, field_details_list, grouped_field_set, path, items)

    def _rows_completable(self, field_details_list: FieldDetailsList, path: Path, items: list[Any]) -> bool:
        """Whether rows can be executed directly: no @stream, no null or awaitable row."""
        return self.get_stream_usage(field_details_list, path) is None and not any(
            item is None or self.is_awaitable(item) for item in items
        )

    def _execute_rows(
        self,
        item_type: GraphQLOutputType,
        row_type: GraphQLObjectType,
        field_details_list: FieldDetailsList,
        grouped_field_set: GroupedFieldSet,
        path: Path,
        items: list[Any],
    ) -> AwaitableOrValue[list[Any]]:
        """What graphql-core does per row (two complete_value calls for a non-null item,
        the object's completion, the memoized subfield lookup), decided once for the list."""
        steps = self._plan(row_type, grouped_field_set)
        completed: list[Any] = []
        awaited: list[int] = []
        for index, item in enumerate(items):
            item_path = path.add_key(index, None)
            try:
                row = (
                    self._execute_planned(row_type, item, item_path, steps, None)
                    if steps is not None
                    else super().execute_fields(row_type, item, item_path, grouped_field_set, None)
                )
            except Exception as raw_error:  # as complete_list_item_value handles it
                self.handle_field_error(raw_error, item_type, field_details_list, item_path)
                row = None
            else:
                if type(row) is not dict and self.is_awaitable(row):
                    row = self._settled(row, item_type, field_details_list, item_path)
                    awaited.append(index)
            completed.append(row)
        if not awaited:
            return completed

        async def gathered() -> list[Any]:
            values = await gather_with_cancel(*(completed[index] for index in awaited))
            for index, value in zip(awaited, values, strict=True):
                completed[index] = value
            return completed

        return gathered()

    def _direct_rows(
        self,
        plan: _Rows,
        parent_type: GraphQLObjectType,
        source: Any,
        field_details: FieldDetailsList,
        path: Path | None,
        response_name: str,
    ) -> Any:
        """A list-of-objects field on the short path, as :meth:`execute_field` would
        complete it; :data:`_REFUSED` where graphql-core must resolve it itself (a
        resolver error, a null it forbids, rows it must check, batch fields to load first).
        An awaitable value (a data loader's) is resolved once and completed by graphql-core."""
        try:
            rows = plan.resolve(source, self._info)
        except Exception:  # graphql-core resolves it again and locates the error
            return _REFUSED
        if type(rows) is list and not rows:
            return rows
        field_path = Path(path, response_name, parent_type.name)
        if self.is_awaitable(rows):  # through the data loader: graphql-core completes it
            info = self.build_resolve_info(plan.field, to_nodes(field_details), parent_type, field_path)
            return self.complete_awaitable_value(plan.field_type, field_details, info, field_path, rows, None)
        if rows is None:
            return _REFUSED if plan.non_null else None
        if not isinstance(rows, list) or any(row is None or self.is_awaitable(row) for row in rows):
            return _REFUSED
        grouped_field_set = self._rows_selection(plan, field_details, field_path)
        if grouped_field_set is None:
            return _REFUSED
        try:
            completed = self._execute_rows(
                plan.item_type, plan.row_type, field_details, grouped_field_set, field_path, rows
            )
        except Exception as raw_error:  # a null row the list forbids: as execute_field does
            self.handle_field_error(raw_error, plan.field_type, field_details, field_path)
            return None
        if self.is_awaitable(completed):
            return self._settled(completed, plan.field_type, field_details, field_path)
        return completed

    def _rows_selection(
        self, plan: _Rows, field_details: FieldDetailsList, field_path: Path
    ) -> GroupedFieldSet | None:
        """The selection on a direct list field's rows, decided once per selection (every
        row of the parent list shares it); None where graphql-core must complete the
        list: batch fields to load first, ``@stream`` or ``@defer``."""
        cached = self._selections.get(id(field_details))
        if cached is not None and cached[0] is field_details:
            return cached[1]
        selection = None
        if not self._batches(plan.item_type, field_details) and not self.get_stream_usage(
            field_details, field_path
        ):
            grouped_field_set, new_defer_usages, _ = self.collect_subfields(plan.row_type, field_details)
            if not new_defer_usages:
                selection = grouped_field_set
        self._selections[id(field_details)] = (field_details, selection)  # kept alive: ids stay unique
        return selection

    async def _settled(
        self, row: Awaitable[Any], item_type: GraphQLOutputType, field_details: FieldDetailsList, path: Path
    ) -> Any:
        try:
            return await row
        except Exception as raw_error:
            self.handle_field_error(raw_error, item_type, field_details, path)
            return None

    def _plan(self, parent_type: GraphQLObjectType, grouped_field_set: GroupedFieldSet) -> _Steps | None:
        """Each field of ``grouped_field_set`` in order with its short path (None for
        graphql-core's); None when no field takes it. Planned once: graphql-core collects
        one grouped field set per selection and type, shared by every row."""
        cached = self._plans.get(id(grouped_field_set))
        if cached is not None and cached[0] is grouped_field_set:
            return cached[1]
        steps: _Steps | None = None
        middleware = self.middleware_manager
        if middleware is None or not middleware.middlewares:  # a schema extension's resolve() wraps all
            planned = []
            for response_name, field_details in grouped_field_set.items():
                field = self.schema.get_field(parent_type, field_details[0].node.name.value)
                planned.append(
                    (
                        response_name,
                        field_details,
                        None if field is None else _short_path(field, field_details),
                    )
                )
            if any(step is not None for _, _, step in planned):
                steps = tuple(planned)
        self._plans[id(grouped_field_set)] = (grouped_field_set, steps)  # kept alive: ids stay unique
        return steps

    def execute_fields(
        self,
        parent_type: GraphQLObjectType,
        source_value: Any,
        path: Path | None,
        grouped_field_set: GroupedFieldSet,
        position_context: Any,
    ) -> AwaitableOrValue[dict[str, Any]]:
        steps = self._plan(parent_type, grouped_field_set)
        if steps is None:
            return super().execute_fields(
                parent_type, source_value, path, grouped_field_set, position_context
            )
        return self._execute_planned(parent_type, source_value, path, steps, position_context)

    def _execute_planned(
        self,
        parent_type: GraphQLObjectType,
        source_value: Any,
        path: Path | None,
        steps: _Steps,
        position_context: Any,
    ) -> AwaitableOrValue[dict[str, Any]]:
        """graphql-core's loop over an object's fields, with the short path first."""
        results: dict[str, Any] = {}
        awaited: list[str] = []
        info = self._info
        try:
            for response_name, field_details, step in steps:
                if type(step) is _Leaf:
                    try:
                        read = step.read
                        value = read(source_value) if read is not None else step.resolve(source_value, info)
                        if type(value) is not step.whole:
                            value = _leaf_value(step, value)
                    except Exception:  # graphql-core resolves it again and locates the error
                        value = _REFUSED
                elif step is None:
                    value = _REFUSED
                else:
                    value = self._direct_rows(
                        cast(_Rows, step), parent_type, source_value, field_details, path, response_name
                    )
                    if type(value) is not list and self.is_awaitable(value):
                        awaited.append(response_name)
                if value is _REFUSED:
                    field_path = Path(path, response_name, parent_type.name)
                    value = self.execute_field(
                        parent_type, source_value, field_details, field_path, position_context
                    )
                    if value is Undefined:
                        continue
                    if self.is_awaitable(value):
                        awaited.append(response_name)
                results[response_name] = value
        except Exception:
            if awaited:  # settle what other fields started: they may fail too
                self.settle_in_background([results[name] for name in awaited])
            raise
        if not awaited:
            return results

        async def gathered() -> dict[str, Any]:
            if len(awaited) == 1:
                results[awaited[0]] = await results[awaited[0]]
            else:
                values = await gather_with_cancel(*(results[name] for name in awaited))
                results.update(zip(awaited, values, strict=True))
            return results

        return gathered()
