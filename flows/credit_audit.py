"""Deployable flow: the credit audit of an output root (weekly in ``deployments/prefect.yaml``)."""

from __future__ import annotations

from typing import Any, cast

from prefect import flow, get_run_logger
from prefect.artifacts import acreate_markdown_artifact, acreate_table_artifact

from fashn_prefect.audit import run_audit
from fashn_prefect.outcome import judge_audit, state_for
from fashn_prefect.storage_blocks import resolve_storage_options


@flow(name="fashn-credit-audit")
async def credit_audit(
    output: str,
    since: str | None = None,
    budget: int | None = None,
    storage_options: dict[str, Any] | None = None,
    storage_block: str | None = None,
    fail_on_anomalies: bool = True,
) -> dict[str, Any]:
    """Audit the credits charged by every run under ``output``.

    Aggregates charged and estimated credits by day, model, generation settings, run and
    metadata column; flags charged rows without stored outputs, rows charged twice, failed
    rows with a charge and spend above ``budget``; reconciles each run's ``/v1/credits``
    balance movement. Writes Parquet and a PNG chart under ``{output}/audit/`` and
    publishes the report as a Markdown artifact. The flow run ends Failed when it finds
    anomalies or balance movement no charged row explains, unless ``fail_on_anomalies`` is
    off; a ``fashn.audit.anomaly`` event reports them either way.
    """
    log = get_run_logger()
    options = resolve_storage_options(storage_block, storage_options)
    report = run_audit(output, since=since, budget=budget, storage_options=options)
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
