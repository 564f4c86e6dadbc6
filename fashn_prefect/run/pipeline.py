"""The manifest flow: manifest → validate → plan → submit/poll → collect → write.

Rows run as Prefect tasks on the flow's event loop. A prediction runs only while its
row holds a *lane*; there is one lane per prediction the account may have in flight,
and each lane holds one slot of the account's server-side concurrency limit for as long
as the run has work, so every flow run and worker sharing the account stays within the
API's in-flight limit together, with no idle gap between jobs. Submissions and status
calls also pass the in-process and server-side rate limiters (see
:mod:`fashn_prefect.scheduler.limits`).
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import httpx
from prefect import flow, get_run_logger, task
from prefect.artifacts import acreate_progress_artifact, aupdate_progress_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State, TaskRun
from prefect.runtime import flow_run
from prefect.tasks import Task

from fashn_prefect.api.client import PredictionStatus
from fashn_prefect.api.errors import (
    AmbiguousSubmission,
    APIError,
    ConfigurationError,
    NotFound,
    OutputUnavailable,
    PredictionFailed,
)
from fashn_prefect.credentials import FashnCredentials, resolve_credentials
from fashn_prefect.run.collect import (
    charged_credits,
    collect_outputs,
    credits_source,
    missing_outputs,
)
from fashn_prefect.run.errors import BudgetExceeded, ManifestInvalid
from fashn_prefect.run.events import account_of, prediction_failed
from fashn_prefect.run.manifest import Manifest, rows_manifest
from fashn_prefect.run.observe import current_observer
from fashn_prefect.run.outcome import budget_refused, judge_run, state_for
from fashn_prefect.run.plan import Job, Plan, launch_order, make_plan
from fashn_prefect.run.poll import seed_from_results, wait_for
from fashn_prefect.run.request import CheckedRows, RunRequest
from fashn_prefect.run.runtime import RunConfig, Runtime
from fashn_prefect.run.submit import prepare, save_quietly, submit
from fashn_prefect.run.validate import RowSpec, ValidationReport
from fashn_prefect.run.write import (
    interrupted_at,
    result_row,
    results_table,
    run_name,
    summarise,
    write_results,
)
from fashn_prefect.scheduler.account import account_scheduler
from fashn_prefect.scheduler.latency import latency_key
from fashn_prefect.scheduler.limits import ApiLimits, Lanes, Limiter, SharedLimits
from fashn_prefect.scheduler.polls import poll_scheduler
from fashn_prefect.scheduler.server import shared_limits_enabled
from fashn_prefect.settings import FashnSettings
from fashn_prefect.store.fs import bounded, is_storage_transport_error
from fashn_prefect.store.ledger import RowRecord, utc_now
from fashn_prefect.store.reports import RunReport, publish_summary, write_run_report


async def _is_transient(task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Retry only failures a new attempt can fix and that cannot charge a row twice."""
    exc = await state.aresult(raise_on_failure=False)
    if isinstance(exc, PredictionFailed):
        return exc.retryable
    if isinstance(exc, AmbiguousSubmission | OutputUnavailable):
        return False
    if isinstance(exc, APIError):
        return exc.retryable
    # Transport failures: the client raises these only when nothing was submitted, or while
    # polling; a retry resumes the recorded prediction instead of submitting a new one.
    # Storage failures (StorageTimeout is an OSError) leave the ledger safe to resume from.
    return isinstance(exc, httpx.TransportError | OSError) or is_storage_transport_error(exc)


def _lane(rt: Runtime) -> AbstractAsyncContextManager[None]:
    return rt.lanes.lane() if rt.lanes is not None else nullcontext()


ROW_TASKS_ENV = "FASHN_ROW_TASKS"


def two_row_tasks() -> bool:
    """True when ``FASHN_ROW_TASKS=two`` asks for the earlier layout: a predict and a
    collect task run per row (kept for comparison in ``benchmarks/raised_limits.py``)."""
    return os.environ.get(ROW_TASKS_ENV, "one").strip().lower() == "two"


