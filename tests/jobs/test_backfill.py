"""Backfills: chunked subflows, a budget that stops submissions, and resume after SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from _helpers import (
    TIME_SCALE,
    catalog_rows,
    count_validations,
    latest_status,
    limit_rejections,
    predictions_per_input,
    write_manifest,
)
from _servers import FASHN_PREFECT, REPO, kill_group
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId
from prefect.flows import load_flow_from_entrypoint

from fashn_prefect.emulator import EmulatorConfig, EmulatorServer
from fashn_prefect.run.outcome import summary_of
from fashn_prefect.store.ledger import LEDGER_DIR


@pytest.fixture
def backfill_flow() -> Any:
    """The flow exactly as the deployment loads it."""
    return load_flow_from_entrypoint(f"{REPO}/flows/backfill.py:backfill")


@pytest.mark.usefixtures("prefect_harness")
async def test_budget_stops_submissions_and_chunks_are_subflows(
    tmp_path: Path, backfill_flow: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    output = tmp_path / "out"
    with EmulatorServer(EmulatorConfig(time_scale=TIME_SCALE, seed=5)) as emu:
        monkeypatch.setenv("FASHN_API_KEY", emu.api_key)
        monkeypatch.setenv("FASHN_BASE_URL", emu.url)
        manifest = write_manifest(tmp_path / "history.csv", catalog_rows(30, emu))
        params = {
            "manifest": manifest,
            "output": str(output),
            "chunk_size": 5,
            "budget": 17,  # each row is estimated at 1 credit: 30 > 17
            "time_scale": TIME_SCALE,
            "shared_limits": False,
        }

        dry = await backfill_flow(**params, dry_run=True)
        assert dry["plan"]["estimated_credits"] == 30 and dry["plan"]["deferred"] == 13
        assert "budget of 17 credits reached" in dry["plan"]["budget_message"]
        assert emu.stats()["predictions"] == []

        validations = count_validations(monkeypatch)
        state = await backfill_flow(**params, return_state=True)
        # A budget stop fails the flow run; the message says what was spent and what remains.
        assert state.is_failed() and "17 spent (0 before this run), 0 remaining" in str(
            state.message
        )
        result = (await state.aresult(raise_on_failure=False)).summary
        stats = emu.stats()
        assert stats["credits_charged"] == 17 == len(stats["predictions"])
        assert result["totals"]["completed"] == 17
        assert "13 rows" in result["stopped_by_budget"]
        assert [c["rows"] for c in result["chunks"]] == [5, 5, 5, 2]

        async with get_client() as client:
            chunks = await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    parent_flow_run_id=FlowRunFilterParentFlowRunId(
                        any_=[state.state_details.flow_run_id]
                    )
                )
            )
        assert sorted(r.name for r in chunks) == [
            f"backfill-chunk-000{i}-of-0004" for i in (1, 2, 3, 4)
        ]
        # Chunks overlap (the next runs while the last one drains; tests/jobs/test_overlap.py),
        # never more than two at once, and together never beyond the limits.
        spans = [(r.start_time, r.end_time) for r in chunks]
        assert all(start is not None and end is not None for start, end in spans), spans
        for start, _ in spans:
            assert sum(1 for s, e in spans if s <= start < e) <= 2, spans
        assert stats["peak_in_flight"] <= 6 and limit_rejections(stats) == {}
        # The set is validated once; each chunk gets its rows as checked, and its flow run's
        # parameters name them rather than carry them.
        assert validations == [manifest]
        first = min(chunks, key=lambda r: r.name)
        assert first.parameters["rows"] == {
            "source": f"{manifest}#backfill-chunk-0001-of-0004",
            "rows": 5,
            "valid": 5,
        }

        # Run again with the same budget: what was spent counts, so nothing more is sent.
        again = await summary_of(backfill_flow(**params))  # Failed: still stopped by it
        assert len(emu.stats()["predictions"]) == 17
        assert again["plan"]["spent_before"] == 17 and again["chunks"] == []


def _env(home: Path, emu: EmulatorServer) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "FASHN_"))}
    env.update(
        PREFECT_HOME=str(home),  # a private ephemeral server: a kill leaks nothing shared
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_LOGGING_LEVEL="WARNING",
        DO_NOT_TRACK="1",
        FASHN_API_KEY=emu.api_key,
        FASHN_BASE_URL=emu.url,
    )
    return env


def _backfill(manifest: str, output: Path, env: dict[str, str], log: Path) -> Any:
    handle = log.open("ab")
    command = [FASHN_PREFECT, "backfill", manifest, "--output", str(output)]
    command += ["--chunk-size", "100", "--time-scale", str(TIME_SCALE), "--json"]
    return subprocess.Popen(
        command, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
    )


def _freeze_between_submissions(proc: Any, output: Path) -> bool:
    """Stop the backfill's process group; keep it stopped only if no ``POST /v1/run`` is
    between its written intent and its recorded answer (a kill there would make the row
    ambiguous, which the product reports instead of resubmitting)."""
    kill_group(proc, signal.SIGSTOP)
    for path in (output / LEDGER_DIR).glob("*.json"):
        try:
            status = json.loads(path.read_bytes())["status"]
        except (OSError, ValueError):
            status = "unknown"  # replaced while being read: look again later
        if status in ("submitting", "unknown"):
            kill_group(proc, signal.SIGCONT)
            return False
    return True


@pytest.mark.slow
def test_killed_backfill_resumes_and_submits_no_row_twice(tmp_path: Path) -> None:
    output, home, log = tmp_path / "out", tmp_path / "prefect-home", tmp_path / "backfill.log"
    home.mkdir()
    with EmulatorServer(EmulatorConfig(time_scale=TIME_SCALE, seed=6)) as emu:
        manifest = write_manifest(tmp_path / "history.csv", catalog_rows(300, emu))
        env = _env(home, emu)

        first = _backfill(manifest, output, env, log)
        try:
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline and first.poll() is None:
                if len(emu.stats()["predictions"]) >= 130 and _freeze_between_submissions(
                    first, output
                ):
                    break
                time.sleep(0.01)
            assert first.poll() is None, log.read_text()[-2000:]
            kill_group(first, signal.SIGKILL)
            first.wait(timeout=10)
        finally:
            kill_group(first, signal.SIGKILL)
        killed_at = len(emu.stats()["predictions"])
        assert 130 <= killed_at < 300

        second = _backfill(manifest, output, env, log)
        try:
            assert second.wait(timeout=240) == 0, log.read_text()[-3000:]
        finally:
            kill_group(second, signal.SIGKILL)
        stats = emu.stats()

    # Every row completed, each submitted exactly once, within the API's limits.
    assert set(latest_status(output).values()) == {"completed"}
    assert len(latest_status(output)) == 300
    per_input = predictions_per_input(stats)
    assert len(per_input) == 300 and max(per_input.values()) == 1
    assert stats["credits_charged"] == 300
    assert stats["peak_in_flight"] <= 6 and limit_rejections(stats) == {}
    text = log.read_text()
    summary, _ = json.JSONDecoder().raw_decode(text[text.rindex('{\n  "plan"') :])
    assert summary["plan"]["already_completed"] + summary["plan"]["to_run"] == 300
