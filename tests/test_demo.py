"""`make demo` end to end: the main job on embedded defaults, from a clean output directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    output = tmp_path_factory.mktemp("demo") / "demo-output"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    result = subprocess.run(
        [sys.executable, "-m", "fashn_prefect.cli", "demo", "--output", str(output)],
        env={**env, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=220,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return output, result.stdout


def test_demo_prints_a_summary_with_real_counts(demo_run: tuple[Path, str]) -> None:
    _, stdout = demo_run
    assert "rows completed" in stdout and "36" in stdout
    assert "failed with ImageLoadError" in stdout
    assert "failed with InputValidationError" in stdout
    assert "credits charged" in stdout and "36 (emulator: 36)" in stdout


def test_demo_results_table_matches_the_catalog(demo_run: tuple[Path, str]) -> None:
    output, _ = demo_run
    tables = sorted((output / "catalog" / "results").glob("*.parquet"))
    assert len(tables) == 1
    rows = pq.read_table(tables[0]).to_pylist()
    assert len(rows) == 38
    by_status: dict[str, int] = {}
    for row in rows:
        by_status[row["status"]] = by_status.get(row["status"], 0) + 1
    assert by_status == {"completed": 36, "failed": 2}
    assert sum(r["credits_charged"] for r in rows) == 36
    assert {r["brand"] for r in rows} == {"acme", "northwind"}


def test_every_image_the_results_reference_exists_and_opens(demo_run: tuple[Path, str]) -> None:
    output, _ = demo_run
    table = next((output / "catalog" / "results").glob("*.parquet"))
    uris = [u for row in pq.read_table(table).to_pylist() for u in row["output_uris"]]
    assert len(uris) == 36
    for uri in uris:
        path = Path(uri.removeprefix("file://"))
        assert path.is_file(), uri
        with Image.open(path) as image:
            assert image.width > 0