@dataclass(frozen=True)
class RowTasks:
    """A run's row tasks; they close over the run object.

    ``row`` is the default, one task run per row. ``predict`` and ``collect`` are the
    earlier layout (``FASHN_ROW_TASKS=two``); ``two`` says which one :func:`run_row` uses.
    """

    row: Task[[int], Coroutine[Any, Any, list[str]]]
    predict: Task[[int], Coroutine[Any, Any, PredictionStatus]]
    collect: Task[[int, PredictionStatus], Coroutine[Any, Any, list[str]]]
    two: bool = False


def row_tasks(rt: Runtime) -> RowTasks:
    """The row tasks of run ``rt``: ``row(index)``, or ``predict(index)`` and
    ``collect(index, status)`` in the earlier two-task layout.

    They carry no tags. The lanes already hold the account tag's slots (a task carrying
    it would wait for a second slot of the same limit, a deadlock once the lanes hold
    them all), and Prefect asks the server for the concurrency limits of every tagged
    task run, which delayed the first submission by 2-3 s (benchmarks/throughput.py).
    """
    # Terminal statuses seen by this run, by row: a retry after a failed collect goes
    # straight back to collecting, without a lane, a status call or a new prediction.
    terminal: dict[int, PredictionStatus] = {}

    @task(name="fashn-row", cache_policy=NO_CACHE, persist_result=False)
    async def row(index: int) -> list[str]:
        """Submit (or resume) one row's prediction, wait for it, then store its outputs."""
        status = terminal.get(index)
        if status is None:
            status = terminal[index] = await _predict(rt, index, save_completion=False)
        return await _collect(rt, index, status)

    @task(name="fashn-predict", cache_policy=NO_CACHE, persist_result=False)
    async def predict(index: int) -> PredictionStatus:
        """Submit (or resume) one row's prediction and wait until it is terminal."""
        return await _predict(rt, index, save_completion=True)

    @task(name="fashn-collect", cache_policy=NO_CACHE, persist_result=False)
    async def collect(index: int, status: PredictionStatus) -> list[str]:
        """Download a completed prediction's outputs into storage."""
        return await _collect(rt, index, status)

    return RowTasks(row, predict, collect, two_row_tasks())


async def _predict(rt: Runtime, index: int, save_completion: bool) -> PredictionStatus:
    """Submit (or resume) row ``index``'s prediction and wait until it is terminal.

    Raises :class:`PredictionFailed` (recorded in the ledger) when it did not complete.
    ``save_completion`` also writes the completed attempt to the ledger; the one-task row
    leaves that to the write that records its outputs right after (a process that dies
    in between resumes the recorded prediction either way).
    """
    job = rt.jobs[index]
    record = job.record
    assert record is not None
    last = record.last
    known = last.prediction_id if last and last.status in ("submitted", "completed") else None
    inputs = None if known else await prepare(rt, job.spec)
    log = get_run_logger()
    # The lane (one of the account's in-flight slots) is held only from the POST until the
    # prediction is seen terminal: task start-up, input preparation, the ledger write and
    # the output downloads happen outside it, so the next row's prediction starts without
    # a gap.
    async with _lane(rt):
        prediction_id = known or await submit(rt, job.spec, record, inputs)
        log.info(
            "Row %s: %s prediction %s (%s)",
            job.spec.row_key,
            "resumed" if known else "submitted",
            prediction_id,
            job.spec.model_name,
        )
        attempt = record.last
        assert attempt is not None
        try:
            status = await wait_for(rt, job.spec, prediction_id, time.monotonic())
        except NotFound as exc:
            attempt.status = record.status = "ambiguous"
            attempt.error_name, attempt.error_message = "NotFound", exc.message
            await save_quietly(rt, record)
            raise AmbiguousSubmission(
                f"prediction {prediction_id} is no longer known to the API; its outcome "
                "cannot be recovered and it is not resubmitted automatically"
            ) from None
    attempt.status = "completed" if status.is_completed else "failed"
    attempt.completed_at = utc_now()
    attempt.credits_used, attempt.credits_source = charged_credits(job.spec, status)
    if not status.is_completed:
        error = status.error
        name = error.name if error else status.status
        message = error.message if error else f"prediction ended as {status.status}"
        attempt.error_name, attempt.error_message = name, message
        record.status = "failed"
        await save_quietly(rt, record)
        log.info(
            "Row %s: prediction %s failed: %s: %s", job.spec.row_key, prediction_id, name, message
        )
        raise PredictionFailed(name, message, prediction_id=prediction_id)
    if save_completion:
        await rt.save(record)
    log.info(
        "Row %s: prediction %s completed (%s credits)",
        job.spec.row_key,
        prediction_id,
        attempt.credits_used,
    )
    return status


