"""What a plugin declares, collected once when it is registered, and the rules it obeys.

The declaration hooks (``register_scopes``, ``register_graphql``,
``register_consent_purposes``, ``register_jobs``) and the hooks a plugin declares in
``PluginInfo.hookspecs`` are read here, once, into a :class:`Declarations` record. A
declaration that breaks a rule raises :class:`Refusal` with the reason, and the
registry refuses the plugin: nothing that reads the records ever meets a bad one.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pluggy
from litestar.handlers import HTTPRouteHandler
from strawberry.schema.config import StrawberryConfig
from strawberry.types.base import StrawberryContainer, StrawberryObjectDefinition, has_object_definition
from strawberry.types.enum import StrawberryEnumDefinition, has_enum_definition
from strawberry.types.field import StrawberryField

from crmkit.core import hookspecs
from crmkit.core.consent.models import ConsentPurpose
from crmkit.core.consent.service import PURPOSE_NAME
from crmkit.graphql.contrib import GraphQLContribution
from crmkit.plugins.info import CORE, CronSpec, JobSpec, PluginInfo, Scope
from crmkit.tenants.users import Role

UNHONOURED_OPTIONS = ("hookwrapper", "wrapper")
"""pluggy options crmkit's caller ignores: it calls each implementation once, in order,
so a wrapper would never wrap. ``tryfirst``, ``trylast`` and ``specname`` are honoured
(they set the order and the hook name pluggy gives crmkit); ``optionalhook`` only
silences pluggy's check for unknown hooks, which crmkit does not run."""


class Refusal(Exception):
    """Why a plugin cannot be installed: the registry records it as the reason."""


@dataclass(frozen=True)
class Declarations:
    """Everything one plugin declared at registration; read instead of calling its
    declaration hooks again."""

    plugin: str
    scopes: tuple[Scope, ...] = ()
    graphql: GraphQLContribution | None = None
    consent_purposes: tuple[ConsentPurpose, ...] = ()
    jobs: tuple[JobSpec | CronSpec, ...] = ()
    hooks: frozenset[str] = frozenset()
    """The hooks it declares (``PluginInfo.hookspecs``; the core's contract for the core)."""
    events: Mapping[str, str] = field(default_factory=dict)
    """Its event hooks: event type -> the scope reading the event's subject needs."""
    graphql_types: Mapping[str, Any] = field(default_factory=dict)
    """The GraphQL types its contribution reaches, by GraphQL name (:func:`graphql_types`)."""
    routes: tuple[Any, ...] = ()
    """Its HTTP route handlers (``register_routes``), served under ``/plugins/<plugin>/``."""


def collect(pm: pluggy.PluginManager, module: Any, info: PluginInfo) -> Declarations:
    """Call each declaration hook of ``module`` once; :class:`Refusal` if one is unusable."""
    implementations = _implementations(pm, module)
    declared = {hook: _declared(hook, implementations.get(hook)) for hook in _DECLARATION_HOOKS}
    hooks, events = _declared_hooks(pm, info)
    contribution = declared["register_graphql"]
    if contribution is not None and not isinstance(contribution, GraphQLContribution):
        raise Refusal("register_graphql must return a crmkit.GraphQLContribution")
    return Declarations(
        plugin=info.name,
        scopes=_all_of((Scope,), "register_scopes", declared["register_scopes"]),
        graphql=contribution,
        consent_purposes=_all_of(
            (ConsentPurpose,), "register_consent_purposes", declared["register_consent_purposes"]
        ),
        jobs=_all_of((JobSpec, CronSpec), "register_jobs", declared["register_jobs"]),
        hooks=hooks,
        events=events,
        graphql_types=graphql_types(contribution) if contribution is not None else {},
        routes=_all_of((HTTPRouteHandler,), "register_routes", declared["register_routes"]),
    )


_DECLARATION_HOOKS = (
    "register_scopes",
    "register_graphql",
    "register_consent_purposes",
    "register_jobs",
    "register_routes",
)


def _implementations(pm: pluggy.PluginManager, module: Any) -> dict[str, Callable[..., Any]]:
    """The plugin's hook functions by hook name, found the way pluggy's ``register`` does."""
    found = {}
    for attribute in dir(module):
        options = pm.parse_hookimpl_opts(module, attribute)
        if options is None:
            continue
        for option in UNHONOURED_OPTIONS:
            if options.get(option):
                raise Refusal(
                    f"hook {attribute} uses pluggy's {option}=True, which crmkit does not "
                    "honour: it calls each implementation once, in order"
                )
        found[options.get("specname") or attribute] = getattr(module, attribute)
    return found


def _declared(hook: str, function: Callable[..., Any] | None) -> Any:
    if function is None:
        return None
    if inspect.iscoroutinefunction(function) or inspect.isasyncgenfunction(function):
        raise Refusal(f"{hook} is async: declaration hooks are read once at start-up and must be sync")
    try:
        return function()
    except Exception as exc:
        raise Refusal(f"{hook} raised {type(exc).__name__}: {exc}") from exc


def _all_of(kinds: tuple[type, ...], hook: str, values: Iterable[Any] | None) -> tuple[Any, ...]:
    items = tuple(values or ())
    for item in items:
        if not isinstance(item, kinds):
            names = " or ".join(f"{kind.__module__.partition('.')[0]}.{kind.__name__}" for kind in kinds)
            raise Refusal(f"{hook} returned {item!r}, not a {names}")
    return items


