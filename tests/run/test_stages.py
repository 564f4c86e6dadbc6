"""Executing a plan (fashn_prefect.run.stages.execute) with the row engine replaced by a
stand-in: a bounded window of row tasks, never one per row up front; rows that need no
prediction reported without a row task; every row in the results, sorted by row."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest

from fashn_prefect.run import stages
from fashn_prefect.run.plan import Plan, PlannedRow
from fashn_prefect.run.validate import RowSpec
from fashn_prefect.run.write import result_row

pytestmark = pytest.mark.unit

IN_FLIGHT = 2


class Engine:
    """Stands in for the row tasks: counts how many run at once."""

    def __init__(self, fail_row: int | None = None) -> None:
        self.running = self.most = 0
        self.started: list[int] = []
        self.cancelled = 0
        self.fail_row = fail_row
        self.progress: list[float] = []

    async def run_row(self, rt: Any, task: Any, index: int) -> dict[str, Any]:
        row = rt.rows[index]
        self.started.append(row.spec.row)
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            for _ in range(1 + index % 3):  # finish out of order, in no real time
                await asyncio.sleep(0)
            if row.spec.row == self.fail_row:
                raise RuntimeError("storage is gone")
            return result_row(row.spec, "completed", prediction_ids=[f"p{index}"])
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.running -= 1


def runtime(rows: list[PlannedRow]) -> Any:
    quantile = SimpleNamespace(quantile=lambda q: 1.0)

    async def nothing(*args: Any) -> None:
        return None

    return SimpleNamespace(
        stats=SimpleNamespace(total=0, done=0),
        account=SimpleNamespace(limits=SimpleNamespace(max_in_flight=IN_FLIGHT)),
        polls=SimpleNamespace(book=SimpleNamespace(total=lambda key: quantile)),
        settle=nothing,
        snapshot=nothing,
        observer=None,
        rows=rows,
    )


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> Engine:
    engine = Engine()

    async def create(*args: Any, **kwargs: Any) -> str:
        return "artifact"

    async def update(artifact: str, value: float) -> None:
        engine.progress.append(value)

    async def seed(rt: Any) -> None:
        return None

    monkeypatch.setattr(stages, "acreate_progress_artifact", create)
    monkeypatch.setattr(stages, "aupdate_progress_artifact", update)
    monkeypatch.setattr(stages, "seed_from_results", seed)
    monkeypatch.setattr(stages, "row_task", lambda rt: None)
    monkeypatch.setattr(stages, "run_row", engine.run_row)
    return engine


def plan_of(n: int, skip_every: int = 0) -> Plan:
    rows = []
    for i in range(1, n + 1):
        spec = RowSpec(i, f"row-{i}", "background-remove", {"image": f"{i}.jpg"}, {}, "h", 1)
        if skip_every and i % skip_every == 0:
            previous = {"prediction_ids": ["old"], "output_uris": [f"file:///{i}.png"]}
            rows.append(PlannedRow(spec, "skip", previous=previous))
        else:
            rows.append(PlannedRow(spec, "submit"))
    return Plan(rows)


async def test_row_tasks_run_in_a_bounded_window_and_every_row_is_reported(
    engine: Engine,
) -> None:
    plan = plan_of(300, skip_every=4)
    rt = runtime(plan.rows)
    failed: list[dict[str, Any]] = []

    results = await stages.execute(rt, plan, failed.append)

    assert engine.most == 4 * IN_FLIGHT  # the window is used, and never exceeded
    table = results.table("flow-1", datetime(2026, 1, 1, tzinfo=UTC))
    assert table.column("row").to_pylist() == list(range(1, 301))
    statuses = table.column("status").to_pylist()
    assert statuses.count("skipped") == 75 and statuses.count("completed") == 225
    # Rows to skip are reported from the plan: no row task, no slot.
    assert sorted(engine.started) == [i for i in range(1, 301) if i % 4]
    assert results.totals.as_dict()["rows"] == rt.stats.done == 300
    assert engine.progress[-1] == 100.0 and engine.progress == sorted(engine.progress)
    assert failed == []


async def test_a_row_task_that_raises_stops_the_run_and_cancels_the_others(
    engine: Engine,
) -> None:
    engine.fail_row = 20
    plan = plan_of(200)

    with pytest.raises(RuntimeError, match="storage is gone"):
        await stages.execute(runtime(plan.rows), plan)

    assert engine.running == 0  # nothing left behind
    assert len(engine.started) < 200


async def test_an_empty_plan_reports_nothing(engine: Engine) -> None:
    results = await stages.execute(runtime([]), Plan([]))

    assert results.table(None, datetime(2026, 1, 1, tzinfo=UTC)).num_rows == 0
    assert engine.started == []
