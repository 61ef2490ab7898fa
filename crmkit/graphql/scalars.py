"""One validation layer at the GraphQL edge, for every argument of every field.

Every schema crmkit serves (``/graphql`` with any plugin set, ``/operator/graphql``)
is built with :data:`SCALAR_OVERRIDES` and checks its arguments with
:func:`check_arguments` before validation, so a plugin's
fields are checked with no code of their own:

- every text (``String``, ``ID``, and each key and string inside ``JSON``) must be
  storable: no NUL, no lone surrogate (:func:`crmkit.inputs.unstorable`);
  ``JSON`` numbers must be finite;
- ``DateTime`` needs an offset and must stay within years 1-9999 in UTC;
- ``Decimal`` must be finite and at most :data:`MAX_DECIMAL_DIGITS` digits written
  out; a literal is read exactly (not through a float).

``String`` is a built-in graphql-core type that cannot be replaced, hence the
argument walk of :func:`check_arguments`; ``DateTime`` and ``Decimal`` refuse bad
values in their own parsers (:class:`InvalidValue`), and the walk runs them first
so that the refusal names the field and the argument path.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from graphql import (
    ArgumentNode,
    DirectiveNode,
    FieldNode,
    GraphQLError,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLScalarType,
    ListValueNode,
    ObjectValueNode,
    OperationDefinitionNode,
    TypeInfo,
    TypeInfoVisitor,
    ValueNode,
    Visitor,
    VisitorAction,
    value_from_ast_untyped,
    visit,
)
from graphql.language import SKIP, FloatValueNode, IntValueNode, StringValueNode, VariableNode
from strawberry.schema.types.base_scalars import DateTimeDefinition, DecimalDefinition
from strawberry.types.scalar import ScalarDefinition

from crmkit.errors import BadUserInput
from crmkit.inputs import decimal_digits, unstorable

MAX_DECIMAL_DIGITS = 38
"""Digits of a Decimal written out (integer and fraction): more than any crmkit
column holds, and bounded, so 1e999999999 is refused before anything computes with it."""


class InvalidValue(ValueError):
    """A value crmkit's scalars refuse; the message completes "<field> ..."."""


def checked_datetime(value: datetime) -> datetime:
    """``value`` if it has an offset and its UTC time is within the calendar."""
    if value.utcoffset() is None:
        raise InvalidValue("needs a time zone offset, e.g. 2025-01-06T09:00:00Z")
    try:
        value.astimezone(UTC)
    except OverflowError:
        raise InvalidValue("is outside the years 1 to 9999 in UTC") from None
    return value


def checked_decimal(value: Decimal) -> Decimal:
    """``value`` if it is finite and at most :data:`MAX_DECIMAL_DIGITS` digits long."""
    if not value.is_finite():
        raise InvalidValue("must be a finite number")
    if sum(decimal_digits(value)) > MAX_DECIMAL_DIGITS:
        raise InvalidValue(f"has more than {MAX_DECIMAL_DIGITS} digits")
    return value


def _parse_datetime(value: object) -> datetime:
    parsed: datetime = DateTimeDefinition.parse_value(value)  # type: ignore[misc]
    return checked_datetime(parsed)


def _parse_decimal(value: object) -> Decimal:
    parsed: Decimal = DecimalDefinition.parse_value(value)  # type: ignore[misc]
    return checked_decimal(parsed)


def _parse_decimal_literal(node: ValueNode, variables: Any = None) -> Decimal:
    """A literal's digits as written: ``0.1`` is 0.1, and ``1e999999999`` is not infinity."""
    if isinstance(node, IntValueNode | FloatValueNode | StringValueNode):
        return _parse_decimal(node.value)
    return _parse_decimal(value_from_ast_untyped(node, variables))


DATETIME = ScalarDefinition(
    name="DateTime",
    description="Date with time and offset (ISO 8601), within years 1-9999 in UTC.",
    specified_by_url=None,
    serialize=DateTimeDefinition.serialize,
    parse_value=_parse_datetime,
    parse_literal=None,
    origin=datetime,
)
DECIMAL = ScalarDefinition(
    name="Decimal",
    description=f"An exact decimal number, as a string or number; at most {MAX_DECIMAL_DIGITS} digits.",
    specified_by_url=None,
    serialize=str,
    parse_value=_parse_decimal,
    parse_literal=_parse_decimal_literal,
    origin=Decimal,
)
SCALAR_OVERRIDES: dict[object, ScalarDefinition] = {datetime: DATETIME, Decimal: DECIMAL}
"""What every crmkit schema passes as ``scalar_overrides``."""


