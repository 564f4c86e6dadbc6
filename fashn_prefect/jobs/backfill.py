"""Backfills: regenerate imagery for a large historical set, in chunks, within a budget.

The whole set is read and validated first (every problem in every row, as for a run),
then planned against the output root, so rows that already completed are never sent
again and a backfill interrupted at any moment is resumed by running it again. The rows
still to do are cut into chunks (N rows, or one chunk per value of a partition column),
and each chunk's rows, as already read, run as one
:func:`fashn_prefect.run.pipeline.run_predictions` subflow.

A credit budget covers the whole backfill, across resumes: credits already charged for
its rows count against it, and rows are taken in manifest order only while the estimate
stays within what is left. Rows beyond that are *deferred*, never submitted, and the
summary, the log and the CLI say so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from fashn_prefect.jobs.overlap import run_overlapped
from fashn_prefect.run.events import account_of
from fashn_prefect.run.manifest import Manifest
from fashn_prefect.run.observe import ProgressCallback, RunObserver, current_observer, observing
from fashn_prefect.run.outcome import judge_backfill, summary_of
from fashn_prefect.run.plan import PlannedRows, make_plan
from fashn_prefect.run.request import CheckedRows, RunRequest
from fashn_prefect.run.validate import RowSpec, ValidationReport, ValidRows
from fashn_prefect.store.ledger import Ledger
from fashn_prefect.store.results import read_results
from fashn_prefect.store.snapshots import LedgerRecords

CHUNKS_AT_ONCE = 2
"""Chunks that run at once: the next chunk starts while the last one drains, so the
account's slots stay full across chunk boundaries."""


@dataclass
class Chunk:
    """Rows (1-based manifest row numbers) that run together as one subflow."""

    index: int
    label: str
    rows: list[int]
    estimated_credits: int


@dataclass
class BackfillPlan:
    """What a backfill will do, decided before anything is submitted."""

    rows: int
    invalid: int
    already_completed: int
    to_run: int
    deferred: int
    estimated_credits: int
    """Estimate for every row still to do (ignoring the budget)."""
    selected_credits: int
    """Estimate for the rows that fit in the budget."""
    deferred_credits: int
    spent_before: int
    """Credits already charged for this set's rows by earlier (interrupted) runs."""
    budget: int | None
    chunks: list[Chunk] = field(default_factory=list)

    @property
    def budget_message(self) -> str | None:
        """Why rows are held back, or None when everything fits."""
        if not self.deferred:
            return None
        return (
            f"budget of {self.budget} credits reached: {self.deferred} rows "
            f"({self.deferred_credits} credits estimated) were not submitted "
            f"({self.spent_before} already spent, {self.selected_credits} planned now); "
            "run the backfill again with a larger budget to do them"
        )

    def as_dict(self) -> dict[str, Any]:
        """Plain-dict form (chunks summarised)."""
        data = asdict(self)
        data["chunks"] = [
            {
                "index": c.index,
                "label": c.label,
                "rows": len(c.rows),
                "credits": c.estimated_credits,
            }
            for c in self.chunks
        ]
        data["budget_message"] = self.budget_message
        return data


def chunk_rows(
    rows: Sequence[int],
    credits: Sequence[int],
    chunk_size: int,
    partition: Sequence[Any] | None = None,
    partition_by: str | None = None,
) -> list[Chunk]:
    """Cut rows (1-based manifest rows, with their estimates) into chunks of at most
    ``chunk_size`` rows, within partitions (``partition``: each row's value) if given."""
    if chunk_size < 1:
        raise ValueError("chunk_size must be at least 1")
    groups: dict[str, list[int]] = {}
    for n in range(len(rows)):
        label = ""
        if partition is not None:
            value = partition[n]
            label = f"{partition_by}={'' if value is None else value}"
        groups.setdefault(label, []).append(n)
    chunks: list[Chunk] = []
    for label, members in groups.items():
        for start in range(0, len(members), chunk_size):
            part = members[start : start + chunk_size]
            chunks.append(
                Chunk(
                    index=len(chunks) + 1,
                    label=label or f"rows {rows[part[0]]}-{rows[part[-1]]}",
                    rows=[rows[n] for n in part],
                    estimated_credits=sum(credits[n] for n in part),
                )
            )
    return chunks


