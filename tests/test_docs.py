"""The guides cannot drift from the code: every setting is in the operator guide's
settings table, every core operation is in the API guide with its scope, and every
public name of ``crmkit`` is in the plugin-author guide."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from strawberry.types.field import StrawberryField
from strawberry.utils.str_converters import to_camel_case

import crmkit
from crmkit import errors
from crmkit.graphql.contrib import RequireScope
from crmkit.platform import core_plugin
from crmkit.settings import Settings

DOCS = Path(__file__).parent.parent / "docs"


def table_rows(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("|")]


def section(text: str, heading: str) -> str:
    """The text under ``heading`` up to the next heading of the same level or above."""
    level = heading.split(" ")[0]
    start = text.index(f"\n{heading}\n")
    rest = text[start + len(heading) + 2 :]
    end = re.search(rf"^#{{1,{len(level)}}} ", rest, re.MULTILINE)
    return rest[: end.start()] if end else rest


def first_table(text: str) -> list[str]:
    """The rows of the first table in ``text``, up to the first line that is not a row:
    a blank line inside a table ends it."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append(line)
    return rows


def core_operations() -> dict[str, str]:
    """GraphQL name -> scope of every core Query and Mutation field."""
    customer = core_plugin.customer_type({})
    fields: dict[str, StrawberryField] = {
        **core_plugin.query_fields(customer),
        **core_plugin.mutation_fields(customer),
    }
    operations = {}
    for name, field in fields.items():
        (scope,) = [e.scope for e in field.extensions if isinstance(e, RequireScope)]
        operations[to_camel_case(name)] = scope
    return operations


@pytest.mark.parametrize("name", sorted(Settings.model_fields))
def test_every_setting_is_in_the_operator_guides_settings_table(name: str) -> None:
    rows = table_rows(
        section((DOCS / "operator.md").read_text(), "## Settings (environment, prefix `CRMKIT_`)")
    )
    variable = f"`CRMKIT_{name.upper()}`"
    assert any(variable in row for row in rows), f"{variable} is missing from operator.md's settings table"


@pytest.mark.parametrize(("operation", "scope"), sorted(core_operations().items()))
def test_every_core_operation_is_in_the_api_guide_with_its_scope(operation: str, scope: str) -> None:
    rows = first_table(section((DOCS / "api.md").read_text(), "## Operations"))
    row = next((r for r in rows if re.search(rf"`{operation}[`(]", r)), None)
    assert row is not None, f"{operation} is missing from api.md's operations table"
    assert f"`{scope}`" in row, f"api.md does not name {scope} for {operation}"


def test_the_api_guides_scopes_table_names_every_core_scope_in_one_table() -> None:
    rows = first_table(section((DOCS / "api.md").read_text(), "## Scopes"))
    scopes = {s.name for s in core_plugin.register_scopes()}
    missing = sorted(s for s in scopes if not any(f"`{s}`" in row for row in rows))
    assert not missing, f"not in api.md's scopes table (or the table is cut by a blank line): {missing}"


def test_the_api_guide_names_every_error_code() -> None:
    codes = {c.code for c in vars(errors).values() if isinstance(c, type) and issubclass(c, errors.CrmError)}
    rows = table_rows(section((DOCS / "api.md").read_text(), "## Errors"))
    missing = sorted(code for code in codes if not any(f"`{code}`" in row for row in rows))
    assert not missing, f"error codes missing from api.md: {missing}"


@pytest.mark.parametrize("name", sorted(set(crmkit.__all__) - {"__version__"}))
def test_every_public_name_is_in_the_plugin_author_guide(name: str) -> None:
    text = (DOCS / "plugin-authors.md").read_text()
    assert re.search(rf"crmkit\.{name}\b", text), f"crmkit.{name} is not documented in plugin-authors.md"
