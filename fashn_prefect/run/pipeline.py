"""The manifest flows: ``run_manifest`` (a CSV or Parquet file on any fsspec URL) and
``run_predictions`` (rows in memory). Both read their rows and hand them to
:func:`~fashn_prefect.run.stages.run_rows`, which plans, executes and writes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prefect import flow

from fashn_prefect.credentials import FashnCredentials
from fashn_prefect.run.manifest import rows_manifest
from fashn_prefect.run.request import CheckedRows, RunRequest
from fashn_prefect.run.stages import run_rows
from fashn_prefect.settings import FashnSettings

__all__ = ["run_manifest", "run_predictions"]


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
    model the specs do not describe runs as a pass-through (inputs sent as given, credits
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
    account scheduler, ledger, results table, gallery and final state under ``output``. Rows given
    as :class:`~fashn_prefect.run.request.CheckedRows` are not validated again."""
    started = datetime.now(UTC)
    s = FashnSettings.build(settings, **options)
    request = RunRequest(output, model_name, credentials, budget, dry_run, s)
    checked = rows if isinstance(rows, CheckedRows) else rows_manifest(rows)
    return await run_rows(checked, request, started)
