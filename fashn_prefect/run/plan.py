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

from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, overload

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fashn_prefect.errors import PERMANENT_ERRORS
from fashn_prefect.run.validate import RowSpec, ValidRows
from fashn_prefect.store.ledger import Ledger
from fashn_prefect.store.records import RecordSummary, RowRecord, UnreadableRecord
from fashn_prefect.store.results import completed_rows, reported_charges
from fashn_prefect.store.rows import ListLike
from fashn_prefect.store.snapshots import LedgerRecords, Summaries

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


class PlannedRows(ListLike[PlannedRow]):
    """A plan's rows, built when read: a million-row plan keeps its actions as a list and
    its specs, earlier results and ledger records where they were (columnar). A row read
    by index is kept until :meth:`release`, so the run's changes to it (its record) last."""

    def __init__(
        self,
        specs: Sequence[RowSpec],
        actions: list[Action],
        records: Mapping[str, RowRecord | UnreadableRecord],
        positions: Any,
        previous: Sequence[dict[str, Any]],
        previous_slot: Any,
        reported: frozenset[str] = frozenset(),
    ) -> None:
        self.specs = specs
        self.actions = actions
        self._records = records
        self._positions = positions
        self._previous = previous
        self._previous_slot = previous_slot
        self._reported = reported
        """Predictions an earlier results table reports as charged (for rows reported
        again from their record)."""
        self._held: dict[int, PlannedRow] = {}

    def __len__(self) -> int:
        return len(self.actions)

    @overload
    def __getitem__(self, index: int) -> PlannedRow: ...

    @overload
    def __getitem__(self, index: slice) -> list[PlannedRow]: ...

    def __getitem__(self, index: int | slice) -> PlannedRow | list[PlannedRow]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        row = self._held.get(index)
        if row is None:
            row = self._held[index] = self._build(index, self.specs[index])
        return row

    def __iter__(self) -> Iterator[PlannedRow]:
        for index, spec in enumerate(self.specs):
            held = self._held.get(index)
            yield held if held is not None else self._build(index, spec)

    def unreadable_keys(self) -> set[str]:
        """Row keys whose ledger record could not be read."""
        records = self._records
        if isinstance(records, LedgerRecords):
            return records.unreadable_keys()
        return {k for k, v in records.items() if isinstance(v, UnreadableRecord)}

    def release(self, index: int) -> None:
        """Forget the row at ``index`` once the run is done with it (memory)."""
        self._held.pop(index, None)

    def _build(self, index: int, spec: RowSpec) -> PlannedRow:
        action = self.actions[index]
        if action == "skip":
            previous = self._previous[int(self._previous_slot[index])]
            return PlannedRow(spec, "skip", previous=previous)
        records = self._records
        if isinstance(records, LedgerRecords):
            found = records.record_at(spec.row_key, int(self._positions[index]))
        else:
            found = records.get(spec.row_key)
        if isinstance(found, UnreadableRecord):
            if action not in ("submit", "ambiguous"):
                # Its snapshot row read, but the record in it did not: its fate is unknown.
                action = self.actions[index] = "ambiguous"
            return PlannedRow(spec, action, problem=found.describe())
        if found is None or found.inputs_hash != spec.inputs_hash:
            return PlannedRow(spec, action)
        reported = self._reported if action in ("failed", "ambiguous") else frozenset()
        return PlannedRow(spec, action, found, reported_charges=reported)


