"""Log hygiene: a large CLI run on Prefect's ephemeral server prints what a person needs.

1,000 rows on the time-scaled emulator, half of them failing at the API with
ImageLoadError, through ``fashn-prefect run --quiet`` as a subprocess (what a user types)
with its own PREFECT_HOME and no PREFECT_API_URL, so Prefect starts its ephemeral server.
"""

from __future__ import annotations

import csv
import os
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from _helpers import all_results
from _servers import FASHN_PREFECT, REPO

from fashn_prefect.emulator import EmulatorConfig, EmulatorServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

ROWS = 1000
TIME_SCALE = 0.01
MAX_QUIET_STDERR_LINES = 5


@pytest.fixture
def emu() -> Iterator[EmulatorServer]:
    with EmulatorServer(EmulatorConfig(time_scale=TIME_SCALE, seed=3)) as server:
        yield server


def _manifest(path: Path, emu: EmulatorServer) -> str:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["row_id", "model_name", "prompt", "image"])
        for i in range(ROWS):
            if i % 2:  # an image the host does not have: the API fails it (ImageLoadError)
                writer.writerow([f"r{i:04d}", "background-remove", "", f"{emu.url}/files/no-{i}"])
            else:
                writer.writerow([f"r{i:04d}", "model-create", f"a red dress, take {i}", ""])
    return str(path)


def test_a_1000_row_quiet_run_with_500_failures_prints_a_few_lines_and_no_traceback(
    emu: EmulatorServer, tmp_path: Path
) -> None:
    manifest = _manifest(tmp_path / "catalog.csv", emu)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "FASHN_"))}
    env.update(
        PREFECT_HOME=str(tmp_path / "prefect-home"),
        FASHN_API_KEY=emu.api_key,
        FASHN_BASE_URL=emu.url,
        COLUMNS="200",
    )
    run = [FASHN_PREFECT, "run", manifest, "-o", str(tmp_path / "out")]
    run += ["--quiet", "--time-scale", str(TIME_SCALE)]
    result = subprocess.run(
        run, env=env, cwd=str(REPO), capture_output=True, text=True, timeout=800
    )

    assert result.returncode == 1, result.stderr[-3000:]  # some rows failed
    assert "Traceback" not in result.stderr + result.stdout, result.stderr[-3000:]
    lines = result.stderr.splitlines()
    assert len(lines) <= MAX_QUIET_STDERR_LINES, "\n".join(lines[:40])
    # The summary groups the failures by error: one line per error name, with its count.
    rows = all_results(tmp_path / "out")
    errors = Counter(r["error_name"] for r in rows if r["status"] == "failed")
    assert errors["ImageLoadError"] >= 490 and sum(errors.values()) == ROWS // 2, errors
    for name, count in errors.items():
        assert result.stdout.count(f"{name}: ") == 1
        assert f"{name}: {count} rows" in result.stdout, result.stdout
    assert len(emu.stats()["predictions"]) == ROWS  # every row submitted once
