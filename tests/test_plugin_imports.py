"""The check `make lint` runs on examples/ and plugins/: a plugin imports from this
repository only crmkit's public API (``crmkit``, ``crmkit.testing``,
``crmkit.core.hookspecs``)."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path
from types import ModuleType

SCRIPT = Path(__file__).parent.parent / ".ci" / "check_plugin_imports.py"


def check() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_plugin_imports", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def refused(source: str) -> list[str]:
    module = check()
    found = module.imported_repository_modules(ast.parse(source))
    return [name for _, name in found if name not in module.PUBLIC]


def test_internal_modules_and_crmkits_own_tests_are_refused() -> None:
    assert refused("from crmkit.migrations.rls import enable_tenant_rls") == ["crmkit.migrations.rls"]
    assert refused("from crmkit import db, PluginInfo") == ["crmkit.db"]
    assert refused("import crmkit.settings") == ["crmkit.settings"]
    assert refused("from tests.fixtures import Env\nimport bench.hook_dispatch") == [
        "tests.fixtures",
        "bench.hook_dispatch",
    ]


def test_the_public_api_and_other_packages_pass() -> None:
    source = """
import crmkit
import sqlalchemy as sa
from crmkit import PluginInfo, testing
from crmkit.core.hookspecs import hookimpl
from crmkit.testing import Env
from crmkit_notes.models import Note
from . import service
"""
    assert refused(source) == []


def test_the_template_keeps_the_rule() -> None:
    assert check().main() == 0
