"""Final states and events, read back from a real ``prefect server start``.

The flows run in this process against one server (SQLite, private PREFECT_HOME, free
loopback port) that has the example automations of ``deployments/automations.yaml``.
Every assertion reads the flow run's state and the emitted events through Prefect's API.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from _helpers import TIME_SCALE, all_results, catalog_rows, write_manifest
from _servers import PREFECT, PrefectServer, free_port
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from prefect.events import Event
from prefect.events.clients import PrefectEventsClient
from prefect.events.filters import EventFilter, EventNameFilter, EventRelatedFilter
from prefect.events.worker import EventsWorker
from prefect.flows import load_flow_from_entrypoint
from prefect.settings import PREFECT_API_URL, temporary_settings

from fashn_prefect.credentials import FashnCredentials
from fashn_prefect.emulator import EmulatorConfig, EmulatorServer
from fashn_prefect.run.outcome import RunFailed

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parents[2]
FAILING_ROWS = 10  # the "10 or more predictions failed in an hour" automation's threshold


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(EmulatorConfig(time_scale=TIME_SCALE, seed=21)) as emu:
        yield emu


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    """A Prefect server with the example automations created from the shipped file."""
    server = PrefectServer(tmp_path_factory.mktemp("prefect-home"), free_port())
    try:
        server.start()
        created = server.run(
            [PREFECT, "automation", "create", "--from-file", "deployments/automations.yaml"]
        )
        assert created.returncode == 0, created.stdout + created.stderr
        yield server
    finally:
        server.close()


@pytest.fixture
async def api(server: PrefectServer, emulator: EmulatorServer) -> AsyncIterator[PrefectServer]:
    """Flows in this test report to the module's server; events go there too."""
    with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
        EventsWorker.set_client_override(PrefectEventsClient, api_url=server.api_url)
        await FashnCredentials(api_key=emulator.api_key, base_url=emulator.url).asave(
            "fashn", overwrite=True
        )
        try:
            yield server
        finally:
            drained = EventsWorker.drain_all()
            if inspect.isawaitable(drained):
                await drained
            EventsWorker.set_client_override(None)


def _flow(entrypoint: str) -> Any:
    return load_flow_from_entrypoint(f"{REPO}/flows/{entrypoint}")


def _catalog(tmp: Path, emu: EmulatorServer, good: int, bad: int, prefix: str) -> dict[str, Any]:
    rows = catalog_rows(good + bad, emu, prefix=prefix, seed_base=hash(prefix) % 10_000)
    for row in rows[good:]:  # an image the host does not have: ImageLoadError at the API
        row["garment_image"] = f"{emu.url}/files/missing-{row['row_id']}.png"
    return {
        "manifest": write_manifest(tmp / f"{prefix}.csv", rows),
        "output": str(tmp / prefix),
        "credentials": "fashn",
        "time_scale": TIME_SCALE,
        "shared_limits": False,
    }


async def _events(
    name: str, flow_run_id: UUID | None = None, at_least: int = 1, timeout: float = 60
) -> list[Event]:
    """Events called ``name`` (of one flow run, if given), waiting until enough arrived."""
    deadline = time.monotonic() + timeout
    found: list[Event] = []
    while time.monotonic() < deadline:
        related = (
            EventRelatedFilter(id=[f"prefect.flow-run.{flow_run_id}"]) if flow_run_id else None
        )
        async with get_client() as client:
            page = await client.read_events(
                EventFilter(event=EventNameFilter(name=[name]), related=related), limit=50
            )
        found = page.events
        if len(found) >= at_least:
            return found
        await asyncio.sleep(0.5)
    raise AssertionError(f"{len(found)} {name} events after {timeout}s, expected {at_least}")


