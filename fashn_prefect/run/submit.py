"""Submit a row's prediction, writing it down before and after the ``POST /v1/run``."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx

from fashn_prefect.errors import AmbiguousSubmission, APIError, InputPreparationError
from fashn_prefect.run.inputs import prepare_inputs
from fashn_prefect.run.runtime import Runtime
from fashn_prefect.run.validate import RowSpec
from fashn_prefect.store.records import Attempt, RowRecord, utc_now

logger = logging.getLogger(__name__)


async def prepare(rt: Runtime, spec: RowSpec) -> dict[str, Any]:
    """The request inputs for ``spec`` (local images read and encoded); nothing is sent."""
    try:
        return await asyncio.to_thread(
            prepare_inputs, spec.model_name, spec.inputs, rt.config.storage_options
        )
    except Exception as exc:
        raise InputPreparationError(f"{type(exc).__name__}: {exc}") from None


async def submit(
    rt: Runtime,
    spec: RowSpec,
    record: RowRecord,
    inputs: dict[str, Any] | None = None,
    webhook: bool = True,
) -> str:
    """Create a new prediction for ``spec`` and return its id.

    ``inputs`` are the prepared request inputs (see :func:`prepare`; prepared here when
    not given). With ``webhook`` and a webhook receiver in ``rt``, FASHN is asked to call
    it when the prediction ends. The ledger records the intent before the request and the id right after
    it, so a process killed at any point can never lead to a silent second submission.
    """
    if inputs is None:
        inputs = await prepare(rt, spec)
    attempt = Attempt(number=len(record.attempts) + 1)
    # The rate slot is taken before the intent is written, so a limiter failure leaves no
    # trace. Any exception other than those handled below (cancellation, a crash
    # mid-request) leaves the ledger at "submitting": the fate is unknown, so a re-run
    # reports the row as ambiguous instead of sending it again.
    try:
        async with rt.account.run_call():
            attempt.submitted_at = utc_now()
            previous_status = record.status
            record.attempts.append(attempt)
            record.status = "submitting"
            try:
                await rt.save(record)
            except BaseException:
                # No recorded intent, no request: the attempt never happened. (A timed-out
                # write may still land later; it then reads as ambiguous, never resent.)
                record.attempts.remove(attempt)
                record.status = previous_status
                raise
            if rt.observer is not None:
                rt.observer.post_started()
            if rt.webhook is None or not webhook:
                prediction_id = await rt.client.run(spec.model_name, inputs)
            else:
                prediction_id = await rt.client.run(
                    spec.model_name, inputs, webhook_url=rt.webhook.url
                )
    except AmbiguousSubmission as exc:
        attempt.status = record.status = "ambiguous"
        attempt.error_name, attempt.error_message = "AmbiguousSubmission", exc.message
        await save_quietly(rt, record)
        raise
    except APIError as exc:
        attempt.status, record.status = "rejected", "failed"
        attempt.error_name, attempt.error_message = exc.name, exc.message
        await save_quietly(rt, record)
        raise
    except httpx.TransportError as exc:
        # The client raises transport errors from run() only when the request never left
        # (connect failures); anything after sending becomes AmbiguousSubmission.
        attempt.status, record.status = "rejected", "failed"
        attempt.error_name, attempt.error_message = type(exc).__name__, str(exc)
        await save_quietly(rt, record)
        raise
    attempt.prediction_id = prediction_id
    attempt.status = record.status = "submitted"
    rt.stats.submitted += 1
    # If this write fails, the in-memory record keeps the id, so a task retry resumes
    # polling it; the ledger on storage still says "submitting", which a later run
    # reports as ambiguous. Either way the row is never submitted twice.
    await rt.save(record)
    return prediction_id


async def save_quietly(rt: Runtime, record: RowRecord) -> None:
    """Save ``record`` on an error path, so a storage failure never hides the first error.

    The ledger on storage then keeps an earlier state, which is always safe to resume
    from: ``submitting`` reads as ambiguous, ``submitted`` resumes polling.
    """
    try:
        await rt.save(record)
    except Exception as exc:
        logger.warning(
            "Could not update the ledger for row %r: %s: %s",
            record.row_key,
            type(exc).__name__,
            exc,
        )
