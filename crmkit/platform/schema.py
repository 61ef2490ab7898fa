"""Schema composition: one strawberry schema per distinct set of enabled plugins.

The installed plugins' contributions are gathered once into Python types (``Query``,
``Mutation``, ``Customer``). Each plugin set then gets a :class:`PluginSetSchema` whose
``get_fields`` leaves out the fields of plugins outside the set, so a tenant's schema
holds exactly its enabled plugins' fields. Schemas are cached by plugin set, not by
tenant.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable, Iterator
from copy import copy
from functools import cached_property, lru_cache, partial
from typing import Any

import strawberry
from graphql import (
    ASTValidationRule,
    DocumentNode,
    GraphQLError,
    GraphQLObjectType,
    GraphQLSchema,
    SelectionSetNode,
    Visitor,
    parse,
    visit,
)
from strawberry.extensions import MaxAliasesLimiter, QueryDepthLimiter, SchemaExtension
from strawberry.schema.config import StrawberryConfig
from strawberry.schema.schema import validate_document
from strawberry.schema.schema_converter import GraphQLCoreConverter
from strawberry.types.base import StrawberryObjectDefinition
from strawberry.types.field import StrawberryField

from crmkit.graphql.contrib import BATCH, direct_resolver
from crmkit.graphql.execution import BATCH_FIELD, DIRECT_FIELD, DirectExecutor
from crmkit.graphql.scalars import SCALAR_OVERRIDES, check_arguments
from crmkit.platform import core_plugin as core
from crmkit.platform.registry import PluginRegistry
from crmkit.plugins.info import CORE
from crmkit.settings import Settings

log = logging.getLogger(__name__)

ROOTS = ("query", "mutation", "customer")


class InstalledTypes:
    """The GraphQL types of every installed plugin, and which plugin owns which field."""

    def __init__(self, registry: PluginRegistry) -> None:
        fields: dict[str, dict[str, StrawberryField]] = {root: {} for root in ROOTS}
        self.owner: dict[tuple[str, str], str] = {}
        self.extra_types: dict[str, list[type]] = {}
        for plugin, declared in registry.declarations.items():
            contribution = declared.graphql
            if plugin == CORE or contribution is None:  # the core's are composed below
                continue
            for root in ROOTS:  # registration refused clashing names
                for name, field in getattr(contribution, root).items():
                    fields[root][name] = copy(field)  # a field belongs to one type: one per schema cache
                    self.owner[(root, name)] = plugin
            self.extra_types[plugin] = list(contribution.types)
        self.fields = fields
        self.customer = core.customer_type(fields["customer"])
        self.query = self._root("Query", core.query_fields(self.customer), fields["query"])
        self.mutation = self._root("Mutation", core.mutation_fields(self.customer), fields["mutation"])
        self._root_of = {"Query": "query", "Mutation": "mutation", "Customer": "customer"}

    def _root(
        self,
        name: str,
        core_fields: dict[str, StrawberryField],
        plugin_fields: dict[str, StrawberryField],
    ) -> type:
        namespace: dict[str, Any] = {**core_fields, **plugin_fields}
        return strawberry.type(type(name, (), namespace), name=name)

    @cached_property
    def plugin_of_field(self) -> dict[tuple[str, str], str]:
        """(GraphQL type, GraphQL field name) -> owning plugin, for error messages."""
        converter = StrawberryConfig().name_converter
        type_names = {root: name for name, root in self._root_of.items()}
        return {
            (type_names[root], converter.get_graphql_name(field)): self.owner[(root, name)]
            for root in ROOTS
            for name, field in self.fields[root].items()
        }

    def owner_of(self, type_name: str, field: StrawberryField) -> str | None:
        root = self._root_of.get(type_name)
        if root is None:
            return None
        return self.owner.get((root, field.python_name))


class LimitedSchema(strawberry.Schema):
    """A schema with the request limits of ``settings`` and crmkit's input checks
    (:mod:`crmkit.graphql.scalars`): what every endpoint serves."""

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        super().__init__(extensions=_extensions(settings), scalar_overrides=SCALAR_OVERRIDES, **kwargs)

    def process_errors(self, errors: list[GraphQLError], execution_context: Any = None) -> None:
        """Errors are logged where they are formatted (``crmkit.graphql.errors``): a
        refused input is an answer, not a server fault, and gets no stack trace."""


class PluginSetSchema(LimitedSchema):
    """A schema that shows only the core's and ``plugins``' fields."""

    def __init__(self, types: InstalledTypes, plugins: frozenset[str], settings: Settings) -> None:
        self._types = types
        self.plugins = plugins
        extra = [t for p in sorted(plugins) for t in types.extra_types.get(p, [])]
        super().__init__(
            settings,
            query=types.query,
            mutation=types.mutation,
            types=extra,
            execution_context_class=DirectExecutor,
        )
        _resolve_directly(self._schema)

    def get_fields(self, type_definition: StrawberryObjectDefinition) -> list[StrawberryField]:
        fields = []
        for f in type_definition.fields:
            owner = self._types.owner_of(type_definition.name, f)
            if owner is None or owner in self.plugins:
                fields.append(f)
        return fields


def _resolve_directly(schema: GraphQLSchema) -> None:
    """Let graphql-core call plain attribute fields and personal fields itself
    (:func:`~crmkit.graphql.contrib.direct_resolver`): per row and field, strawberry's
    wrapper (its ``Info``, argument conversion, extension chain) costs more than the
    field's own work. Marked, so :class:`DirectExecutor` resolves the leaves among them
    on its short path."""
    for graphql_type in schema.type_map.values():
        if not isinstance(graphql_type, GraphQLObjectType) or graphql_type.name.startswith("__"):
            continue
        for graphql_field in graphql_type.fields.values():
            definition = graphql_field.extensions.get(GraphQLCoreConverter.DEFINITION_BACKREF)
            if isinstance(definition, StrawberryField):
                resolver = direct_resolver(definition)
                if resolver is not None:
                    graphql_field.resolve = resolver
                    graphql_field.extensions[DIRECT_FIELD] = True
                if BATCH in definition.metadata:
                    graphql_field.extensions[BATCH_FIELD] = definition.metadata[BATCH]


@lru_cache(maxsize=256)
def parse_document(query: str, max_tokens: int) -> DocumentNode:
    """The parsed ``query``; a GraphQLError past ``max_tokens`` tokens or too deep a
    nesting (graphql-core's own bound).

    The HTTP edge parses once to pick the operation; :class:`RequestChecks` hands the
    same cached document to strawberry, so a request is parsed once.
    """
    document = parse(query, max_tokens=max_tokens)
    visit(document, _NoEmptySelection())
    return document


class _NoEmptySelection(Visitor):
    """The spec's grammar has no empty selection set (``pageInfo { }``); graphql-core
    parses one, and the depth limit would then fail on it with a message no one can use."""

    def enter_selection_set(self, node: SelectionSetNode, *_: object) -> None:
        if not node.selections:
            raise GraphQLError("a selection set `{ }` must name at least one field", node)


class RequestChecks(SchemaExtension):
    """Strawberry's parse and validation steps with crmkit's limits, in one extension
    (strawberry makes every extension afresh per request and calls each one's hooks):

    - parse through :func:`parse_document` and its token limit (the HTTP edge parsed
      the same cached document to pick the operation: a request is parsed once);
    - the arguments checked by :func:`~crmkit.graphql.scalars.check_arguments` before
      validation;
    - the depth and alias limits added to the validation rules, and validation cached
      per schema, document and rules (the rules are built once per schema: made per
      request, new rule classes would never hit the cache).
    """

    def __init__(self, max_tokens: int, limits: tuple[type[ASTValidationRule], ...]) -> None:
        self.max_tokens = max_tokens
        self.limits = limits

    def on_operation(self) -> Iterator[None]:
        context = self.execution_context
        context.validation_rules = (*context.validation_rules, *self.limits)
        yield

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        assert context.query is not None  # the HTTP edge refuses a request without one
        context.graphql_document = parse_document(context.query, self.max_tokens)
        yield

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        document, schema = context.graphql_document, context.schema._schema
        if document is not None:
            check_arguments(document, schema, context.variables)
            context.pre_execution_errors = _validated(schema, document, context.validation_rules)
        yield


_validated = lru_cache(maxsize=256)(validate_document)
"""Strawberry's validation of a document, remembered for the last 256 documents."""


def _extensions(settings: Settings) -> list[Callable[[], SchemaExtension]]:
    """The schema's extension factory: :class:`RequestChecks` with ``settings``' limits."""
    limits = (
        *QueryDepthLimiter(max_depth=settings.graphql_max_depth).validation_rules,
        *MaxAliasesLimiter(max_alias_count=settings.graphql_max_aliases).validation_rules,
    )
    return [partial(RequestChecks, settings.graphql_max_tokens, limits)]


class SchemaCache:
    """Builds the installed types once and one schema per plugin set on first use."""

    def __init__(self, registry: PluginRegistry, settings: Settings) -> None:
        self.settings = settings
        self.types = InstalledTypes(registry)
        self._schemas: dict[frozenset[str], PluginSetSchema] = {}
        self.builds = 0

    def for_plugins(self, plugins: frozenset[str]) -> PluginSetSchema:
        schema = self._schemas.get(plugins)
        if schema is None:
            schema = PluginSetSchema(self.types, plugins, self.settings)
            self._schemas[plugins] = schema
            self.builds += 1
            # a schema lives as long as the process: keep the collector off it
            gc.collect()
            gc.freeze()
        return schema
