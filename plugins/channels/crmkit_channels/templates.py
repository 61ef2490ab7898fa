"""Templates: checked when saved, rendered in Jinja2's sandbox.

A template sees three names: ``customer`` (the fields in :data:`CUSTOMER_FIELDS`, each
masked as ``***`` unless the sender holds its unmask scope), ``event`` (the requester's
variables) and ``tenant`` (``name``). Any other name, or a customer field not listed,
is refused when the template is saved, with its line, as is a template that does not
compile.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import crmkit
from jinja2 import Template, TemplateSyntaxError, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

from crmkit_channels.settings import ChannelsSettings

CUSTOMER_FIELDS: dict[str, crmkit.InformationClass] = {
    "given_name": crmkit.InformationClass.IDENTITY,
    "family_name": crmkit.InformationClass.IDENTITY,
    "display_name": crmkit.InformationClass.IDENTITY,
    "email": crmkit.InformationClass.CONTACT,
    "phone": crmkit.InformationClass.CONTACT,
}
TENANT_FIELDS = frozenset({"name"})
NAMES = frozenset({"customer", "event", "tenant"})
MASK = "***"

_env = ImmutableSandboxedEnvironment(autoescape=False)


def _names(tree: nodes.Node) -> Iterator[tuple[str, str | None, int]]:
    """Every variable the template reads: (name, attribute or None, line)."""
    for node in tree.find_all((nodes.Getattr, nodes.Name)):
        if isinstance(node, nodes.Getattr) and isinstance(node.node, nodes.Name):
            yield node.node.name, node.attr, node.lineno
        elif isinstance(node, nodes.Name) and node.ctx == "load":
            yield node.name, None, node.lineno


def check(text: str, field: str) -> None:
    """Refuse (``BadUserInput`` naming ``field`` and the line) a template that does not
    compile or reads a variable no message can give it."""
    try:
        tree = _env.parse(text)
    except TemplateSyntaxError as exc:
        raise crmkit.BadUserInput(
            f"{field} does not compile, line {exc.lineno}: {exc.message}", field=field
        ) from None
    # the template's own names, the loop variable and Jinja's globals (range, dict, ...)
    assigned = {n.name for n in tree.find_all(nodes.Name) if n.ctx in ("store", "param")}
    assigned |= {"loop", *_env.globals}
    for name, attribute, line in _names(tree):
        if name in assigned:
            continue
        if name not in NAMES:
            raise crmkit.BadUserInput(
                f"{field}, line {line}: unknown variable {name!r} "
                "(templates see customer, event and tenant)",
                field=field,
            )
        known = (
            CUSTOMER_FIELDS if name == "customer" else TENANT_FIELDS if name == "tenant" else None
        )
        if known is not None and attribute is not None and attribute not in known:
            raise crmkit.BadUserInput(
                f"{field}, line {line}: unknown variable '{name}.{attribute}' "
                f"(known: {', '.join(sorted(known))})",
                field=field,
            )
    try:
        _env.from_string(text)
    except TemplateSyntaxError as exc:
        raise crmkit.BadUserInput(
            f"{field} does not compile, line {exc.lineno}: {exc.message}", field=field
        ) from None


def customer_variables(
    customer: crmkit.Customer | crmkit.CustomerRow, unmask: list[str]
) -> dict[str, str]:
    """The customer's fields, each in clear only if ``unmask`` holds its class's scope."""
    personal = customer.personal
    values = {
        "given_name": personal.given_name,
        "family_name": personal.family_name,
        "display_name": personal.display_name(customer.kind),
        "email": personal.email,
        "phone": personal.phone,
    }
    return {
        name: (value or "") if f"pii:{CUSTOMER_FIELDS[name].value}" in unmask else MASK
        for name, value in values.items()
    }


@functools.lru_cache(maxsize=256)
def compiled(text: str) -> Template:
    """A template's text compiled once per process (keyed by the text itself, so a new
    version compiles anew): a send job renders it for every recipient of its batch."""
    return _env.from_string(text)


def render(
    text: str,
    customer: crmkit.Customer | crmkit.CustomerRow,
    unmask: list[str],
    event: dict[str, Any],
    settings: ChannelsSettings,
) -> str:
    return compiled(text).render(
        customer=customer_variables(customer, unmask),
        event=event,
        tenant={"name": settings.sender_name},
    )