async def _collect(rt: Runtime, index: int, status: PredictionStatus) -> list[str]:
    """Download a completed prediction's outputs into storage and record the row."""
    job = rt.jobs[index]
    uris = await collect_outputs(rt, job.spec, status)
    record = job.record
    assert record is not None and record.last is not None
    record.outputs = uris
    shortfall = missing_outputs(job.spec, status, len(uris))
    if shortfall is not None:
        # Charged, but short: what did arrive is kept; the row fails and is never resent
        # automatically (a second prediction would be charged again).
        attempt = record.last
        attempt.status = record.status = "failed"
        attempt.error_name, attempt.error_message = "OutputMissing", shortfall
        await rt.save(record)
        raise PredictionFailed("OutputMissing", shortfall, prediction_id=status.id, retryable=False)
    record.status = "completed"
    await rt.save(record)
    return uris


def task_run_name(spec: RowSpec) -> str:
    """``tryon SKU-1042``: the model (without its version) and the row key."""
    return f"{re.sub(r'-v[0-9.]+$', '', spec.model_name)} {spec.row_key}"


def _row_from_record(job: Job, status: str, **extra: Any) -> dict[str, Any]:
    record = job.record
    attempts = record.attempts if record else []
    # A charge an earlier results table already reports (a row reported again) is not
    # booked twice.
    charged = [
        a
        for a in attempts
        if a.prediction_id
        and (a.credits_used or 0) > 0
        and a.prediction_id not in job.reported_charges
    ]
    first = attempts[0] if attempts else None
    last = attempts[-1] if attempts else None
    values: dict[str, Any] = {
        "prediction_ids": [a.prediction_id for a in attempts if a.prediction_id],
        "attempts": len(attempts),
        # An attempt left at "submitting" (a process killed mid-POST) is just as unknown.
        "ambiguous": any(a.status in ("ambiguous", "submitting") for a in attempts),
        "credits_charged": sum(a.credits_used or 0 for a in charged),
        "credits_source": credits_source(attempts),
        "output_uris": record.outputs if record else [],
        "submitted_at": first.submitted_at if first else None,
        "completed_at": last.completed_at if last else None,
        "interrupted_at": interrupted_at(attempts),
    }
    values.update(extra)
    return result_row(job.spec, status, **values)


def _error_of(exc: BaseException) -> tuple[str, str]:
    name = getattr(exc, "name", None) or type(exc).__name__
    message = getattr(exc, "message", None) or str(exc)
    return str(name), str(message)


