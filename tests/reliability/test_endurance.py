"""Scenario 7: 2,000 rows through ``fashn-prefect run`` with the default limits; memory stays flat.

The run is a real CLI process (with Prefect's ephemeral server in a private
PREFECT_HOME) against the time-scaled emulator. The test samples the flow process's
resident set size from ``/proc`` as rows finish, reports the peak, and checks that
memory does not grow with the number of rows: the RSS at 90% of the rows is within a
fixed margin of the RSS at 25%.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from _helpers import (
    check_invariants,
    host_images,
    latest_results,
    specs_of,
    tryon_rows,
    write_manifest,
)
from support import TIME_SCALE, cli_env, proc_memory_mb, scan_for_secret

from fashn_prefect.emulator import EmulatorConfig, EmulatorServer

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(900)]

ROWS = 2000
CLI = str(Path(sys.executable).with_name("fashn-prefect"))
# RSS growth allowed between 25% and 90% of the rows (1,300 rows). The run keeps one
# result row (~2 KB) per manifest row for the results table by design (~3 MB); a leak of
# one HTTP response, image or task state per row would exceed this many times over.
MAX_GROWTH_MB = 30.0


def _images(out: Path) -> int:
    folder = out / "images"
    if not folder.exists():
        return 0
    return sum(1 for entry in folder.iterdir() if not entry.name.startswith("."))


async def test_2000_rows_with_flat_memory(tmp_path: Path, secret_key: str, report) -> None:
    out = tmp_path / "out"
    home = tmp_path / "prefect-home"
    home.mkdir()
    log = tmp_path / "cli.log"
    samples: list[tuple[int, float]] = []  # (rows collected, RSS MB)
    peak = 0.0
    with EmulatorServer(
        EmulatorConfig(api_keys=(secret_key,), time_scale=TIME_SCALE, seed=7)
    ) as emu:
        models, garments = host_images(emu, "rel")
        manifest = write_manifest(
            str(tmp_path / "manifest.csv"), tryon_rows(ROWS, models, garments)
        )
        specs = specs_of(manifest)
        with log.open("wb") as handle:
            proc = subprocess.Popen(
                [
                    CLI,
                    "run",
                    manifest,
                    "--output",
                    str(out),
                    "--time-scale",
                    str(TIME_SCALE),
                    "--quiet",
                ],
                env=cli_env(home, emu.url, secret_key, log_level="INFO"),
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            started = time.monotonic()
            try:
                while proc.poll() is None:
                    memory = proc_memory_mb(proc.pid)
                    if memory is not None:
                        rss, hwm = memory
                        peak = max(peak, hwm)
                        samples.append((_images(out), rss))
                    time.sleep(0.25)
            finally:
                if proc.poll() is None:
                    proc.kill()
                proc.wait(timeout=60)
            wall = time.monotonic() - started
        assert proc.returncode == 0, log.read_text()[-3000:]
        stats = emu.stats()
        rows = latest_results(str(out))
        check = check_invariants(specs, rows, stats, str(out))

    def rss_at(done: int) -> float:
        # The highest RSS sampled within 2% of ``done`` rows (the allocator's sawtooth peak).
        near = [rss for n, rss in samples if abs(n - done) <= ROWS // 50]
        return max(near) if near else 0.0

    # Flatness is judged while rows run (25% -> 90%); after the last row the run builds the
    # results table and the review gallery (thumbnails), a one-off step reported as "end".
    quarter, late = rss_at(ROWS // 4), rss_at(ROWS * 9 // 10)
    end = max(rss for n, rss in samples if n >= ROWS - ROWS // 50)
    growth = late - quarter
    leaks = scan_for_secret(secret_key, texts=[log.read_text(errors="replace")], roots=[out, home])
    result = report.scenario("7 endurance")
    result.counts.update(
        {
            "rows": ROWS,
            "faults injected": 0,
            "retries": sum(stats["rejected"].values()),
            "duplicates": check.double_charged_rows,
            "bytes stored": check.bytes_stored,
        }
    )
    result.figures.update(
        {
            "rows": ROWS,
            "wall_s": round(wall, 1),
            "peak_rss_mb": round(peak, 1),
            "rss_at_25%_mb": round(quarter, 1),
            "rss_at_50%_mb": round(rss_at(ROWS // 2), 1),
            "rss_at_75%_mb": round(rss_at(ROWS * 3 // 4), 1),
            "rss_at_90%_mb": round(late, 1),
            "rss_at_end_mb": round(end, 1),
            "growth_mb": round(growth, 1),
            **check.summary(),
            "429s": sum(stats["rejected"].values()),
            "secret_hits": len(leaks),
        }
    )
    result.invariants.update(
        {
            "invariants": "ok" if not check.problems else f"{len(check.problems)} violations",
            "memory_flat": "ok" if growth <= MAX_GROWTH_MB else f"grew {growth:.0f} MB",
            "secret": "ok" if not leaks else "LEAKED",
        }
    )
    assert not check.problems, check.problems[:20]
    assert check.statuses["completed"] == ROWS
    assert quarter > 0 and len(samples) > 20, samples[:5]
    assert growth <= MAX_GROWTH_MB, [
        (n, round(r)) for n, r in samples[:: max(1, len(samples) // 40)]
    ]
    assert not leaks, leaks