def _spent_before(
    keys: Sequence[str],
    hashes: Sequence[str],
    records: LedgerRecords,
    output_url: str,
    storage_options: dict[str, Any],
) -> int:
    """Credits already charged for these rows: what results tables report for them, plus
    what ledger records of rows no results table reports were charged."""
    table = read_results(
        output_url,
        columns=["row_key", "inputs_hash", "credits_charged"],
        storage_options=storage_options,
    )
    spent, reported = 0, set()
    if table is not None and table.num_rows:
        wanted = pa.table(
            {"row_key": pa.array(keys, pa.string()), "inputs_hash": pa.array(hashes, pa.string())}
        )
        wanted = wanted.group_by(["row_key", "inputs_hash"]).aggregate([])
        mine = table.join(wanted, ["row_key", "inputs_hash"], join_type="inner")
        spent = int(pc.sum(pc.fill_null(mine["credits_charged"], 0)).as_py() or 0)
        reported = set(pc.unique(mine["row_key"]).to_pylist())
    unreported = [n for n, key in enumerate(keys) if key not in reported]
    unreported_keys = [keys[n] for n in unreported]
    found = records.summaries(unreported_keys)
    spent += int(found.credits_used(unreported_keys, [hashes[n] for n in unreported]).sum())
    return spent


def plan_backfill(
    manifest: str | CheckedRows,
    request: RunRequest,
    *,
    chunk_size: int = 100,
    partition_by: str | None = None,
) -> tuple[BackfillPlan, CheckedRows]:
    """Read and validate the whole set at URL ``manifest`` (unless given it as checked
    rows), compare it with the output root and choose the chunks; return the plan and the
    checked rows."""
    from fashn_prefect.errors import ManifestInvalid

    options, s, budget = request.storage_options, request.settings, request.budget
    source = manifest.manifest if isinstance(manifest, CheckedRows) else request.read(manifest)
    if partition_by and partition_by not in source.columns:
        raise ValueError(f"partition column {partition_by!r} is not in the manifest")
    checked = manifest if isinstance(manifest, CheckedRows) else request.check(source)
    report = checked.report
    if not report.ok and not s.skip_invalid:
        raise ManifestInvalid(report)
    plan = make_plan(
        report.rows,
        request.output,
        resubmit_ambiguous=s.resubmit_ambiguous,
        retry_failed=s.retry_failed,
        storage_options=options,
    )
    rows, keys, hashes, credits = _columns(report.rows)
    # Ledger records of every row (not only pending ones): their charges count as spent.
    records = Ledger(request.output, options).load_many(keys)
    spent = _spent_before(keys, hashes, records, request.output, options)
    actions = (
        [job.action for job in plan.rows]
        if not isinstance(plan.rows, PlannedRows)
        else plan.rows.actions
    )
    todo = [n for n, action in enumerate(actions) if action != "skip"]
    remaining = None if budget is None else budget - spent
    selected: list[int] = []
    deferred: list[int] = []
    running = 0
    for n in todo:
        cost = credits[n] if actions[n] in ("submit", "resume") else 0
        if remaining is not None and (deferred or running + cost > remaining):
            deferred.append(n)  # keep manifest order: never skip ahead to a cheaper row
            continue
        running += cost
        selected.append(n)
    partition = None
    if partition_by:
        values = _column_values(source, partition_by)
        partition = [values[rows[n] - 1] for n in selected]
    backfill = BackfillPlan(
        rows=report.total_rows,
        invalid=len(report.invalid_rows),
        already_completed=len(actions) - len(todo),
        to_run=len(selected),
        deferred=len(deferred),
        estimated_credits=sum(credits[n] for n in todo if actions[n] in ("submit", "resume")),
        selected_credits=running,
        deferred_credits=sum(credits[n] for n in deferred),
        spent_before=spent,
        budget=budget,
        chunks=chunk_rows(
            [rows[n] for n in selected],
            [credits[n] for n in selected],
            chunk_size,
            partition,
            partition_by,
        ),
    )
    return backfill, checked


def _columns(specs: Sequence[RowSpec]) -> tuple[list[int], list[str], list[str], Sequence[int]]:
    """The valid rows' manifest rows, keys, inputs hashes and estimates."""
    if isinstance(specs, ValidRows):
        return specs.row_numbers, specs.keys, specs.hashes, specs.credits
    return (
        [r.row for r in specs],
        [r.row_key for r in specs],
        [r.inputs_hash for r in specs],
        [r.estimated_credits for r in specs],
    )


def _column_values(manifest: Manifest, name: str) -> list[Any]:
    """Every row's value in column ``name`` (None where it is missing)."""
    table = manifest.table
    if table is not None:
        return table[name].to_pylist()
    return [raw.get(name) for raw in manifest.rows]


def chunk_of(checked: CheckedRows, chunk: Chunk, name: str) -> CheckedRows:
    """The checked rows of one chunk, numbered from 1 as a run of that chunk numbers them:
    its subflow takes them as they are, without reading or validating them again."""
    valid = checked.report.rows
    if isinstance(valid, ValidRows):
        found = valid.by_row(chunk.rows)
    else:
        by_row = {spec.row: spec for spec in valid}
        found = [by_row[row] for row in chunk.rows]
    rows = [replace(spec, row=i) for i, spec in enumerate(found, start=1)]
    source = checked.manifest
    manifest = Manifest(
        url=name,
        format=source.format,
        columns=source.columns,
        rows=tuple(source.rows[row - 1] for row in chunk.rows),
    )
    return CheckedRows(manifest=manifest, report=ValidationReport(rows=rows, total_rows=len(rows)))