async def run_row(
    rt: Runtime,
    tasks: RowTasks,
    index: int,
    ahead: AbstractAsyncContextManager[Any] | None = None,
) -> dict[str, Any]:
    """The composed unit for one manifest row; always returns its result row.

    ``ahead`` bounds how many rows have a prediction task started (a few more than there
    are lanes, so the next task is ready when a lane frees up). The prediction holds one
    of the account's in-flight lanes; its outputs are collected after the lane is handed
    to the next row.
    """
    job = rt.jobs[index]
    if job.action == "skip":
        prev = job.previous or {}
        return result_row(
            job.spec,
            "skipped",
            prediction_ids=prev.get("prediction_ids") or [],
            output_uris=prev.get("output_uris") or [],
            completed_at=prev.get("completed_at"),
            # A row once charged for an ambiguous submission stays flagged in every re-run.
            ambiguous=bool(prev.get("ambiguous")),
        )
    if job.action == "ambiguous":
        return _row_from_record(
            job,
            "failed",
            error_name="AmbiguousSubmission",
            ambiguous=True,
            error_message=job.problem
            or "an earlier submission's outcome is unknown (it may have been "
            "charged); re-run with resubmit_ambiguous to submit it again",
        )
    if job.action == "recover":
        return _row_from_record(job, "completed")
    if job.action == "failed" and job.record is not None and job.record.last is not None:
        last = job.record.last
        return _row_from_record(
            job, "failed", error_name=last.error_name, error_message=last.error_message
        )
    if job.record is None:
        job.record = RowRecord(job.spec.row_key, job.spec.inputs_hash, job.spec.model_name)
    retries = rt.config.retries
    task_options: dict[str, Any] = {
        "task_run_name": task_run_name(job.spec),
        "retries": retries,
        "retry_delay_seconds": [rt.config.retry_delay * 2**i for i in range(retries)] or 0,
        "retry_condition_fn": _is_transient,
    }
    if tasks.two:
        return await _run_two_tasks(rt, tasks, index, ahead, task_options)
    try:
        async with ahead or nullcontext():
            runner = tasks.row.with_options(**task_options)
            state: State[list[str]] = await cast(
                Awaitable[State[list[str]]], runner(index, return_state=True)
            )
    finally:
        if rt.lanes is not None:
            rt.lanes.finished()
    if not state.is_completed():
        return await _failed_row(rt, job, state)
    return _row_from_record(job, "completed")


async def _failed_row(rt: Runtime, job: Job, state: State[Any]) -> dict[str, Any]:
    """The result row of a row task that did not complete, with its real error.

    A row whose prediction completed (and was charged) but whose outputs could not be
    stored is recorded as failed; a re-run resumes the recorded prediction and collects
    its outputs, never submitting it again.
    """
    exc = await state.aresult(raise_on_failure=False)
    name, message = _error_of(exc) if isinstance(exc, BaseException) else ("Failed", str(exc))
    record = job.record
    last = record.last if record is not None else None
    if record is not None and last is not None and last.status == record.status == "completed":
        record.status = "failed"
        await save_quietly(rt, record)
    return _row_from_record(job, "failed", error_name=name, error_message=message)


async def _run_two_tasks(
    rt: Runtime,
    tasks: RowTasks,
    index: int,
    ahead: AbstractAsyncContextManager[Any] | None,
    task_options: dict[str, Any],
) -> dict[str, Any]:
    """The earlier layout (``FASHN_ROW_TASKS=two``): a predict and a collect task run."""
    job = rt.jobs[index]
    try:
        async with ahead or nullcontext():
            predictor = tasks.predict.with_options(**task_options)
            state: State[PredictionStatus] = await cast(
                Awaitable[State[PredictionStatus]], predictor(index, return_state=True)
            )
    finally:
        if rt.lanes is not None:
            rt.lanes.finished()
    if not state.is_completed():
        return await _failed_row(rt, job, state)
    status = await state.aresult()
    collector = tasks.collect.with_options(
        task_run_name=f"collect {job.spec.row_key}",
        retries=3,
        retry_delay_seconds=[d * rt.config.time_scale for d in (1.0, 2.0, 4.0)],
        retry_condition_fn=_is_transient,
    )
    collected: State[list[str]] = await cast(
        Awaitable[State[list[str]]], collector(index, status, return_state=True)
    )
    if not collected.is_completed():
        return await _failed_row(rt, job, collected)
    return _row_from_record(job, "completed")