def unstorable_in(value: object) -> str | None:
    """Why ``value`` (a variable's JSON: strings, numbers, lists, objects) cannot be
    stored, or None. Iterative: a deeply nested JSON value costs no stack."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            reason = unstorable(item)
            if reason is not None:
                return reason
        elif isinstance(item, float) and not math.isfinite(item):
            return "holds a number that is not finite"
        elif isinstance(item, Mapping):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return None


Path = tuple[str | int, ...]


class _Refusal(Exception):
    def __init__(self, path: Path, reason: str) -> None:
        self.path = path
        self.reason = reason


class _ArgumentWalk(Visitor):
    """Visits every argument of the document with its type (TypeInfo), and checks its
    value, literal or variable, down to each leaf."""

    def __init__(self, type_info: TypeInfo, variables: dict[str, Any]) -> None:
        super().__init__()
        self.type_info = type_info
        self.variables = variables
        self.defaults: dict[str, ValueNode] = {}
        self.owner = ""

    def enter_operation_definition(self, node: OperationDefinitionNode, *_: Any) -> None:
        for definition in node.variable_definitions or ():
            if definition.default_value is not None:
                self.defaults.setdefault(definition.variable.name.value, definition.default_value)

    def enter_field(self, node: FieldNode, *_: Any) -> None:
        self.owner = node.name.value  # a field's arguments are visited before its selections

    def enter_directive(self, node: DirectiveNode, *_: Any) -> None:
        self.owner = f"@{node.name.value}"

    def enter_argument(self, node: ArgumentNode, *_: Any) -> VisitorAction:
        argument = self.type_info.get_argument()
        if argument is not None:  # an unknown argument is validation's to report
            self._literal(node.value, argument.type, (self.owner, node.name.value))
        return SKIP

    def _literal(self, node: ValueNode, type_: GraphQLInputType, path: Path) -> None:
        if isinstance(node, VariableNode):
            name = node.name.value
            if name in self.variables:
                self._value(self.variables[name], type_, path)
            elif name in self.defaults:
                self._literal(self.defaults[name], type_, path)
            return
        if isinstance(type_, GraphQLNonNull):
            type_ = type_.of_type
        if isinstance(type_, GraphQLList):
            items = node.values if isinstance(node, ListValueNode) else (node,)
            for index, item in enumerate(items):
                self._literal(item, type_.of_type, (*path, index))
        elif isinstance(type_, GraphQLInputObjectType):
            if isinstance(node, ObjectValueNode):
                for field in node.fields:
                    field_def = type_.fields.get(field.name.value)
                    if field_def is not None:
                        self._literal(field.value, field_def.type, (*path, field.name.value))
        elif isinstance(type_, GraphQLScalarType):
            _parse(type_.parse_literal, node, path)
            try:
                value = value_from_ast_untyped(node, self.variables)
            except Exception:  # an unknown variable: validation reports it
                return
            self._leaf(value, path)

    def _value(self, value: Any, type_: GraphQLInputType, path: Path) -> None:
        if value is None:
            return
        if isinstance(type_, GraphQLNonNull):
            type_ = type_.of_type
        if isinstance(type_, GraphQLList):
            for index, item in enumerate(value if isinstance(value, list) else [value]):
                self._value(item, type_.of_type, (*path, index))
        elif isinstance(type_, GraphQLInputObjectType):
            if isinstance(value, Mapping):
                for name, field_def in type_.fields.items():
                    if name in value:
                        self._value(value[name], field_def.type, (*path, name))
        elif isinstance(type_, GraphQLScalarType):
            _parse(type_.parse_value, value, path)
            self._leaf(value, path)

    def _leaf(self, value: Any, path: Path) -> None:
        reason = unstorable_in(value)
        if reason is not None:
            raise _Refusal(path, reason)


def _parse(parser: Callable[[Any], object], value: object, path: Path) -> None:
    """Run a scalar's parser for crmkit's refusals (:class:`InvalidValue`) alone: any
    other error is a malformed value, which graphql-core reports in its own words."""
    try:
        parser(value)
    except InvalidValue as exc:
        raise _Refusal(path, str(exc)) from None
    except Exception:  # noqa: S110 - see above
        pass


def _field_of(path: Path) -> str:
    """The innermost named input field or argument: what services name in ``field``."""
    return next(p for p in reversed(path[1:]) if isinstance(p, str))


def check_arguments(document: Any, schema: Any, variables: dict[str, Any] | None) -> None:
    """Refuse a request whose arguments hold a value crmkit's checks refuse, before
    validation and execution: a GraphQLError whose original error is BAD_USER_INPUT with
    ``extensions.field`` (the input field or argument, as services name it) and
    ``extensions.argument`` (its path from the root field, e.g.
    ``createCustomer.input.tags.1``). A document without variables that passed once
    is not walked again."""
    if _passed(document, schema, variables):
        return
    try:
        visit_arguments(document, schema, variables or {})
    except _Refusal as refusal:
        field = _field_of(refusal.path)
        argument = ".".join(map(str, refusal.path))
        message = f"{field} {refusal.reason}"
        raise GraphQLError(
            message, original_error=BadUserInput(message, field=field, argument=argument)
        ) from None
    if not variables:
        _PASSED[id(document)] = (document, schema)
        if len(_PASSED) > PASSED_DOCUMENTS:
            del _PASSED[next(iter(_PASSED))]


PASSED_DOCUMENTS = 256
_PASSED: dict[int, tuple[Any, Any]] = {}
"""Documents (the parse cache's own objects) whose literal arguments passed on a schema:
without variables nothing else decides, so a repeated query is not walked again."""


def _passed(document: Any, schema: Any, variables: dict[str, Any] | None) -> bool:
    entry = _PASSED.get(id(document))
    return not variables and entry is not None and entry[0] is document and entry[1] is schema


def visit_arguments(document: Any, schema: Any, variables: dict[str, Any]) -> None:
    """Walk every argument of ``document`` against ``schema``; :class:`_Refusal` on the
    first value refused."""
    type_info = TypeInfo(schema)
    visit(document, TypeInfoVisitor(type_info, _ArgumentWalk(type_info, variables)))
