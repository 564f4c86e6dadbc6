"""The stages of a run after its rows are read, in order: plan (or refuse), execute, write.

:func:`run_rows` strings them together inside a flow; each stage is a function of its
own, so a reader follows one path: validate → :func:`plan_or_refuse` → :func:`execute` →
:func:`write_outcome`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from prefect import get_run_logger
from prefect.artifacts import acreate_progress_artifact, aupdate_progress_artifact
from prefect.runtime import flow_run

from fashn_prefect.api.responses import CreditBalance
from fashn_prefect.credentials import FashnCredentials, resolve_credentials
from fashn_prefect.errors import BudgetExceeded, ConfigurationError, ManifestInvalid
from fashn_prefect.run.events import account_of, prediction_failed
from fashn_prefect.run.manifest import Manifest
from fashn_prefect.run.observe import current_observer
from fashn_prefect.run.outcome import budget_refused, judge_run, state_for
from fashn_prefect.run.plan import Plan, PlannedRows, launch_order, make_plan
from fashn_prefect.run.poll import seed_from_results
from fashn_prefect.run.request import CheckedRows, RunRequest
from fashn_prefect.run.result_rows import invalid_rows, settled_row
from fashn_prefect.run.results_builder import ResultsBuilder
from fashn_prefect.run.rows import row_task, run_row
from fashn_prefect.run.runtime import Runtime, open_runtime
from fashn_prefect.run.validate import RowSpec, ValidationReport
from fashn_prefect.run.write import run_name, write_results
from fashn_prefect.scheduler.latency import latency_key
from fashn_prefect.store.fs import bounded
from fashn_prefect.store.reports import RunReport, publish_summary, write_run_report

__all__ = ["execute", "plan_or_refuse", "run_rows", "write_outcome"]


async def run_rows(
    source: Manifest | CheckedRows, request: RunRequest, started: datetime
) -> dict[str, Any]:
    """The stages after reading: validate (unless ``source`` is already checked), plan,
    execute, write, judge. Runs inside a flow started at ``started``.

    Returns the summary for a dry run, else the flow's final state (Completed with the
    summary, or Failed when more rows failed than ``allowed_failures`` allows).
    """
    checked = source if isinstance(source, CheckedRows) else request.check(source)
    plan, summary = await plan_or_refuse(checked, request)
    if request.dry_run:
        estimated = plan.estimated_credits
        return {**summary, **await _dry_run_balance(request.credentials, estimated)}
    creds = resolve_credentials(request.credentials)
    s = request.settings
    async with open_runtime(
        creds, s, request.output, request.storage_options, flow_run.id, current_observer()
    ) as rt:
        before = await _balance_allows(rt, plan, creds.account_id) if s.check_balance else None
        name = run_name(started, flow_run.id)
        rt.rows = plan.rows
        results = await execute(
            rt, plan, lambda row: prediction_failed(row, name, creds.account_id)
        )
        after = await rt.client.credits() if s.check_balance else None
    results.extend(invalid_rows(checked.report, checked.manifest))
    report = await write_outcome(rt, request, results, started, _Balances(before, after))
    decided = judge_run(report.as_dict(), s.failure_threshold, creds.account_id)
    # Prefect makes a returned state the flow run's final state; a caller awaiting the flow
    # gets the summary back (from a Failed run through fashn_prefect.run.outcome.summary_of).
    return cast(dict[str, Any], state_for(decided))


async def plan_or_refuse(checked: CheckedRows, request: RunRequest) -> tuple[Plan, dict[str, Any]]:
    """Plan every valid row against what the output root holds, or refuse the run.

    Raises :class:`~fashn_prefect.errors.ManifestInvalid` for invalid rows (unless
    ``skip_invalid``) and :class:`~fashn_prefect.errors.BudgetExceeded` when the estimate
    exceeds the budget; nothing is submitted then. Returns the plan and its summary.
    """
    log = get_run_logger()
    s, report = request.settings, checked.report
    if not report.ok and not s.skip_invalid:
        log.error("Manifest has invalid rows; nothing was submitted.\n%s", report.format(50))
        raise ManifestInvalid(report)
    plan = await bounded(
        _bulk_timeout(s.storage_timeout, len(report.rows)),
        "reading earlier results and the ledger",
        lambda: make_plan(
            report.rows,
            request.output,
            resubmit_ambiguous=s.resubmit_ambiguous,
            retry_failed=s.retry_failed,
            storage_options=request.storage_options,
        ),
    )
    summary = _plan_summary(report, plan)
    log.info("Plan: %s", summary)
    for row in plan.unreadable():
        log.warning("Row %r: %s", row.spec.row_key, row.problem)
    if summary["unknown_models"]:
        log.warning(
            "Models the specs do not describe run as a pass-through (inputs sent as given, "
            "generic checks only, credits unknown until the API reports them, not counted "
            "in estimated_credits or the budget): %s. Describe them as data "
            "(FASHN_PREFECT_MODELS) for full checks, or pass allow_unknown_models=False "
            "to forbid them.",
            ", ".join(
                f"{name} ({count} rows)" for name, count in summary["unknown_models"].items()
            ),
        )
    budget = request.budget
    if budget is not None and plan.estimated_credits > budget:
        message = (
            f"estimated {plan.estimated_credits} credits exceeds the budget of {budget}; "
            "nothing was submitted"
        )
        budget_refused(
            message,
            budget,
            plan.estimated_credits,
            plan.count("submit", "resume"),
            account_of(request.credentials),
        )
        raise BudgetExceeded(message)
    return plan, summary


async def execute(
    rt: Runtime,
    plan: Plan,
    on_failed: Callable[[dict[str, Any]], None] | None = None,
    results: ResultsBuilder | None = None,
) -> ResultsBuilder:
    """Run every planned row as a Prefect task, longest expected first; add each result
    row to ``results`` (a new builder when not given) as it finishes, and return it.
    ``on_failed`` hears of each failed row as it fails (for its event).

    Rows that need no prediction are settled at once; the others start as row tasks, at
    most four times the account's in-flight slots at a time (so the next task is ready
    when a slot frees up), never one coroutine per row up front.
    """
    results = ResultsBuilder() if results is None else results
    total = len(plan.rows)
    rt.stats.total = total
    progress_id = await acreate_progress_artifact(
        0.0, key="fashn-run-progress", description="Rows finished"
    )
    step = max(1, total // 50)
    ahead = asyncio.Semaphore(4 * rt.account.limits.max_in_flight)
    # Updates are sent one at a time and only forwards: concurrent updates could reach the
    # server out of order and leave the artifact short of 100 % at the end.
    sending = asyncio.Lock()
    sent = 0.0

    async def report_progress() -> None:
        nonlocal sent
        async with sending:
            value = 100.0 * rt.stats.done / max(total, 1)
            if value > sent:
                await aupdate_progress_artifact(progress_id, value)
                sent = value

    task = row_task(rt)
    await seed_from_results(rt)

    def expected(spec: RowSpec) -> float:
        return rt.polls.book.total(latency_key(spec.model_name, spec.inputs)).quantile(0.5)

    async def finish(index: int, row: dict[str, Any]) -> None:
        await rt.settle(plan.rows[index].record)
        if isinstance(plan.rows, PlannedRows):
            plan.rows.release(index)  # done with: a million-row run holds only rows in flight
        if on_failed is not None and row["status"] == "failed":
            on_failed(row)
        results.add(row)
        rt.stats.done += 1
        if rt.observer is not None:
            rt.observer.progress(rt.stats.done, total)
        if rt.stats.done % step == 0:
            await report_progress()

    async def one(index: int) -> None:
        try:
            row = await run_row(rt, task, index)
        finally:
            ahead.release()
        await finish(index, row)

    running: set[asyncio.Task[None]] = set()
    try:
        for index in launch_order(plan, expected):
            settled = settled_row(plan.rows[index])
            if settled is not None:
                await finish(index, settled)
                continue
            await ahead.acquire()
            _raise_first_failure(running)
            job = asyncio.create_task(one(index))
            running.add(job)
            job.add_done_callback(_forget_if_fine(running))
        while running:
            await asyncio.wait(running, return_when=asyncio.FIRST_EXCEPTION)
            _raise_first_failure(running)
    finally:
        for job in running:
            job.cancel()
        await asyncio.gather(*running, return_exceptions=True)
    await rt.snapshot()
    await report_progress()
    return results


def _forget_if_fine(running: set[asyncio.Task[None]]) -> Callable[[asyncio.Task[None]], None]:
    """A done callback: drop a finished row's task from ``running`` unless it raised or was
    cancelled (then :func:`_raise_first_failure` finds it there)."""

    def forget(job: asyncio.Task[None]) -> None:
        if not job.cancelled() and job.exception() is None:
            running.discard(job)

    return forget


def _raise_first_failure(running: set[asyncio.Task[None]]) -> None:
    """Raise what a row's task raised (as ``asyncio.gather`` over the rows did); forget
    the finished ones."""
    for job in [j for j in running if j.done()]:
        running.discard(job)
        if job.cancelled():
            raise asyncio.CancelledError()
        error = job.exception()
        if error is not None:
            raise error


@dataclass(frozen=True)
class _Balances:
    before: CreditBalance | None
    after: CreditBalance | None


async def write_outcome(
    rt: Runtime,
    request: RunRequest,
    results: ResultsBuilder,
    started: datetime,
    balances: _Balances,
) -> RunReport:
    """Write the results table (sorted by row), the review gallery and the run report;
    publish the summary."""
    s, output, options = request.settings, request.output, request.storage_options
    flow_run_id = rt.flow_run_id
    name = run_name(started, flow_run_id)
    table = results.table(flow_run_id, started)
    timeout = _bulk_timeout(s.storage_timeout, table.num_rows)
    written = await bounded(
        timeout,
        "writing the results table",
        lambda: write_results(table, output, name, csv=s.write_csv, storage_options=options),
    )
    gallery = await _write_gallery(table, output, name, options, timeout)
    limits = rt.account.limits
    report = RunReport(
        run_name=name,
        flow_run_id=flow_run_id,
        started_at=started.isoformat(),
        finished_at=datetime.now(UTC).isoformat(),
        elapsed_s=(datetime.now(UTC) - started).total_seconds(),
        totals=results.totals.as_dict(),
        submitted=rt.stats.submitted,
        status_calls=rt.stats.status_calls,
        results=written.parquet,
        results_csv=written.csv,
        images=rt.uri(rt.images_root),
        balance_before=balances.before.total if balances.before else None,
        balance_after=balances.after.total if balances.after else None,
        limits={
            "max_in_flight": limits.max_in_flight,
            "run": s.run_limit,
            "status": s.status_limit,
        },
        gallery=gallery,
    )
    await bounded(
        s.storage_timeout, "writing the run report", write_run_report, report, output, options
    )
    await publish_summary(report)
    return report


async def _balance_allows(rt: Runtime, plan: Plan, account_id: str) -> CreditBalance:
    """The balance before the run; refuses the run when the estimate exceeds it."""
    balance = await rt.client.credits()
    if plan.estimated_credits > balance.total:
        message = (
            f"estimated {plan.estimated_credits} credits exceeds the account balance of "
            f"{balance.total}; nothing was submitted"
        )
        to_run = plan.count("submit", "resume")
        budget_refused(message, balance.total, plan.estimated_credits, to_run, account_id)
        raise BudgetExceeded(message)
    return balance


async def _dry_run_balance(
    credentials: FashnCredentials | str | None, estimated: int
) -> dict[str, Any]:
    """For a dry run: the account balance, when credentials are available, checked.

    Raises :class:`BudgetExceeded` when the estimate exceeds the balance. Without
    credentials the balance is reported as unknown; a dry run never needs a key.
    """
    try:
        creds = resolve_credentials(credentials)
    except ConfigurationError:
        return {"dry_run": True, "balance": None}
    async with creds.get_client() as client:
        balance = await client.credits()
    if estimated > balance.total:
        raise BudgetExceeded(
            f"estimated {estimated} credits exceeds the account balance of {balance.total}; "
            "nothing was submitted"
        )
    return {"dry_run": True, "balance": balance.total}


def _bulk_timeout(timeout: float, rows: int) -> float:
    """The storage timeout for a step whose work grows with the run: one per 500 rows."""
    return timeout * max(1.0, rows / 500)


async def _write_gallery(
    table: Any, output: str, name: str, options: dict[str, Any], timeout: float
) -> str | None:
    """Write the review gallery; a failure here is logged and never fails the run."""
    from fashn_prefect.review.gallery import write_gallery

    try:
        return await bounded(
            timeout,
            "writing the review gallery",
            lambda: write_gallery(table, output, name, options, fetch_remote=True),
        )
    except Exception as exc:
        get_run_logger().warning(
            "Could not write the review gallery: %s: %s", type(exc).__name__, exc
        )
        return None


def _plan_summary(report: ValidationReport, plan: Plan) -> dict[str, Any]:
    return {
        "rows": report.total_rows,
        "valid": len(report.rows),
        "invalid": len(report.invalid_rows),
        "to_submit": plan.count("submit"),
        "to_resume": plan.count("resume"),
        "recovered": plan.count("recover"),
        "already_completed": plan.count("skip"),
        "ambiguous": plan.count("ambiguous"),
        "failed_before": plan.count("failed"),
        "estimated_credits": plan.estimated_credits,
        "unknown_models": plan.unknown_models(),
    }
