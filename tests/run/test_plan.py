"""The plan (fashn_prefect.run.plan): what a run does with each row, given the output root.

Every action (submit, resume, recover, skip, ambiguous, failed) from every ledger state,
with records and results tables written by the product's own writers to a real local
output folder, plus damaged, truncated and unreadable ledger records: those rows are
ambiguous (reported, never silently submitted again) and the message names the file.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from fashn_prefect.run.plan import Plan, PlannedRow, launch_order, make_plan
from fashn_prefect.run.validate import RowSpec
from fashn_prefect.run.write import result_row, results_table, write_results
from fashn_prefect.store.ledger import Ledger
from fashn_prefect.store.records import Attempt, RowRecord

pytestmark = pytest.mark.unit

MODEL = "tryon-v1.6"


def spec(key: str = "row-1", inputs_hash: str = "h1", credits: int = 1, row: int = 1) -> RowSpec:
    return RowSpec(row, key, MODEL, {"prompt": key}, {}, inputs_hash, credits)


def record(
    status: str, *attempts: Attempt, outputs: list[str] | None = None, inputs_hash: str = "h1"
) -> RowRecord:
    return RowRecord("row-1", inputs_hash, MODEL, status, list(attempts), outputs or [])


def plan_one(
    output: Path,
    saved: RowRecord | None = None,
    *,
    resubmit_ambiguous: bool = False,
    retry_failed: bool = False,
) -> PlannedRow:
    if saved is not None:
        Ledger(str(output)).save(saved)
    plan = make_plan(
        [spec()],
        str(output),
        resubmit_ambiguous=resubmit_ambiguous,
        retry_failed=retry_failed,
    )
    (job,) = plan.rows
    return job


def write_result(output: Path, status: str, inputs_hash: str = "h1") -> None:
    row = result_row(
        spec(inputs_hash=inputs_hash),
        status,
        prediction_ids=["p-1"],
        output_uris=["file:///images/row-1.png"] if status == "completed" else [],
        completed_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    table = results_table([row], "flow-1", datetime(2026, 1, 1, tzinfo=UTC))
    write_results(table, str(output), f"run-{status}-{inputs_hash}")


SUBMITTED = Attempt(1, "p-1", "submitted", submitted_at="2026-01-01T00:00:00")


@pytest.mark.parametrize(
    ("saved", "action"),
    [
        (None, "submit"),
        (record("pending"), "submit"),
        (record("submitted", SUBMITTED, inputs_hash="other"), "submit"),
        (record("submitted", SUBMITTED), "resume"),
        # Terminal on the API but its outputs were never stored: poll again and collect.
        (record("submitted", Attempt(1, "p-1", "completed")), "resume"),
        (record("completed", Attempt(1, "p-1", "completed"), outputs=["a.png"]), "recover"),
        (record("submitting", Attempt(1)), "ambiguous"),
        (
            record("ambiguous", Attempt(1, None, "ambiguous", error_name="AmbiguousSubmission")),
            "ambiguous",
        ),
        # A prediction the API no longer knows (NotFound while polling) keeps its id.
        (record("ambiguous", Attempt(1, "p-1", "ambiguous", error_name="NotFound")), "ambiguous"),
        (record("failed", Attempt(1, "p-1", "failed", error_name="PoseError")), "failed"),
        (record("failed", Attempt(1, None, "rejected", error_name="BadRequest")), "failed"),
        # Out of retries on a transient error: the next run tries again.
        (record("failed", Attempt(1, "p-1", "failed", error_name="PipelineError")), "submit"),
        (record("failed", Attempt(1, None, "rejected", error_name="RateLimitExceeded")), "submit"),
        (record("failed", Attempt(1, None, "rejected", error_name="ConnectError")), "submit"),
        # A later attempt that ran out of retries after an ambiguous one is still ambiguous
        # only through the earlier attempt; its own state decides.
        (
            record(
                "failed",
                Attempt(1, None, "ambiguous"),
                Attempt(2, "p-2", "failed", error_name="PipelineError"),
            ),
            "submit",
        ),
    ],
)
def test_each_ledger_state_gets_its_action(
    tmp_path: Path, saved: RowRecord | None, action: str
) -> None:
    job = plan_one(tmp_path, saved)
    assert job.action == action
    assert job.problem is None
    if saved is not None and saved.inputs_hash == "h1" and action != "submit":
        assert job.record is not None and job.record.attempts == saved.attempts


@pytest.mark.parametrize(
    ("saved", "flag", "action"),
    [
        (record("submitting", Attempt(1)), "resubmit_ambiguous", "submit"),
        (record("ambiguous", Attempt(1, None, "ambiguous")), "resubmit_ambiguous", "submit"),
        (
            record("failed", Attempt(1, "p-1", "failed", error_name="PoseError")),
            "retry_failed",
            "submit",
        ),
        # Flags never turn a known prediction into a new submission.
        (record("submitted", SUBMITTED), "resubmit_ambiguous", "resume"),
        (record("submitted", SUBMITTED), "retry_failed", "resume"),
        (
            record("completed", Attempt(1, "p-1", "completed"), outputs=["a"]),
            "retry_failed",
            "recover",
        ),
        (
            record("failed", Attempt(1, "p-1", "failed", error_name="PoseError")),
            "resubmit_ambiguous",
            "failed",
        ),
        (record("ambiguous", Attempt(1, None, "ambiguous")), "retry_failed", "ambiguous"),
    ],
)
def test_flags_change_only_the_actions_they_name(
    tmp_path: Path, saved: RowRecord, flag: str, action: str
) -> None:
    assert plan_one(tmp_path, saved, **{flag: True}).action == action  # type: ignore[arg-type]


def test_a_row_completed_in_an_earlier_results_table_is_skipped(tmp_path: Path) -> None:
    write_result(tmp_path, "completed")
    job = plan_one(tmp_path, record("ambiguous", Attempt(1, None, "ambiguous")))
    assert job.action == "skip"
    assert job.previous is not None and job.previous["prediction_ids"] == ["p-1"]


def test_a_results_row_for_other_inputs_or_a_failure_is_not_skipped(tmp_path: Path) -> None:
    write_result(tmp_path, "completed", inputs_hash="other")
    write_result(tmp_path, "failed")
    assert plan_one(tmp_path).action == "submit"


def test_estimated_credits_count_only_rows_that_will_be_charged(tmp_path: Path) -> None:
    ledger = Ledger(str(tmp_path))
    rows = [spec(f"row-{i}", credits=10**i, row=i) for i in range(5)]
    states = [
        None,  # submit: 1
        RowRecord("row-1", "h1", MODEL, "submitted", [SUBMITTED]),  # resume: 10
        RowRecord("row-2", "h1", MODEL, "completed", [SUBMITTED], ["x"]),  # recover
        RowRecord("row-3", "h1", MODEL, "submitting", [Attempt(1)]),  # ambiguous
        RowRecord("row-4", "h1", MODEL, "failed", [Attempt(1, error_name="PoseError")]),
    ]
    for state in states:
        if state is not None:
            ledger.save(state)
    plan = make_plan(rows, str(tmp_path))
    assert [j.action for j in plan.rows] == ["submit", "resume", "recover", "ambiguous", "failed"]
    assert plan.estimated_credits == 1 + 10
    assert [j.spec.row_key for j in plan.to_submit] == ["row-0"]


DAMAGED = {
    "not JSON": b"{this is not json",
    "truncated": RowRecord("row-1", "h1", MODEL, "submitted", [SUBMITTED]).to_json()[:40],
    "empty": b"",
    "wrong shape": b"[1, 2, 3]",
    "missing fields": b'{"row_key": "row-1"}',
    "unknown fields": b'{"row_key": "row-1", "inputs_hash": "h1", "model_name": "m", "x": 1}',
    "bad attempt": b'{"row_key": "row-1", "inputs_hash": "h1", "model_name": "m", "attempts": [1]}',
    "not UTF-8": b"\xff\xfe\x00garbage",
}


@pytest.mark.parametrize("content", DAMAGED.values(), ids=list(DAMAGED))
def test_a_damaged_ledger_record_makes_its_row_ambiguous_not_new(
    tmp_path: Path, content: bytes
) -> None:
    ledger = Ledger(str(tmp_path))
    ledger.save(RowRecord("row-2", "h1", MODEL, "submitted", [SUBMITTED]))
    Path(ledger.path("row-1")).write_bytes(content)

    plan = make_plan([spec("row-1"), spec("row-2", row=2)], str(tmp_path))

    bad, good = plan.rows
    assert bad.action == "ambiguous" and bad.record is None
    assert bad.problem is not None
    assert ledger.path("row-1") in bad.problem and "'row-1'" in bad.problem
    assert "resubmit_ambiguous" in bad.problem
    assert good.action == "resume"  # one damaged record does not affect the others
    assert plan.to_submit == []
    assert plan.estimated_credits == 1  # the resumed row only

    again = make_plan([spec("row-1")], str(tmp_path), resubmit_ambiguous=True)
    assert again.rows[0].action == "submit"


def test_an_unreadable_ledger_record_makes_its_row_ambiguous(tmp_path: Path) -> None:
    ledger = Ledger(str(tmp_path))
    Path(ledger.path("row-1")).mkdir(parents=True)  # the name exists but cannot be read

    job = plan_one(tmp_path)

    assert job.action == "ambiguous"
    assert job.problem is not None and ledger.path("row-1") in job.problem


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_a_ledger_record_without_read_permission_makes_its_row_ambiguous(tmp_path: Path) -> None:
    ledger = Ledger(str(tmp_path))
    ledger.save(record("submitted", SUBMITTED))
    Path(ledger.path("row-1")).chmod(0)
    try:
        job = plan_one(tmp_path)
    finally:
        Path(ledger.path("row-1")).chmod(0o644)
    assert job.action == "ambiguous" and job.problem and "PermissionError" in job.problem


def test_launch_order_starts_running_predictions_first_then_the_longest_jobs() -> None:
    """Resumed predictions already take up the account's slots, so they get lanes before any
    new submission; new ones start longest first, so short jobs fill the run's end."""
    expected = {"short": 3.0, "long": 40.0, "mid": 12.0, "mid-too": 12.0}
    jobs = [
        PlannedRow(spec("short", row=1), "submit"),
        PlannedRow(spec("long", row=2), "submit"),
        PlannedRow(spec("done", row=3), "skip"),
        PlannedRow(spec("mid", row=4), "submit"),
        PlannedRow(spec("running", row=5), "resume"),
        PlannedRow(spec("mid-too", row=6), "submit"),
    ]
    order = launch_order(Plan(jobs), lambda s: expected.get(s.row_key, 0.0))
    assert [jobs[i].spec.row_key for i in order] == [
        "done",
        "running",
        "long",
        "mid",
        "mid-too",
        "short",
    ]
