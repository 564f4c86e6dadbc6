"""The deployable Prefect flows, shipped in the package.

``deployments/prefect.yaml`` points at them by module (``fashn_prefect.flows:catalog_run``),
so a worker needs only ``pip install 'fashn-prefect[s3]'``: no checkout of this
repository. Every flow takes its options as one ``settings`` parameter
(:class:`~fashn_prefect.settings.FashnSettings`, a form in the Prefect UI); any of its
fields may also be given by name, as in earlier releases.

- :func:`run_manifest`: every row of a manifest (CSV or Parquet on any fsspec URL).
- :func:`run_predictions`: the same for rows in memory (DataFrame, Arrow table, dicts).
- :func:`catalog_run`: the new and changed rows of a catalog (nightly).
- :func:`backfill`: a large historical set in chunks, within a budget.
- :func:`credit_audit`: where the credits went under an output root (weekly).
"""

from __future__ import annotations

from typing import Any, cast

from prefect import flow, get_run_logger
from prefect.artifacts import acreate_markdown_artifact, acreate_table_artifact

from fashn_prefect.credentials import FashnCredentials
from fashn_prefect.jobs.approval import pilot_gate
from fashn_prefect.jobs.audit import run_audit
from fashn_prefect.jobs.backfill import run_backfill
from fashn_prefect.jobs.catalog import run_catalog
from fashn_prefect.run.outcome import judge_audit, state_for
from fashn_prefect.run.pipeline import run_manifest, run_predictions
from fashn_prefect.run.request import RunRequest
from fashn_prefect.settings import FashnSettings

__all__ = ["backfill", "catalog_run", "credit_audit", "run_manifest", "run_predictions"]


@flow(name="fashn-catalog-run", log_prints=False)
async def catalog_run(
    manifest: str,
    output: str,
    model_name: str | None = None,
    credentials: FashnCredentials | str | None = None,
    budget: int | None = None,
    settings: FashnSettings | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Run the rows of a catalog manifest that are new or changed since earlier runs.

    ``manifest`` is the URI of the catalog the business keeps updating (CSV or Parquet on
    any fsspec URL); ``output`` is the output root shared by every run of this catalog.
    Rows that already completed there with the same inputs are not submitted, so an
    unchanged catalog costs zero submissions. ``credentials`` is a ``FashnCredentials``
    block or its name (default: the ``FASHN_API_KEY``/``FASHN_BASE_URL`` environment
    variables). Rows that failed with a permanent error for the same inputs are not
    submitted again unless ``settings.retry_failed`` is set. The flow run ends Failed when
    more rows failed than ``settings.allowed_failures`` allows (a count such as ``"5"`` or
    a percentage such as ``"2%"``).
    """
    s = FashnSettings.build(settings, **options)
    request = RunRequest(output, model_name, credentials, budget, settings=s)
    result = await run_catalog(manifest, request, logger=get_run_logger())
    return cast(dict[str, Any], state_for(result["run"], result))


@flow(name="fashn-backfill")
async def backfill(
    manifest: str,
    output: str,
    model_name: str | None = None,
    credentials: FashnCredentials | str | None = None,
    chunk_size: int = 100,
    partition_by: str | None = None,
    budget: int | None = None,
    dry_run: bool = False,
    pilot_rows: int | None = None,
    approval_timeout: int = 3600,
    settings: FashnSettings | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Regenerate imagery for a large set: chunks of ``chunk_size`` rows (or one chunk per
    value of ``partition_by``), each a ``fashn-run-predictions`` subflow.

    Run it again after an interruption: completed rows are skipped and in-flight
    predictions are resumed, never resubmitted. ``budget`` covers the whole backfill
    (credits already charged for its rows count); rows whose estimate would exceed it are
    not submitted, and the summary says how many. ``dry_run`` validates and estimates the
    whole set without submitting anything. The flow run ends Failed when rows failed or
    the budget stopped it (the message says what was spent and what remains).

    With ``pilot_rows`` it first runs that many rows, then pauses for approval in the
    Prefect UI (pilot gallery, failure rate, cost of the rest; see
    :mod:`fashn_prefect.jobs.approval`): rejected, it ends Cancelled; unanswered within
    ``approval_timeout`` seconds, Failed. Run it again to resume either way.
    """
    s = FashnSettings.build(settings, **options)
    request = RunRequest(output, model_name, credentials, budget, dry_run, s)
    if pilot_rows and not dry_run:
        stopped = await pilot_gate(
            manifest, request, pilot_rows=pilot_rows, timeout=approval_timeout
        )
        if stopped is not None:
            return cast(dict[str, Any], stopped)
    result = await run_backfill(
        manifest,
        request,
        chunk_size=chunk_size,
        partition_by=partition_by,
        logger=get_run_logger(),
    )
    return cast(dict[str, Any], state_for(result))


@flow(name="fashn-credit-audit")
async def credit_audit(
    output: str,
    since: str | None = None,
    budget: int | None = None,
    fail_on_anomalies: bool = True,
    flag_outside_usage: bool = False,
    settings: FashnSettings | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Audit the credits charged by every run under ``output``.

    Aggregates charged and estimated credits by day, model, generation settings, run and
    metadata column; flags charged rows without stored outputs, rows charged twice, failed
    rows with a charge and spend above ``budget``; reconciles each run's ``/v1/credits``
    balance movement: a run whose balance moved by more or less than its rows explain is an
    ``unexplained_balance`` anomaly, tied to the submissions interrupted in it. Movement
    between runs (usage outside them) is reported, and is an ``outside_usage`` anomaly only
    with ``flag_outside_usage``. Writes Parquet and a PNG chart under ``{output}/audit/``
    and publishes the report as a Markdown artifact. Only ``settings.storage_options`` and
    ``settings.storage_block`` apply. The flow run ends Failed when it finds anomalies,
    unless ``fail_on_anomalies`` is off; a ``fashn.audit.anomaly`` event reports them
    either way.
    """
    s = FashnSettings.build(settings, **options)
    log = get_run_logger()
    storage = s.resolved_storage_options()
    report = run_audit(
        output,
        since=since,
        budget=budget,
        storage_options=storage,
        flag_outside_usage=flag_outside_usage,
    )
    log.info(
        "Audit: %s credits charged over %s rows (%s estimated); %s anomalies",
        report.charged,
        report.rows,
        report.estimated,
        len(report.anomalies),
    )
    for anomaly in report.anomalies[:20]:
        log.warning(
            "Anomaly %s: %s (%s credits) %s",
            anomaly.kind,
            anomaly.row_key or "-",
            anomaly.credits,
            anomaly.detail,
        )
    await acreate_markdown_artifact(
        report.markdown(report.files.get("chart")),
        key="fashn-credit-audit",
        description="FASHN credit audit",
    )
    await acreate_table_artifact(
        [{"dimension": "model", **item} for item in report.breakdown.get("model", [])],
        key="fashn-credit-audit-by-model",
        description="Credits by model",
    )
    return cast(dict[str, Any], state_for(judge_audit(report, fail_on_anomalies)))