def _invalid_rows(report: ValidationReport, manifest: Manifest) -> list[dict[str, Any]]:
    """Result rows for invalid manifest rows: their own row id, model and columns as given."""
    from fashn_prefect.run.validate import RESERVED_COLUMNS, RowSpec

    file_problems = [str(p) for p in report.errors if p.row is None]
    rows = []
    for row, problems in sorted(report.invalid_rows.items()):
        raw = manifest.rows[row - 1] if 0 < row <= len(manifest.rows) else {}
        given_id = raw.get("row_id")
        key = str(given_id).strip() if given_id not in (None, "") else f"invalid-row-{row}"
        model = raw.get("model_name")
        metadata = {k: v for k, v in raw.items() if k not in RESERVED_COLUMNS and v is not None}
        spec = RowSpec(row, key, "" if model is None else str(model), {}, metadata, "", 0)
        message = "; ".join([str(p) for p in problems if p.level == "error"] + file_problems)
        rows.append(result_row(spec, "invalid", error_name="InvalidRow", error_message=message))
    return rows


@flow(name="fashn-run-manifest")
async def run_manifest(
    manifest: str,
    output: str,
    model_name: str | None = None,
    credentials: FashnCredentials | str | None = None,
    budget: int | None = None,
    dry_run: bool = False,
    settings: FashnSettings | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Run every row of a manifest through the FASHN API and store images and results.

    ``settings`` holds the limits, retries, timeouts, time scale, storage options and
    behaviour flags (:class:`~fashn_prefect.settings.FashnSettings`); any of its fields
    may also be passed by name (``time_scale=0.1``), overriding ``settings``. ``budget``
    refuses to start a run estimated above that many credits; ``dry_run`` validates and
    estimates only. A row that failed with a permanent error for the same inputs in an
    earlier run is reported again, not resubmitted, unless ``retry_failed`` is set. A
    model the catalogue does not know runs as a pass-through (inputs sent as given, credits
    unknown until the API reports them; the plan warns) unless ``allow_unknown_models`` is
    off, which makes such rows invalid.

    The flow run ends Failed (after writing everything) when more rows failed than
    ``allowed_failures`` allows: a row count (``"5"``) or a percentage (``"2%"``); the
    default ``"0"`` fails it on any failed or invalid row. Its state message carries the
    counts; ``fashn.run.finished`` and ``fashn.prediction.failed`` events report them.
    Awaiting a Failed run raises :class:`~fashn_prefect.run.outcome.RunFailed`, whose
    ``summary`` is the run's summary (:func:`~fashn_prefect.run.outcome.summary_of`).
    ``storage_block`` names a :class:`~fashn_prefect.store.blocks.StorageOptions` block
    whose secret options ``storage_options`` is merged over.
    """
    started = datetime.now(UTC)
    s = FashnSettings.build(settings, **options)
    request = RunRequest(output, model_name, credentials, budget, dry_run, s)
    return await run_rows(request.read(manifest), request, started)


@flow(name="fashn-run-predictions")
async def run_predictions(
    rows: Any,
    output: str,
    model_name: str | None = None,
    credentials: FashnCredentials | str | None = None,
    budget: int | None = None,
    dry_run: bool = False,
    settings: FashnSettings | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Run rows held in memory (a pandas DataFrame, a pyarrow Table or a list of dicts)
    exactly as :func:`run_manifest` runs a manifest file: the same validation, plan,
    lanes, ledger, results table, gallery and final state under ``output``. Rows given
    as :class:`~fashn_prefect.run.request.CheckedRows` are not validated again."""
    started = datetime.now(UTC)
    s = FashnSettings.build(settings, **options)
    request = RunRequest(output, model_name, credentials, budget, dry_run, s)
    checked = rows if isinstance(rows, CheckedRows) else rows_manifest(rows)
    return await run_rows(checked, request, started)


async def run_rows(
    source: Manifest | CheckedRows, request: RunRequest, started: datetime
) -> dict[str, Any]:
    """The stages after reading: validate (unless ``source`` is already checked), plan,
    execute, write, judge. Runs inside a flow started at ``started``.

    Returns the summary for a dry run, else the flow's final state (Completed with the
    summary, or Failed when more rows failed than ``allowed_failures`` allows).
    """
    log = get_run_logger()
    output, budget, s = request.output, request.budget, request.settings
    options = request.storage_options
    threshold = s.failure_threshold
    checked = source if isinstance(source, CheckedRows) else request.check(source)
    decoded, report = checked.manifest, checked.report
    if not report.ok and not s.skip_invalid:
        log.error("Manifest has invalid rows; nothing was submitted.\n%s", report.format(50))
        raise ManifestInvalid(report)
    plan = await bounded(
        _bulk_timeout(s.storage_timeout, len(report.rows)),
        "reading earlier results and the ledger",
        lambda: make_plan(
            report.rows,
            output,
            resubmit_ambiguous=s.resubmit_ambiguous,
            retry_failed=s.retry_failed,
            storage_options=options,
        ),
    )
    summary = _plan_summary(report, plan)
    log.info("Plan: %s", summary)
    for job in plan.jobs:
        if job.problem:
            log.warning("Row %r: %s", job.spec.row_key, job.problem)
    if summary["unknown_models"]:
        log.warning(
            "Models the catalogue does not know run as a pass-through (inputs sent as given, "
            "generic checks only, credits unknown until the API reports them, not counted "
            "in estimated_credits or the budget): %s. Describe them as data "
            "(FASHN_PREFECT_MODELS) for full checks, or pass allow_unknown_models=False "
            "to forbid them.",
            ", ".join(
                f"{name} ({count} rows)" for name, count in summary["unknown_models"].items()
            ),
        )
    if budget is not None and plan.estimated_credits > budget:
        message = (
            f"estimated {plan.estimated_credits} credits exceeds the budget of {budget}; "
            "nothing was submitted"
        )
        budget_refused(
            message,
            budget,
            plan.estimated_credits,
            len(plan.by_action("submit", "resume")),
            account_of(request.credentials),
        )
        raise BudgetExceeded(message)
    if request.dry_run:
        return {**summary, **await _dry_run_balance(request.credentials, plan.estimated_credits)}

    creds = resolve_credentials(request.credentials)
    limits = s.limits.scaled(s.time_scale)
    use_shared = shared_limits_enabled(s.shared_limits)
    lanes_design = use_shared and s.shared_limits_design == "lanes"
    # 'leases': the account scheduler takes a server slot per call and per prediction;
    # 'lanes' (the earlier design, kept for comparison): run-long lanes hold the slots.
    shared = SharedLimits(creds.account_id, limits, enabled=lanes_design)
    in_flight = await shared.ensure()
    needs_lane = len(plan.by_action("submit", "resume"))
    async with creds.get_client(
        **_client_options(s.client_timeout, s.time_scale, limits)
    ) as client:
        balance_before = await client.credits() if s.check_balance else None
        if balance_before is not None and plan.estimated_credits > balance_before.total:
            message = (
                f"estimated {plan.estimated_credits} credits exceeds the account balance of "
                f"{balance_before.total}; nothing was submitted"
            )
            budget_refused(
                message, balance_before.total, plan.estimated_credits, needs_lane, creds.account_id
            )
            raise BudgetExceeded(message)
        config = RunConfig(
            output,
            s.time_scale,
            s.retries,
            s.retry_delay * s.time_scale,
            options,
            s.storage_timeout,
        )
        account = account_scheduler(
            creds.account_id, limits, shared=use_shared and not lanes_design
        )
        limiter = Limiter(limits, shared, account)
        rt = Runtime(config, client, limiter, flow_run.id, current_observer())
        rt.jobs = plan.jobs
        lanes = Lanes(
            min(in_flight, max(needs_lane, 1)),
            shared,
            rows=needs_lane,
            on_change=lambda held: rt.limiter.share(held, in_flight),
            cooldown=rt.limiter.quiet_in,
            account=account,
        )
        rt.lanes = lanes
        name = run_name(started, flow_run.id)
        rows = await _run_jobs(
            rt, plan, lanes, lambda row: prediction_failed(row, name, creds.account_id)
        )
        balance_after = await client.credits() if s.check_balance else None
    rows += _invalid_rows(report, decoded)
    rows.sort(key=lambda r: r["row"])
    table = results_table(rows, flow_run.id, started)
    written = await bounded(
        _bulk_timeout(s.storage_timeout, len(rows)),
        "writing the results table",
        lambda: write_results(table, output, name, csv=s.write_csv, storage_options=options),
    )
    gallery = await _write_gallery(
        table, output, name, options, _bulk_timeout(s.storage_timeout, len(rows))
    )
    elapsed = (datetime.now(UTC) - started).total_seconds()
    totals = summarise(rows)
    run_report = RunReport(
        run_name=name,
        flow_run_id=flow_run.id,
        started_at=started.isoformat(),
        finished_at=datetime.now(UTC).isoformat(),
        elapsed_s=elapsed,
        totals=totals,
        submitted=rt.stats.submitted,
        status_calls=rt.stats.status_calls,
        results=written.parquet,
        results_csv=written.csv,
        images=rt.uri(rt.images_root),
        balance_before=balance_before.total if balance_before else None,
        balance_after=balance_after.total if balance_after else None,
        limits={"max_in_flight": in_flight, "run": s.run_limit, "status": s.status_limit},
        gallery=gallery,
    )
    await bounded(
        s.storage_timeout, "writing the run report", write_run_report, run_report, output, options
    )
    await publish_summary(run_report)
    summary = judge_run(run_report.as_dict(), threshold, creds.account_id)
    # Prefect makes a returned state the flow run's final state; a caller awaiting the flow
    # gets the summary back (from a Failed run through fashn_prefect.run.outcome.summary_of).
    return cast(dict[str, Any], state_for(summary))


async def _run_jobs(
    rt: Runtime,
    plan: Plan,
    lanes: Lanes,
    on_failed: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    total = len(plan.jobs)
    rt.stats.total = total
    progress_id = await acreate_progress_artifact(
        0.0, key="fashn-run-progress", description="Rows finished"
    )
    step = max(1, total // 50)
    ahead = asyncio.Semaphore(4 * lanes.count)
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

    tasks = row_tasks(rt)
    polls = poll_scheduler(rt.limiter.account or rt.limiter)
    await seed_from_results(rt, polls)

    def expected(spec: RowSpec) -> float:
        return polls.book.total(latency_key(spec.model_name, spec.inputs)).quantile(0.5)

    async def one(index: int) -> dict[str, Any]:
        row = await run_row(rt, tasks, index, ahead)
        if on_failed is not None and row["status"] == "failed":
            on_failed(row)
        rt.stats.done += 1
        if rt.observer is not None:
            rt.observer.progress(rt.stats.done, total)
        if rt.stats.done % step == 0:
            await report_progress()
        return row

    async with lanes:
        rows = list(await asyncio.gather(*(one(i) for i in launch_order(plan, expected))))
    await report_progress()
    return rows


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


def _client_options(timeout: float | None, time_scale: float, limits: ApiLimits) -> dict[str, Any]:
    """FashnClient options: the request timeout, and retry back-off on the run's time scale.

    ``limits`` are already scaled; a 429 without ``Retry-After`` waits out their windows.
    """
    options: dict[str, Any] = {
        "backoff_base": 0.5 * time_scale,
        "backoff_max": 8.0 * time_scale,
        "limit_windows": {
            "run": limits.run.seconds,
            "status": limits.status.seconds,
            "credits": 10.0 * time_scale,
        },
    }
    if timeout is not None:
        options["timeout"] = httpx.Timeout(timeout, connect=min(timeout, 5.0))
    return options


def _plan_summary(report: ValidationReport, plan: Plan) -> dict[str, Any]:
    return {
        "rows": report.total_rows,
        "valid": len(report.rows),
        "invalid": len(report.invalid_rows),
        "to_submit": len(plan.by_action("submit")),
        "to_resume": len(plan.by_action("resume")),
        "recovered": len(plan.by_action("recover")),
        "already_completed": len(plan.by_action("skip")),
        "ambiguous": len(plan.by_action("ambiguous")),
        "failed_before": len(plan.by_action("failed")),
        "estimated_credits": plan.estimated_credits,
        "unknown_models": dict(
            Counter(j.spec.model_name for j in plan.jobs if not j.spec.catalogued)
        ),
    }
