"""What a user gets from the package itself: its version, licence, the credentials command,
and errors a script can read with ``--json``."""

from __future__ import annotations

import json
import tomllib
from importlib.metadata import metadata
from pathlib import Path

import pytest
from typer.testing import CliRunner

import fashn_prefect
from fashn_prefect.cli import app

REPO = Path(__file__).resolve().parents[1]
SECRET = "fa-packaging-test-key-0123456789"


def test_the_version_is_written_once_and_printed_by_the_cli() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert "version" not in project and "version" in project["dynamic"]
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"fashn-prefect {fashn_prefect.__version__}"
    # The installed metadata agrees (it is built from the same attribute).
    assert metadata("fashn-prefect")["Version"] == fashn_prefect.__version__


def test_the_licence_file_matches_the_declared_licence() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0"
    text = (REPO / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert project["classifiers"] and project["keywords"] and project["urls"]


@pytest.mark.parametrize(
    ("args", "error", "code"),
    [
        (["run", "missing.csv", "-o", "out"], "ManifestError", 2),
        (["backfill", "missing.csv", "-o", "out"], "ManifestError", 2),
        (["audit", "no-such-root"], "UsageError", 2),
        (["audit", "no-such-root", "--since", "yesterday"], "UsageError", 2),
    ],
)
def test_json_errors_are_one_json_object_on_stdout(
    args: list[str], error: str, code: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == code, result.output
    data = json.loads(result.stdout)
    assert data["error"] == error and data["exit_code"] == code
    assert data["message"] and data["hint"]


def test_json_error_for_an_invalid_manifest_lists_every_problem(tmp_path: Path) -> None:
    manifest = tmp_path / "bad.csv"
    manifest.write_text("row_id,model_name,prompt\nr1,no-such-model,hi\nr2,model-create,\n")
    # Unknown models run as a pass-through by default; forbid them so that row 1 is invalid.
    args = ["run", str(manifest), "-o", str(tmp_path), "--json", "--no-allow-unknown-models"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    data = json.loads(result.stdout)
    assert data["error"] == "ManifestInvalid"
    assert len(data["problems"]) >= 2 and any("no-such-model" in p for p in data["problems"])


@pytest.mark.usefixtures("prefect_harness")
def test_the_credentials_command_saves_the_block_without_showing_the_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from fashn_prefect.credentials import FashnCredentials

    monkeypatch.setenv("FASHN_API_KEY", SECRET)
    monkeypatch.setenv("FASHN_BASE_URL", "http://127.0.0.1:8765")
    result = CliRunner().invoke(app, ["credentials", "pkg-test"])
    assert result.exit_code == 0, result.output
    assert SECRET not in result.output and "pkg-test" in result.output
    block = FashnCredentials.load("pkg-test", _sync=True)  # type: ignore[call-arg]
    assert block.api_key.get_secret_value() == SECRET
    assert block.base_url == "http://127.0.0.1:8765"

    again = CliRunner().invoke(app, ["credentials", "pkg-test"])
    assert again.exit_code == 2 and "--overwrite" in again.output
    monkeypatch.setenv("FASHN_API_KEY", SECRET + "-2")
    replaced = CliRunner().invoke(app, ["credentials", "pkg-test", "--overwrite"])
    assert replaced.exit_code == 0, replaced.output
    reloaded = FashnCredentials.load("pkg-test", _sync=True)  # type: ignore[call-arg]
    assert reloaded.api_key.get_secret_value() == SECRET + "-2"
