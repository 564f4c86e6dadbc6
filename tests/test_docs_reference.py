"""The generated reference (docs/gen_reference.py) covers every setting, command and variable.

Builds the reference Markdown the docs hook puts into the pages, without mkdocs or a
network, and fails when a ``FashnSettings`` field, a ``fashn-prefect`` command (or one of
its visible options) or an environment variable has no entry, so adding one without
documenting it is caught here rather than by a reader.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "docs" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def gen() -> ModuleType:
    return _load("gen_reference")


def _table_names(markdown: str) -> set[str]:
    """The first cell of every table row, without its backticks."""
    return {m.group(1) for m in re.finditer(r"^\| `([^`]+)` \|", markdown, re.M)}


def test_every_settings_field_has_a_row(gen):
    from fashn_prefect.settings import FashnSettings

    rows = _table_names(gen.settings_table())
    assert set(FashnSettings.model_fields) <= rows
    for name, field in FashnSettings.model_fields.items():
        assert field.description, f"FashnSettings.{name} has no description for the reference"


def test_every_command_and_option_has_an_entry(gen):
    import typer.main

    from fashn_prefect.cli.app import app

    reference = gen.cli_reference()
    group = typer.main.get_command(app)
    commands = [n for n, c in group.commands.items() if not c.hidden]
    assert {"run", "catalog", "backfill", "audit", "credentials", "emulator", "demo"} <= set(
        commands
    )
    for name in commands:
        section = reference.split(f"### `fashn-prefect {name}`\n", 1)
        assert len(section) == 2, f"command {name!r} has no section in the CLI reference"
        body = section[1].split("\n### ", 1)[0]
        for param in group.commands[name].params:
            if param.hidden:
                continue
            label = param.name.upper() if param.param_type_name == "argument" else param.opts[0]
            assert f"`{label}" in body, f"{name} {label} is missing from the CLI reference"


def test_every_settings_field_is_a_flag_of_run(gen):
    from fashn_prefect.cli.options import NOT_ON_CLI
    from fashn_prefect.settings import FashnSettings

    body = gen.cli_reference().split("### `fashn-prefect run`\n", 1)[1].split("\n### ", 1)[0]
    for name in FashnSettings.model_fields:
        if name not in NOT_ON_CLI:
            assert "--" + name.replace("_", "-") in body


def test_every_environment_variable_has_a_row(gen):
    from fashn_prefect.environment import VARIABLES

    rows = _table_names(gen.environment_table())
    assert {v.name for v in VARIABLES} <= rows
    assert all(v.meaning for v in VARIABLES)


def test_every_results_column_is_described(gen):
    from fashn_prefect.store.results import SCHEMA

    rows = _table_names(gen.results_schema_table())
    assert set(SCHEMA.names) <= rows
    assert set(SCHEMA.names) <= set(gen.RESULT_COLUMN_MEANINGS), "describe the new column"


def test_markers_are_replaced_and_pages_hold_them(gen):
    for marker in gen.MARKERS:
        assert marker not in gen.render_markers(f"before\n{marker}\nafter\n")
    pages = "".join(p.read_text(encoding="utf-8") for p in (ROOT / "docs").rglob("*.md"))
    for marker in gen.MARKERS:
        assert marker in pages, f"no documentation page includes {marker}"


def test_readme_links_resolve():
    check = _load("check_links")
    assert check.broken_links(ROOT / "README.md") == []
