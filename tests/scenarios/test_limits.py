"""Two flow runs that share one account stay within its limits together.

Both runs start at the same moment in one process, on one Prefect server, against one
emulator whose limits are tighter than the defaults. With ``shared_limits=True`` the
in-flight and rate limits are held on the Prefect server, so the emulator must never
have to refuse a request with a 429.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _helpers import emulator, limit_rejections, put_images, results, write_manifest

from fashn_prefect.credentials import FashnCredentials
from fashn_prefect.emulator import EmulatorServer
from fashn_prefect.flows import run_manifest
from fashn_prefect.run.outcome import summary_of

pytestmark = [pytest.mark.usefixtures("prefect_harness"), pytest.mark.timeout(180)]
TIME_SCALE = 0.05
IN_FLIGHT = 3
RUN_LIMIT = (12, 60.0)
ROWS_PER_RUN = 9


@pytest.fixture
def emu() -> Iterator[EmulatorServer]:
    # Its own key: the limits on the Prefect server are per account (per key).
    key = f"fa-limits-{uuid.uuid4().hex[:12]}"
    server = emulator(
        api_keys=(key,),
        time_scale=TIME_SCALE,
        max_in_flight=IN_FLIGHT,
        run_limit=RUN_LIMIT,
        seed=11,
    )
    try:
        yield server
    finally:
        server.stop()


def _rows(prefix: str, images: dict[str, list[str]]) -> list[dict[str, Any]]:
    # tryon-v1.6 in quality mode takes 12-17 s (emulated): long enough for the lanes of
    # both runs to fill the account's in-flight limit.
    models, garments = images["models"], images["garments"]
    return [
        {
            "row_id": f"{prefix}-{i:02d}",
            "model_name": "tryon-v1.6",
            "model_image": models[i % len(models)],
            "garment_image": garments[i % len(garments)],
            "mode": "quality",
            "seed": i,
        }
        for i in range(ROWS_PER_RUN)
    ]


async def test_two_runs_started_together_share_the_account_limits(
    emu: EmulatorServer, tmp_path: Path
) -> None:
    images = put_images(str(tmp_path / "images"))
    creds = FashnCredentials(api_key=emu.api_key, base_url=emu.url)

    def run(name: str) -> Any:
        manifest = write_manifest(str(tmp_path / f"{name}.csv"), _rows(name, images))
        return run_manifest(
            manifest=manifest,
            output=str(tmp_path / f"out-{name}"),
            credentials=creds,
            time_scale=TIME_SCALE,
            max_in_flight=IN_FLIGHT,
            run_limit=f"{RUN_LIMIT[0]}/{RUN_LIMIT[1]:g}",
            shared_limits=True,
        )

    first, second = await asyncio.gather(run("a"), run("b"))

    stats = emu.stats()
    assert limit_rejections(stats) == {}
    # Never passed (reached exactly or not depends on the load: every prediction takes a
    # leased slot on the test server's SQLite).
    assert 2 <= stats["peak_in_flight"] <= IN_FLIGHT
    assert len(stats["predictions"]) == 2 * ROWS_PER_RUN
    for summary in (first, second):
        rows = results(summary["results"])
        assert [r["status"] for r in rows] == ["completed"] * ROWS_PER_RUN
        assert [len(r["prediction_ids"]) for r in rows] == [1] * ROWS_PER_RUN


async def test_one_run_keeps_its_status_calls_within_a_tight_status_limit(
    tmp_path: Path,
) -> None:
    # Six predictions of 12-17 emulated seconds would be polled about 60 times in 20 s;
    # the account allows 6 status calls per 10 s. The run must wait for its turn every
    # time instead of letting the API refuse a call.
    server = emulator(time_scale=TIME_SCALE, status_limit=(6, 10.0), seed=12)
    try:
        images = put_images(str(tmp_path / "images"))
        manifest = write_manifest(str(tmp_path / "tight.csv"), _rows("t", images)[:6])
        summary = await summary_of(
            run_manifest(
                manifest=manifest,
                output=str(tmp_path / "out"),
                credentials=FashnCredentials(api_key=server.api_key, base_url=server.url),
                time_scale=TIME_SCALE,
                status_limit="6/10",
                shared_limits=False,
            )
        )
        stats = server.stats()
    finally:
        server.stop()
    assert limit_rejections(stats) == {}
    assert summary["totals"]["completed"] == 6
    assert summary["status_calls"] >= 6


async def test_one_run_keeps_its_submissions_within_a_tight_run_limit(tmp_path: Path) -> None:
    # Eight quick predictions, six lanes, and an account that allows 5 submissions per
    # 60 s: the sixth submission must wait for the window instead of meeting a 429.
    server = emulator(time_scale=TIME_SCALE, run_limit=(5, 60.0), seed=13)
    try:
        garments = put_images(str(tmp_path / "images"))["garments"]
        rows = [
            {"row_id": f"q-{i}", "model_name": "background-remove", "image": garments[i % 6]}
            for i in range(8)
        ]
        manifest = write_manifest(str(tmp_path / "quick.csv"), rows)
        summary = await summary_of(
            run_manifest(
                manifest=manifest,
                output=str(tmp_path / "out"),
                credentials=FashnCredentials(api_key=server.api_key, base_url=server.url),
                time_scale=TIME_SCALE,
                run_limit="5/60",
                shared_limits=False,
            )
        )
        stats = server.stats()
    finally:
        server.stop()
    assert limit_rejections(stats) == {}
    assert summary["totals"]["completed"] == 8
    assert len(stats["predictions"]) == 8