async def run_backfill(
    manifest: str,
    request: RunRequest,
    *,
    chunk_size: int = 100,
    partition_by: str | None = None,
    logger: Any = None,
    on_progress: ProgressCallback | None = None,
) -> dict[str, Any]:
    """Run a backfill of the set at URL ``manifest``; return the plan, each chunk's run
    summary and the totals.

    Each chunk is a :func:`~fashn_prefect.run.pipeline.run_predictions` subflow of the
    request, given its rows as already checked. ``request.budget`` covers the whole
    backfill. ``on_progress(done, total)`` follows rows across all chunks.
    """
    from fashn_prefect.run import pipeline

    budget = request.budget
    plan, source = plan_backfill(
        manifest, request, chunk_size=chunk_size, partition_by=partition_by
    )
    # The budget covers the whole backfill and is checked here, chunk by chunk.
    chunk_request = replace(request, budget=None)
    log = logger.info if logger is not None else (lambda *a: None)
    warn = logger.warning if logger is not None else (lambda *a: None)
    log(
        "Backfill of %s rows: %s already completed, %s to run in %s chunks (%s credits "
        "estimated), %s deferred by the budget",
        plan.rows,
        plan.already_completed,
        plan.to_run,
        len(plan.chunks),
        plan.selected_credits,
        plan.deferred,
    )
    if plan.budget_message:
        warn("Backfill stops before the budget: %s", plan.budget_message)
    result: dict[str, Any] = {"plan": plan.as_dict(), "dry_run": request.dry_run, "chunks": []}
    if request.dry_run:
        return result
    done: dict[int, int] = {}  # rows done so far, by chunk index
    charged = 0
    stopped = None
    finished: list[dict[str, Any]] = []

    def forward(index: int) -> ProgressCallback:
        def report(rows_done: int, total: int) -> None:
            done[index] = rows_done
            if on_progress is not None:
                on_progress(sum(done.values()), plan.to_run)

        return report

    def admit(chunk: Chunk, running: list[Chunk]) -> bool:
        nonlocal stopped
        # A running chunk counts at its estimate until it reports what it charged.
        committed = charged + sum(c.estimated_credits for c in running)
        if budget is None or plan.spent_before + committed + chunk.estimated_credits <= budget:
            return True
        stopped = (
            f"budget of {budget} credits reached after {committed} credits in this run "
            "(a running chunk at its estimate); "
            f"chunk {chunk.index} and later were not submitted"
        )
        warn("Backfill stopped: %s", stopped)
        return False

    async def run_chunk(chunk: Chunk) -> dict[str, Any]:
        name = f"backfill-chunk-{chunk.index:04d}-of-{len(plan.chunks):04d}"
        progress = forward(chunk.index) if on_progress else None
        with observing(RunObserver(progress, current_observer())):
            # The chunk's rows go to the subflow as they are, already read and validated.
            summary = await summary_of(  # a chunk with failed rows ends Failed
                pipeline.run_predictions.with_options(flow_run_name=name)(
                    rows=chunk_of(source, chunk, f"{manifest}#{name}"),
                    **chunk_request.flow_parameters(),
                )
            )
        return summary

    def chunk_done(chunk: Chunk, summary: dict[str, Any]) -> None:
        nonlocal charged
        chunk_charged = int((summary.get("totals") or {}).get("credits_charged", 0))
        charged += chunk_charged
        finished.append(
            {
                "index": chunk.index,
                "label": chunk.label,
                "rows": len(chunk.rows),
                "totals": summary.get("totals"),
                "results": summary.get("results"),
            }
        )
        log(
            "Chunk %s/%s (%s) done: %s credits",
            chunk.index,
            len(plan.chunks),
            chunk.label,
            chunk_charged,
        )

    await run_overlapped(
        plan.chunks, run_chunk, at_once=CHUNKS_AT_ONCE, admit=admit, finished=chunk_done
    )
    result["chunks"] = sorted(finished, key=lambda item: item["index"])
    totals: dict[str, Any] = {"ambiguous_rows": []}
    for item in result["chunks"]:
        for key in ("completed", "failed", "skipped", "credits_charged"):
            totals[key] = totals.get(key, 0) + int((item["totals"] or {}).get(key, 0))
        totals["ambiguous_rows"] += (item["totals"] or {}).get("ambiguous_rows") or []
    result["totals"] = totals
    result["stopped_by_budget"] = stopped or plan.budget_message
    return judge_backfill(result, account_of(request.credentials))