def _declared_hooks(pm: pluggy.PluginManager, info: PluginInfo) -> tuple[frozenset[str], dict[str, str]]:
    """The hooks the plugin declares and, among them, the event hooks with their scopes."""
    module = info.hookspecs
    if module is None:
        return frozenset(), {}
    names = frozenset(a for a in dir(module) if pm.parse_hookspec_opts(module, a) is not None)
    events = {name: getattr(getattr(module, name), hookspecs.EVENT_HOOK_MARK, None) for name in names}
    return names, {name: scope for name, scope in events.items() if scope}


def graphql_types(contribution: GraphQLContribution) -> dict[str, Any]:
    """The object, input and enum types the contribution reaches, by GraphQL name.

    Each name maps to what makes the type itself (its class; a generic's origin and
    arguments), so two uses of one type are one type, as strawberry sees them.
    """
    names = StrawberryConfig().name_converter
    found: dict[str, Any] = {}
    pending: list[Any] = list(contribution.types)
    for fields in (contribution.query, contribution.mutation, contribution.customer):
        pending.extend(_field_types(fields.values()))
    while pending:
        annotation = pending.pop()
        while isinstance(annotation, StrawberryContainer):
            annotation = annotation.of_type
        if has_enum_definition(annotation):
            annotation = annotation.__strawberry_definition__
        if isinstance(annotation, StrawberryEnumDefinition):
            found.setdefault(annotation.name, annotation.wrapped_cls)
        elif has_object_definition(annotation):
            definition = annotation.__strawberry_definition__
            name = names.from_object(definition)
            if name not in found:
                found[name] = _identity(definition, annotation)
                pending.extend(_field_types(definition.fields))
    return found


def _identity(definition: StrawberryObjectDefinition, annotation: type) -> Any:
    if definition.concrete_of is None:
        return annotation
    return (definition.concrete_of.origin, tuple(definition.type_var_map.values()))


def _field_types(fields: Iterable[StrawberryField]) -> Iterable[Any]:
    for f in fields:
        yield f.type
        yield from (argument.type for argument in f.arguments)


def check(declared: Declarations, installed: Iterable[Declarations], pm: pluggy.PluginManager) -> None:
    """Refuse names without the plugin's prefix, and names another plugin or the core has.

    The core names things without a prefix; it is registered first, so a plugin can
    clash with it but not the other way round.
    """
    if declared.plugin != CORE:
        _check_prefixes(declared)
    _check_jobs(declared)
    _check_roles(declared)
    for other in installed:
        _check_clashes(declared, other)
    taken = [n for n in sorted(declared.hooks) if getattr(getattr(pm.hook, n, None), "spec", None)]
    if taken:
        raise Refusal(f"hooks {taken} are already declared by the core or another plugin")


def _check_prefixes(declared: Declarations) -> None:
    plugin = declared.plugin
    rules = (
        ("scope", [s.name for s in declared.scopes], f"{plugin}:"),
        ("consent purpose", [p.name for p in declared.consent_purposes], f"{plugin}_"),
        ("hook", sorted(declared.hooks), f"{plugin}_"),
    )
    for kind, names, prefix in rules:
        bad = [name for name in names if not name.startswith(prefix) or name == prefix]
        if bad:
            raise Refusal(f"{kind} names must start with {prefix!r}: {bad}")
    malformed = [p.name for p in declared.consent_purposes if not PURPOSE_NAME.match(p.name)]
    if malformed:
        raise Refusal(
            f"consent purposes {malformed}: a name is 1-64 lowercase letters, digits or '_', "
            "starting with a letter"
        )


def _check_roles(declared: Declarations) -> None:
    """A scope's ``roles`` must name staff roles that exist."""
    known = {role.value for role in Role}
    for scope in declared.scopes:
        unknown = sorted(set(scope.roles) - known)
        if unknown:
            raise Refusal(f"scope {scope.name!r} names unknown roles {unknown} (known: {sorted(known)})")


def _check_jobs(declared: Declarations) -> None:
    """Job names are short: crmkit prefixes them with ``plugin.``, so they are identifiers."""
    names = [job.name for job in declared.jobs]
    bad = [name for name in names if not name.isidentifier()]
    if bad:
        raise Refusal(f"job names must be Python identifiers (crmkit adds '{declared.plugin}.'): {bad}")
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise Refusal(f"jobs declared twice: {twice}")


def _check_clashes(declared: Declarations, other: Declarations) -> None:
    clashes = {
        "scopes": _names(declared.scopes) & _names(other.scopes),
        "consent purposes": _names(declared.consent_purposes) & _names(other.consent_purposes),
        "GraphQL types": _clashing_types(declared.graphql_types, other.graphql_types),
    }
    for root in ("query", "mutation", "customer"):
        clashes[f"GraphQL {root} fields"] = _fields(declared.graphql, root) & _fields(other.graphql, root)
    for kind, names in clashes.items():
        if names:
            raise Refusal(f"{kind} {sorted(names)} are already defined by {other.plugin!r}")


def _names(items: Iterable[Scope | ConsentPurpose]) -> set[str]:
    return {item.name for item in items}


def _fields(contribution: GraphQLContribution | None, root: str) -> set[str]:
    return set(getattr(contribution, root)) if contribution is not None else set()


def _clashing_types(mine: Mapping[str, Any], theirs: Mapping[str, Any]) -> set[str]:
    """Type names both define with different types (reusing the same type is fine)."""
    return {name for name, identity in mine.items() if theirs.get(name, identity) != identity}
