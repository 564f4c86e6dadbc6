"""The tasks users compose, the rows-in-memory flow, and row task names, on the emulator."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from _helpers import TIME_SCALE, catalog_rows, emulator, limit_rejections, results

from fashn_prefect import FashnCredentials, FashnSettings
from fashn_prefect.emulator import EmulatorServer
from fashn_prefect.flows import run_predictions
from fashn_prefect.scheduler.account import account_scheduler
from fashn_prefect.tasks import run_prediction, submit_prediction, wait_for_prediction

pytestmark = pytest.mark.usefixtures("prefect_harness")

SETTINGS = FashnSettings(time_scale=TIME_SCALE, shared_limits=False, check_balance=False)


@pytest.fixture
def emu() -> Iterator[EmulatorServer]:
    server = emulator(seed=3)
    try:
        yield server
    finally:
        server.stop()


def _credentials(emu: EmulatorServer) -> FashnCredentials:
    return FashnCredentials(api_key=emu.api_key, base_url=emu.url)


async def test_a_submitted_prediction_holds_a_slot_until_it_is_seen_finished(emu):
    credentials = _credentials(emu)
    row = catalog_rows(1, emu)[0]
    inputs = {k: row[k] for k in ("model_image", "garment_image", "category")}
    scheduler = account_scheduler(
        credentials.account_id, SETTINGS.limits.scaled(SETTINGS.time_scale)
    )

    prediction_id = await submit_prediction("tryon-v1.6", inputs, credentials, SETTINGS)
    assert scheduler.in_flight == 1
    status = await wait_for_prediction(prediction_id, credentials, SETTINGS, "tryon-v1.6")

    assert status.is_completed and status.id == prediction_id
    assert scheduler.in_flight == 0
    assert len(emu.stats()["predictions"]) == 1


async def test_a_rejected_input_is_a_failed_result_not_an_exception(emu, tmp_path: Path):
    result = await run_prediction(
        "tryon-v1.6", {"model_image": "not-an-image"}, _credentials(emu), str(tmp_path), SETTINGS
    )

    assert result.status == "failed" and result.prediction_id is None
    assert result.error_name and result.error_message
    assert result.output_uris == [] and result.credits_charged == 0
    assert emu.stats()["predictions"] == []


async def test_rows_in_memory_run_like_a_manifest_with_row_named_task_runs(emu, tmp_path: Path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    rows = pd.DataFrame(catalog_rows(8, emu, prefix="SKU"))
    state = await run_predictions(
        rows,
        str(tmp_path / "out"),
        credentials=_credentials(emu),
        settings=SETTINGS,
        return_state=True,
    )
    summary = await state.result()

    assert summary["totals"]["completed"] == 8
    table = results(summary["results"])
    assert sorted(r["row_key"] for r in table) == sorted(rows["row_id"])
    assert all(r["output_uris"] for r in table)
    assert limit_rejections(emu.stats()) == {}
    # One task run per row, named after it (submit, poll and collect in one).
    expected = {f"tryon SKU-{i:05d}" for i in range(8)}
    # Prefect records task runs from their events, a moment after they ran: read until
    # every expected run is there (bounded), then compare.
    names: set[str] = set()
    async with get_client() as client:
        for _ in range(60):
            task_runs = await client.read_task_runs(
                flow_run_filter=FlowRunFilter(
                    id=FlowRunFilterId(any_=[state.state_details.flow_run_id])
                )
            )
            names = {t.name for t in task_runs}
            if expected <= names:
                break
            await asyncio.sleep(0.5)
    assert expected <= names
    assert len(task_runs) == len(expected)
