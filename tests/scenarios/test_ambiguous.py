"""A submission whose answer is lost is reported, never resent, until the user asks.

The emulator (over real HTTP) creates the prediction and then drops the connection for
one row, and answers too late for another (the client's timeout fires first): the
client cannot know whether either row was charged. The run must record both rows as
``AmbiguousSubmission`` without a task retry (a retry would submit them again), a plain
re-run must not submit them either, and only ``resubmit_ambiguous`` sends each exactly
once more. Every run is checked against the emulator's ground truth with the suite's
invariants (``check_invariants``): a row charged twice is allowed only when it is flagged
ambiguous and the run that charged it asked for resubmission.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from _helpers import (
    TIME_SCALE,
    check_invariants,
    emulator,
    host_images,
    predictions_per_input,
    results,
    specs_of,
    write_manifest,
)
from prefect.events.clients import AssertingPassthroughEventsClient
from prefect.events.worker import EventsWorker

from fashn_prefect.credentials import FashnCredentials
from fashn_prefect.emulator import EmulatorServer
from fashn_prefect.emulator.state import inputs_hash
from fashn_prefect.flows import run_manifest
from fashn_prefect.run.outcome import summary_of

pytestmark = [pytest.mark.usefixtures("prefect_harness"), pytest.mark.timeout(240)]

# The slow answer comes well after the client's timeout, and the timeout is far above
# what any other request takes, so only the marked row can time out on a loaded machine.
CLIENT_TIMEOUT = 5.0
SLOW_SECONDS = 10.0
DROPPED, SLOW = "dropped", "slow"
CALM = [f"calm-{i}" for i in range(4)]


@pytest.fixture
def emu() -> Iterator[EmulatorServer]:
    with emulator(seed=13) as server:
        server.set_faults(slow_seconds=SLOW_SECONDS)
        yield server


def _rows(image: str) -> list[dict[str, Any]]:
    rows = [
        {"row_id": key, "model_name": "edit", "image": image, "prompt": f"variation {key}"}
        for key in CALM
    ]
    # The marker makes the emulator hit the FIRST POST /v1/run of these inputs only.
    rows.append(
        {
            "row_id": DROPPED,
            "model_name": "edit",
            "image": image,
            "prompt": "emulator-fault:drop_connection",
        }
    )
    rows.append(
        {
            "row_id": SLOW,
            "model_name": "edit",
            "image": image,
            "prompt": "emulator-fault:slow_response",
        }
    )
    return rows


@pytest.fixture
async def events() -> AsyncIterator[type[AssertingPassthroughEventsClient]]:
    """Every event the test's flows emit (recorded, and still sent to the test server)."""
    EventsWorker.set_client_override(AssertingPassthroughEventsClient)
    AssertingPassthroughEventsClient.reset()
    try:
        yield AssertingPassthroughEventsClient
    finally:
        await EventsWorker.drain_all()  # type: ignore[misc]
        EventsWorker.set_client_override(None)


def _failed_events(client: type[AssertingPassthroughEventsClient]) -> dict[str, dict[str, Any]]:
    """The payloads of the ``fashn.prediction.failed`` events emitted so far, by row key."""
    return {
        str(e.payload["row_key"]): e.payload
        for instance in client.all
        for e in instance.events
        if e.event == "fashn.prediction.failed"
    }


def _says_how_to_finish(message: str) -> None:
    """A state message or event names both ambiguous rows, the setting and its risk."""
    assert DROPPED in message and SLOW in message, message
    assert "resubmit_ambiguous=True" in message, message
    assert "at most one extra charge per row" in message, message


