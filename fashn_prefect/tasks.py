"""Prefect tasks to compose in your own flows.

They are async tasks: ``await run_prediction(...)``, ``run_prediction.submit(...)`` and
``run_prediction.map(...)`` all work. Each runs through the same row engine as the manifest
flows (:mod:`fashn_prefect.run.rows`): the inputs are checked as a manifest row's are,
every call goes through this process's
:class:`~fashn_prefect.scheduler.account.AccountScheduler` for the account (shared with the
flows, and with other processes when shared limits are on), polls follow the learned
latency, outputs are stored at once with the settings' storage options (its
``storage_block`` included), and a submission whose fate is unknown is reported, never
resent. Mapping a task over 500 inputs keeps at most the account's in-flight limit of
predictions running and stays inside both rate windows: no 429s.

    from prefect import flow
    from fashn_prefect.tasks import run_prediction

    @flow
    async def dress_models(garments: list[str]) -> list[str]:
        results = run_prediction.map(
            "tryon-v1.6",
            [{"model_image": MODEL, "garment_image": g} for g in garments],
            output="s3://bucket/tryons",
        )
        return [r.output_uris[0] for r in results.result() if r.status == "completed"]
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field

from fashn_prefect.api.responses import PredictionStatus
from fashn_prefect.credentials import FashnCredentials, resolve_credentials
from fashn_prefect.errors import (
    AmbiguousSubmission,
    APIError,
    ConfigurationError,
    InvalidInputs,
    PredictionFailed,
)
from fashn_prefect.run.plan import PlannedRow
from fashn_prefect.run.poll import wait_for
from fashn_prefect.run.rows import collect, predict
from fashn_prefect.run.runtime import Runtime, open_runtime
from fashn_prefect.run.submit import prepare, submit
from fashn_prefect.run.validate import RowSpec, validate_inputs
from fashn_prefect.scheduler.latency import latency_key
from fashn_prefect.settings import FashnSettings
from fashn_prefect.store.records import RowRecord

__all__ = [
    "PredictionResult",
    "run_prediction",
    "submit_prediction",
    "wait_for_prediction",
]


class PredictionResult(BaseModel):
    """What became of one prediction: its id, status, stored outputs, credits and error."""

    model_name: str
    prediction_id: str | None = None
    status: str
    output_uris: list[str] = Field(default_factory=list)
    credits_charged: int = 0
    error_name: str | None = None
    error_message: str | None = None


@asynccontextmanager
async def _runtime(
    credentials: FashnCredentials | str | None,
    s: FashnSettings,
    output: str | None = None,
) -> AsyncIterator[Runtime]:
    """The row engine's runtime for one task call: the account's scheduler, a client with
    the run's limit windows, and the storage options with the storage block's merged in."""
    creds = resolve_credentials(credentials)
    async with open_runtime(creds, s, output, s.resolved_storage_options()) as rt:
        yield rt


def _planned(
    rt: Runtime, model_name: str, inputs: dict[str, Any], allow_unknown: bool
) -> PlannedRow:
    """One prediction as a planned row, its inputs checked; raises :class:`InvalidInputs`."""
    spec, problems = validate_inputs(
        model_name,
        inputs,
        storage_options=rt.config.storage_options,
        allow_unknown_models=allow_unknown,
    )
    if spec is None:
        raise InvalidInputs(model_name, problems)
    return PlannedRow(spec, "submit", RowRecord("", spec.inputs_hash, spec.model_name))


def _deadline(model_name: str | None, rt: Runtime) -> float:
    """How long a submitted prediction may hold its slot before nobody looked (scaled)."""
    high = latency_key(model_name or "", {})[2]
    return max(high * 10.0, 900.0) * rt.config.time_scale


@task(name="fashn-submit-prediction", retries=0, cache_policy=NO_CACHE, persist_result=False)
async def submit_prediction(
    model_name: str,
    inputs: dict[str, Any],
    credentials: FashnCredentials | str | None = None,
    settings: FashnSettings | None = None,
) -> str:
    """Submit one prediction (``POST /v1/run``) and return its id.

    Never retried: a second attempt could be charged twice. The inputs are checked first
    (:class:`~fashn_prefect.errors.InvalidInputs` names every problem; nothing is sent).
    The prediction holds one of the account's in-flight slots until
    :func:`wait_for_prediction` sees it finish (or its lease, the longest the model may
    take, runs out). Local image paths in ``inputs`` are read and sent as data URIs.
    """
    s = FashnSettings.build(settings)
    async with _runtime(credentials, s) as rt:
        row = _planned(rt, model_name, inputs, s.allow_unknown_models)
        prepared = await prepare(rt, row.spec)
        held = await rt.account.acquire_slot()
        try:
            assert row.record is not None
            # No webhook: the receiver may be gone before wait_for_prediction runs.
            prediction_id = await submit(rt, row.spec, row.record, prepared, webhook=False)
        except BaseException:
            rt.account.release_slot(held)
            raise
        rt.account.lease(prediction_id, _deadline(model_name, rt), held)
        return prediction_id


@task(name="fashn-wait-for-prediction", cache_policy=NO_CACHE, persist_result=False)
async def wait_for_prediction(
    prediction_id: str,
    credentials: FashnCredentials | str | None = None,
    settings: FashnSettings | None = None,
    model_name: str | None = None,
) -> PredictionStatus:
    """Poll a prediction until it completes or fails, within the account's status rate.

    ``model_name`` (optional) paces the polls by the latency learned for the model. Safe
    to retry: polling never submits anything.
    """
    async with _runtime(credentials, FashnSettings.build(settings)) as rt:
        spec = RowSpec(0, "", model_name or "", {}, {}, "", 0)
        try:
            return (await wait_for(rt, spec, prediction_id, time.monotonic())).status
        finally:
            rt.account.release_prediction(prediction_id)


@task(
    name="fashn-run-prediction",
    task_run_name="{model_name}",
    retries=0,
    cache_policy=NO_CACHE,
    persist_result=False,
)
async def run_prediction(
    model_name: str,
    inputs: dict[str, Any],
    credentials: FashnCredentials | str | None = None,
    output: str | None = None,
    settings: FashnSettings | None = None,
) -> PredictionResult:
    """Submit a prediction, wait for it and store its outputs under ``{output}/images/``.

    Returns a :class:`PredictionResult`; invalid inputs, a rejected or a failed prediction
    are a result with ``status="failed"`` and the error's name and message, not an
    exception, so one bad input never fails a whole ``.map``. Without ``output`` the
    result lists the API's own output references (CDN URLs expire after 72 h, base64
    after 60 minutes). A submission whose fate is unknown is reported
    (``AmbiguousSubmission``), never resent.
    """
    result = PredictionResult(model_name=model_name, status="failed")
    s = FashnSettings.build(settings)
    async with _runtime(credentials, s, output) as rt:
        row: PlannedRow | None = None
        try:
            row = _planned(rt, model_name, inputs, s.allow_unknown_models)
            status = await predict(rt, row)
            result.prediction_id = status.id
            result.credits_charged = status.credits_used or 0
            result.output_uris = await collect(rt, row, status)
        except ConfigurationError:
            raise
        except (InvalidInputs, AmbiguousSubmission, APIError, PredictionFailed) as exc:
            result.error_name, result.error_message = exc.name, exc.message
        except Exception as exc:
            result.error_name, result.error_message = type(exc).__name__, str(exc)
        else:
            result.status = "completed"
        if row is not None and row.record is not None and row.record.last is not None:
            attempt = row.record.last
            result.prediction_id = attempt.prediction_id
            result.credits_charged = attempt.credits_used or 0
            if attempt.status == "completed" or row.record.outputs:
                result.output_uris = list(row.record.outputs)
    return result
