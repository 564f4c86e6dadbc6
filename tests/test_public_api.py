"""The public names users import, pinned: renaming one breaks this test first.

Every exception class the package defines belongs to the one tree under ``FashnError``,
and every deployment entrypoint still resolves.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import warnings

import pytest
import typer.main
import yaml
from _servers import REPO

import fashn_prefect
from fashn_prefect.errors import FashnError
from fashn_prefect.settings import FashnSettings

pytestmark = pytest.mark.unit

PUBLIC = {
    "fashn_prefect": {
        "APIError",
        "AmbiguousSubmission",
        "BudgetExceeded",
        "ConfigurationError",
        "FashnClient",
        "FashnCredentials",
        "FashnError",
        "FashnSettings",
        "InvalidInputs",
        "ManifestError",
        "ManifestInvalid",
        "OutputUnavailable",
        "PollingTimeout",
        "PredictionFailed",
        "PredictionResult",
        "PredictionStatus",
        "RunError",
        "RunFailed",
        "StorageOptions",
        "StorageTimeout",
        "__version__",
        "run_manifest",
        "run_prediction",
        "run_predictions",
    },
    "fashn_prefect.tasks": {
        "PredictionResult",
        "run_prediction",
        "submit_prediction",
        "wait_for_prediction",
    },
    "fashn_prefect.flows": {
        "backfill",
        "catalog_run",
        "credit_audit",
        "run_manifest",
        "run_predictions",
    },
}
COMMANDS = {
    "audit",
    "backfill",
    "catalog",
    "credentials",
    "demo",
    "emulator",
    "run",
    "webhook-relay",
}


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_the_public_names_are_exported_and_resolve(module: str) -> None:
    imported = importlib.import_module(module)
    assert set(imported.__all__) == PUBLIC[module]
    for name in PUBLIC[module]:
        assert getattr(imported, name) is not None


def test_every_exception_the_package_defines_is_a_fashn_error() -> None:
    outside = []
    for path in sorted((REPO / "fashn_prefect").rglob("*.py")):
        if "emulator" in path.parts or path.name == "__main__.py":
            continue  # a separate tool: its errors are HTTP answers, not exceptions
        module = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = [node.name for node in tree.body if isinstance(node, ast.ClassDef)]
        imported = importlib.import_module(module)
        for name in names:
            cls = getattr(imported, name)
            is_error = inspect.isclass(cls) and issubclass(cls, BaseException)
            if is_error and not issubclass(cls, FashnError) and not name.startswith("_"):
                outside.append(f"{module}.{name}")
    assert outside == []


def test_the_command_line_keeps_its_commands() -> None:
    from fashn_prefect.cli.app import app

    assert set(typer.main.get_command(app).commands) == COMMANDS  # type: ignore[attr-defined]


def test_every_deployment_entrypoint_resolves() -> None:
    config = yaml.safe_load((REPO / "deployments" / "prefect.yaml").read_text())
    entrypoints = [d["entrypoint"] for d in config["deployments"]]
    assert entrypoints
    for entrypoint in entrypoints:
        module, name = entrypoint.split(":")
        assert callable(getattr(importlib.import_module(module), name)), entrypoint


def test_a_removed_setting_gets_a_clear_word_not_a_silent_change() -> None:
    with pytest.warns(DeprecationWarning, match="shared_limits_design"):
        assert FashnSettings.build({"shared_limits_design": "leases"}) == FashnSettings()
    with pytest.raises(ValueError, match="was removed"):
        FashnSettings.build(shared_limits_design="lanes")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        FashnSettings.build(max_in_flight=3)  # other settings: no warning


def test_the_version_is_a_string() -> None:
    assert isinstance(fashn_prefect.__version__, str) and fashn_prefect.__version__
