"""Prefect tasks to compose in your own flows.

They are async tasks: ``await run_prediction(...)``, ``run_prediction.submit(...)`` and
``run_prediction.map(...)`` all work. Every call goes through this process's
:class:`~fashn_prefect.scheduler.account.AccountScheduler` for the account (the same
one the manifest flows use), so mapping a task over 500 inputs keeps at most the
account's in-flight limit of predictions running and stays inside both rate windows:
no 429s.

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

import asyncio
import time
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field

from fashn_prefect.api import models
from fashn_prefect.api.client import FashnClient, PredictionStatus
from fashn_prefect.api.errors import AmbiguousSubmission, APIError, ConfigurationError
from fashn_prefect.credentials import FashnCredentials, resolve_credentials
from fashn_prefect.run.inputs import prepare_inputs
from fashn_prefect.run.poll import poll_schedule
from fashn_prefect.scheduler.account import AccountScheduler, account_scheduler
from fashn_prefect.scheduler.server import shared_limits_enabled
from fashn_prefect.settings import FashnSettings
from fashn_prefect.store.fs import atomic_write, filesystem, join, safe_name

__all__ = ["PredictionResult", "run_prediction", "submit_prediction", "wait_for_prediction"]

IMAGES_DIR = "images"


class PredictionResult(BaseModel):
    """What became of one prediction: its id, status, stored outputs, credits and error."""

    model_name: str
    prediction_id: str | None = None
    status: str
    output_uris: list[str] = Field(default_factory=list)
    credits_charged: int = 0
    error_name: str | None = None
    error_message: str | None = None


class _Account:
    """Credentials, settings and the account's scheduler for one task call."""

    def __init__(
        self, credentials: FashnCredentials | str | None, settings: FashnSettings | None
    ) -> None:
        self.credentials = resolve_credentials(credentials)
        self.settings = FashnSettings.build(settings)
        limits = self.settings.limits.scaled(self.settings.time_scale)
        self.scheduler: AccountScheduler = account_scheduler(
            self.credentials.account_id,
            limits,
            shared=shared_limits_enabled(self.settings.shared_limits),
        )

    def client(self) -> FashnClient:
        scale = self.settings.time_scale
        options: dict[str, Any] = {"backoff_base": 0.5 * scale, "backoff_max": 8.0 * scale}
        if self.settings.client_timeout is not None:
            import httpx

            timeout = self.settings.client_timeout
            options["timeout"] = httpx.Timeout(timeout, connect=min(timeout, 5.0))
        return self.credentials.get_client(**options)

    def deadline_seconds(self, model_name: str | None, inputs: dict[str, Any] | None) -> float:
        """How long a prediction may take before waiting for it gives up (scaled)."""
        high = _latency(model_name, inputs)[1]
        return max(high * 10.0, 900.0) * self.settings.time_scale


def _latency(model_name: str | None, inputs: dict[str, Any] | None) -> tuple[float, float]:
    try:
        return models.expected_latency(model_name or "", inputs or {})
    except (ValueError, KeyError):
        return 1.0, 60.0


async def _submit(account: _Account, client: FashnClient, model_name: str, inputs: Any) -> str:
    prepared = await asyncio.to_thread(
        prepare_inputs, model_name, dict(inputs), account.settings.storage_options
    )
    async with account.scheduler.run_call():
        return await client.run(model_name, prepared)


async def _wait(
    account: _Account,
    client: FashnClient,
    prediction_id: str,
    model_name: str | None = None,
    inputs: dict[str, Any] | None = None,
) -> PredictionStatus:
    scale = account.settings.time_scale
    low, high = _latency(model_name, inputs)
    first, interval = poll_schedule(low, high)
    started = time.monotonic()
    deadline = started + account.deadline_seconds(model_name, inputs)
    await asyncio.sleep(first * scale)
    while True:
        async with account.scheduler.status_call():
            status = await client.status(prediction_id)
        if status.is_terminal:
            return status
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"prediction {prediction_id} still {status.status} after "
                f"{(time.monotonic() - started) / scale:.0f} s"
            )
        elapsed = (time.monotonic() - started) / scale
        step = interval if elapsed < high else min(interval * (1 + (elapsed - high) / high), 30.0)
        await asyncio.sleep(step * scale)


