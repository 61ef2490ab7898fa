"""Plugins import from crmkit only its public API: ``crmkit``, ``crmkit.testing`` and
``crmkit.core.hookspecs``; the rest of the package may change between versions, and
crmkit's own ``tests`` and ``bench`` are not installed at all.

Checks every Python file under ``examples/`` and ``plugins/`` (the template and the
first-party plugins follow the rule they teach). Run by ``make lint``; exits 1 and
names each offending import otherwise.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ROOTS = ("examples", "plugins")
PUBLIC = frozenset({"crmkit", "crmkit.testing", "crmkit.core.hookspecs"})
CHECKED = ("crmkit", "tests", "bench")
"""Top-level packages of this repository: a plugin may use only PUBLIC of them."""


def is_crmkit_module(name: str) -> bool:
    """``crmkit.<name>`` is a module of the package (not a name ``crmkit`` exports)."""
    path = REPO / "crmkit" / name
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imported_repository_modules(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, module) for every module of this repository (CHECKED) a file imports."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module]
            if node.module == "crmkit":  # `from crmkit import db` imports a module
                modules += [f"crmkit.{a.name}" for a in node.names if is_crmkit_module(a.name)]
        else:
            continue
        for module in modules:
            if module.split(".")[0] in CHECKED:
                yield node.lineno, module


def python_files() -> Iterator[Path]:
    for root in ROOTS:
        for path in sorted((REPO / root).rglob("*.py")):
            parts = path.relative_to(REPO).parts
            if not any(p.startswith(".") or p.endswith(".egg-info") or p == "build" for p in parts):
                yield path


def main() -> int:
    problems = [
        f"{path.relative_to(REPO)}:{line}: imports {module}"
        for path in python_files()
        for line, module in imported_repository_modules(ast.parse(path.read_text(), str(path)))
        if module not in PUBLIC
    ]
    for problem in problems:
        print(problem)
    if problems:
        print(f"plugins import from crmkit only {', '.join(sorted(PUBLIC))}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
