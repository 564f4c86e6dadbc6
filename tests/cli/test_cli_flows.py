"""The catalog, backfill and audit commands: help, dry runs, JSON and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fashn_prefect.cli import app

runner = CliRunner()
IMAGE = "https://example.com/images/{}.jpg"


def _manifest(path: Path, rows: int, bad_row: int | None = None) -> str:
    lines = ["row_id,model_name,model_image,garment_image,category,season"]
    for i in range(rows):
        category = "hats" if i == bad_row else "tops"
        lines.append(
            f"SKU-{i},tryon-v1.6,{IMAGE.format(f'm{i}')},{IMAGE.format(f'g{i}')},{category},"
            f"SS{24 + i % 2}"
        )
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@pytest.mark.parametrize("command", ["run", "catalog", "backfill", "audit"])
def test_every_command_explains_itself_with_examples(command: str) -> None:
    result = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "Example" in result.output and f"fashn-prefect {command}" in result.output


def test_backfill_dry_run_estimates_the_whole_set_against_the_budget(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path / "history.csv", 25)
    args = ["backfill", manifest, "--output", str(tmp_path / "out"), "--dry-run", "--json"]
    result = runner.invoke(app, [*args, "--budget", "10", "--partition-by", "season"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)["plan"]
    assert plan["estimated_credits"] == 25 and plan["selected_credits"] == 10
    assert plan["deferred"] == 15 and "budget of 10 credits reached" in plan["budget_message"]
    assert [c["label"] for c in plan["chunks"]] == ["season=SS24", "season=SS25"]
    assert not (tmp_path / "out").exists()  # nothing written, nothing submitted


def test_catalog_dry_run_counts_new_rows(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path / "catalog.csv", 7)
    result = runner.invoke(
        app, ["catalog", manifest, "--output", str(tmp_path / "out"), "--dry-run", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert (
        json.loads(result.stdout)["changes"] | {"new": 7, "to_run": 7}
        == json.loads(result.stdout)["changes"]
    )


@pytest.mark.parametrize("command", ["catalog", "backfill"])
def test_invalid_manifest_is_one_line_and_a_hint(tmp_path: Path, command: str) -> None:
    manifest = _manifest(tmp_path / "m.csv", 5, bad_row=3)
    result = runner.invoke(app, [command, manifest, "--output", str(tmp_path / "o"), "--quiet"])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert "row 4" in result.output and "category" in result.output
    assert "error: the manifest has invalid rows" in result.output and "hint:" in result.output


def test_missing_manifest_and_bad_partition_column(tmp_path: Path) -> None:
    out = str(tmp_path / "o")
    missing = runner.invoke(app, ["backfill", str(tmp_path / "nope.csv"), "--output", out])
    assert missing.exit_code == 2 and "Manifest not found" in missing.output
    manifest = _manifest(tmp_path / "m.csv", 3)
    bad = runner.invoke(
        app, ["backfill", manifest, "--output", out, "--partition-by", "brand", "--dry-run"]
    )
    assert bad.exit_code == 2 and "'brand' is not in the manifest" in bad.output
    assert "Traceback" not in missing.output + bad.output
