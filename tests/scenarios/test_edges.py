"""Edges of a row's life in a real flow run against the emulator.

* Polling gives up (``PollingTimeout``): the row fails, its prediction stays in the ledger,
  and a re-run picks the same prediction up without submitting a new one.
* The API no longer knows a prediction (``NotFound`` while polling): the row is
  ambiguous, a plain re-run does not submit it, ``resubmit_ambiguous`` submits it once.
* A damaged ledger record: the row is reported ambiguous with the file's name and is not
  submitted.

Submissions are counted on the emulator (every ``POST /v1/run`` it saw), not by the product.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _helpers import emulator, put_images, results, run_calls, write_manifest

from fashn_prefect.credentials import FashnCredentials
from fashn_prefect.emulator import EmulatorServer
from fashn_prefect.flows import run_manifest
from fashn_prefect.run.outcome import summary_of
from fashn_prefect.store.ledger import Ledger

pytestmark = [pytest.mark.usefixtures("prefect_harness"), pytest.mark.timeout(180)]


def _manifest(tmp_path: Path) -> str:
    image = put_images(str(tmp_path / "images"))["garments"][0]
    row = {"row_id": "only", "model_name": "background-remove", "image": image}
    return write_manifest(str(tmp_path / "catalog.csv"), [row])


async def _run(emu: EmulatorServer, manifest: str, output: Path, **options: Any) -> dict[str, Any]:
    options.setdefault("time_scale", emu.app.emulator.config.time_scale)
    summary: dict[str, Any] = await summary_of(
        run_manifest(
            manifest=manifest,
            output=str(output),
            credentials=FashnCredentials(api_key=emu.api_key, base_url=emu.url),
            shared_limits=False,
            retries=2,
            retry_delay=0.0,
            **options,
        )
    )
    return summary


@pytest.fixture
def slow_emu() -> Iterator[EmulatorServer]:
    # Ten real seconds per emulated second: a prediction cannot finish during the first
    # run, whatever the load on the machine; the test moves the clock on instead.
    server = emulator(time_scale=10.0, seed=3)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def emu() -> Iterator[EmulatorServer]:
    server = emulator(seed=4)
    try:
        yield server
    finally:
        server.stop()


async def test_a_polling_timeout_is_resumed_by_a_rerun_without_a_new_submission(
    slow_emu: EmulatorServer, tmp_path: Path
) -> None:
    manifest = _manifest(tmp_path)
    # On a 1000x time scale the polling deadline (900 emulated s) is 0.9 real s; one
    # status call per real second means it has passed by the second poll.
    first = await _run(
        slow_emu, manifest, tmp_path / "out", time_scale=0.001, status_limit="1/1000"
    )
    (row,) = results(first["results"])
    assert (row["status"], row["error_name"]) == ("failed", "PollingTimeout")
    assert "a re-run resumes polling it" in row["error_message"]
    assert len(row["prediction_ids"]) == 1 and not row["ambiguous"]
    assert run_calls(slow_emu.stats()) == 1

    slow_emu.advance_clock(3600)  # the prediction has long finished on the API
    second = await _run(slow_emu, manifest, tmp_path / "out", time_scale=0.001)
    assert second["totals"]["completed"] == 1
    (again,) = results(second["results"])
    assert again["status"] == "completed"
    assert again["prediction_ids"] == row["prediction_ids"]  # the same prediction, resumed
    assert again["credits_charged"] == 1
    assert run_calls(slow_emu.stats()) == 1


async def test_a_prediction_the_api_no_longer_knows_is_ambiguous_and_not_resubmitted(
    emu: EmulatorServer, tmp_path: Path
) -> None:
    state = emu.app.emulator.state
    count_request = state.count_request
    forgotten = False

    def forget_on_first_poll(key_id: str, endpoint: str) -> None:
        # Runs on the emulator's loop just before it looks the prediction up.
        nonlocal forgotten
        count_request(key_id, endpoint)
        if endpoint == "status" and not forgotten:
            forgotten = True
            state.forget_predictions()

    state.count_request = forget_on_first_poll  # type: ignore[method-assign]
    manifest = _manifest(tmp_path)
    output = tmp_path / "out"

    first = await _run(emu, manifest, output)
    (row,) = results(first["results"])
    assert (row["status"], row["error_name"], row["ambiguous"]) == (
        "failed",
        "AmbiguousSubmission",
        True,
    )
    assert "no longer known to the API" in row["error_message"]
    assert row["attempts"] == 1 and len(row["prediction_ids"]) == 1  # no task retry
    assert run_calls(emu.stats()) == 1

    second = await _run(emu, manifest, output)
    (again,) = results(second["results"])
    assert (again["status"], again["ambiguous"]) == ("failed", True)
    assert again["prediction_ids"] == row["prediction_ids"]
    assert run_calls(emu.stats()) == 1  # a plain re-run never resubmits it

    third = await _run(emu, manifest, output, resubmit_ambiguous=True)
    (resent,) = results(third["results"])
    assert resent["status"] == "completed"
    assert resent["prediction_ids"][0] == row["prediction_ids"][0]
    assert len(resent["prediction_ids"]) == 2
    assert run_calls(emu.stats()) == 2  # exactly one more submission


async def test_a_damaged_ledger_record_is_reported_not_resubmitted(
    emu: EmulatorServer, tmp_path: Path
) -> None:
    manifest = _manifest(tmp_path)
    output = tmp_path / "out"
    ledger = Ledger(str(output))
    Path(ledger.path("only")).parent.mkdir(parents=True)
    Path(ledger.path("only")).write_bytes(b'{"row_key": "only", "inputs_ha')  # truncated

    summary = await _run(emu, manifest, output)

    assert summary["totals"]["completed"] == 0
    (row,) = results(summary["results"])
    assert (row["status"], row["error_name"], row["ambiguous"]) == (
        "failed",
        "AmbiguousSubmission",
        True,
    )
    assert ledger.path("only") in row["error_message"]
    assert "could not be read" in row["error_message"]
    assert run_calls(emu.stats()) == 0
