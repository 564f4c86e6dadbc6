"""Bad manifests and budgets stop ``fashn-prefect run`` before anything is submitted.

The CLI runs in-process (typer's runner) against the Prefect test server and a live
emulator, so "nothing submitted" is the emulator's own count of ``POST /v1/run`` calls.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _helpers import TIME_SCALE, emulator, put_images, results, run_calls, write_manifest
from typer.testing import CliRunner

from fashn_prefect.cli import app
from fashn_prefect.emulator import EmulatorServer

pytestmark = [pytest.mark.usefixtures("prefect_harness"), pytest.mark.timeout(180)]


@pytest.fixture
def emu(monkeypatch: pytest.MonkeyPatch) -> Iterator[EmulatorServer]:
    server = emulator(seed=7)
    monkeypatch.setenv("FASHN_API_KEY", server.api_key)
    monkeypatch.setenv("FASHN_BASE_URL", server.url)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def images(tmp_path: Path) -> dict[str, Any]:
    found: dict[str, Any] = put_images(str(tmp_path / "images"))
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "notes.png").write_text("this is not an image\n")
    found["empty"] = str(tmp_path / "empty.png")
    found["not_image"] = str(tmp_path / "notes.png")
    found["missing"] = str(tmp_path / "nowhere.png")
    return found


def _tryon(row_id: str, images: dict[str, Any], **changes: Any) -> dict[str, Any]:
    row = {
        "row_id": row_id,
        "model_name": "tryon-v1.6",
        "model_image": images["models"][0],
        "garment_image": images["garments"][0],
        "mode": "performance",
        "num_samples": "1",
        "sku": f"SKU-{row_id}",
    }
    row.update(changes)
    return row


def _cli(*args: str) -> Any:
    # Strict about models: by default a model the catalogue does not know runs as a
    # pass-through (tests/scenarios/test_api_variants.py); here it is a bad row.
    command = ["run", *args, "--time-scale", str(TIME_SCALE), "--quiet"]
    return CliRunner().invoke(app, [*command, "--no-allow-unknown-models"])


# kind -> (changes to the second row, the column the report must name, words it must say)
BAD_ROWS: dict[str, tuple[dict[str, Any], str, str]] = {
    "missing required field": ({"garment_image": ""}, "garment_image", "missing"),
    "unknown model": ({"model_name": "tryon-v9"}, "model_name", "unknown model"),
    "bad enum": ({"mode": "turbo"}, "mode", "must be one of"),
    "wrong type": ({"num_samples": "two"}, "num_samples", "must be an integer"),
    "duplicate row_id": ({"row_id": "ok-1", "seed": "7"}, "row_id", "duplicate"),
    "missing image file": ({"garment_image": "@missing"}, "garment_image", "not found"),
    "empty image file": ({"garment_image": "@empty"}, "garment_image", "empty"),
    "unreadable image file": ({"garment_image": "@not_image"}, "garment_image", "not a readable"),
}


def _bad_row(kind: str, images: dict[str, Any]) -> dict[str, Any]:
    changes, _, _ = BAD_ROWS[kind]
    resolved = {k: images[v[1:]] if str(v).startswith("@") else v for k, v in changes.items()}
    return {**_tryon("bad-2", images), **resolved}


@pytest.mark.parametrize("kind", list(BAD_ROWS))
def test_each_kind_of_bad_row_exits_2_naming_row_and_column(
    kind: str, emu: EmulatorServer, images: dict[str, Any], tmp_path: Path
) -> None:
    rows = [_tryon("ok-1", images), _bad_row(kind, images)]
    manifest = write_manifest(str(tmp_path / "catalog.csv"), rows)

    result = _cli(manifest, "--output", str(tmp_path / "out"))

    _, column, words = BAD_ROWS[kind]
    assert result.exit_code == 2, result.output
    assert f"row 2, column '{column}'" in result.output
    assert words in result.output.lower()
    assert "nothing was submitted" in result.output
    assert "row 1," not in result.output  # the valid row is not blamed
    assert run_calls(emu.stats()) == 0


def test_every_problem_in_every_row_is_reported_and_skip_invalid_runs_the_rest(
    emu: EmulatorServer, images: dict[str, Any], tmp_path: Path
) -> None:
    rows = [_tryon("ok-1", images)]
    rows += [{**_bad_row(kind, images), "row_id": f"bad-{n}"} for n, kind in enumerate(BAD_ROWS)]
    rows[1 + list(BAD_ROWS).index("duplicate row_id")]["row_id"] = "ok-1"
    rows.append(_tryon("ok-2", images, garment_image=images["garments"][1]))
    manifest = write_manifest(str(tmp_path / "catalog.csv"), rows)
    out = tmp_path / "out"

    refused = _cli(manifest, "--output", str(out))

    assert refused.exit_code == 2
    assert f"{len(BAD_ROWS)} of {len(rows)} rows invalid" in refused.output
    for index, (_, column, _) in enumerate(BAD_ROWS.values()):
        assert f"row {index + 2}, column '{column}'" in refused.output
    assert run_calls(emu.stats()) == 0

    ran = _cli(manifest, "--output", str(out), "--skip-invalid", "--json")

    assert ran.exit_code == 1, ran.output  # invalid rows are reported, so not a clean run
    table = results(str(next((out / "results").glob("*.parquet"))))
    assert [r["status"] for r in table] == ["completed"] + ["invalid"] * len(BAD_ROWS) + [
        "completed"
    ]
    invalid = [r for r in table if r["status"] == "invalid"]
    assert [r["row"] for r in invalid] == list(range(2, len(BAD_ROWS) + 2))
    for row, (_, column, _) in zip(invalid, BAD_ROWS.values(), strict=True):
        assert row["error_name"] == "InvalidRow" and f"column '{column}'" in row["error_message"]
        assert row["sku"].startswith("SKU-")  # the row's own columns are kept
        assert row["prediction_ids"] == [] and row["credits_charged"] == 0
    assert invalid[0]["row_key"] == "bad-0" and invalid[1]["model_name"] == "tryon-v9"
    assert run_calls(emu.stats()) == 2


@pytest.mark.parametrize(
    ("name", "content", "words"),
    [
        ("missing.csv", None, "not found"),
        ("empty.csv", b"", "empty"),
        ("header-only.csv", b"row_id,model_name\n", "no rows"),
        ("latin1.csv", "row_id,model_name,sku\n1,tryon-v1.6,Caf\xe9\n".encode("latin-1"), "utf-8"),
        ("broken.parquet", b"PAR1 this is not parquet", "not a readable parquet"),
        ("catalog.xlsx", b"PK\x03\x04", "cannot tell the format"),
    ],
)
def test_an_unreadable_manifest_exits_2_and_says_why(
    name: str, content: bytes | None, words: str, emu: EmulatorServer, tmp_path: Path
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)

    result = _cli(str(path), "--output", str(tmp_path / "out"))

    assert result.exit_code == 2, result.output
    assert words in result.output.lower() and name in result.output
    assert run_calls(emu.stats()) == 0


def test_a_budget_below_the_estimate_exits_2_with_nothing_submitted(
    emu: EmulatorServer, images: dict[str, Any], tmp_path: Path
) -> None:
    rows = [_tryon(f"ok-{i}", images, seed=str(i)) for i in range(3)]
    manifest = write_manifest(str(tmp_path / "catalog.csv"), rows)

    result = _cli(manifest, "--output", str(tmp_path / "out"), "--budget", "2")

    assert result.exit_code == 2
    assert "estimated 3 credits exceeds the budget of 2" in result.output
    assert run_calls(emu.stats()) == 0


def test_a_balance_below_the_estimate_exits_2_in_a_dry_run_and_a_real_run(
    images: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    poor = emulator(on_demand_credits=2)
    monkeypatch.setenv("FASHN_API_KEY", poor.api_key)
    monkeypatch.setenv("FASHN_BASE_URL", poor.url)
    try:
        rows = [_tryon(f"ok-{i}", images, seed=str(i)) for i in range(3)]
        manifest = write_manifest(str(tmp_path / "catalog.csv"), rows)
        out = str(tmp_path / "out")

        dry = _cli(manifest, "--output", out, "--dry-run")
        real = _cli(manifest, "--output", out)

        for result in (dry, real):
            assert result.exit_code == 2, result.output
            assert "estimated 3 credits exceeds the account balance of 2" in result.output
        assert run_calls(poor.stats()) == 0
    finally:
        poor.stop()


def test_a_dry_run_reports_estimate_and_balance_and_submits_nothing(
    emu: EmulatorServer, images: dict[str, Any], tmp_path: Path
) -> None:
    rows = [_tryon(f"ok-{i}", images, seed=str(i)) for i in range(3)]
    manifest = write_manifest(str(tmp_path / "catalog.csv"), rows)

    result = _cli(manifest, "--output", str(tmp_path / "out"), "--dry-run", "--json")

    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["estimated_credits"] == 3 and summary["to_submit"] == 3
    assert summary["balance"] == 1_000_000
    assert run_calls(emu.stats()) == 0
