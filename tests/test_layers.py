"""The package layout is the architecture: every import inside fashn_prefect points down.

Each module's imports of other fashn_prefect modules (at any depth, lazy ones included)
are read from its source and checked against the layer order documented in
``fashn_prefect/__init__.py``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import fashn_prefect

pytestmark = pytest.mark.unit

PACKAGE = Path(fashn_prefect.__file__).parent

# Bottom to top. A module may import its own layer and any layer before it.
LAYERS = [
    "environment",
    "errors",
    "api",
    "store",
    "scheduler",
    "webhooks",
    "settings",
    "credentials",
    "review",
    "run",
    "jobs",
    "tasks",
    "flows",
    "cli",
]
# The emulator is a separate tool: it may use the model specs (and what they import) only.
EMULATOR_MAY_IMPORT = {"emulator", "api", "environment", "errors"}


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "fashn_prefect" else None


def _module_of(name: str, modules: set[str]) -> str | None:
    """The module ``name`` refers to (``a.b.func`` -> ``a.b``), or None outside the package."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return None


def _imports(path: Path, module: str) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module.rsplit(".", 1)[0] if path.name != "__init__.py" else module
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            found.add(name)
            found.update(f"{name}.{alias.name}" for alias in node.names)
    return {name for name in found if _layer(name)}


def _modules() -> list[tuple[Path, str]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out.append((path, ".".join(parts)))
    return out


def test_every_import_points_down_the_layers():
    upward = []
    for path, module in _modules():
        own = _layer(module)
        if own is None or own not in [*LAYERS, "emulator"]:
            continue
        for target in _imports(path, module):
            layer = _layer(target)
            if layer is None or layer == own or layer not in [*LAYERS, "emulator"]:
                continue
            if own == "emulator":
                ok = layer in EMULATOR_MAY_IMPORT
            else:
                ok = layer != "emulator" or own == "cli"
                ok = ok and (layer == "emulator" or LAYERS.index(layer) < LAYERS.index(own))
            if not ok:
                upward.append(f"{module} imports {target}")
    assert upward == []


def test_each_layer_says_what_it_owns():
    for layer in [*LAYERS, "emulator"]:
        init = PACKAGE / layer / "__init__.py"
        if init.exists():
            assert ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))), init


def test_no_import_cycle_between_modules():
    """No module reaches itself through imports, lazy and TYPE_CHECKING ones included."""
    modules = dict((module, path) for path, module in _modules())
    names = set(modules)
    graph = {
        module: {
            target
            for name in _imports(path, module)
            if (target := _module_of(name, names)) not in (None, module)
            # A package's __init__ is not "imported" by its own submodules' relative names.
            and not module.startswith(f"{target}.")
        }
        for module, path in modules.items()
    }
    cycles = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                cycles.append(" -> ".join([*path[path.index(target) :], target]))
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []
