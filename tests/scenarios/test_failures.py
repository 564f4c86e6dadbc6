"""Runtime failures end as the right row status, error and attempt count.

Failures are injected by the emulator: a marker in a row's prompt makes every prediction
of that row fail with the named error, and a seeded probability makes some predictions
fail with a retryable error. The emulator's record of each prediction is the ground
truth the results are checked against.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import respx
from _helpers import TIME_SCALE, emulator, put_images, results, write_manifest

from fashn_prefect.credentials import FashnCredentials
from fashn_prefect.emulator import EmulatorServer
from fashn_prefect.emulator.faults import RUNTIME_MESSAGES
from fashn_prefect.flows import run_manifest
from fashn_prefect.run.outcome import RunFailed, summary_of

pytestmark = [pytest.mark.usefixtures("prefect_harness"), pytest.mark.timeout(180)]
PERMANENT = ("ImageLoadError", "ContentModerationError", "PoseError", "InputValidationError")
RETRIES = 2
BAD_REQUEST_PROMPT = "the API refuses this one"


@pytest.fixture
def emu() -> Iterator[EmulatorServer]:
    with emulator(seed=21) as server:
        yield server


def _edit(row_id: str, image: str, prompt: str) -> dict[str, Any]:
    return {"row_id": row_id, "model_name": "edit", "image": image, "prompt": prompt}


async def test_permanent_and_retryable_failures_end_with_the_right_status_and_attempts(
    emu: EmulatorServer, tmp_path: Path
) -> None:
    garments = put_images(str(tmp_path / "images"))["garments"]
    rows = [_edit(f"perm-{name}", garments[0], f"emulator-fail:{name}") for name in PERMANENT]
    rows.append(_edit("always-pipeline", garments[1], "emulator-fail:PipelineError"))
    rows.append(_edit("bad-request", garments[2], BAD_REQUEST_PROMPT))
    rows += [_edit(f"flaky-{i}", garments[i % 6], f"variation {i}") for i in range(10)]
    manifest = write_manifest(str(tmp_path / "catalog.csv"), rows)
    # A third of all predictions fail with a retryable error (seeded, so reproducible).
    emu.set_faults(runtime_failures={"UnavailableError": 0.3})

    # The emulator validates exactly as the product does, so it never answers a request
    # the product sends with 400 BadRequest; respx stands in for the API for that one
    # request only and passes everything else through to the emulator.
    with respx.mock(assert_all_called=True) as mock:
        mock.post(f"{emu.url}/v1/run", content__contains=BAD_REQUEST_PROMPT).respond(
            400, json={"error": "BadRequest", "message": "Invalid inputs: prompt is refused"}
        )
        mock.route().pass_through()
        with pytest.raises(RunFailed) as failed:
            await run_manifest(
                manifest=manifest,
                output=str(tmp_path / "out"),
                credentials=FashnCredentials(api_key=emu.api_key, base_url=emu.url),
                time_scale=TIME_SCALE,
                retries=RETRIES,
                shared_limits=False,
            )
    # The flow run ends Failed, its message carries the counts, and everything is written.
    summary = failed.value.summary
    assert f"{summary['totals']['failed']} failed" in str(failed.value)

    stats = emu.stats()
    truth = {p["id"]: p for p in stats["predictions"]}
    table = {r["row_key"]: r for r in results(summary["results"])}
    assert sorted(i for r in table.values() for i in r["prediction_ids"]) == sorted(truth)

    for name in PERMANENT:  # not retried; the API's own error name and message
        row = table[f"perm-{name}"]
        assert (row["status"], row["attempts"], len(row["prediction_ids"])) == ("failed", 1, 1)
        assert row["error_name"] == name
        assert row["error_message"] == truth[row["prediction_ids"][0]]["error"]["message"]
        assert row["error_message"] == RUNTIME_MESSAGES[name]

    always = table["always-pipeline"]  # retryable: a new prediction per attempt, then failed
    assert (always["status"], always["attempts"]) == ("failed", RETRIES + 1)
    assert len(set(always["prediction_ids"])) == RETRIES + 1
    assert always["error_name"] == "PipelineError"
    assert {truth[i]["error"]["name"] for i in always["prediction_ids"]} == {"PipelineError"}

    refused = table["bad-request"]  # refused at submission: nothing created, not retried
    assert (refused["status"], refused["attempts"], refused["prediction_ids"]) == (
        "failed",
        1,
        [],
    )
    assert refused["error_name"] == "BadRequest"
    assert refused["error_message"] == "Invalid inputs: prompt is refused"

    retried = 0
    for i in range(10):
        row = table[f"flaky-{i}"]
        ids = row["prediction_ids"]
        assert row["attempts"] == len(ids) and 1 <= len(ids) <= RETRIES + 1
        earlier, last = [truth[p] for p in ids[:-1]], truth[ids[-1]]
        assert all(p["error"]["name"] == "UnavailableError" for p in earlier)
        retried += len(earlier)
        if row["status"] == "completed":
            assert last["status"] == "completed" and row["output_count"] == 1
            assert row["credits_charged"] == last["credits"] == row["estimated_credits"]
        else:
            assert len(ids) == RETRIES + 1 and row["error_name"] == "UnavailableError"
    assert retried > 0  # the seed makes some rows need a second attempt
    # Failed predictions cost nothing; the results account for every credit charged.
    assert sum(r["credits_charged"] for r in table.values()) == stats["credits_charged"]
    assert summary["totals"]["failed"] == len(PERMANENT) + 2 + sum(
        table[f"flaky-{i}"]["status"] == "failed" for i in range(10)
    )


async def test_a_rerun_reports_permanent_failures_without_resubmitting_them(
    emu: EmulatorServer, tmp_path: Path
) -> None:
    garments = put_images(str(tmp_path / "images"))["garments"]
    rows = [
        _edit("moderated", garments[0], "emulator-fail:ContentModerationError"),
        _edit("exhausted", garments[1], "emulator-fail:PipelineError"),
        _edit("fine", garments[2], "a plain edit"),
    ]
    manifest = write_manifest(str(tmp_path / "catalog.csv"), rows)
    options: dict[str, Any] = {
        "manifest": manifest,
        "output": str(tmp_path / "out"),
        "credentials": FashnCredentials(api_key=emu.api_key, base_url=emu.url),
        "time_scale": TIME_SCALE,
        "retries": 1,
        "shared_limits": False,
    }

    def submissions() -> dict[str, int]:
        counts: dict[str, int] = {}
        for p in emu.stats()["predictions"]:
            name = p["error"]["name"] if p.get("error") else "completed"
            counts[name] = counts.get(name, 0) + 1
        return counts

    await summary_of(run_manifest(**options))
    assert submissions() == {"ContentModerationError": 1, "PipelineError": 2, "completed": 1}

    # Same inputs again: the moderated row would fail again and is only reported; the
    # row that ran out of retries on a transient error gets new attempts.
    rerun = await summary_of(run_manifest(**options))
    table = {r["row_key"]: r for r in results(rerun["results"])}
    assert submissions() == {"ContentModerationError": 1, "PipelineError": 4, "completed": 1}
    assert (table["moderated"]["status"], table["moderated"]["error_name"]) == (
        "failed",
        "ContentModerationError",
    )
    assert table["moderated"]["error_message"] == RUNTIME_MESSAGES["ContentModerationError"]
    assert table["fine"]["status"] == "skipped"

    await summary_of(run_manifest(**options, retry_failed=True))
    assert submissions()["ContentModerationError"] == 2
