"""Backfills: chunked subflows and a budget that stops submissions.

Resume after SIGKILL is in tests/jobs/test_backfill_killed.py (a file of its own, so that it
runs on another pytest-xdist worker beside this one: they share nothing).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from _helpers import (
    TIME_SCALE,
    catalog_rows,
    count_validations,
    limit_rejections,
    write_manifest,
)
from _servers import REPO
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId
from prefect.flows import load_flow_from_entrypoint

from fashn_prefect.emulator import EmulatorConfig, EmulatorServer
from fashn_prefect.run.outcome import summary_of


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