@task(name="fashn-submit-prediction", retries=0, cache_policy=NO_CACHE, persist_result=False)
async def submit_prediction(
    model_name: str,
    inputs: dict[str, Any],
    credentials: FashnCredentials | str | None = None,
    settings: FashnSettings | None = None,
) -> str:
    """Submit one prediction (``POST /v1/run``) and return its id.

    Never retried: a second attempt could be charged twice. The prediction holds one of
    the account's in-flight slots until :func:`wait_for_prediction` sees it finish (or
    its lease, the longest the model may take, runs out). Local image paths in
    ``inputs`` are read and sent as data URIs.
    """
    account = _Account(credentials, settings)
    held = await account.scheduler.acquire_slot()
    try:
        async with account.client() as client:
            prediction_id = await _submit(account, client, model_name, inputs)
    except BaseException:
        account.scheduler.release_slot(held)
        raise
    account.scheduler.lease(prediction_id, account.deadline_seconds(model_name, inputs), held)
    return prediction_id


@task(name="fashn-wait-for-prediction", cache_policy=NO_CACHE, persist_result=False)
async def wait_for_prediction(
    prediction_id: str,
    credentials: FashnCredentials | str | None = None,
    settings: FashnSettings | None = None,
    model_name: str | None = None,
) -> PredictionStatus:
    """Poll a prediction until it completes or fails, within the account's status rate.

    ``model_name`` (optional) paces the polls by the model's expected latency. Safe to
    retry: polling never submits anything.
    """
    account = _Account(credentials, settings)
    try:
        async with account.client() as client:
            return await _wait(account, client, prediction_id, model_name)
    finally:
        account.scheduler.release_prediction(prediction_id)


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

    Returns a :class:`PredictionResult`; a rejected or failed prediction is a result with
    ``status="failed"`` and the API's error name and message, not an exception, so one
    bad input never fails a whole ``.map``. Without ``output`` the result lists the API's
    own output references (CDN URLs expire after 72 h, base64 after 60 minutes).
    Never retried blindly: a submission whose fate is unknown is reported, not resent.
    """
    account = _Account(credentials, settings)
    result = PredictionResult(model_name=model_name, status="failed")
    async with account.scheduler.slot(), account.client() as client:
        try:
            result.prediction_id = await _submit(account, client, model_name, inputs)
            status = await _wait(account, client, result.prediction_id, model_name, inputs)
        except ConfigurationError:
            raise
        except AmbiguousSubmission as exc:
            result.error_name, result.error_message = "AmbiguousSubmission", exc.message
            return result
        except APIError as exc:
            result.error_name, result.error_message = exc.name, exc.message
            return result
        except Exception as exc:
            result.error_name, result.error_message = type(exc).__name__, str(exc)
            return result
    result.status = status.status
    result.credits_charged = status.credits_used or 0
    if not status.is_completed:
        result.error_name = status.error.name if status.error else status.status
        result.error_message = status.error.message if status.error else None
        return result
    refs = list(status.output or [])
    if output is None:
        result.output_uris = refs
        return result
    async with account.client() as client:
        result.output_uris = [
            await _store(client, ref, output, f"{safe_name(status.id)}-{index}", account.settings)
            for index, ref in enumerate(refs)
        ]
    return result


async def _store(
    client: FashnClient, ref: str, output: str, name: str, settings: FashnSettings
) -> str:
    """Download one output and write it atomically; return its full URL."""
    fetched = await client.fetch_output(ref)
    fs, root = filesystem(output, **settings.storage_options)
    path = join(root, IMAGES_DIR, f"{name}.{fetched.extension}")
    await asyncio.to_thread(atomic_write, fs, path, fetched.data)
    return str(fs.unstrip_protocol(path))
