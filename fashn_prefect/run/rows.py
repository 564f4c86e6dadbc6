"""One row's life, the one engine every prediction runs through: submit (or resume), wait,
store the outputs, record each step.

The manifest flows run each row as one Prefect task (:func:`row_task`), and the composable
tasks (:mod:`fashn_prefect.tasks`) call :func:`predict` and :func:`collect` directly, so
both get the same guarantees: the account's scheduler (in-flight slots and both rate
windows, shared with other processes when shared limits are on), learned polling, the
storage block, the client's limit windows, a submission recorded before it is polled, and
an ambiguous submission never resent.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Coroutine
from typing import Any, cast

import httpx
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State, TaskRun
from prefect.tasks import Task

from fashn_prefect.api.responses import PredictionStatus
from fashn_prefect.errors import (
    AmbiguousSubmission,
    APIError,
    NotFound,
    OutputUnavailable,
    PredictionFailed,
)
from fashn_prefect.run.collect import charged_credits, collect_outputs, missing_outputs
from fashn_prefect.run.plan import PlannedRow
from fashn_prefect.run.poll import Seen, wait_for
from fashn_prefect.run.result_rows import failed_row, row_from_record, settled_row
from fashn_prefect.run.runtime import Runtime
from fashn_prefect.run.submit import prepare, save_quietly, submit
from fashn_prefect.run.validate import RowSpec
from fashn_prefect.store.fs import is_storage_transport_error
from fashn_prefect.store.records import RowRecord, utc_now

__all__ = ["collect", "is_transient", "predict", "row_task", "run_row", "task_run_name"]

RowTask = Task[[int], Coroutine[Any, Any, list[str]]]


async def is_transient(task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> bool:
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


async def predict(rt: Runtime, row: PlannedRow) -> PredictionStatus:
    """Submit (or resume) ``row``'s prediction and wait until it is terminal.

    The submission is written to the ledger before the ``POST`` and its id right after,
    so a prediction is always recorded before it is polled. Raises
    :class:`~fashn_prefect.errors.PredictionFailed` (recorded in the ledger) when it did
    not complete. The completed attempt is written by :func:`collect`, together with its
    outputs (a process that dies in between resumes the recorded prediction).
    """
    spec = row.spec
    if row.record is None:
        row.record = RowRecord(spec.row_key, spec.inputs_hash, spec.model_name)
    record = row.record
    last = record.last
    known = last.prediction_id if last and last.status in ("submitted", "completed") else None
    inputs = None if known else await prepare(rt, spec)
    log = get_run_logger()
    # The account's in-flight slot is held only from the POST until the prediction is seen
    # terminal: task start-up, input preparation, the ledger write and the output downloads
    # happen outside it, so the next row's prediction starts without a gap.
    async with rt.account.slot():
        prediction_id = known or await submit(rt, spec, record, inputs)
        log.info(
            "Row %s: %s prediction %s (%s)",
            spec.row_key or "-",
            "resumed" if known else "submitted",
            prediction_id,
            spec.model_name,
        )
        attempt = record.last
        assert attempt is not None
        try:
            seen = await wait_for(rt, spec, prediction_id, time.monotonic(), webhook=not known)
        except NotFound as exc:
            attempt.status = record.status = "ambiguous"
            attempt.error_name, attempt.error_message = "NotFound", exc.message
            await save_quietly(rt, record)
            raise AmbiguousSubmission(
                f"prediction {prediction_id} is no longer known to the API; its outcome "
                "cannot be recovered and it is not resubmitted automatically"
            ) from None
    status = seen.status
    attempt.completion_seen_by, attempt.detection_delay_s = seen.by, round(seen.delay, 3)
    attempt.status = "completed" if status.is_completed else "failed"
    attempt.completed_at = utc_now()
    attempt.credits_used, attempt.credits_source = charged_credits(spec, status)
    if not status.is_completed:
        error = status.error
        name = error.name if error else status.status
        message = error.message if error else f"prediction ended as {status.status}"
        attempt.error_name, attempt.error_message = name, message
        record.status = "failed"
        await save_quietly(rt, record)
        log.info(
            "Row %s: prediction %s failed: %s: %s (%s)",
            spec.row_key,
            prediction_id,
            name,
            message,
            _seen_note(seen),
        )
        raise PredictionFailed(name, message, prediction_id=prediction_id)
    log.info(
        "Row %s: prediction %s completed (%s credits; %s)",
        spec.row_key or "-",
        prediction_id,
        attempt.credits_used,
        _seen_note(seen),
    )
    return status


def _seen_note(seen: Seen) -> str:
    """``seen by webhook 0.012 s after its end`` for the row's log line (a poll's delay is
    an estimate)."""
    about = "" if seen.by == "webhook" else "about "
    return f"seen by {seen.by} {about}{seen.delay:.3f} s after its end"


async def collect(rt: Runtime, row: PlannedRow, status: PredictionStatus) -> list[str]:
    """Store a completed prediction's outputs (at once: they expire) and record the row.

    Raises :class:`~fashn_prefect.errors.PredictionFailed` (``OutputMissing``, never
    retried) when the prediction returned fewer outputs than were paid for; what did
    arrive is kept.
    """
    uris = await collect_outputs(rt, row.spec, status)
    record = row.record
    assert record is not None and record.last is not None
    record.outputs = uris
    shortfall = missing_outputs(row.spec, status, len(uris))
    if shortfall is not None:
        # Charged, but short: the row fails and is never resent automatically (a second
        # prediction would be charged again).
        attempt = record.last
        attempt.status = record.status = "failed"
        attempt.error_name, attempt.error_message = "OutputMissing", shortfall
        await rt.save(record)
        raise PredictionFailed("OutputMissing", shortfall, prediction_id=status.id, retryable=False)
    record.status = "completed"
    await rt.save(record)
    return uris


def row_task(rt: Runtime) -> RowTask:
    """The row task of run ``rt``: ``row(index)`` submits (or resumes) the row's prediction,
    waits for it and stores its outputs, as one Prefect task run.

    It carries no tags: the account scheduler holds the limits, and Prefect asks the server
    for the concurrency limits of every tagged task run, which delayed the first
    submission by 2-3 s (benchmarks/throughput.py).
    """
    # Terminal statuses seen by this run, by row: a retry after a failed collect goes
    # straight back to collecting, without a slot, a status call or a new prediction.
    terminal: dict[int, PredictionStatus] = {}

    @task(name="fashn-row", cache_policy=NO_CACHE, persist_result=False)
    async def row(index: int) -> list[str]:
        """Submit (or resume) one row's prediction, wait for it, then store its outputs."""
        planned = rt.rows[index]
        status = terminal.get(index)
        if status is None:
            status = terminal[index] = await predict(rt, planned)
        return await collect(rt, planned, status)

    return row


def task_run_name(spec: RowSpec) -> str:
    """``tryon SKU-1042``: the model (without its version) and the row key."""
    return f"{re.sub(r'-v[0-9.]+$', '', spec.model_name)} {spec.row_key}"


async def run_row(rt: Runtime, task: RowTask, index: int) -> dict[str, Any]:
    """The composed unit for one manifest row; always returns its result row (the caller,
    :func:`~fashn_prefect.run.stages.execute`, bounds how many run at once)."""
    row = rt.rows[index]
    settled = settled_row(row)
    if settled is not None:
        return settled
    retries = rt.config.retries
    runner = task.with_options(
        task_run_name=task_run_name(row.spec),
        retries=retries,
        retry_delay_seconds=[rt.config.retry_delay * 2**i for i in range(retries)] or 0,
        retry_condition_fn=is_transient,
    )
    state = await cast(Awaitable[State[list[str]]], runner(index, return_state=True))
    if not state.is_completed():
        return await failed_row(rt, row, state)
    return row_from_record(row, "completed")
