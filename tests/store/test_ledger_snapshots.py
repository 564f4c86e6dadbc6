"""The compacted ledger (fashn_prefect.store.ledger): snapshots plus loose in-flight records.

A run's settled rows move into immutable Parquet snapshots and their loose records are
deleted; a re-run plans from both. These tests drive the product's own writers (the run's
:class:`Runtime` and :class:`Ledger`) on a real local output folder and check what a
re-run does with each row: a crash at any step of a row's life resumes as before, a
damaged snapshot makes its rows ambiguous (never new), and two runs snapshotting into one
output root keep each other's rows.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from fashn_prefect.run.plan import make_plan
from fashn_prefect.run.runtime import RunConfig, Runtime
from fashn_prefect.run.validate import RowSpec
from fashn_prefect.scheduler.account import AccountScheduler
from fashn_prefect.scheduler.rates import ApiLimits
from fashn_prefect.store import ledger as ledger_module
from fashn_prefect.store.ledger import Ledger
from fashn_prefect.store.records import Attempt, RowRecord

pytestmark = pytest.mark.unit

MODEL = "tryon-v1.6"


def spec(key: str, row: int = 1) -> RowSpec:
    return RowSpec(row, key, MODEL, {"prompt": key}, {}, "h1", 1)


def runtime(output: Path, flow_run_id: str) -> Runtime:
    account = AccountScheduler(ApiLimits())
    return Runtime(RunConfig(output=str(output)), None, account, flow_run_id)  # type: ignore[arg-type]


def loose_files(output: Path) -> list[str]:
    return sorted(p.name for p in (output / "ledger").glob("*.json"))


def snapshots(output: Path) -> list[Path]:
    return sorted((output / "ledger" / "snapshots").glob("*.parquet"))


def actions(output: Path, keys: list[str], **flags: bool) -> dict[str, str]:
    plan = make_plan([spec(k, i + 1) for i, k in enumerate(keys)], str(output), **flags)
    return {job.spec.row_key: job.action for job in plan.rows}


# One row's life, step by step: each step changes the record as the row engine does, and
# the action a re-run takes when the process dies right after that step was written.
def _intent(r: RowRecord) -> None:
    r.attempts.append(Attempt(len(r.attempts) + 1, submitted_at="2026-01-02T00:00:00"))
    r.status = "submitting"


def _id(r: RowRecord) -> None:
    r.attempts[-1].prediction_id, r.attempts[-1].status = "p-2", "submitted"
    r.status = "submitted"


def _terminal(r: RowRecord) -> None:
    r.attempts[-1].status, r.attempts[-1].credits_used = "completed", 1


def _stored(r: RowRecord) -> None:
    r.outputs, r.status = ["file:///out/images/r.png"], "completed"


def _permanent(r: RowRecord) -> None:
    r.attempts[-1].status = r.status = "failed"
    r.attempts[-1].error_name = "PoseError"


def _lost(r: RowRecord) -> None:
    r.attempts[-1].status = r.status = "ambiguous"
    r.attempts[-1].error_name = "AmbiguousSubmission"


LIFE: dict[str, tuple[list[Callable[[RowRecord], None]], str]] = {
    "intent written, POST in flight": ([_intent], "ambiguous"),
    "prediction id recorded": ([_intent, _id], "resume"),
    "completed at the API, outputs not stored": ([_intent, _id, _terminal], "resume"),
    "outputs stored": ([_intent, _id, _terminal, _stored], "recover"),
    "failed for good": ([_intent, _id, _permanent], "failed"),
    "answer to the POST lost": ([_intent, _lost], "ambiguous"),
}
CRASH = ("before the snapshot", "after the snapshot, before the delete", "after the snapshot")


@pytest.mark.parametrize("crash", CRASH)
@pytest.mark.parametrize("step", list(LIFE))
async def test_a_crash_at_each_step_resumes_from_the_compacted_ledger(
    tmp_path: Path, step: str, crash: str
) -> None:
    # Run 1 settled every row into a snapshot; "r" ran out of retries on a transient
    # error there, so on its own that snapshot would have it submitted again.
    first = runtime(tmp_path, "run-1")
    records = {k: RowRecord(k, "h1", MODEL) for k in ("r", "done-1", "done-2")}
    for record in records.values():
        for change in (_intent, _id, _terminal, _stored):
            change(record)
            await first.save(record)
    transient = records["r"]
    transient.outputs, transient.status = [], "failed"
    transient.attempts[-1].status, transient.attempts[-1].error_name = "failed", "PipelineError"
    await first.save(transient)
    for record in records.values():
        await first.settle(record)
    await first.snapshot()
    assert loose_files(tmp_path) == []
    assert actions(tmp_path, ["r", "done-1"]) == {"r": "submit", "done-1": "recover"}

    # Run 2 submits "r" again and dies after ``step`` was written.
    second = runtime(tmp_path, "run-2")
    changes, expected = LIFE[step]
    for change in changes:
        change(transient)
        await second.save(transient)
    if crash == "after the snapshot, before the delete":
        assert second.ledger is not None
        second.ledger.write_snapshot([transient], "run-2")
    elif crash == "after the snapshot":
        await second.settle(transient)
        await second.snapshot()
        assert loose_files(tmp_path) == []

    assert actions(tmp_path, ["r", "done-1", "done-2"]) == {
        "r": expected,
        "done-1": "recover",
        "done-2": "recover",
    }
    plan = make_plan([spec("r")], str(tmp_path))
    assert plan.rows[0].record is not None
    assert plan.rows[0].record.attempts == transient.attempts  # the newest state, in full


async def test_only_rows_in_flight_keep_loose_records(tmp_path: Path, monkeypatch) -> None:
    """Every SNAPSHOT_EVERY settled rows become one snapshot; a crash leaves loose records
    only for rows still running and for those settled since the last snapshot."""
    monkeypatch.setattr("fashn_prefect.run.runtime.SNAPSHOT_EVERY", 10)
    rt = runtime(tmp_path, "run-1")
    keys = [f"row-{i:02d}" for i in range(25)]
    for key in keys:
        record = RowRecord(key, "h1", MODEL)
        for change in (_intent, _id):
            change(record)
            await rt.save(record)
        if key < "row-22":  # the last three are still running when the process dies
            for change in (_terminal, _stored):
                change(record)
                await rt.save(record)
            await rt.settle(record)

    assert len(snapshots(tmp_path)) == 2  # rows 0-19
    assert len(loose_files(tmp_path)) == 5  # rows 20-21 settled since, 22-24 running
    planned = actions(tmp_path, keys)
    assert [planned[k] for k in keys] == ["recover"] * 22 + ["resume"] * 3


async def test_a_record_whose_last_write_failed_keeps_its_loose_record(tmp_path: Path) -> None:
    """The snapshot gets what the run knows; the loose record stays (it holds what storage
    last accepted), so a re-run acts on it exactly as before snapshots existed."""
    rt = runtime(tmp_path, "run-1")
    record = RowRecord("r", "h1", MODEL)
    _intent(record)
    await rt.save(record)
    _id(record)  # the write of the prediction id never landed
    await rt.settle(record)
    await rt.snapshot()

    assert loose_files(tmp_path) != [] and len(snapshots(tmp_path)) == 1
    assert actions(tmp_path, ["r"]) == {"r": "ambiguous"}


async def test_a_rerun_with_nothing_left_to_plan_reads_no_snapshot(tmp_path: Path) -> None:
    """Every row completed in an earlier results table: no ledger lookup at all."""
    rt = runtime(tmp_path, "run-1")
    record = RowRecord("a", "h1", MODEL)
    _intent(record)
    await rt.save(record)
    await rt.settle(record)
    await rt.snapshot()
    assert Ledger(str(tmp_path)).load_many([]) == {}
    assert set(Ledger(str(tmp_path)).load_many(["a", "z"])) == {"a"}


def _damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "garbage":
        path.write_bytes(b"not parquet at all")
    elif how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    else:  # readable keys, wrong columns: a snapshot from a foreign writer
        import pyarrow as pa
        import pyarrow.parquet as pq

        keys = pq.read_table(path, columns=["row_key"])["row_key"]
        pq.write_table(pa.table({"row_key": keys, "state": ["?"] * len(keys)}), path)


@pytest.mark.parametrize("how", ["garbage", "truncated", "empty", "wrong columns"])
async def test_a_damaged_snapshot_makes_its_rows_ambiguous_never_new(
    tmp_path: Path, how: str
) -> None:
    rt = runtime(tmp_path, "run-1")
    for key in ("a", "b"):
        record = RowRecord(key, "h1", MODEL)
        for change in (_intent, _id, _terminal, _stored):
            change(record)
            await rt.save(record)
        await rt.settle(record)
    await rt.snapshot()
    running = RowRecord("c", "h1", MODEL)
    for change in (_intent, _id):
        change(running)
        await rt.save(running)
    (damaged,) = snapshots(tmp_path)
    _damage(damaged, how)

    plan = make_plan([spec(k, i) for i, k in enumerate("abcd", 1)], str(tmp_path))

    by_key = {job.spec.row_key: job for job in plan.rows}
    for key in ("a", "b"):
        job = by_key[key]
        assert job.action == "ambiguous"
        assert job.problem is not None and damaged.name in job.problem
        assert "resubmit_ambiguous" in job.problem
    assert by_key["c"].action == "resume"  # its own loose record is newer than any snapshot
    # A row the damaged snapshot may hold (its keys are unreadable) is not new either.
    assert by_key["d"].action == ("submit" if how == "wrong columns" else "ambiguous")
    assert {j.spec.row_key for j in plan.to_submit} <= {"d"}

    again = actions(tmp_path, ["a", "b"], resubmit_ambiguous=True)
    assert again == {"a": "submit", "b": "submit"}
    # A damaged snapshot is never merged away.
    assert Ledger(str(tmp_path)).merge_snapshots(at=0) is None
    assert damaged.exists()


async def test_two_runs_snapshotting_into_one_output_root_keep_each_others_rows(
    tmp_path: Path, monkeypatch
) -> None:
    """Two runs settle rows side by side; their snapshots and merges (in threads) overlap."""
    monkeypatch.setattr("fashn_prefect.run.runtime.SNAPSHOT_EVERY", 7)
    monkeypatch.setattr(ledger_module, "MERGE_AT", 2)
    runs = {name: runtime(tmp_path, name) for name in ("run-a", "run-b")}

    async def run(name: str) -> None:
        rt = runs[name]
        for i in range(60):
            record = RowRecord(f"{name}-{i:02d}", "h1", MODEL)
            for change in (_intent, _id, _terminal, _stored):
                change(record)
                await rt.save(record)
            await rt.settle(record)
            await asyncio.sleep(0)
        await rt.snapshot()

    await asyncio.gather(run("run-a"), run("run-b"))

    keys = [f"{name}-{i:02d}" for name in runs for i in range(60)]
    assert loose_files(tmp_path) == []
    assert set(actions(tmp_path, keys).values()) == {"recover"}
    assert len(snapshots(tmp_path)) <= 3


def test_merges_racing_in_threads_lose_no_row(tmp_path: Path) -> None:
    """Writers and mergers at full speed in parallel threads: every row stays readable."""
    ledger = Ledger(str(tmp_path))
    errors: list[BaseException] = []

    def writer(name: str) -> None:
        try:
            for n in range(25):
                batch = []
                for i in range(4):
                    record = RowRecord(f"{name}-{n:02d}-{i}", "h1", MODEL, "completed")
                    record.outputs = ["x.png"]
                    batch.append(record)
                ledger.write_snapshot(batch, name)
                Ledger(str(tmp_path)).merge_snapshots(at=1)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in ("a", "b", "c")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    keys = [f"{name}-{n:02d}-{i}" for name in "abc" for n in range(25) for i in range(4)]
    records = Ledger(str(tmp_path)).load_many(keys)
    assert sorted(records) == sorted(keys)
    assert all(isinstance(r, RowRecord) and r.status == "completed" for r in records.values())


async def test_a_record_damaged_inside_a_readable_snapshot_is_ambiguous(tmp_path: Path) -> None:
    """The plan reads a snapshot's summary columns; a row whose own record blob turns out
    unreadable when the run opens it is ambiguous, never submitted or resumed blind."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rt = runtime(tmp_path, "run-1")
    for key in ("a", "b"):
        record = RowRecord(key, "h1", MODEL)
        for change in (_intent, _id):
            change(record)
            await rt.save(record)
        await rt.settle(record)
    await rt.snapshot()
    (path,) = snapshots(tmp_path)
    table = pq.read_table(path)
    blobs = table["record"].to_pylist()
    blobs[table["row_key"].to_pylist().index("a")] = b"{not json"
    index = table.schema.get_field_index("record")
    pq.write_table(table.set_column(index, "record", pa.array(blobs, pa.binary())), path)

    plan = make_plan([spec("a", 1), spec("b", 2)], str(tmp_path))

    assert plan.count("resume") == 2  # decided from the summary columns
    damaged, intact = plan.rows[0], plan.rows[1]
    assert damaged.action == "ambiguous" and damaged.record is None
    assert damaged.problem is not None and "could not be read" in damaged.problem
    assert intact.action == "resume" and intact.record is not None
    assert intact.record.last is not None and intact.record.last.prediction_id == "p-2"
    assert plan.count("resume") == 1 and plan.count("ambiguous") == 1


async def test_a_row_whose_inputs_changed_since_its_snapshot_is_submitted(tmp_path: Path) -> None:
    """A snapshot row for other inputs (the manifest changed) is not this row's record:
    the row is submitted, not resumed or recovered from it."""
    rt = runtime(tmp_path, "run-1")
    for key, steps in (("a", (_intent, _id)), ("b", (_intent, _id, _terminal, _stored))):
        record = RowRecord(key, "h1", MODEL)
        for change in steps:
            change(record)
            await rt.save(record)
        await rt.settle(record)
    await rt.snapshot()
    assert loose_files(tmp_path) == [] and len(snapshots(tmp_path)) == 1
    changed = [
        RowSpec(1, "a", MODEL, {"prompt": "a"}, {}, "h2", 1),
        RowSpec(2, "b", MODEL, {"prompt": "b"}, {}, "h2", 1),
    ]

    plan = make_plan(changed, str(tmp_path))

    assert [job.action for job in plan.rows] == ["submit", "submit"]
    assert all(job.record is None for job in plan.rows)
    assert actions(tmp_path, ["a", "b"]) == {"a": "resume", "b": "recover"}  # same inputs
