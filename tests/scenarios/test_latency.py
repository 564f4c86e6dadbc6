"""Runs against an API faster or slower than the catalogue documents still finish right.

The emulator is told to take half or 2.5 times the documented processing time; the
learned poller must neither lose a row nor provoke a 429 while it adapts. No timing is
asserted. Also: earlier results tables in the output root seed the learned latency.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _helpers import (
    emulator,
    limit_rejections,
    mixed_rows,
    put_images,
    results,
    tryon_rows,
    write_manifest,
)

from fashn_prefect.credentials import FashnCredentials
from fashn_prefect.flows import run_manifest
from fashn_prefect.run.poll import seed_from_results
from fashn_prefect.run.runtime import RunConfig, Runtime
from fashn_prefect.scheduler.account import AccountScheduler, account_scheduler
from fashn_prefect.scheduler.latency import latency_key
from fashn_prefect.scheduler.polls import poll_scheduler
from fashn_prefect.scheduler.rates import ApiLimits
from fashn_prefect.settings import FashnSettings

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
    account = AccountScheduler(ApiLimits().scaled(TIME_SCALE))
    rt = Runtime(RunConfig(output=output, time_scale=TIME_SCALE), None, account)  # type: ignore[arg-type]
    await seed_from_results(rt)
    polls = rt.polls
    tryon = latency_key("tryon-v1.6", {"mode": "performance"})
    documented_high = tryon[2]
    seeded = sorted(polls.book.total(tryon).samples)
    assert len(seeded) == 2 and seeded[0] > 0
    if multiplier > 1:
        # 2.5 x 4-6 s of processing: the recorded latencies are past the documented range
        # (load on the machine could only make them longer, never shorter).
        assert seeded[0] > documented_high


EIGHT_SECONDS = 1.25
"""tryon-v1.6 ``performance`` is documented at 4-6 s of processing; x 1.25, plus the
emulator's 0.7-3 s of starting and queue, its jobs take about 8 s."""


async def test_jobs_of_about_8_seconds_cost_at_most_6_status_calls_each(tmp_path: Path) -> None:
    # The status budget goes where completions are due, not evenly: even while the run
    # learns that the API is slower than documented, the average job is polled at most
    # 6 times (polling every 1.2 s, an even share of 50 calls per 10 s among 6
    # predictions, would cost about 7).
    server = emulator(time_scale=0.05, latency_multiplier=EIGHT_SECONDS, seed=8)
    try:
        images = put_images(str(tmp_path / "images"))
        rows = tryon_rows(30, images["models"], images["garments"])
        summary = await run_manifest(
            manifest=write_manifest(str(tmp_path / "m.csv"), rows),
            output=str(tmp_path / "out"),
            credentials=FashnCredentials(api_key=server.api_key, base_url=server.url),
            time_scale=0.05,
            shared_limits=False,
        )
        stats = server.stats()
    finally:
        server.stop()
    assert summary["totals"]["completed"] == 30
    assert limit_rejections(stats) == {}
    predictions = stats["predictions"]
    latencies = [p["completed_at"] - p["created_at"] for p in predictions]
    assert 7.0 <= sum(latencies) / len(latencies) <= 10.0, "the jobs really take about 8 s"
    status_calls = sum(per_key.get("status", 0) for per_key in stats["requests"].values())
    assert status_calls / len(predictions) <= 6.0


DRIFTED = 0.3
"""tryon-v1.6 ``quality`` is documented at 12-17 s of processing; x 0.3, plus the
emulator's 0.7-3 s of starting and queue, its jobs really take about 5-7 s: the
latency-drift workload."""


def _calls_per_job(stats: dict) -> float:
    calls = sum(per_key.get("status", 0) for per_key in stats["requests"].values())
    return calls / len(stats["predictions"])


async def test_tasks_mapped_in_a_users_flow_poll_like_the_manifest_flow(tmp_path: Path) -> None:
    """One engine: ``run_prediction`` mapped in a user's own flow feeds and follows the
    account's learned latency, as ``run_manifest`` does: after the run the account has
    learned that these jobs take about 6 s, not the documented 12-17 s; the tasks spend
    about as many status calls per job as the flow; every output is stored."""
    from prefect import flow, unmapped

    from fashn_prefect.tasks import PredictionResult, run_prediction

    rows = 24
    scale = 0.2  # a slow enough clock that a busy machine's scheduling delays stay small

    def workload() -> list[dict[str, str]]:
        images = put_images(str(tmp_path / "images"))
        made = tryon_rows(rows, images["models"], images["garments"])
        for row in made:
            row["mode"] = "quality"
        return made

    manifest_rows = workload()
    server = emulator(time_scale=scale, latency_multiplier=DRIFTED, seed=9)
    try:
        credentials = FashnCredentials(api_key=server.api_key, base_url=server.url)
        await run_manifest(
            manifest=write_manifest(str(tmp_path / "m.csv"), manifest_rows),
            output=str(tmp_path / "flow"),
            credentials=credentials,
            time_scale=scale,
            shared_limits=False,
            check_balance=False,
        )
        flow_stats = server.stats()
    finally:
        server.stop()

    server = emulator(time_scale=scale, latency_multiplier=DRIFTED, seed=9)
    inputs = [
        {k: row[k] for k in ("model_image", "garment_image", "category", "mode", "seed")}
        for row in manifest_rows
    ]

    @flow
    async def users_flow(output: str) -> list[PredictionResult]:
        futures = run_prediction.map(
            "tryon-v1.6",
            inputs,
            credentials=unmapped(credentials),
            output=output,
            settings=unmapped(settings),
        )
        return [future.result() for future in futures]

    try:
        credentials = FashnCredentials(api_key=server.api_key, base_url=server.url)
        settings = FashnSettings(time_scale=scale, shared_limits=False, check_balance=False)
        results = await users_flow(str(tmp_path / "tasks"))
        task_stats = server.stats()
    finally:
        server.stop()

    assert [r.status for r in results] == ["completed"] * rows
    assert all(
        len(r.output_uris) == 1 and Path(r.output_uris[0].removeprefix("file://")).exists()
        for r in results
    )
    assert limit_rejections(task_stats) == {}
    assert len(task_stats["predictions"]) == rows, "nothing was submitted twice"
    # The tasks' completions taught the account's poll scheduler (the one the flows use)
    # the real latency; polling by the documented range alone would never learn it.
    account = account_scheduler(credentials.account_id, settings.limits.scaled(scale))
    learned = poll_scheduler(account).book.total(latency_key("tryon-v1.6", inputs[0]))
    real = [p["completed_at"] - p["created_at"] for p in task_stats["predictions"]]
    assert learned.quantile(0.5) < 0.9 * 12.0, (learned.quantile(0.5), real)
    assert _calls_per_job(task_stats) <= _calls_per_job(flow_stats) + 1.5
