"""The approval gate of a backfill: a pilot, a pause with its report, then approve, reject
or no answer. The backfill runs in this process against the test Prefect server; the test
plays the person in the UI through Prefect's API."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _helpers import TIME_SCALE, all_results, catalog_rows, predictions_per_input, write_manifest
from _servers import REPO
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.flow_runs import aresume_flow_run
from prefect.flows import load_flow_from_entrypoint
from prefect.input.actions import read_flow_run_input
from prefect.input.run_input import keyset_from_paused_state

from fashn_prefect.emulator import EmulatorConfig, EmulatorServer

pytestmark = [pytest.mark.usefixtures("prefect_harness"), pytest.mark.timeout(300)]

ROWS, PILOT = 6, 2


@pytest.fixture
def emu() -> Iterator[EmulatorServer]:
    with EmulatorServer(EmulatorConfig(time_scale=TIME_SCALE, seed=9)) as server:
        yield server


async def _params(tmp_path: Path, emu: EmulatorServer) -> dict[str, Any]:
    rows = catalog_rows(ROWS, emu, prefix=tmp_path.name[-12:])
    rows[1]["garment_image"] = f"{emu.url}/files/missing.png"  # one pilot row fails
    from fashn_prefect.credentials import FashnCredentials

    await FashnCredentials(api_key=emu.api_key, base_url=emu.url).asave(
        "fashn-gate", overwrite=True
    )
    return {
        "manifest": write_manifest(tmp_path / "history.csv", rows),
        "output": str(tmp_path / "out"),
        "credentials": "fashn-gate",
        "chunk_size": 2,
        "time_scale": TIME_SCALE,
        "shared_limits": False,
    }


async def _paused(timeout: float = 120) -> FlowRun:
    """The backfill once it is paused for approval."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        async with get_client() as client:
            runs = await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))
                )
            )
        if runs:
            return runs[0]
        await asyncio.sleep(0.5)
    raise AssertionError("the backfill never paused")


async def _report(run: FlowRun) -> str:
    assert run.state is not None
    keyset = keyset_from_paused_state(run.state)
    return str(await read_flow_run_input(keyset["description"], flow_run_id=run.id))


def _backfill() -> Any:
    return load_flow_from_entrypoint(f"{REPO}/flows/backfill.py:backfill")


async def _answer_after_pause(approve: bool | None) -> str:
    """Wait for the pause, read its report, then answer (None: never answer)."""
    paused = await _paused()
    report = await _report(paused)
    if approve is not None:
        await aresume_flow_run(paused.id, run_input={"approve": approve})
    return report


@pytest.mark.parametrize("approve", [True, False])
async def test_a_pilot_then_the_answer_decides(
    approve: bool, emu: EmulatorServer, tmp_path: Path
) -> None:
    params = await _params(tmp_path, emu)
    state, report = await asyncio.gather(
        _backfill()(**params, pilot_rows=PILOT, approval_timeout=120, return_state=True),
        _answer_after_pause(approve),
    )

    # The pause showed the pilot's gallery, failure rate and the cost of the rest.
    assert f"Pilot of {PILOT} rows done" in report
    assert "failed 1 (failure rate 50.0 %): ImageLoadError: 1" in report
    assert "review gallery: file://" in report
    # (the pilot's failed row is reported again, not resubmitted: it costs nothing)
    assert f"The rest: {ROWS - PILOT + 1} rows, about {ROWS - PILOT} credits" in report

    submitted = len(emu.stats()["predictions"])
    if approve:
        assert state.is_failed()  # it finished, with the pilot's failed row reported again
        assert "4 rows completed, 1 failed" in str(state.message)
        assert submitted == ROWS
    else:
        assert state.is_cancelled(), state
        assert f"rejected after the pilot; the other {ROWS - PILOT + 1} rows were not run" in str(
            state.message
        )
        assert submitted == PILOT
        assert len(all_results(Path(params["output"]))) == PILOT


async def test_no_answer_stops_cleanly_and_a_rerun_resumes(
    emu: EmulatorServer, tmp_path: Path
) -> None:
    params = await _params(tmp_path, emu)
    state, _ = await asyncio.gather(
        _backfill()(**params, pilot_rows=PILOT, approval_timeout=3, return_state=True),
        _answer_after_pause(None),
    )
    assert state.is_failed(), state
    # Prefect's server fails an expired pause itself, with its own message.
    assert "never resumed" in str(state.message) or "no approval within 3 s" in str(state.message)
    assert len(emu.stats()["predictions"]) == PILOT

    # Nothing lost: the same backfill without a pilot does the rest, never a row twice.
    again = await _backfill()(**params, return_state=True)
    assert again.is_failed() and "4 rows completed, 1 failed" in str(again.message)
    stats = emu.stats()
    assert len(stats["predictions"]) == ROWS
    assert max(predictions_per_input(stats).values()) == 1
    statuses = sorted(r["status"] for r in all_results(Path(params["output"])))
    assert statuses.count("completed") == ROWS - 1