class Plan:
    """The jobs of a run, in manifest order."""

    def __init__(self, rows: Sequence[PlannedRow] | None = None) -> None:
        self.rows: Sequence[PlannedRow] = [] if rows is None else rows

    def actions(self) -> list[Action]:
        """Each job's action, in manifest order."""
        if isinstance(self.rows, PlannedRows):
            return self.rows.actions
        return [j.action for j in self.rows]

    def spec(self, index: int) -> RowSpec:
        """The row of job ``index`` (without building or holding its planned row)."""
        if isinstance(self.rows, PlannedRows):
            return self.rows.specs[index]
        return self.rows[index].spec

    def count(self, *actions: Action) -> int:
        """How many jobs have one of ``actions``."""
        wanted = set(actions)
        return sum(1 for action in self.actions() if action in wanted)

    def by_action(self, *actions: Action) -> list[PlannedRow]:
        """Jobs whose action is one of ``actions``."""
        wanted = set(actions)
        return [self.rows[i] for i, a in enumerate(self.actions()) if a in wanted]

    def unreadable(self) -> list[PlannedRow]:
        """Jobs whose ledger record exists but could not be read (they carry a problem)."""
        rows = self.rows
        if isinstance(rows, PlannedRows):
            keys = rows.unreadable_keys()
            if not keys:
                return []
            return [row for row in rows if row.spec.row_key in keys and row.problem]
        return [row for row in rows if row.problem]

    def unknown_models(self) -> dict[str, int]:
        """Rows by model name, for models the specs do not describe (pass-through)."""
        rows = self.rows
        if isinstance(rows, PlannedRows) and isinstance(rows.specs, ValidRows):
            return rows.specs.unknown_models()
        return dict(Counter(r.spec.model_name for r in rows if not r.spec.catalogued))

    @property
    def to_submit(self) -> list[PlannedRow]:
        """Jobs that may create new predictions."""
        return self.by_action("submit")

    @property
    def estimated_credits(self) -> int:
        """Expected charge of the predictions this run will create or resume."""
        rows = self.rows
        if isinstance(rows, PlannedRows) and isinstance(rows.specs, ValidRows):
            credits = rows.specs.credits
            return sum(credits[i] for i, a in enumerate(rows.actions) if a in _CHARGED)
        return sum(j.spec.estimated_credits for j in self.by_action(*_CHARGED))


_CHARGED: tuple[Action, ...] = ("submit", "resume")


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
    keys: list[tuple[int, float, int]] = []
    for index, action in enumerate(plan.actions()):
        position = rank.get(action, 0)
        latency = -expected_seconds(plan.spec(index)) if position == 2 else 0.0
        keys.append((position, latency, index))
    keys.sort()
    return [index for _, _, index in keys]


def make_plan(
    rows: Sequence[RowSpec],
    output_url: str,
    *,
    resubmit_ambiguous: bool = False,
    retry_failed: bool = False,
    storage_options: dict[str, Any] | None = None,
) -> Plan:
    """Compare ``rows`` with what the output root already holds and build the plan."""
    keys, hashes = _keys_and_hashes(rows)
    done = completed_rows(output_url, storage_options)
    done_index = done.match(keys, hashes)
    pending = np.flatnonzero(done_index < 0)
    pending_keys, pending_hashes = keys, hashes
    if len(pending) < len(keys):
        pending_keys, pending_hashes = keys.take(pa.array(pending)), hashes.take(pa.array(pending))
    wanted = pending_keys.to_pylist()
    records = Ledger(output_url, storage_options).load_many(wanted)
    codes, charged, snapshot_rows = _decide(
        records, wanted, pending_hashes, resubmit_ambiguous, retry_failed
    )
    records.snapshot.forget_summaries()  # decided: the run reads records, not summaries
    all_codes = np.zeros(len(keys), dtype=np.int8)  # 0: skip
    all_codes[pending] = codes
    actions: list[Action] = [_CODES[c] for c in all_codes.tolist()]
    positions = np.full(len(keys), -1, dtype=np.int64)
    positions[pending] = snapshot_rows
    # Earlier results of skipped rows, in plan order (read a batch at a time, in order).
    skipped = np.flatnonzero(done_index >= 0)
    previous_slot = np.full(len(keys), -1, dtype=np.int64)
    previous_slot[skipped] = np.arange(len(skipped))
    previous = done.rows(done_index[skipped])
    # Only rows reported again from their record (no new attempt) can repeat a charge.
    reported = reported_charges(output_url, storage_options) if charged.any() else frozenset()
    return Plan(PlannedRows(rows, actions, records, positions, previous, previous_slot, reported))


_CODES: tuple[Action, ...] = ("skip", "submit", "resume", "recover", "ambiguous", "failed")