async def _task_run_counts(flow_run_id: str) -> Counter[int]:
    """How many times each row's task run of the flow run was run (1 = no retry).

    Task runs are named after the row (``edit row-1``); in the earlier two-task layout
    the collect task runs (``collect row-1``) are left out."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    async with get_client() as client:
        runs = await client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
        )
    return Counter(run.run_count for run in runs if not run.name.startswith("collect "))


async def test_lost_answers_are_flagged_never_resent_until_asked(
    emu: EmulatorServer, tmp_path: Path, events: type[AssertingPassthroughEventsClient]
) -> None:
    image = host_images(emu)[1][0]  # an URL, so the API sees the inputs the manifest has
    manifest = write_manifest(str(tmp_path / "catalog.csv"), _rows(image))
    specs = specs_of(manifest)
    hashes = {s.row_key: inputs_hash(s.inputs) for s in specs}
    output = str(tmp_path / "out")
    options: dict[str, Any] = dict(
        manifest=manifest,
        output=output,
        credentials=FashnCredentials(api_key=emu.api_key, base_url=emu.url),
        time_scale=TIME_SCALE,
        client_timeout=CLIENT_TIMEOUT,
        shared_limits=False,
    )

    def table(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
        return {r["row_key"]: r for r in results(summary["results"])}

    def checked(summary: dict[str, Any], before: dict[str, Any], resubmit: bool) -> None:
        stats = emu.stats()
        check = check_invariants(
            specs,
            results(summary["results"]),
            stats,
            output,
            before=before,
            resubmit_ambiguous=resubmit,
        )
        assert not check.problems, check.problems

    # Run 1: both faults really happened; each row has exactly one prediction.
    empty = emu.stats()
    state = await run_manifest(**options, return_state=True)
    first = await summary_of(state.aresult())
    stats = emu.stats()
    # The state message and each row's event say how to finish the rows, in settings terms.
    assert state.is_failed()
    _says_how_to_finish(state.message or "")
    await EventsWorker.drain_all()  # type: ignore[misc]
    failed_events = _failed_events(events)
    assert set(failed_events) == {DROPPED, SLOW}
    for key, payload in failed_events.items():
        assert payload["error_name"] == "AmbiguousSubmission"
        assert key in payload["remedy"] and "resubmit_ambiguous=True" in payload["remedy"]
        assert "at most one extra charge" in payload["remedy"]
    assert stats["faults_injected"]["drop_connection"] == 1
    assert stats["faults_injected"]["slow_response"] == 1
    per_input = predictions_per_input(stats)
    assert sorted(per_input.values()) == [1] * len(specs)
    assert set(per_input) == set(hashes.values())
    rows = table(first)
    for key in (DROPPED, SLOW):
        row = rows[key]
        assert (row["status"], row["error_name"], row["ambiguous"]) == (
            "failed",
            "AmbiguousSubmission",
            True,
        ), row
        assert row["attempts"] == 1 and row["prediction_ids"] == [], row
        # The interrupted attempt's time is kept (the audit ties charges to it).
        assert row["interrupted_at"] == row["submitted_at"] is not None, row
        assert failed_events[key]["interrupted_at"] == str(row["interrupted_at"])
    interrupted = {key: rows[key]["interrupted_at"] for key in (DROPPED, SLOW)}
    for key in CALM:
        assert (rows[key]["status"], rows[key]["ambiguous"]) == ("completed", False)
    # No task was retried: every row's prediction task ran exactly once.
    assert await _task_run_counts(first["flow_run_id"]) == Counter({1: len(specs)})
    checked(first, empty, resubmit=False)

    # Run 2 (plain re-run): nothing is submitted; the two rows are reported ambiguous again,
    # with the time of the interrupted attempt and how to finish them.
    before = emu.stats()
    second = await summary_of(run_manifest(**options))
    assert predictions_per_input(emu.stats()) == per_input
    _says_how_to_finish(second["outcome"]["message"])
    assert second["totals"]["ambiguous_rows"] == [DROPPED, SLOW]
    rows = table(second)
    assert {k: rows[k]["interrupted_at"] for k in interrupted} == interrupted
    for key in (DROPPED, SLOW):
        assert (rows[key]["status"], rows[key]["error_name"], rows[key]["ambiguous"]) == (
            "failed",
            "AmbiguousSubmission",
            True,
        )
    assert all(rows[key]["status"] == "skipped" for key in CALM)
    checked(second, before, resubmit=False)

    # Run 3 (resubmit_ambiguous): exactly one more prediction for each ambiguous row.
    before = emu.stats()
    third = await summary_of(run_manifest(**options, resubmit_ambiguous=True))
    resubmitted = predictions_per_input(emu.stats())
    assert resubmitted - per_input == Counter({hashes[DROPPED]: 1, hashes[SLOW]: 1})
    rows = table(third)
    for key in (DROPPED, SLOW):
        assert (rows[key]["status"], rows[key]["ambiguous"]) == ("completed", True), rows[key]
        assert rows[key]["attempts"] == 2 and len(rows[key]["prediction_ids"]) == 1
        assert rows[key]["interrupted_at"] == interrupted[key]
    assert third["totals"]["ambiguous_rows"] == []
    assert "resubmit_ambiguous" not in third["outcome"]["message"]
    checked(third, before, resubmit=True)

    # Run 4 (plain): every row is skipped; the two rows keep their ambiguous flag.
    before = emu.stats()
    fourth = await summary_of(run_manifest(**options))
    assert predictions_per_input(emu.stats()) == resubmitted
    rows = table(fourth)
    assert {r["status"] for r in rows.values()} == {"skipped"}
    assert {k for k, r in rows.items() if r["ambiguous"]} == {DROPPED, SLOW}
    checked(fourth, before, resubmit=False)
