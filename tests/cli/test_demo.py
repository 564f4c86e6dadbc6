"""`make demo` end to end: the main job on embedded defaults, from a clean output directory."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote

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
    # The catalog is run twice; nothing changed, so the second run submits nothing.
    assert "38: first run 38, re-run of the unchanged catalog 0" in " ".join(stdout.split())
    assert "anomalies: none" in stdout


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


def test_demo_writes_a_credit_audit_that_matches_the_charges(demo_run: tuple[Path, str]) -> None:
    output, _ = demo_run
    audit = output / "catalog" / "audit"
    breakdown = pq.read_table(next(audit.glob("*-breakdown.parquet"))).to_pylist()
    by_model = {r["value"]: r["charged"] for r in breakdown if r["dimension"] == "model"}
    assert by_model == {"tryon-v1.6": 36, "reframe": 0}
    assert pq.read_table(next(audit.glob("*-anomalies.parquet"))).num_rows == 0
    balances = pq.read_table(next(audit.glob("*-balances.parquet"))).to_pylist()
    assert sum(r["movement"] for r in balances) == 36
    assert all(r["unexplained"] == 0 for r in balances)
    with Image.open(next(audit.glob("*-spend.png"))) as chart:
        assert chart.format == "PNG" and chart.width > 200


def test_the_gallery_references_only_files_that_exist(demo_run: tuple[Path, str]) -> None:
    output, _ = demo_run
    gallery = next((output / "catalog" / "results").glob("*.html"))
    html = gallery.read_text(encoding="utf-8")
    refs = re.findall(r'(?:src|href)="([^"#]+)"', html)
    local = [r for r in refs if not r.startswith(("http://", "https://", "data:"))]
    assert len(local) >= 36 * 2  # input and output thumbnails of every completed row
    for ref in local:
        assert (gallery.parent / unquote(ref)).resolve().is_file(), ref