async def _fired(automation: str, timeout: float = 60) -> bool:
    """Whether the automation called ``automation`` triggered (waiting up to ``timeout``).

    Waits for *its* triggered event: another automation's may arrive first.
    """
    async with get_client() as client:
        (found,) = await client.read_automations_by_name(automation)
    deadline = time.monotonic() + timeout
    while True:
        events = await _events("prefect.automation.triggered", timeout=timeout)
        if any(e.resource.id == f"prefect.automation.{found.id}" for e in events):
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.5)


async def _task_logs(
    flow_run_id: UUID | None, ending: str, at_least: int, timeout: float = 60
) -> list[str]:
    """INFO messages of the flow run's task runs, once ``at_least`` end with ``ending``."""
    deadline = time.monotonic() + timeout
    messages: list[str] = []
    while time.monotonic() < deadline:
        async with get_client() as client:
            logs = await client.read_logs(
                LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))  # type: ignore[list-item]
            )
        messages = [log.message for log in logs if log.task_run_id and log.level == logging.INFO]
        if sum(m.endswith(ending) for m in messages) >= at_least:
            return messages
        await asyncio.sleep(0.5)
    raise AssertionError(f"task logs after {timeout}s: {messages}")


def _roles(event: Event) -> dict[str, str]:
    return {r.role: r.id for r in event.related}


async def test_a_run_with_failed_rows_ends_failed_and_says_why(
    api: PrefectServer, emulator: EmulatorServer, tmp_path: Path
) -> None:
    params = _catalog(tmp_path, emulator, 3, FAILING_ROWS, "mixed")
    state = await _flow("catalog_run.py:catalog_run")(**params, return_state=True)

    # Everything was still written: the results table has every row.
    rows = all_results(Path(params["output"]))
    statuses = sorted(r["status"] for r in rows)
    assert statuses == ["completed"] * 3 + ["failed"] * FAILING_ROWS

    async with get_client() as client:
        flow_run = await client.read_flow_run(state.state_details.flow_run_id)
        subflows = await client.read_flow_runs()
    assert flow_run.state is not None and flow_run.state.is_failed()
    message = flow_run.state.message or ""
    assert f"3 of {3 + FAILING_ROWS} rows completed" in message
    assert f"{FAILING_ROWS} failed (ImageLoadError: {FAILING_ROWS})" in message
    with pytest.raises(RunFailed) as failed:
        await state.aresult()
    assert failed.value.summary["run"]["totals"]["failed"] == FAILING_ROWS

    run = next(r for r in subflows if r.parent_task_run_id and r.state and r.state.is_failed())
    finished = await _events("fashn.run.finished", run.id)
    assert len(finished) == 1
    payload = finished[0].payload
    assert (payload["failed"], payload["completed"], payload["failed_rows"]) == (
        True,
        3,
        FAILING_ROWS,
    )
    assert payload["credits_charged"] == 3 and payload["errors"] == {"ImageLoadError": 10}
    account = FashnCredentials(api_key=emulator.api_key).account_id
    roles = _roles(finished[0])
    assert roles["flow-run"] == f"prefect.flow-run.{run.id}"
    assert roles["account"] == f"fashn.account.{account}"
    assert emulator.api_key not in finished[0].model_dump_json()

    predictions = await _events("fashn.prediction.failed", run.id, at_least=FAILING_ROWS)
    keys = sorted(e.payload["row_key"] for e in predictions)
    assert keys == sorted(r["row_key"] for r in rows if r["status"] == "failed")
    assert {e.payload["error_name"] for e in predictions} == {"ImageLoadError"}
    assert all(_roles(e)["fashn-run"] == roles["fashn-run"] for e in predictions)

    # The example automations fire: the catalog run failed, and 10 predictions failed.
    assert await _fired("a catalog run failed")
    assert await _fired("10 or more predictions failed in an hour")


