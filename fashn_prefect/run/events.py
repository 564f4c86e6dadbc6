"""Prefect events an automation can trigger on.

* ``fashn.run.finished``: one per manifest run, with its counts, credits and efficiency;
* ``fashn.prediction.failed``: one per failed row, with its row key and error (and, for a
  row whose submission's fate is unknown, the ``remedy``: the setting that finishes it);
* ``fashn.budget.exceeded``: a run refused, or a backfill stopped, by its credit budget;
* ``fashn.audit.anomaly``: a credit audit found anomalies or an unexplained balance.

Every event names the FASHN run (``fashn.run.<run name>``), the Prefect flow run and the
account as related resources. The account is identified by
:attr:`~fashn_prefect.credentials.FashnCredentials.account_id` (a hash of the key, never
the key). Outside a flow run, or without a Prefect API, :func:`prefect.events.emit_event`
sends nothing.
"""

from __future__ import annotations

import hashlib
from typing import Any

from prefect.events import emit_event
from prefect.runtime import flow_run

from fashn_prefect.run.advice import ambiguous_advice

RUN_FINISHED = "fashn.run.finished"
PREDICTION_FAILED = "fashn.prediction.failed"
BUDGET_EXCEEDED = "fashn.budget.exceeded"
AUDIT_ANOMALY = "fashn.audit.anomaly"


def _related(run_name: str | None, account_id: str | None) -> list[dict[str, str]]:
    related: list[dict[str, str]] = []
    if run_name:
        related.append(
            {
                "prefect.resource.id": f"fashn.run.{run_name}",
                "prefect.resource.role": "fashn-run",
                "prefect.resource.name": run_name,
            }
        )
    if flow_run.id:
        related.append(
            {
                "prefect.resource.id": f"prefect.flow-run.{flow_run.id}",
                "prefect.resource.role": "flow-run",
            }
        )
    if account_id:
        related.append(
            {
                "prefect.resource.id": f"fashn.account.{account_id}",
                "prefect.resource.role": "account",
            }
        )
    return related


def _emit(
    event: str,
    resource_id: str,
    name: str,
    payload: dict[str, Any],
    run_name: str | None,
    account_id: str | None,
) -> None:
    resource = {"prefect.resource.id": resource_id, "prefect.resource.name": name}
    if account_id:
        resource["fashn.account"] = account_id
    emit_event(event, resource, related=_related(run_name, account_id), payload=payload)


def run_finished(summary: dict[str, Any], account_id: str | None, failed: bool) -> None:
    """``fashn.run.finished`` for a manifest run's summary (see :class:`RunReport`)."""
    totals = summary.get("totals") or {}
    finished = totals.get("completed", 0) + totals.get("failed", 0)
    charged = totals.get("credits_charged", 0)
    payload = {
        "failed": failed,
        "rows": totals.get("rows", 0),
        "completed": totals.get("completed", 0),
        "failed_rows": totals.get("failed", 0),
        "invalid": totals.get("invalid", 0),
        "skipped": totals.get("skipped", 0),
        "errors": totals.get("errors") or {},
        "credits_charged": charged,
        "credits_estimated": totals.get("estimated_credits", 0),
        "credits_per_completed_row": (
            round(charged / totals["completed"], 3) if totals.get("completed") else None
        ),
        "failure_rate": round(totals.get("failed", 0) / finished, 4) if finished else 0.0,
        "rows_per_minute": summary.get("rows_per_minute"),
        "results": summary.get("results"),
        "gallery": summary.get("gallery"),
    }
    name = summary.get("run_name") or "run"
    _emit(RUN_FINISHED, f"fashn.run.{name}", name, payload, name, account_id)


def prediction_failed(row: dict[str, Any], run_name: str | None, account_id: str | None) -> None:
    """``fashn.prediction.failed`` for one failed result row (never its inputs' URLs)."""
    ids = row.get("prediction_ids") or []
    payload = {
        "row_key": row.get("row_key"),
        "row": row.get("row"),
        "model_name": row.get("model_name"),
        "error_name": row.get("error_name"),
        "error_message": row.get("error_message"),
        "prediction_ids": list(ids),
        "credits_charged": row.get("credits_charged", 0),
        "interrupted_at": str(row["interrupted_at"]) if row.get("interrupted_at") else None,
        "remedy": None,
    }
    key = str(row.get("row_key"))
    if row.get("error_name") == "AmbiguousSubmission":
        payload["remedy"] = ambiguous_advice([key])
    resource_id = f"fashn.prediction.{ids[-1]}" if ids else f"fashn.row.{run_name}.{key}"
    _emit(PREDICTION_FAILED, resource_id, key, payload, run_name, account_id)


def budget_exceeded(
    message: str,
    *,
    budget: int | None,
    spent: int,
    remaining: int | None,
    rows_left: int,
    credits_left: int,
    run_name: str | None = None,
    account_id: str | None = None,
) -> None:
    """``fashn.budget.exceeded``: work held back because it would exceed the budget."""
    payload = {
        "message": message,
        "budget": budget,
        "spent": spent,
        "remaining": remaining,
        "rows_left": rows_left,
        "credits_left": credits_left,
    }
    resource_id = f"fashn.run.{run_name}" if run_name else f"fashn.flow-run.{flow_run.id}"
    _emit(BUDGET_EXCEEDED, resource_id, run_name or "budget", payload, run_name, account_id)


def audit_anomaly(report: Any) -> None:
    """``fashn.audit.anomaly`` for a credit audit that found something (an AuditReport)."""
    root = hashlib.sha256(str(report.output).encode()).hexdigest()[:12]
    payload = {
        "output": report.output,
        "anomaly_counts": report.anomaly_counts(),
        "unexplained": report.unexplained,
        "outside_usage": report.outside_usage,
        "charged": report.charged,
        "anomalies": [
            {"kind": a.kind, "row_key": a.row_key, "credits": a.credits, "detail": a.detail}
            for a in report.anomalies[:20]
        ],
    }
    _emit(AUDIT_ANOMALY, f"fashn.output.{root}", str(report.output), payload, None, None)


def account_of(credentials: Any) -> str | None:
    """The non-secret account id for a credentials block, block name or the environment;
    None when no key is configured."""
    from fashn_prefect.credentials import resolve_credentials
    from fashn_prefect.errors import ConfigurationError

    try:
        return resolve_credentials(credentials).account_id
    except (ConfigurationError, ValueError):
        return None
