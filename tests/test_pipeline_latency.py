"""Runs against an API faster or slower than the catalogue documents still finish right.

The emulator is told to take half or 2.5 times the documented processing time; the
learned poller must neither lose a row nor provoke a 429 while it adapts. No timing is
asserted. Also: earlier results tables in the output root seed the learned latency.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _helpers import emulator, limit_rejections, mixed_rows, put_images, results, write_manifest

from fashn_prefect.credentials import FashnCredentials
from fashn_prefect.run.pipeline import run_manifest
from fashn_prefect.run.poll import seed_from_results
from fashn_prefect.run.runtime import RunConfig, Runtime
from fashn_prefect.scheduler.latency import latency_key
from fashn_prefect.scheduler.polls import PollScheduler

pytestmark = [pytest.mark.usefixtures("prefect_harness"), pytest.mark.timeout(240)]
TIME_SCALE = 0.02
ROWS = 12


@pytest.mark.parametrize("multiplier", [0.4, 2.5])
async def test_a_run_against_a_faster_or_slower_api_completes_every_row(
    multiplier: float, tmp_path: Path
) -> None:
    server = emulator(time_scale=TIME_SCALE, latency_multiplier=multiplier, seed=21)
    try:
        images = put_images(str(tmp_path / "images"))
        manifest = write_manifest(str(tmp_path / "m.csv"), mixed_rows(ROWS, images))
        output = str(tmp_path / "out")
        summary = await run_manifest(
            manifest=manifest,
            output=output,
            credentials=FashnCredentials(api_key=server.api_key, base_url=server.url),
            time_scale=TIME_SCALE,
            shared_limits=False,
        )
        stats = server.stats()
    finally:
        server.stop()
    assert limit_rejections(stats) == {}
    rows = results(summary["results"])
    assert sorted(r["row_key"] for r in rows) == sorted(f"r-{i:03d}" for i in range(ROWS))
    assert {r["status"] for r in rows} == {"completed"}
    assert all(len(r["prediction_ids"]) == 1 and r["output_uris"] for r in rows)
    assert len(stats["predictions"]) == ROWS, "nothing was submitted twice"

    # A later run in the same output root starts from what this one recorded.
    polls = PollScheduler()
    rt = Runtime(RunConfig(output=output, time_scale=TIME_SCALE), None, None)  # type: ignore[arg-type]
    await seed_from_results(rt, polls)
    tryon = latency_key("tryon-v1.6", {"mode": "performance"})
    documented_high = tryon[2]
    seeded = sorted(polls.book.total(tryon).samples)
    assert len(seeded) == 2 and seeded[0] > 0
    if multiplier > 1:
        # 2.5 x 4-6 s of processing: the recorded latencies are past the documented range
        # (load on the machine could only make them longer, never shorter).
        assert seeded[0] > documented_high
