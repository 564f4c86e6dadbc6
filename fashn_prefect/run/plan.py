"""Plan a run: decide, for every valid row, whether to submit, resume, skip or hold it.

* ``skip``: the same row key with the same inputs already completed in this output
  root (in an earlier results table): nothing is submitted or charged.
* ``recover``: the ledger shows the row completed with stored outputs, but no results
  table reported it (the previous run died before writing one).
* ``resume``: the ledger has a prediction id whose outputs were never stored: poll it
  again (and collect its outputs) instead of submitting a new one.
* ``ambiguous``: the ledger shows a submission whose fate is unknown, or the row's ledger
  record exists but cannot be read; it is reported as failed and never resent unless
  ``resubmit_ambiguous`` is set.
* ``failed``: the row failed with a permanent error (``ImageLoadError``,
  ``ContentModerationError``, ``PoseError``, ``InputValidationError``, ``BadRequest``) for
  these same inputs; the same inputs would fail again, so the earlier failure is reported
  and nothing is submitted unless ``retry_failed`` is set. Rows that ran out of retries on
  a transient error are submitted again.
* ``submit``: everything else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from fashn_prefect.errors import PERMANENT_ERRORS
from fashn_prefect.run.validate import RowSpec
from fashn_prefect.store.ledger import Ledger, RowRecord, UnreadableRecord
from fashn_prefect.store.results import completed_rows, reported_charges

Action = Literal["submit", "resume", "recover", "skip", "ambiguous", "failed"]


@dataclass
class PlannedRow:
    """One manifest row and what this run will do with it."""

    spec: RowSpec
    action: Action
    record: RowRecord | None = None
    previous: dict[str, Any] | None = None
    problem: str | None = None
    """Why the row is ambiguous when its ledger record could not be read."""
    reported_charges: frozenset[str] = frozenset()
    """Predictions of this row whose charge an earlier results table already reports."""


@dataclass
class Plan:
    """The jobs of a run, in manifest order."""

    rows: list[PlannedRow] = field(default_factory=list)

    def by_action(self, *actions: Action) -> list[PlannedRow]:
        """Jobs whose action is one of ``actions``."""
        return [j for j in self.rows if j.action in actions]

    @property
    def to_submit(self) -> list[PlannedRow]:
        """Jobs that may create new predictions."""
        return self.by_action("submit")

    @property
    def estimated_credits(self) -> int:
        """Expected charge of the predictions this run will create or resume."""
        return sum(j.spec.estimated_credits for j in self.by_action("submit", "resume"))


def launch_order(plan: Plan, expected_seconds: Callable[[RowSpec], float]) -> list[int]:
    """Indexes of the plan's jobs in the order to start them.

    Rows that need no prediction come first (they finish at once), then predictions
    already running at the API (resumed: they take up the account's slots now), then new
    submissions, longest expected latency first. Starting the longest jobs first
    (longest-processing-time-first list scheduling) leaves short jobs to fill the slots at
    the end of the run, instead of one long job running alone while the others sit idle.
    Ties keep manifest order.
    """
    rank = {"resume": 1, "submit": 2}

    def key(index: int) -> tuple[int, float]:
        job = plan.rows[index]
        position = rank.get(job.action, 0)
        return position, -expected_seconds(job.spec) if position == 2 else 0.0

    return sorted(range(len(plan.rows)), key=key)


def make_plan(
    rows: list[RowSpec],
    output_url: str,
    *,
    resubmit_ambiguous: bool = False,
    retry_failed: bool = False,
    storage_options: dict[str, Any] | None = None,
) -> Plan:
    """Compare ``rows`` with what the output root already holds and build the plan."""
    done = completed_rows(output_url, storage_options)
    pending_keys = [r.row_key for r in rows if (r.row_key, r.inputs_hash) not in done]
    records = Ledger(output_url, storage_options).load_many(pending_keys)
    plan = Plan()
    for spec in rows:
        previous = done.get((spec.row_key, spec.inputs_hash))
        if previous is not None:
            plan.rows.append(PlannedRow(spec, "skip", previous=previous))
            continue
        record = records.get(spec.row_key)
        if isinstance(record, UnreadableRecord):
            action: Action = "submit" if resubmit_ambiguous else "ambiguous"
            plan.rows.append(PlannedRow(spec, action, problem=record.describe()))
        elif record is None or record.inputs_hash != spec.inputs_hash:
            plan.rows.append(PlannedRow(spec, "submit"))
        else:
            action = _action_for(record, resubmit_ambiguous, retry_failed)
            plan.rows.append(PlannedRow(spec, action, record))
    # Only rows reported again from their record (no new attempt) can repeat a charge.
    charged_rows = [
        j
        for j in plan.rows
        if j.action in ("failed", "ambiguous") and j.record is not None and _has_charge(j.record)
    ]
    if charged_rows:
        reported = reported_charges(output_url, storage_options)
        for job in charged_rows:
            job.reported_charges = reported
    return plan


def _has_charge(record: RowRecord) -> bool:
    return any((a.credits_used or 0) > 0 for a in record.attempts)


def _action_for(record: RowRecord, resubmit_ambiguous: bool, retry_failed: bool) -> Action:
    last = record.last
    if record.status == "completed" and record.outputs:
        return "recover"
    if last is None:
        return "submit"
    if record.status == "failed" and last.error_name in PERMANENT_ERRORS and not retry_failed:
        return "failed"
    if last.status in ("submitted", "completed") and last.prediction_id:
        return "resume"
    if last.status in ("submitting", "ambiguous"):
        return "submit" if resubmit_ambiguous else "ambiguous"
    return "submit"