def _decide(
    records: LedgerRecords,
    keys: list[str],
    hashes: pa.ChunkedArray,
    resubmit_ambiguous: bool,
    retry_failed: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each of ``keys`` (rows no earlier results table reports): its action code,
    whether it is reported again with a charge, and its snapshot row (-1: none)."""
    found = records.summaries(keys)
    codes, charged = _actions_from_columns(found, hashes, resubmit_ambiguous, retry_failed)
    for n, key in enumerate(keys):
        if key in found.own:
            mine = hashes[n].as_py()
            action, again = _own_action(found.own[key], mine, resubmit_ambiguous, retry_failed)
            codes[n], charged[n] = _CODES.index(action), again
    return codes, charged, found.positions


def _actions_from_columns(
    found: Summaries, hashes: pa.ChunkedArray, resubmit_ambiguous: bool, retry_failed: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Each pending row's action code (from its snapshot row's summary columns; submit
    without one), and whether it is reported again with a charge: :func:`_action_for`
    over whole columns."""
    codes = np.full(len(hashes), _CODES.index("submit"), dtype=np.int8)
    charged = np.zeros(len(hashes), dtype=bool)
    cols = found.columns
    if cols is None or not len(hashes):
        return codes, charged

    def where(expression: Any) -> np.ndarray:
        return np.asarray(pc.fill_null(expression, False).to_numpy(zero_copy_only=False), bool)

    status, last = cols["status"], cols["last_status"]
    pid = cols["last_prediction_id"]
    lost = where(pc.is_in(last, pa.array(["submitting", "ambiguous"])))
    resume = where(
        pc.and_(
            pc.is_in(last, pa.array(["submitted", "completed"])),
            pc.and_(pc.is_valid(pid), pc.not_equal(pid, "")),
        )
    )
    permanent = pc.is_in(cols["last_error_name"], pa.array(sorted(PERMANENT_ERRORS)))
    failed = where(pc.and_(pc.equal(status, "failed"), permanent))
    recover = where(pc.and_(pc.equal(status, "completed"), cols["has_outputs"]))
    same = where(pc.equal(cols["inputs_hash"], pa.array(hashes, pa.string())))
    # From the last rule of _action_for to the first: a rule set later wins.
    codes[lost] = _CODES.index("submit" if resubmit_ambiguous else "ambiguous")
    codes[resume] = _CODES.index("resume")
    if not retry_failed:
        codes[failed] = _CODES.index("failed")
    codes[where(pc.is_null(last))] = _CODES.index("submit")
    codes[recover] = _CODES.index("recover")
    codes[~same] = _CODES.index("submit")
    again = np.isin(codes, [_CODES.index("failed"), _CODES.index("ambiguous")])
    charged = where(pc.greater(cols["credits_used"], 0)) & again
    return codes, charged


def _own_action(
    found: RowRecord | UnreadableRecord | None,
    inputs_hash: str,
    resubmit_ambiguous: bool,
    retry_failed: bool,
) -> tuple[Action, bool]:
    """The action of a row decided by its loose record or a damaged snapshot, and whether
    it is reported again with a charge."""
    if isinstance(found, UnreadableRecord):
        return ("submit" if resubmit_ambiguous else "ambiguous"), False
    if found is None or found.inputs_hash != inputs_hash:
        return "submit", False
    summary = found.summary
    action = _action_for(summary, resubmit_ambiguous, retry_failed)
    return action, summary.credits_used > 0 and action in ("failed", "ambiguous")


def _keys_and_hashes(rows: Sequence[RowSpec]) -> tuple[pa.ChunkedArray, pa.ChunkedArray]:
    if isinstance(rows, ValidRows):
        return rows.key_column(), rows.hash_column()
    keys = pa.chunked_array([pa.array([r.row_key for r in rows], pa.string())])
    return keys, pa.chunked_array([pa.array([r.inputs_hash for r in rows], pa.string())])


def _action_for(record: RecordSummary, resubmit_ambiguous: bool, retry_failed: bool) -> Action:
    if record.status == "completed" and record.has_outputs:
        return "recover"
    if record.last_status is None:
        return "submit"
    if (
        record.status == "failed"
        and record.last_error_name in PERMANENT_ERRORS
        and not retry_failed
    ):
        return "failed"
    if record.last_status in ("submitted", "completed") and record.last_prediction_id:
        return "resume"
    if record.last_status in ("submitting", "ambiguous"):
        return "submit" if resubmit_ambiguous else "ambiguous"
    return "submit"