async def test_a_clean_run_completes_with_counts_and_a_tolerated_failure_too(
    api: PrefectServer, emulator: EmulatorServer, tmp_path: Path
) -> None:
    from fashn_prefect.flows import run_manifest

    params = _catalog(tmp_path, emulator, 4, 0, "clean")
    state = await run_manifest(**params, return_state=True)
    assert state.is_completed(), state
    assert (
        state.message == "4 of 4 rows completed, 0 failed, 0 invalid, 0 skipped; 4 credits charged"
    )
    (finished,) = await _events("fashn.run.finished", state.state_details.flow_run_id)
    assert finished.payload["failed"] is False and finished.payload["completed"] == 4
    assert finished.payload["credits_per_completed_row"] == 1.0
    assert await _events("fashn.prediction.failed", state.state_details.flow_run_id, 0) == []
    # Each row task logs its submission, prediction id and outcome at INFO in the UI.
    # The outcome line also says how the end was learned, and how long after it.
    lines = await _task_logs(state.state_details.flow_run_id, "after its end)", 4)
    submitted = [m for m in lines if ": submitted prediction " in m]
    assert len(submitted) == 4 and all(m.endswith("(tryon-v1.6)") for m in submitted)
    completed = [m for m in lines if m.endswith("after its end)")]
    assert len(completed) == 4
    assert all("completed (1 credits; seen by poll about " in m for m in completed)

    # One failed row of three, with up to 50 % allowed: Completed, and the message says so.
    params = _catalog(tmp_path, emulator, 2, 1, "tolerated")
    state = await run_manifest(**params, allowed_failures="50%", return_state=True)
    assert state.is_completed(), state
    assert "1 failed (ImageLoadError: 1)" in (state.message or "")
    assert "within the 50% failed rows allowed" in (state.message or "")


async def test_a_budget_stop_fails_the_backfill_with_spent_and_remaining(
    api: PrefectServer, emulator: EmulatorServer, tmp_path: Path
) -> None:
    params = _catalog(tmp_path, emulator, 6, 0, "budget")
    params.pop("shared_limits")
    state = await _flow("backfill.py:backfill")(
        **params, budget=4, chunk_size=2, shared_limits=False, return_state=True
    )
    assert state.is_failed(), state
    message = state.message or ""
    assert "stopped by the budget of 4 credits: 4 spent" in message
    assert "0 remaining; 2 rows (about 2 credits) not submitted" in message
    assert len(all_results(Path(params["output"]))) == 4  # what fit was done and written

    (stop,) = await _events("fashn.budget.exceeded", state.state_details.flow_run_id)
    assert (stop.payload["budget"], stop.payload["spent"], stop.payload["remaining"]) == (4, 4, 0)
    assert stop.payload["rows_left"] == 2
    assert _roles(stop)["account"].startswith("fashn.account.acct-")
    assert await _fired("a budget stopped a run")


async def test_an_audit_with_an_anomaly_fails_and_emits_it(
    api: PrefectServer, emulator: EmulatorServer, tmp_path: Path
) -> None:
    from fashn_prefect.flows import run_manifest

    params = _catalog(tmp_path, emulator, 3, 0, "audited")
    await run_manifest(**params)
    clean = await _flow("credit_audit.py:credit_audit")(output=params["output"], return_state=True)
    assert clean.is_completed(), clean
    assert "no anomalies" in (clean.message or "")

    # A stored output disappears: credits were charged for something no longer there.
    victim = all_results(Path(params["output"]))[0]
    Path(victim["output_uris"][0].removeprefix("file://")).unlink()
    state = await _flow("credit_audit.py:credit_audit")(output=params["output"], return_state=True)
    assert state.is_failed(), state
    assert "charged_without_output: 1" in (state.message or "")
    (anomaly,) = await _events("fashn.audit.anomaly", state.state_details.flow_run_id)
    assert anomaly.payload["anomaly_counts"] == {"charged_without_output": 1}
    assert anomaly.payload["anomalies"][0]["row_key"] == victim["row_key"]
    assert await _fired("an audit found an anomaly")
